-- The metrics/v1 lake dataset (declared in _lake__models.yml): one export window of
-- public.metrics, newest version per key, placed in its UTC date and series shard.
{{ lake_dataset_rows(ref('stg_postgres__metrics')) }}
