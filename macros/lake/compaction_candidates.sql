{#-
    The shard-days of a dataset that compaction should merge: hot shard-days whose
    committed files (per the manifest) number more than `min_files`, optionally only on
    `date`. Returns [{date, shard, paths, rows}] ordered by date and shard; `paths` are the
    manifest's relative paths, sorted.
-#}
{% macro compaction_candidates(dataset, min_files, date=none) %}
    {%- if min_files is not number or min_files < 1 -%}
        {{ exceptions.raise_compiler_error("compaction_candidates: min_files must be a whole number >= 1, got '" ~ min_files ~ "'") }}
    {%- endif -%}
    {%- set query -%}
        with manifest as (
            select content::json as doc
            from read_text(getvariable('tslake_manifest_path'))
        ),
        partitions as (
            select partition.key as date, partition.value as doc
            from manifest, json_each(doc -> 'datasets' -> {{ lake_literal(dataset) }} -> 'partitions') as partition
            where partition.value ->> 'location' = 'hot'
            {%- if date is not none %}
              and partition.key = {{ lake_literal(date) }}
            {%- endif %}
        ),
        files as (
            select
                date,
                (file.value ->> 'shard')::integer as shard,
                file.value ->> 'path' as path,
                (file.value ->> 'rows')::bigint as rows,
                count(*) over (partition by date, (file.value ->> 'shard')::integer) as files_in_shard_day
            from partitions, json_each(partitions.doc -> 'files') as file
        )
        select date, shard, path, rows
        from files
        where files_in_shard_day > {{ min_files | int }}
        order by date, shard, path
    {%- endset -%}
    {%- set shard_days = [] -%}
    {%- for row in run_query(query).rows -%}
        {%- if not shard_days or shard_days[-1]['date'] != row['date'] or shard_days[-1]['shard'] != row['shard'] | int -%}
            {%- do shard_days.append({'date': row['date'], 'shard': row['shard'] | int, 'paths': [], 'rows': 0}) -%}
        {%- endif -%}
        {%- do shard_days[-1]['paths'].append(row['path']) -%}
        {%- do shard_days[-1].update({'rows': shard_days[-1]['rows'] + row['rows'] | int}) -%}
    {%- endfor -%}
    {{ return(shard_days) }}
{% endmacro %}
