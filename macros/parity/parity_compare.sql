{#-
    Join the two sides of a parity comparison (parity_lake_aggregates and
    parity_source_aggregates of the same grain) and say per group: match, missing_in_lake
    (Postgres has rows, the lake none), extra_in_lake, or differs (counts, min/max ts or
    checksum disagree).
-#}
{% macro parity_compare(lake, source) %}
    select
        coalesce(src.bucket, lake.bucket) as bucket,
        coalesce(src.sensor_id, lake.sensor_id) as sensor_id,
        coalesce(src.shard, lake.shard) as shard,
        src.row_count as source_rows,
        lake.row_count as lake_rows,
        src.min_ts as source_min_ts,
        lake.min_ts as lake_min_ts,
        src.max_ts as source_max_ts,
        lake.max_ts as lake_max_ts,
        src.checksum::varchar as source_checksum,
        lake.checksum::varchar as lake_checksum,
        case
            when lake.row_count is null then 'missing_in_lake'
            when src.row_count is null then 'extra_in_lake'
            when lake.row_count = src.row_count
                 and lake.min_ts = src.min_ts
                 and lake.max_ts = src.max_ts
                 and lake.checksum = src.checksum then 'match'
            else 'differs'
        end as status
    from ({{ lake }}) as lake
    full outer join ({{ source }}) as src
        on lake.bucket = src.bucket
        and lake.shard = src.shard
        and lake.sensor_id is not distinct from src.sensor_id
{% endmacro %}
