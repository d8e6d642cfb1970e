-- The metrics/v1 lake dataset: one window of rows, newest version per key, placed in
-- its UTC date and sensor shard. The lake_dataset materialization writes and publishes it.
-- (newest_source_versions skips the dedupe when the source's own unique key makes it moot.)
with window_rows as (

    select * from {{ ref('stg_postgres__metrics') }}

),

newest as (

    {{ newest_source_versions('window_rows') }}

),

placed as (

    select
        *,
        {{ utc_date('ts') }} as date,
        {{ shard_of('sensor_id') }} as shard
    from newest

)

select * from placed
