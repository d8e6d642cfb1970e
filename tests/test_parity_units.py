"""Unit tests for retention, parity and repair pieces: argument parsing, the checksum's
byte layout, macro rendering, the cold copy, reports, and one-line usage errors."""

from __future__ import annotations

import hashlib
import math
import os
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from runner.cli_params import days_in, parse_instant, parse_sensor_ids, parse_window
from runner.config import PROJECT_ROOT
from runner.core import datasets, tiers
from runner.dbt_bridge import sqlmacros
from runner.dev import synthetic
from runner.errors import ColdTierError, ConfigError
from runner.ops import parity_report, parity_session, retention

pytestmark = pytest.mark.unit


def test_times_are_rfc3339_or_dates_in_utc():
    assert parse_instant("2026-01-22", "--start") == datetime(2026, 1, 22, tzinfo=UTC)
    assert parse_instant("2026-01-22T10:15:00+01:00", "--start") == \
        datetime(2026, 1, 22, 9, 15, tzinfo=UTC)
    for bad, words in (("yesterday", "not a time"), ("2026-01-22T10:15:00", "no time zone"),
                       ("2026-02-30", "not a time")):
        with pytest.raises(ConfigError, match=words):
            parse_instant(bad, "--start")
    with pytest.raises(ConfigError, match="not before --end"):
        parse_window("2026-01-22", "2026-01-22")


def test_days_of_a_half_open_window():
    lo, hi = parse_window("2026-01-30T23:00:00Z", "2026-02-02")
    assert days_in(lo, hi) == ["2026-01-30", "2026-01-31", "2026-02-01"]
    assert days_in(*parse_window("2026-01-30", "2026-01-31")) == ["2026-01-30"]


def test_sensor_ids_are_split_kept_verbatim_and_deduplicated():
    assert parse_sensor_ids(["a, b", "c'd", "a"]) == ["a", "b", "c'd"]
    with pytest.raises(ConfigError, match="empty id"):
        parse_sensor_ids(["a,,b"])
    with pytest.raises(ConfigError, match="--sample N or --all"):
        parse_sensor_ids([",".join(f"s{i}" for i in range(1001))])


