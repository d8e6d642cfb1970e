"""Datasets declared once drive every operation: forecast_points/v1 end to end (backfill,
ticks with new issues, late and updated rows, compaction, retention), unknown or disabled
`--dataset` everywhere, declaration and source-schema drift refused naming the column, and
a lake written by the previous release upgraded in place."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from conftest import (
    NO_TRIGGER,
    Lake,
    SourceDb,
    assert_clean_disk,
    assert_newest_view_matches_source,
    canonical,
)
from runner.config import PROJECT_ROOT

pytestmark = pytest.mark.integration

FORECASTS = "forecast_points/v1"
BOTH = f"metrics/v1,{FORECASTS}"
FORECAST_COLUMNS = "series_id, issued_at, ts, value, inserted_at"
# The release before datasets were declared (manifest version 1): the upgrade test runs it.
PREVIOUS_RELEASE = "9fe8378"


def create_forecasts(db: SourceDb) -> None:
    """The forecast table exactly as the contract has it."""
    db.execute("create table forecast_points (series_id text, issued_at timestamptz, "
               "ts timestamptz, value double precision, inserted_at timestamptz default now(), "
               "primary key (series_id, issued_at, ts))")
    db.execute("create index on forecast_points (inserted_at)")


def issue(db: SourceDb, series: list[str], issued_hours_ago: float, points: int = 6,
          value: float = 1.0) -> None:
    """One forecast issue per series: `points` hourly values from the issue time on."""
    db.execute(
        "insert into forecast_points (series_id, issued_at, ts, value) "
        "select s, date_trunc('hour', now()) - make_interval(secs => %s), "
        "date_trunc('hour', now()) - make_interval(secs => %s) + make_interval(hours => h), "
        "%s + h from unnest(%s::text[]) as s, generate_series(0, %s - 1) as h",
        [issued_hours_ago * 3600, issued_hours_ago * 3600, value, series, points])


def forecast_rows(db: SourceDb) -> list[tuple[Any, ...]]:
    return canonical(db.execute(f"select {FORECAST_COLUMNS} from forecast_points"))


def lake_forecasts(lake: Lake, *, newest: bool = True) -> list[tuple[Any, ...]]:
    files = [str(path) for path in lake.committed_files(FORECASTS)]
    if not files:
        return []
    conn = duckdb.connect()
    relation = f"read_parquet({files!r})"
    if newest:
        relation = (f"(select * from {relation} qualify row_number() over (partition by "
                    "series_id, issued_at, ts order by inserted_at desc) = 1)")
    return canonical(conn.execute(f"select {FORECAST_COLUMNS} from {relation}").fetchall())


def shard_of(series_id: str, shards: int = 8) -> int:
    return int(hashlib.md5(series_id.encode()).hexdigest()[:8], 16) % shards


@pytest.fixture
def forecast_lake(lake: Lake, source_db: SourceDb) -> Lake:
    create_forecasts(source_db)
    lake.configure(TSLAKE_DATASETS=BOTH)
    return lake


def test_forecasts_backfill_tick_late_updates_and_compaction(forecast_lake: Lake,
                                                              source_db: SourceDb):
    lake, series = forecast_lake, ["gh-1/air-temp-fc", "gh-2/vpd-fc", "o'brien/ünï"]
    issue(source_db, series, issued_hours_ago=30)
    issue(source_db, series, issued_hours_ago=6)
    lake.run("tslake", "backfill", "--days", "3")
    assert lake_forecasts(lake) == forecast_rows(source_db)
    assert lake.dataset(FORECASTS)["declaration"]["key"] == ["series_id", "issued_at", "ts"]

    # A new issue, an updated value and a late row for an old day, then ticks.
    issue(source_db, series, issued_hours_ago=0)
    source_db.execute("update forecast_points set value = -1, inserted_at = now() "
                      "where series_id = %s and issued_at = (select min(issued_at) from "
                      "forecast_points)", [series[0]])
    source_db.execute("insert into forecast_points (series_id, issued_at, ts, value) values "
                      "(%s, now() - interval '2 days', now() - interval '2 days', 7)", [series[1]])
    lake.run("tslake", "tick", env=NO_TRIGGER)
    assert lake_forecasts(lake) == forecast_rows(source_db)
    assert lake.dataset("metrics/v1")["computed_through_ts"]  # both datasets ticked

    for path in lake.committed_files(FORECASTS):
        relative = path.relative_to(lake.settings.hot_path / FORECASTS)
        assert relative.parts[0].startswith("date=") and relative.parts[1].startswith("shard=")
        rows = duckdb.connect().execute(
            f"select series_id, issued_at, ts, (ts at time zone 'UTC')::date::varchar "
            f"from read_parquet('{path}')").fetchall()
        assert rows == sorted(rows), f"{path} is not sorted by the key"
        assert {row[3] for row in rows} == {relative.parts[0].removeprefix("date=")}
        assert {shard_of(row[0]) for row in rows} == {int(relative.parts[1][-2:])}

    report = json.loads(lake.run("tslake", "compact", "--dataset", FORECASTS).stdout)
    assert set(report) == {FORECASTS} and report[FORECASTS]["max_files_per_shard_day"] == 1
    versions = lake_forecasts(lake, newest=False)
    assert versions == forecast_rows(source_db), "compaction keeps one row per key"
    assert_clean_disk(lake)
    assert_newest_view_matches_source(lake, source_db)


def test_forecast_retention_uses_the_time_column(forecast_lake: Lake, source_db: SourceDb):
    lake = forecast_lake
    issue(source_db, ["gh-1/fc"], issued_hours_ago=24 * 5, points=3)
    issue(source_db, ["gh-1/fc"], issued_hours_ago=1, points=3)
    lake.run("tslake", "backfill", "--days", "6")
    old_dates = {d for d in lake.dataset(FORECASTS)["partitions"]}
    assert len(old_dates) >= 2
    lake.configure(TSLAKE_HOT_RETENTION_DAYS="2")
    summary = json.loads(lake.run("tslake", "retention", "--dataset", FORECASTS).stdout)
    assert summary[FORECASTS]["partitions"], summary
    assert min(lake.dataset(FORECASTS)["partitions"]) >= summary[FORECASTS]["cutoff"]


@pytest.mark.parametrize("command", [
    ["tick"], ["backfill", "--days", "1"], ["compact"], ["retention"], ["inspect"],
    ["repair", "--start", "2026-01-01", "--end", "2026-01-02"], ["parity", "--all"],
    ["query", "--sensor", "a", "--start", "2026-01-01", "--end", "2026-01-02"]])
def test_an_unknown_or_disabled_dataset_is_exit_2_naming_the_known_ones(
        lake: Lake, command: list[str]):
    for name, expected in (("nope/v9", "not a dataset"), (FORECASTS, "not enabled")):
        result = lake.run("tslake", command[0], "--dataset", name, *command[1:], check=False)
        assert result.returncode == 2, (command, result.stderr)
        line = result.stderr.strip().splitlines()[-1]
        assert expected in line and "metrics/v1" in line, line
        assert len(result.stderr.strip().splitlines()) == 1
    assert not lake.settings.manifest_path.exists(), "nothing was written"


def test_an_enabled_dataset_without_its_source_table_fails_cleanly(lake: Lake):
    lake.configure(TSLAKE_DATASETS=BOTH)
    result = lake.run("tslake", "tick", check=False)
    assert result.returncode == 2, result.stderr
    assert "public.forecast_points does not exist" in result.stderr.strip().splitlines()[-1]
    assert not lake.settings.manifest_path.exists(), "nothing was written"
    lake.configure(TSLAKE_DATASETS="nope/v1")
    result = lake.run("tslake", "tick", check=False)
    assert result.returncode == 2 and "TSLAKE_DATASETS" in result.stderr


@pytest.mark.parametrize("change, column", [
    ("alter table forecast_points drop column value", "value"),
    ("alter table forecast_points alter column value type text", "value"),
    ("alter table forecast_points alter column value type real", "value"),
])
def test_source_schema_drift_is_refused_naming_the_column(forecast_lake: Lake,
                                                          source_db: SourceDb, change: str,
                                                          column: str):
    lake = forecast_lake
    issue(source_db, ["gh-1/fc"], issued_hours_ago=1)
    lake.run("tslake", "tick")
    before = lake.settings.manifest_path.read_bytes()
    source_db.execute("alter table forecast_points add column note text")  # ignored
    lake.run("tslake", "tick")
    before = lake.settings.manifest_path.read_bytes()
    source_db.execute(change)
    for command in (["tslake", "tick"], ["tslake", "backfill", "--days", "1"], ["dbt", "run"]):
        result = lake.run(*command, check=False)
        assert result.returncode != 0, command
        assert f"column {column}" in result.stdout + result.stderr or \
            f"forecast_points.{column}" in result.stdout + result.stderr, result.stderr
    assert lake.settings.manifest_path.read_bytes() == before, "the lake is unchanged"


def test_a_changed_declaration_is_refused_naming_it(forecast_lake: Lake, source_db: SourceDb):
    lake = forecast_lake
    issue(source_db, ["gh-1/fc"], issued_hours_ago=1)
    lake.run("tslake", "tick")
    document = json.loads(lake.settings.manifest_path.read_bytes())
    document["datasets"][FORECASTS]["declaration"]["key"] = ["series_id", "ts"]
    lake.settings.manifest_path.write_text(json.dumps(document))
    result = lake.run("tslake", "tick", check=False)
    assert result.returncode == 2, result.stderr
    assert "declared key is series_id, issued_at, ts" in result.stderr
    assert "written with series_id, ts" in result.stderr


def test_a_malformed_manifest_entry_is_exit_65_with_its_path(lake: Lake, source_db: SourceDb):
    source_db.execute("insert into metrics (sensor_id, ts, value, quality) "
                      "values ('a', now() - interval '1 minute', 1, 0)")
    lake.run("tslake", "tick")
    document = json.loads(lake.settings.manifest_path.read_bytes())
    date = next(iter(document["datasets"]["metrics/v1"]["partitions"]))
    document["datasets"]["metrics/v1"]["partitions"][date]["files"][0]["rows"] = "5"
    lake.settings.manifest_path.write_text(json.dumps(document))
    for command in (["tick"], ["inspect"], ["compact"], ["views"]):
        result = lake.run("tslake", *command, check=False)
        assert result.returncode == 65, (command, result.stderr)
        assert f"datasets.metrics/v1.partitions.{date}.files[0].rows" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_lake_written_by_the_previous_release_opens_and_ticks(lake: Lake,
                                                                source_db: SourceDb,
                                                                tmp_path: Path):
    archive = subprocess.run(["git", "-C", str(PROJECT_ROOT), "archive", PREVIOUS_RELEASE],
                             capture_output=True, check=True).stdout
    old = tmp_path / "previous-release"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(old, filter="data")
    # The old runner shadows the installed one (PYTHONPATH comes before the editable finder).
    env = {**lake.env, "PYTHONPATH": str(old)}
    now = source_db.now()
    source_db.execute("insert into metrics (sensor_id, ts, value, quality, inserted_at) "
                      "select 's' || n, %s - make_interval(days => d), n, 0, %s "
                      "from generate_series(1, 3) as n, generate_series(0, 2) as d",
                      [now, now - timedelta(minutes=5)])
    for args in (["backfill", "--days", "3"], ["tick"]):
        subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=old, env=env,
                       check=True, capture_output=True, text=True)
    written = lake.manifest()
    assert written["version"] == 1 and "declaration" not in written["datasets"]["metrics/v1"]

    inspected = json.loads(lake.run("tslake", "inspect").stdout)
    assert inspected["datasets"]["metrics/v1"]["totals"]["rows"] == 9
    source_db.execute("insert into metrics (sensor_id, ts, value, quality) "
                      "values ('late', now() - interval '1 day', 1, 0)")
    lake.run("tslake", "tick")
    upgraded = lake.manifest()
    assert upgraded["version"] == 2
    assert upgraded["datasets"]["metrics/v1"]["declaration"]["key"] == ["sensor_id", "ts"]
    assert upgraded["datasets"]["metrics/v1"]["source_columns"]["quality"] == "smallint"
    assert_newest_view_matches_source(lake, source_db)
    assert_clean_disk(lake)
