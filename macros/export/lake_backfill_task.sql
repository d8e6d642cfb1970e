{#-
    One backfill task, as SQL text a runner worker runs on its own DuckDB connection to
    write one shard of one day: select the window (day, cap, the shard's series), then one
    streaming COPY from Postgres into `path` (a *.parquet.tmp), sorted by the key. Its
    last statement returns the row count.
-#}
{% macro lake_backfill_task(model_sql, cap, ts_from, ts_to, series, path, key) %}
    {{ export_window_statements(hi=cap, ts_from=ts_from, ts_to=ts_to, series=series) }}
    copy (
        select * exclude (date, shard)
        from ({{ model_sql }}) as shard_day
        order by {{ key | join(', ') }}
    ) to {{ lake_literal(path) }} ({{ lake_parquet_options() }})
{% endmacro %}
