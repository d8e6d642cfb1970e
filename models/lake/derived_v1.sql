-- The derived/v1 lake dataset (declared in _lake__models.yml): derived sensors computed from
-- the lake's committed metrics/v1 files, not from Postgres (SPEC section 8). The ref makes
-- dbt run it after metrics_v1, so one `dbt run` ticks metrics, then derived; the runner
-- (runner/ops/derived.py) computes the rows with macros/derived/ from the definitions in
-- TSLAKE_DERIVED_SENSORS, so this body is only the dataset's columns.
-- depends_on: {{ ref('metrics_v1') }}
select
    null::varchar as sensor_id,
    null::timestamptz as ts,
    null::double as value,
    null::smallint as quality,
    null::timestamptz as inserted_at
where false
