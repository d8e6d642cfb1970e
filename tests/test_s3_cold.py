"""An S3 cold tier (`TSLAKE_COLD_PATH=s3://bucket/prefix`) against a real local S3 endpoint
process (moto's server): retention moves with exact parity across hot + S3, `query` and the
views over cold objects read in place, late rows for a cold date landing in S3, SIGKILL at
each step of a move, the endpoint going away mid-move, and the secret key nowhere on disk
or in any output.

Real Postgres, real `dbt run` / `tslake` processes, a real HTTP S3 endpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from conftest import BIN, Lake, SourceDb, canonical, source_rows
from runner.config import PROJECT_ROOT
from runner.core.failpoints import RETENTION_FAILPOINTS
from runner.core.object_store import Credentials, ObjectStore, configure_duckdb
from runner.dev import synthetic
from runner.dev.s3server import S3Server

pytestmark = pytest.mark.integration

SECRET = "tslake-test-secret-7f3a9c1e5b"  # must never appear in any file or output
KEY_ID = "tslaketestkey"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("s3"), key_id=KEY_ID, secret=SECRET)
    yield server
    server.stop()


_buckets = iter(range(1_000_000))


def use_s3(lake: Lake, server: S3Server) -> str:
    """Point the lake at a fresh bucket of `server`; returns the cold URL."""
    bucket = f"lake-{os.getpid()}-{next(_buckets)}"
    server.client().create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/farm/cold"
    lake.configure(TSLAKE_COLD_PATH=url, **server.env)
    return url


def cold_objects(lake: Lake, server: S3Server) -> set[str]:
    """Every object under the lake's cold prefix, relative to `<prefix>/metrics/v1/`."""
    url = lake.settings.cold_url
    assert url is not None
    bucket, prefix = url[len("s3://"):].split("/", 1)
    start = f"{prefix}/metrics/v1/"
    found = set()
    for page in server.client().get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{prefix}/"):
        for item in page.get("Contents", []):
            assert item["Key"].startswith(start), item["Key"]
            found.add(item["Key"][len(start):])
    return found


def committed(lake: Lake, location: str) -> set[str]:
    return {file["path"] for partition in lake.dataset()["partitions"].values()
            if partition["location"] == location for file in partition["files"]}


def hot_files(lake: Lake) -> set[str]:
    root = lake.settings.hot_path / "metrics/v1"
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()
            and not path.is_relative_to(root / "metadata")}  # Iceberg's, not data


def lake_rows(lake: Lake) -> list[tuple[Any, ...]]:
    """Every row version the manifest lists, hot files from disk and cold ones from S3."""
    entry = lake.dataset()
    urls = [str(lake.settings.hot_path / "metrics/v1" / file["path"])
            if partition["location"] == "hot"
            else f"{lake.settings.cold_url}/metrics/v1/{file['path']}"
            for partition in entry["partitions"].values() for file in partition["files"]]
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    configure_duckdb(conn, reader_store(lake))
    return canonical(conn.execute(
        "select sensor_id, ts, value, quality, inserted_at from read_parquet(?)",
        [urls]).fetchall())


def reader_store(lake: Lake) -> ObjectStore:
    """The lake's cold tier with the lake's AWS_* variables (not this process's)."""
    assert lake.settings.cold_url is not None
    return ObjectStore(lake.settings.cold_url, Credentials.from_env(lake.env))


def assert_tiers_clean(lake: Lake, server: S3Server) -> None:
    assert hot_files(lake) == committed(lake, "hot")
    assert cold_objects(lake, server) == committed(lake, "cold")
    assert not (lake.settings.state_dir / "cold-writes.json").exists()


def fill(db: SourceDb, *, sensors: int, days: int, cadence: int) -> None:
    with db.connect() as conn:
        synthetic.fill_uniform(conn, sensors=sensors, days=days, cadence_seconds=cadence)


