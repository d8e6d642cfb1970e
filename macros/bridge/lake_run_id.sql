{#-
    The id of this dbt invocation's writes: YYYYMMDDTHHMMSSZ-<8 hex>, the UTC start time and
    dbt's invocation id, so file names sort by time (part-/backfill-/compact-<run_id>.parquet).
-#}
{% macro lake_run_id() -%}
    {{ return(modules.datetime.datetime.now(modules.pytz.utc).strftime('%Y%m%dT%H%M%SZ') ~ '-' ~ invocation_id[:8]) }}
{%- endmacro %}