def python_row_hash(ts: datetime, value: float | None, quality: int | None) -> int:
    """The checksum's definition, independently of SQL: md5 of the big-endian bytes."""
    micros = (ts - datetime(2000, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    if value is None:
        bits = struct.pack(">Q", 0x7FF8000000000001)
    elif math.isnan(value):
        bits = struct.pack(">Q", 0x7FF8000000000000)
    else:
        bits = struct.pack(">d", 0.0 if value == 0 else value)
    payload = (struct.pack(">q", micros) + bits + struct.pack(">q", quality or 0)
               + bytes([quality is None]))
    return int(hashlib.md5(payload).hexdigest()[:15], 16)


def test_duckdb_row_hash_is_md5_of_the_postgres_send_bytes():
    rows = synthetic.awkward_rows(datetime(2026, 1, 22, 10, 15, tzinfo=UTC))
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    metrics = parity_session.declaration(datasets.declared()["metrics/v1"])
    expression = sqlmacros.render("parity_row_hash_duckdb", declaration=metrics)
    for _, ts, value, quality in rows:
        got = conn.execute(f"select {expression} from (select ?::timestamptz as ts, "
                           "?::double as value, ?::smallint as quality)",
                           [ts, value, quality]).fetchone()[0]
        assert got == python_row_hash(ts, value, quality), (ts, value, quality)


def test_macros_validate_their_arguments():
    with pytest.raises(ConfigError, match="grain 'week' is not one of"):
        sqlmacros.render("parity_bucket", grain="week")
    with pytest.raises(ConfigError, match="not like metrics/v1"):
        sqlmacros.render("lake_manifest_files", dataset="../etc")
    metrics = parity_session.declaration(datasets.declared()["metrics/v1"])
    sql = sqlmacros.render("parity_source_aggregates", declaration=metrics, schema='we"ird',
                           table="metrics", grain="day_shard", ts_from="a", ts_to="b",
                           watermark="c", shards=8)
    assert '"we""ird"."metrics"' in sql  # a quoted identifier, taken literally


def test_cold_copy_crosses_filesystems_and_verifies(tmp_path: Path):
    source = tmp_path / "part.parquet"
    duckdb.connect().execute(f"copy (select range as x from range(1000)) to '{source}'")
    # /dev/shm is another filesystem (tmpfs) where there is one: rename() would fail there.
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path
    target = base / f"tslake-test-{os.getpid()}" / "date=2026-01-01/shard=00/part.parquet"
    try:
        tiers.copy_verified(source, target, rows=1000)
        assert target.read_bytes() == source.read_bytes()
        assert not target.with_name(target.name + ".tmp").exists()
        with pytest.raises(ColdTierError, match="has 1000 rows, the manifest says 999"):
            tiers.copy_verified(source, target, rows=999)
    finally:
        subprocess.run(["rm", "-rf", str(base / f"tslake-test-{os.getpid()}")], check=True)


def test_cold_leftovers_are_found_through_the_record_of_cold_writes(tmp_path: Path):
    from runner.config import Settings
    from runner.core import manifest

    settings = Settings.from_env({"TSLAKE_DATA_ROOT": str(tmp_path),
                                  "TSLAKE_COLD_PATH": str(tmp_path / "cold")})
    settings.state_dir.mkdir(parents=True)
    document = manifest.empty()
    entry = document.dataset("metrics/v1", 8)
    entry.partitions["2026-01-01"] = manifest.Partition(
        location="cold", updated_at="2026-01-02T00:00:00Z", files=[manifest.LakeFile(
            path="date=2026-01-01/shard=00/kept.parquet", shard=0, rows=1, bytes=1,
            kind="backfill", run_id="r")])
    root = tmp_path / "cold/metrics/v1"
    names = ["date=2026-01-01/shard=00/kept.parquet", "date=2026-01-01/shard=00/stray.parquet",
             "date=2026-01-01/shard=01/x.parquet.tmp", "date=2026-01-02/shard=00/other.parquet"]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    assert tiers.remove_cold_leftovers(settings, document) == 0  # nothing recorded: no scan
    tiers.record_cold_writes(settings, "metrics/v1", {"2026-01-01"})
    assert tiers.remove_cold_leftovers(settings, document) == 2
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet*")) == \
        [names[0], names[3]]
    assert not (settings.state_dir / "cold-writes.json").exists()
    assert tiers.remove_cold_leftovers(settings, document, everything=True) == 1
    assert [p.relative_to(root).as_posix() for p in root.rglob("*.parquet*")] == [names[0]]


def test_retention_cutoff_counts_back_from_the_watermark_date():
    from runner.core.manifest import DatasetState, Partition

    stamp = "2026-01-22T00:10:00Z"
    entry = DatasetState(shards=8, computed_through_ts=stamp, partitions={
        day: Partition(location="hot", updated_at=stamp)
        for day in ("2026-01-14", "2026-01-15", "2026-01-22")})
    entry.partitions["2026-01-01"] = Partition(location="cold", updated_at=stamp)
    assert retention.cutoff_date(entry, 7) == "2026-01-15"
    assert retention.due_partitions(entry, 7) == ["2026-01-14"]
    entry.computed_through_ts = None
    assert retention.due_partitions(entry, 7) == []


def test_markdown_report_escapes_sensor_ids_and_names_the_repair():
    difference = {"date": "2026-01-20", "shard": 3, "sensor_id": "a|b\nc", "status": "differs",
                  "source_rows": 2, "lake_rows": 1, "source_min_ts": None, "lake_min_ts": None,
                  "source_max_ts": None, "lake_max_ts": None,
                  "time_ranges": [{"from": "2026-01-20T10:00:00Z", "to": "2026-01-20T11:00:00Z",
                                   "source_rows": 2, "lake_rows": 1}],
                  "examples": [{"ts": "2026-01-20T10:15:00Z", "status": "missing_in_lake"}]}
    report = {"dataset": "metrics/v1", "source_table": "public.metrics", "mode": "all",
              "generated_at": "x", "seconds": 1.0, "window": {"from": "a", "to": None},
              "watermark": "w", "horizon_start": "h", "warnings": ["careful"], "sensors": None,
              "groups": [], "differences": [difference], "missing_files": [], "truncated": False,
              "verdict": "mismatch", "totals": {"groups": 1, "differing_groups": 1,
                                                 "source_rows": 2, "lake_rows": 1}}
    report["repair"] = parity_report.repair_hint(report)
    text = parity_report.render_markdown(report)
    assert "### `a\\|b\\nc` on 2026-01-20 (shard 03): differs" in text
    assert "row at 2026-01-20T10:15:00Z: missing_in_lake" in text
    assert "`tslake repair --start 2026-01-20 --end 2026-01-21`" in text
    assert "> warning: careful" in text


@pytest.mark.parametrize("args, words", [
    (["parity"], "either --all, or both --start and --end"),
    (["parity", "--all", "--start", "2026-01-01"], "either --all"),
    (["parity", "--start", "soon", "--end", "2026-01-02"], "is not a time"),
    (["parity", "--all", "--sample", "0"], "--sample '0' is not a whole number from 1 to 100000"),
    (["parity", "--all", "--sample", "2", "--sensor-ids", "a"], "cannot be combined"),
    (["parity", "--all", "--bogus"], "No such option"),
    (["repair", "--start", "2026-01-02", "--end", "2026-01-01"], "not before --end"),
    (["repair", "--start", "2026-01-02"], "Missing option '--end'"),
])
def test_bad_arguments_are_one_line_usage_errors(tmp_path: Path, args: list[str], words: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "TSLAKE_"))}
    result = subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=PROJECT_ROOT,
                            env={**env, "TSLAKE_DATA_ROOT": str(tmp_path)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tslake: error: ") and words in lines[0]
    assert not (tmp_path / "storage").exists()  # nothing was touched
