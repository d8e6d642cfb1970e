{#-
    For dbt tests: what the committed manifest says about `dataset` — its watermark, shard
    count, oldest partition and every listed file (lake_manifest_files), or
    {'committed': false} before the first commit. Runs queries, so call it at execution.
-#}
{% macro lake_committed_files(dataset) %}
    {%- set found = run_query("select count(*) from glob(getvariable('tslake_manifest_path'))").rows[0][0] -%}
    {%- if found | int == 0 -%}
        {{ return({'committed': false}) }}
    {%- endif -%}
    {%- set state_query -%}
        with entry as (
            select content::json -> 'datasets' -> {{ lake_literal(dataset) }} as entry
            from read_text(getvariable('tslake_manifest_path'))
        )
        select
            entry ->> 'computed_through_ts' as watermark,
            (entry ->> 'shards')::integer as shards,
            (select min(key) from json_each(entry -> 'partitions')) as first_date,
            getvariable('tslake_cold_path') <> '' as with_cold
        from entry
    {%- endset -%}
    {%- set state = run_query(state_query).rows[0] -%}
    {%- if not state['watermark'] or not state['first_date'] -%}
        {{ return({'committed': false}) }}
    {%- endif -%}
    {%- set files = [] -%}
    {%- for row in run_query(lake_manifest_files(dataset, with_cold=state['with_cold'])).rows -%}
        {%- do files.append({'path': row['path'], 'date': row['date'], 'shard': row['shard'] | int,
                             'files_in_shard_day': row['files_in_shard_day'] | int, 'on_disk': row['on_disk']}) -%}
    {%- endfor -%}
    {{ return({'committed': true, 'watermark': state['watermark'], 'shards': state['shards'] | int,
               'first_date': state['first_date'], 'files': files}) }}
{% endmacro %}
