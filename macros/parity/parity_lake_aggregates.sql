{#-
    The lake's side of a parity comparison, from the committed files only: the newest
    version of each key, then the same groups and checksums as parity_source_aggregates.
    `declaration` is the dataset's (parity_check_declaration). `single_files` are files
    alone in their shard-day (a writer keeps one version per key in a file, so they need no
    dedupe); `multi_files` are the files of shard-days with several, deduped across files.
    Both are VARCHAR[] expressions or none. `exclude` is a relation of keys (the key
    columns by name) to leave out (in flight). Groups are (bucket, series, shard), the
    series as column `series`; at grain row_sensor also the key's other columns, as
    key_<column>.
-#}
{% macro parity_lake_aggregates(declaration, grain, single_files, multi_files, ts_from, ts_to, shards, exclude=none, sensors=none, shard_filter=none) %}
    {{- parity_check_declaration(declaration, 'parity_lake_aggregates') -}}
    {%- if grain not in ['day_shard', 'day_sensor', 'hour_sensor', 'row_sensor'] -%}
        {{ exceptions.raise_compiler_error("parity_lake_aggregates: grain '" ~ grain ~ "' is not one of day_shard, day_sensor, hour_sensor, row_sensor") }}
    {%- endif -%}
    {%- set series = '"' ~ declaration['series'] ~ '"' -%}
    {%- set time = '"' ~ declaration['time'] ~ '"' -%}
    {%- set extra = [] -%}
    {%- for name in declaration['key'] if grain == 'row_sensor' and name not in [declaration['series'], declaration['time']] -%}
        {%- do extra.append(name) -%}
    {%- endfor -%}
    {%- set wanted = [] -%}
    {%- set blank = [] -%}
    {%- for column in declaration['columns'] if column[0] != declaration['version'] -%}
        {%- do wanted.append('"' ~ column[0] ~ '"') -%}
        {%- do blank.append('null::' ~ parity_duckdb_type(column[1]) ~ ' as "' ~ column[0] ~ '"') -%}
    {%- endfor -%}
    {%- set key = [] -%}
    {%- for name in declaration['key'] -%}
        {%- do key.append('"' ~ name ~ '"') -%}
    {%- endfor -%}
    {%- set row_filter -%}
        {{ time }} >= {{ ts_from }} and {{ time }} < {{ ts_to }}
        {%- if sensors is not none %} and {{ series }} in (select unnest({{ sensors }})){% endif %}
    {%- endset -%}
    with lake_rows as (
        {%- if single_files is none and multi_files is none %}
        select {{ blank | join(', ') }}
        where false
        {%- endif %}
        {%- if single_files is not none %}
        select {{ wanted | join(', ') }}
        from read_parquet({{ single_files }}, hive_partitioning = false)
        where {{ row_filter }}
        {%- endif %}
        {%- if single_files is not none and multi_files is not none %}
        union all
        {%- endif %}
        {%- if multi_files is not none %}
        select {{ wanted | join(', ') }}
        from ({{ newest_versions('(select * from read_parquet(' ~ multi_files ~ ', hive_partitioning = false) where ' ~ row_filter ~ ') as multi_file_rows', declaration['key'] | list, declaration['version']) }}) as newest
        {%- endif %}
    ),
    kept as (
        select * from lake_rows
        {%- if exclude is not none %}
        anti join ({{ exclude }}) as in_flight using ({{ key | join(', ') }})
        {%- endif %}
    ),
    per_series as (
        select
            {{ parity_bucket(grain, time) }}::timestamp as bucket,
            {{ series }} as series,
            {%- for name in extra %}
            "{{ name }}" as "key_{{ name }}",
            {%- endfor %}
            count(*) as row_count,
            min({{ time }}) as min_ts,
            max({{ time }}) as max_ts,
            sum({{ parity_row_hash_duckdb(declaration) }}) as checksum
            {%- if grain == 'row_sensor' %},
            min({{ parity_row_values(declaration) }}) as row_values
            {%- endif %}
        from kept
        group by {{ range(1, 3 + extra | length) | join(', ') }}
    ),
    placed as (
        select *, {{ shard_of('series', shards | int) }} as shard
        from per_series
    )
    select
        bucket,
        {{ 'null::varchar' if grain == 'day_shard' else 'series' }} as series,
        shard,
        {%- for name in extra %}
        "key_{{ name }}",
        {%- endfor %}
        sum(row_count)::bigint as row_count,
        min(min_ts) as min_ts,
        max(max_ts) as max_ts,
        sum(checksum)::hugeint as checksum
        {%- if grain == 'row_sensor' %},
        min(row_values) as row_values
        {%- endif %}
    from placed
    {%- if shard_filter is not none %}
    where shard in ({{ shard_filter | map('int') | join(', ') or 'null' }})
    {%- endif %}
    group by {{ range(1, 4 + extra | length) | join(', ') }}
{% endmacro %}
