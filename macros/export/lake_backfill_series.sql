{#-
    Series discovery for the backfill day selected on the connection (series = NULL):
    the model, run in postgres_window's discovery shape, yields one row per series with rows
    in the day; this groups them by shard into the Postgres array literal each shard's read
    takes. Returns the SQL: rows (shard, series, series_count), ordered by shard.
-#}
{% macro lake_backfill_series(model_sql, series_column) %}
    with series as (
        select distinct {{ series_column }} as series_id, shard from ({{ model_sql }}) as day_series
    )
    select
        shard,
        {{ postgres_array_literal('series_id') }} as series,
        count(*) as series_count
    from series
    group by shard
    order by shard
{% endmacro %}
