{#-
    Series discovery for the backfill day selected on dbt's connection (series = NULL):
    the model, run in postgres_window's discovery shape, yields one row per series with rows
    in the day; this groups them by shard into the Postgres array literal each shard's read
    takes. Returns the SQL: rows (shard, series, series_count), ordered by shard.
-#}
{% macro lake_backfill_series(model_sql) %}
    with series as (
        select distinct sensor_id, shard from ({{ model_sql }}) as day_series
    )
    select
        shard,
        {{ postgres_array_literal('sensor_id') }} as series,
        count(*) as series_count
    from series
    group by shard
    order by shard
{% endmacro %}
