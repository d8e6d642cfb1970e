-- The forecast_points/v1 lake dataset (declared in _lake__models.yml): one export window
-- of public.forecast_points, newest version per key, placed in its UTC date and shard.
{{ lake_dataset_rows(ref('stg_postgres__forecast_points')) }}
