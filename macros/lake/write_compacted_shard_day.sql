{#-
    Merge one shard-day's committed files into compact-<run_id>.parquet.tmp beside them:
    one row per (sensor_id, ts), the newest inserted_at (newest_versions), sorted by
    (sensor_id, ts). One COPY statement per shard-day, so memory stays within DuckDB's
    memory_limit (it spills to TSLAKE_TMP_PATH beyond it). Returns the rows written.
-#}
{% macro write_compacted_shard_day(dataset, date, shard, paths, run_id) %}
    {%- if not paths -%}
        {{ exceptions.raise_compiler_error("write_compacted_shard_day: no input files for " ~ dataset ~ " date=" ~ date ~ " shard=" ~ shard) }}
    {%- endif -%}
    {%- set hot_path = run_query("select getvariable('tslake_hot_path')").rows[0][0] -%}
    {%- set root = hot_path ~ '/' ~ dataset -%}
    {%- set inputs = [] -%}
    {%- for path in paths -%}
        {%- do inputs.append(lake_literal(root ~ '/' ~ path)) -%}
    {%- endfor -%}
    {%- set copy -%}
        copy (
            with inputs as (
                select *
                from read_parquet([{{ inputs | join(', ') }}], hive_partitioning = false, union_by_name = true)
            ),
            newest as (
                {{ newest_versions('inputs') }}
            )
            select * from newest
            order by sensor_id, ts
        ) to {{ lake_literal(segment_path(hot_path, dataset, date, shard, 'compact', run_id)) }} ({{ lake_parquet_options() }})
    {%- endset -%}
    {{ return(run_query(copy).rows[0][0] | int) }}
{% endmacro %}
