{#-
    One backfill task: the statements a runner worker runs on its own DuckDB connection to
    write one shard of one day: select the window (day, cap, the shard's series), then one
    streaming COPY from Postgres into `path` (a *.parquet.tmp), sorted by (sensor_id, ts).
    The last statement returns the row count.
-#}
{% macro lake_backfill_task(model_sql, cap, ts_from, ts_to, series, path) %}
    {%- set statements = export_window_statements(hi=cap, ts_from=ts_from, ts_to=ts_to, series=series) -%}
    {%- set copy -%}
        copy (
            select * exclude (date, shard)
            from ({{ model_sql }}) as shard_day
            order by sensor_id, ts
        ) to {{ lake_literal(path) }} ({{ lake_parquet_options() }})
    {%- endset -%}
    {%- do statements.append(copy) -%}
    {{ return(statements) }}
{% endmacro %}