def test_retention_moves_to_s3_with_exact_parity_query_views_and_no_secret_anywhere(
        lake: Lake, source_db: SourceDb, s3: S3Server, tmp_path: Path):
    url = use_s3(lake, s3)
    fill(source_db, sensors=6, days=10, cadence=3600)
    outputs = []
    backfill = lake.run("dbt", "run", "--vars", "{backfill_days: 10}",
                        TSLAKE_HOT_RETENTION_DAYS="4")
    outputs.append(backfill)
    watermark = date.fromisoformat(lake.dataset()["computed_through_ts"][:10])
    cutoff = (watermark - timedelta(days=4)).isoformat()
    partitions = lake.dataset()["partitions"]
    assert {d: p["location"] for d, p in partitions.items()} == \
        {d: "cold" if d < cutoff else "hot" for d in partitions}
    assert sum(p["location"] == "cold" for p in partitions.values()) >= 5
    assert_tiers_clean(lake, s3)

    # Exact parity across hot + S3, read in place.
    report = tmp_path / "parity.md"
    parity = lake.run("tslake", "parity", "--all", "--fail-on-mismatch", "--report", str(report),
                      TSLAKE_HOT_RETENTION_DAYS="4")
    outputs.append(parity)
    summary = json.loads(parity.stdout)
    assert summary["verdict"] == "match" and summary["missing_files"] == []
    assert summary["totals"]["source_rows"] == summary["totals"]["lake_rows"] > 0

    # `tslake query` over a cold date: exactly the source's rows of that day.
    cold_day = min(partitions)
    next_day = (date.fromisoformat(cold_day) + timedelta(days=1)).isoformat()
    sensor = source_db.execute("select min(sensor_id) from metrics")[0][0]
    query = lake.run("tslake", "query", "--sensor", sensor, "--start", cold_day, "--end",
                     next_day, "--format", "json")
    outputs.append(query)
    got = [(row["ts"], row["value"]) for row in json.loads(query.stdout)]
    expected = source_db.execute(
        "select ts, value from metrics where sensor_id = %s and ts >= %s::date and "
        "ts < %s::date order by ts", (sensor, cold_day, next_day))
    assert len(got) == len(expected) > 0

    # The views kept in _state/lake.duckdb read cold objects in place, given an S3 secret in
    # the reader's own session; `tslake views` tells the reader how, without a credential.
    reader = duckdb.connect()
    assert lake.settings.cold_url == url
    configure_duckdb(reader, reader_store(lake))
    reader.execute(f"attach '{lake.settings.state_dir / 'lake.duckdb'}' as lake (read_only)")
    (count,) = reader.execute("select count(*) from lake.metrics").fetchone() or (0,)
    assert count == summary["totals"]["lake_rows"]
    views = lake.run("tslake", "views", "--no-fresh")
    outputs.append(views)
    assert "LOAD httpfs" in views.stdout and url in views.stdout

    # Late rows for a cold date are written to S3 before the commit; the partition stays cold.
    source_db.execute("insert into metrics (sensor_id, ts, value) values "
                      "('late/probe', %s::date + interval '5 hours', 1.5)", (cold_day,))
    outputs.append(lake.run("tslake", "tick", TSLAKE_HOT_RETENTION_DAYS="4"))
    late = lake.dataset()["partitions"][cold_day]
    assert late["location"] == "cold" and any(f["kind"] == "part" for f in late["files"])
    assert_tiers_clean(lake, s3)
    entry = lake.dataset()
    inside = f"inserted_at <= '{entry['computed_through_ts']}'::timestamptz"
    assert sorted(lake_rows(lake)) == sorted(source_rows(source_db, inside))
    outputs.append(lake.run("tslake", "parity", "--all", "--fail-on-mismatch",
                            TSLAKE_HOT_RETENTION_DAYS="4"))
    outputs.append(lake.run("dbt", "test", TSLAKE_HOT_RETENTION_DAYS="4"))  # dbt's parity too
    inspect = lake.run("tslake", "inspect")
    outputs.append(inspect)
    assert json.loads(inspect.stdout)["cold_path"] == url

    # The secret key is nowhere: not under the data root (manifest, state, views database,
    # logs, dbt's target and logs, the report), nor in any command's output.
    for path in [*lake.settings.data_root.rglob("*"), *tmp_path.rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    for result in outputs:
        assert SECRET not in result.stdout + result.stderr


@pytest.fixture
def small_lake(lake: Lake, source_db: SourceDb, s3: S3Server) -> Lake:
    """6 days of hot partitions and an S3 cold tier to move them to."""
    use_s3(lake, s3)
    fill(source_db, sensors=8, days=6, cadence=1800)
    lake.run("dbt", "run", "--vars", "{backfill_days: 6}", TSLAKE_HOT_RETENTION_DAYS="60")
    return lake


@pytest.mark.parametrize("point", RETENTION_FAILPOINTS)
def test_a_move_to_s3_killed_at_each_step_is_whole_in_one_tier_and_tidied(
        small_lake: Lake, s3: S3Server, point: str):
    lake = small_lake
    rows, dates = lake_rows(lake), set(lake.dataset()["partitions"])
    killed = lake.run("tslake", "retention", check=False, TSLAKE_FAILPOINT=point,
                      TSLAKE_HOT_RETENTION_DAYS="3")
    assert killed.returncode == -signal.SIGKILL
    first = min(dates)
    expected = "cold" if point in ("retention_after_manifest_replace",
                                   "retention_during_hot_removal") else "hot"
    assert lake.dataset()["partitions"][first]["location"] == expected
    assert lake_rows(lake) == rows  # every committed file readable, nothing doubled
    assert committed(lake, "hot") <= hot_files(lake)
    assert committed(lake, "cold") <= cold_objects(lake, s3)
    if point in ("retention_after_cold_copy", "retention_before_manifest_replace"):
        assert cold_objects(lake, s3) - committed(lake, "cold")  # the killed copy's leftovers

    lake.run("tslake", "retention", TSLAKE_HOT_RETENTION_DAYS="3")  # the rerun tidies, moves
    assert lake_rows(lake) == rows
    assert_tiers_clean(lake, s3)
    watermark = date.fromisoformat(lake.dataset()["computed_through_ts"][:10])
    cutoff = (watermark - timedelta(days=3)).isoformat()
    assert {d: p["location"] for d, p in lake.dataset()["partitions"].items()} == \
        {d: "cold" if d < cutoff else "hot" for d in dates}


def test_the_endpoint_going_away_mid_move_is_one_clean_line_and_the_partition_stays_hot(
        lake: Lake, source_db: SourceDb, tmp_path: Path):
    server = S3Server(tmp_path, key_id=KEY_ID, secret=SECRET)
    try:
        use_s3(lake, server)
        fill(source_db, sensors=8, days=5, cadence=1800)
        lake.run("dbt", "run", "--vars", "{backfill_days: 5}", TSLAKE_HOT_RETENTION_DAYS="60")
        before = lake.dataset()["partitions"]
        hot_before = hot_files(lake)
        # Stopped right after the first object of the first partition is copied; the endpoint
        # dies there; the move goes on and must fail cleanly.
        process = subprocess.Popen(
            [str(BIN / "tslake"), "retention"], cwd=PROJECT_ROOT, text=True,
            env={**lake.env, "TSLAKE_HOT_RETENTION_DAYS": "2",
                 "TSLAKE_FAILPOINT": "retention_after_cold_copy@stop"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while _state(process.pid) != "T":
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "retention never reached the failpoint"
            time.sleep(0.05)
        server.stop()
        os.kill(process.pid, signal.SIGCONT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        server.stop()
    assert process.returncode == 69, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("tslake: error: cannot ") and server.endpoint in stderr
    assert SECRET not in stdout + stderr
    after = lake.dataset()["partitions"]
    assert {d: p["location"] for d, p in after.items()} == \
        {d: p["location"] for d, p in before.items()}  # all still hot, whole
    assert hot_files(lake) == hot_before == committed(lake, "hot")
    # The dates it began writing stay recorded: the next command with the endpoint back
    # lists those prefixes (only) and deletes the half-moved objects.
    recorded = json.loads((lake.settings.state_dir / "cold-writes.json").read_text())
    assert recorded == {"metrics/v1": [min(before)]}


def _state(pid: int) -> str:
    """The process state letter from /proc (T = stopped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


def test_an_s3_url_with_credentials_in_it_is_refused_without_repeating_them(tmp_path: Path):
    for url in (f"s3://{KEY_ID}:{SECRET}@bucket/cold", f"s3://bucket/cold?secret={SECRET}"):
        result = subprocess.run(
            [str(BIN / "tslake"), "inspect"], cwd=PROJECT_ROOT, capture_output=True, text=True,
            env={"PATH": os.environ["PATH"], "TSLAKE_DATA_ROOT": str(tmp_path),
                 "TSLAKE_COLD_PATH": url}, timeout=60)
        assert result.returncode == 2, result.stderr
        assert "without credentials" in result.stderr and "AWS_SECRET_ACCESS_KEY" in result.stderr
        assert SECRET not in result.stdout + result.stderr
