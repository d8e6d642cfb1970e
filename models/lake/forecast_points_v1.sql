-- The forecast_points/v1 lake dataset: one window of rows, newest version per key, placed in
-- its UTC date and series shard (the declaration in _lake__models.yml names the columns).
-- The lake_dataset materialization writes and publishes it.
with window_rows as (

    select * from {{ ref('stg_postgres__forecast_points') }}

),

newest as (

    {{ newest_source_versions('window_rows') }}

),

placed as (

    {{ lake_placed_rows('newest') }}

)

select * from placed
