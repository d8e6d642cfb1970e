"""Source shapes and transaction states a tick must handle: a TimescaleDB-shaped table
(empty parent, inheritance chunks) and prepared (two-phase) transactions."""

from __future__ import annotations

import pytest

from conftest import Lake, SourceDb, source_rows
from runner.core.manifest import parse_rfc3339
from runner.dev import synthetic

pytestmark = pytest.mark.integration


def test_hypertable_shaped_source_ticks_and_backfills(lake: Lake, source_db: SourceDb):
    source_db.execute("drop table metrics")
    with source_db.connect() as conn:
        synthetic.create_metrics_table(conn, hypertable_like=True)
        rows = synthetic.fill_history(conn, days=10, sensors=6, end=source_db.now())
    assert rows > 0
    assert source_db.execute("select count(*) from only metrics") == [(0,)]  # parent is empty
    lake.run("dbt", "run", "--vars", "{backfill_days: 10, replace_existing: true}")
    source_db.execute("insert into metrics (sensor_id, ts, value) "
                      "select 'chunked-' || i, now() - make_interval(days => i), i "
                      "from generate_series(0, 8) as i")  # late rows across several chunks
    lake.run("dbt", "run")
    watermark = parse_rfc3339(lake.dataset()["computed_through_ts"])
    horizon = lake.dataset()["last_run"]["window_from"]
    expected = source_rows(source_db, "inserted_at <= %s and (ts >= %s::date - 10 "
                           "or inserted_at > %s)", (watermark, horizon, horizon))
    assert lake.rows(newest=True) == expected


def test_prepared_transaction_holds_the_watermark(lake: Lake, source_db: SourceDb):
    lake.run("dbt", "run")
    held = lake.dataset()["computed_through_ts"]
    writer = source_db.connect(autocommit=False)
    writer.execute("insert into metrics (sensor_id, ts, value) values ('two-phase', now(), 1)")
    writer.execute("prepare transaction 'tslake_test_2pc'")
    writer.close()
    try:
        lake.run("dbt", "run")
        assert lake.dataset()["computed_through_ts"] == held
    finally:
        source_db.execute("commit prepared 'tslake_test_2pc'")
    lake.run("dbt", "run")
    assert lake.dataset()["computed_through_ts"] > held
    assert lake.rows() == source_rows(source_db)
