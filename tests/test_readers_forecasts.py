"""Readers of forecast_points/v1 end to end: a real Postgres with public.forecast_points, a
real `tslake backfill` and `tick`, then the views (`_state/lake.duckdb`, `tslake views`
with `forecast_points_fresh`) and `tslake query --dataset forecast_points/v1`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from conftest import Lake, SourceDb, canonical
from runner.core import manifest
from runner.core.manifest import DatasetState, parse_rfc3339
from runner.dev import synthetic
from runner.postgres.connection import connect
from runner.readers.query import shard_of

pytestmark = pytest.mark.integration

BOTH = "metrics/v1,forecast_points/v1"
DATASET = "forecast_points/v1"
COLUMNS = "series_id, issued_at, ts, value, inserted_at"
SERIES = "greenhouse-1/air-temp-forecast"


def state_of(lake: Lake, name: str = DATASET) -> DatasetState:
    document = manifest.load(lake.settings.manifest_path)
    assert document is not None, "no manifest committed"
    return document.datasets[name]


def forecast_rows(db: SourceDb, where: str = "true", params: Any = None) -> list[tuple]:
    return canonical(db.execute(f"select {COLUMNS} from forecast_points where {where}", params))


def lake_view(lake: Lake) -> list[tuple]:
    reader = duckdb.connect()
    reader.execute("set TimeZone = 'UTC'")
    reader.execute(f"attach '{lake.settings.state_dir / 'lake.duckdb'}' as lake (read_only)")
    return canonical(reader.execute(f"select {COLUMNS} from lake.forecast_points").fetchall())


def make_forecast_lake(lake: Lake, source_db: SourceDb, *, end: datetime, days: int) -> Lake:
    with source_db.connect() as conn:
        synthetic.create_forecast_points_table(conn)
        synthetic.fill_forecasts(conn, days=1.5, end=end)
    source_db.execute("insert into metrics (sensor_id, ts, value) values ('m-1', now(), 1)")
    lake.configure(TSLAKE_DATASETS=BOTH)
    lake.run("tslake", "backfill", "--days", str(days))
    return lake


@pytest.fixture
def forecast_lake(lake: Lake, source_db: SourceDb) -> Lake:
    """Both datasets enabled; 1.5 days of forecast issues (each 48 h ahead) issued until two
    days ago, so every point's ts is in the past; backfilled."""
    return make_forecast_lake(lake, source_db, end=source_db.now() - timedelta(days=2),
                              days=4)


def test_backfill_takes_forecasts_of_future_dates_too(lake: Lake, source_db: SourceDb) -> None:
    """README "How a backfill works": a backfill exports rows with a future ts (forecasts) too."""
    make_forecast_lake(lake, source_db, end=source_db.now(), days=2)
    watermark = parse_rfc3339(state_of(lake).computed_through_ts or "")
    assert lake_view(lake) == forecast_rows(source_db, "inserted_at <= %s", (watermark,))


def test_forecast_view_is_the_newest_version_of_every_forecast_point(
        forecast_lake: Lake, source_db: SourceDb, tmp_path: Path) -> None:
    lake = forecast_lake
    watermark = parse_rfc3339(state_of(lake).computed_through_ts or "")
    assert lake_view(lake) == forecast_rows(source_db, "inserted_at <= %s", (watermark,))
    # A re-issued forecast: same keys, new values and versions, in a second file per shard-day.
    source_db.execute("update forecast_points set value = value + 100, inserted_at = now() "
                      "where issued_at = (select max(issued_at) from forecast_points)")
    lake.run("tslake", "tick")
    watermark = parse_rfc3339(state_of(lake).computed_through_ts or "")
    expected = forecast_rows(source_db, "inserted_at <= %s", (watermark,))
    assert lake_view(lake) == expected
    lake.run("tslake", "views", "--no-fresh", "--out", str(tmp_path / "views.sql"))
    session = duckdb.connect()
    session.execute("set TimeZone = 'UTC'")
    session.execute((tmp_path / "views.sql").read_text())
    assert canonical(session.execute(f"select {COLUMNS} from forecast_points").fetchall()) == \
        expected
    assert session.execute("select forecast_points_shard(?)", [SERIES]).fetchone() == \
        (shard_of(SERIES, 8),)
    dates = {row[0] for row in session.execute("select distinct date from forecast_points "
                                               "where shard = forecast_points_shard(?)",
                                               [SERIES]).fetchall()}
    assert len(dates) >= 3  # forecasts run two days ahead of today
    assert session.execute("select count(*) from metrics").fetchone() == (1,)


def test_forecast_points_fresh_includes_an_issue_published_a_second_ago(
        forecast_lake: Lake, source_db: SourceDb, tmp_path: Path) -> None:
    lake = forecast_lake
    with source_db.connect() as conn:
        assert synthetic.issue_forecasts(conn) == len(synthetic.FORECAST_SERIES) * 48
    source_db.execute("update forecast_points set value = -1, inserted_at = now() "
                      "where ts = (select min(ts) from forecast_points)")
    lake.run("tslake", "views", "--out", str(tmp_path / "views.sql"))
    session = connect(lake.settings, attach=True, env=lake.env)
    try:
        session.execute((tmp_path / "views.sql").read_text())
        fresh = canonical(session.execute(
            f"select {COLUMNS} from forecast_points_fresh").fetchall())
        in_lake = session.execute("select count(*) from forecast_points").fetchone()
    finally:
        session.close()  # let the fixture drop the database
    assert fresh == forecast_rows(source_db)
    assert in_lake is not None and in_lake[0] < len(fresh)


def query_json(lake: Lake, *args: str) -> list[dict[str, Any]]:
    return json.loads(lake.run("tslake", "query", "--dataset", DATASET, "--format", "json",
                               *args).stdout)


def test_query_reads_a_forecast_series_and_its_buckets(forecast_lake: Lake,
                                                       source_db: SourceDb) -> None:
    lake = forecast_lake
    rows = query_json(lake, "--sensor", SERIES, "--start", "2000-01-01", "--end", "2100-01-01")
    assert rows and set(rows[0]) == {"series_id", "issued_at", "ts", "value"}
    expected = source_db.execute("select issued_at, ts, value from forecast_points "
                                 "where series_id = %s order by issued_at, ts", (SERIES,))
    assert [(parse_rfc3339(r["issued_at"]), parse_rfc3339(r["ts"]), r["value"])
            for r in rows] == expected
    buckets = query_json(lake, "--sensor", SERIES, "--start", "2000-01-01", "--end",
                         "2100-01-01", "--bucket", "6h", "--agg", "avg")
    expected = source_db.execute(
        "select date_bin('6 hours', ts, 'epoch'::timestamptz), avg(value), count(*) "
        "from forecast_points where series_id = %s group by 1 order by 1", (SERIES,))
    assert [(parse_rfc3339(b["bucket_start"]), b["avg"], b["samples"]) for b in buckets] == \
        [(start, pytest.approx(avg), n) for start, avg, n in expected]


def test_query_of_forecasts_needs_the_dataset_enabled(forecast_lake: Lake) -> None:
    result = forecast_lake.run("tslake", "query", "--dataset", DATASET, "--sensor", SERIES,
                               "--start", "2000-01-01", "--end", "2100-01-01", check=False,
                               TSLAKE_DATASETS="metrics/v1")
    assert result.returncode == 2
    assert "not enabled" in result.stderr and len(result.stderr.strip().splitlines()) == 1
