{#-
    The COPY that merges one shard-day's committed files into `path` (a
    compact-<run_id>.parquet.tmp beside them): one row per key, the newest version
    (newest_versions), sorted by the key. One statement per shard-day, so memory stays
    within DuckDB's memory_limit (it spills to TSLAKE_TMP_PATH beyond it). The runner
    (runner/ops/compaction.py) renders and runs it; it returns the rows written.
-#}
{% macro compacted_shard_day(inputs, key, version_column, path) %}
    {%- if not inputs -%}
        {{ exceptions.raise_compiler_error("compacted_shard_day: no input files for " ~ path) }}
    {%- endif -%}
    {%- set files = [] -%}
    {%- for input in inputs -%}
        {%- do files.append(lake_literal(input)) -%}
    {%- endfor -%}
    copy (
        with inputs as (
            select *
            from read_parquet([{{ files | join(', ') }}], hive_partitioning = false, union_by_name = true)
        ),
        newest as (
            {{ newest_versions('inputs', key, version_column) }}
        )
        select * from newest
        order by {{ key | join(', ') }}
    ) to {{ lake_literal(path) }} ({{ lake_parquet_options() }})
{% endmacro %}
