-- The metrics/v1 lake dataset: one window of rows, newest version per key, placed in
-- its UTC date and sensor shard. The lake_dataset materialization writes and publishes it.
with window_rows as (

    select * from {{ ref('stg_postgres__metrics') }}

),

newest as (

    {{ newest_versions('window_rows') }}

),

placed as (

    select
        *,
        {{ utc_date('ts') }} as date,
        {{ shard_of('sensor_id') }} as shard
    from newest

)

select * from placed
