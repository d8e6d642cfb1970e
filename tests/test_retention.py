"""Retention: old partitions move to the cold tier (or are deleted), killed at any moment a
partition is whole in exactly one tier, and late rows for a cold date stay cold.

Real Postgres, real `dbt run` / `tslake` processes, real files, SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from conftest import BIN, Lake, SourceDb
from runner.config import PROJECT_ROOT
from runner.core.failpoints import RETENTION_FAILPOINTS
from runner.dev import synthetic

pytestmark = pytest.mark.integration


def use_cold_path(lake: Lake, cold: Path) -> Path:
    """Point the lake at a cold tier (the directory must exist, like a mounted NAS)."""
    cold.mkdir(parents=True, exist_ok=True)
    lake.configure(TSLAKE_COLD_PATH=str(cold))
    return cold


def fill(db: SourceDb, *, sensors: int, days: int, cadence: int) -> int:
    with db.connect() as conn:
        return synthetic.fill_uniform(conn, sensors=sensors, days=days, cadence_seconds=cadence)


def watermark_date(lake: Lake) -> date:
    return date.fromisoformat(lake.dataset()["computed_through_ts"][:10])


def files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file()
                  and not path.is_relative_to(root / "metadata"))  # Iceberg's, not data


def snapshot(root: Path) -> set[str]:
    """Paths under `root` now; files may vanish while it looks (os.walk skips them)."""
    return {os.path.join(top, name) for top, dirs, files in os.walk(root)
            for name in dirs + files}


def assert_tiers_are_clean(lake: Lake) -> None:
    """Each tier holds exactly the committed files of its partitions; nothing else."""
    committed = lake.committed_files()
    hot_root = lake.settings.hot_path / "metrics/v1"
    assert files_under(hot_root) == [p for p in committed if p.is_relative_to(hot_root)]
    if lake.settings.cold_path is not None:
        cold_root = lake.settings.cold_path / "metrics/v1"
        assert files_under(cold_root) == [p for p in committed if p.is_relative_to(cold_root)]


def uncommitted_reported(lake: Lake) -> int:
    report = json.loads(lake.run("tslake", "inspect").stdout)
    return int(report["datasets"]["metrics/v1"]["uncommitted_files_on_disk"])


def test_thirty_day_backfill_keeps_seven_hot_days_and_the_rest_cold(
        lake: Lake, source_db: SourceDb, tmp_path: Path):
    cold = use_cold_path(lake, tmp_path / "nas")
    fill(source_db, sensors=6, days=30, cadence=3600)
    lake.run("dbt", "run", "--vars", "{backfill_days: 30}", TSLAKE_HOT_RETENTION_DAYS="7")

    cutoff = (watermark_date(lake) - timedelta(days=7)).isoformat()
    partitions = lake.dataset()["partitions"]
    assert len(partitions) == 31
    for day, partition in partitions.items():
        assert partition["location"] == ("cold" if day < cutoff else "hot"), day
        hot_dir = lake.settings.hot_path / "metrics/v1" / f"date={day}"
        cold_dir = cold / "metrics/v1" / f"date={day}"
        assert hot_dir.exists() == (day >= cutoff) and cold_dir.exists() == (day < cutoff)
    assert sum(p["location"] == "hot" for p in partitions.values()) == 8  # today + 7 days
    assert_tiers_are_clean(lake)

    report = lake.settings.data_root / "parity.md"
    result = lake.run("tslake", "parity", "--all", "--fail-on-mismatch", "--report", str(report),
                      TSLAKE_HOT_RETENTION_DAYS="7")
    summary = json.loads(result.stdout)
    assert summary["verdict"] == "match" and summary["totals"]["source_rows"] > 0
    assert summary["totals"]["source_rows"] == summary["totals"]["lake_rows"]
    assert summary["window"]["from"] == f"{min(partitions)}T00:00:00Z"
    assert "**Verdict: MATCH**" in report.read_text()
    assert json.loads(report.with_suffix(".json").read_text())["verdict"] == "match"
    lake.run("dbt", "test", TSLAKE_HOT_RETENTION_DAYS="7")

    # Late rows for a cold date land in the cold partition; the partition stays cold.
    late_day = (watermark_date(lake) - timedelta(days=20)).isoformat()
    source_db.execute("insert into metrics (sensor_id, ts, value) values "
                      "('late/probe', %s::date + interval '5 hours', 1.5)", (late_day,))
    lake.run("tslake", "tick", TSLAKE_HOT_RETENTION_DAYS="7")
    late = lake.dataset()["partitions"][late_day]
    assert late["location"] == "cold"
    assert any(file["kind"] == "part" for file in late["files"])
    assert_tiers_are_clean(lake)
    lake.run("tslake", "parity", "--all", "--fail-on-mismatch", TSLAKE_HOT_RETENTION_DAYS="7")


def test_without_a_cold_path_old_partitions_are_deleted(lake: Lake, source_db: SourceDb):
    fill(source_db, sensors=4, days=10, cadence=3600)
    lake.run("dbt", "run", "--vars", "{backfill_days: 10}", TSLAKE_HOT_RETENTION_DAYS="30")
    assert len(lake.dataset()["partitions"]) == 11
    result = lake.run("tslake", "retention", TSLAKE_HOT_RETENTION_DAYS="3")
    summary = json.loads(result.stdout)["metrics/v1"]
    cutoff = (watermark_date(lake) - timedelta(days=3)).isoformat()
    remaining = sorted(lake.dataset()["partitions"])
    assert summary["action"] == "delete" and summary["cutoff"] == cutoff
    assert len(summary["partitions"]) == 7 and all(d < cutoff for d in summary["partitions"])
    assert remaining[0] == cutoff and len(remaining) == 4
    assert_tiers_are_clean(lake)
    hot = lake.settings.hot_path / "metrics/v1"
    assert not any((hot / f"date={day}").exists() for day in summary["partitions"])
    lake.run("tslake", "parity", "--all", "--fail-on-mismatch", TSLAKE_HOT_RETENTION_DAYS="3")


def test_a_missing_cold_path_is_reported_and_ticks_go_on(lake: Lake, source_db: SourceDb,
                                                         tmp_path: Path):
    fill(source_db, sensors=2, days=5, cadence=3600)
    lake.run("dbt", "run", "--vars", "{backfill_days: 5}")
    lake.configure(TSLAKE_COLD_PATH=str(tmp_path / "nas-not-mounted"))
    before = lake.dataset()["partitions"]
    result = lake.run("tslake", "retention", check=False, TSLAKE_HOT_RETENTION_DAYS="2")
    assert result.returncode == 69  # ColdTierUnavailableError: the mount, not the data
    assert result.stderr.strip().splitlines()[-1].startswith("tslake: error: TSLAKE_COLD_PATH=")
    assert "mount the NAS" in result.stderr
    # The tick itself commits; its retention step only warns.
    tick = lake.run("tslake", "tick", TSLAKE_HOT_RETENTION_DAYS="2")
    assert "retention of metrics/v1 skipped" in tick.stderr
    assert {d: p["location"] for d, p in lake.dataset()["partitions"].items()} == \
        {d: p["location"] for d, p in before.items()}
    assert not (tmp_path / "nas-not-mounted").exists()


@pytest.fixture
def old_lake(lake: Lake, source_db: SourceDb, tmp_path: Path) -> Lake:
    """A lake with 12 days of hot partitions (8 shards each) and a cold tier to move to."""
    use_cold_path(lake, tmp_path / "nas")
    fill(source_db, sensors=16, days=12, cadence=600)
    lake.run("dbt", "run", "--vars", "{backfill_days: 12}", TSLAKE_HOT_RETENTION_DAYS="60")
    assert all(p["location"] == "hot" for p in lake.dataset()["partitions"].values())
    return lake


@pytest.mark.parametrize("point", RETENTION_FAILPOINTS)
def test_retention_killed_at_each_step_keeps_every_partition_whole(old_lake: Lake, point: str):
    lake = old_lake
    rows, dates = lake.rows(), set(lake.dataset()["partitions"])
    killed = lake.run("tslake", "retention", check=False, TSLAKE_FAILPOINT=point,
                      TSLAKE_HOT_RETENTION_DAYS="4")
    assert killed.returncode == -signal.SIGKILL
    first = min(dates)
    expected = "cold" if point in ("retention_after_manifest_replace",
                                   "retention_during_hot_removal") else "hot"
    assert lake.dataset()["partitions"][first]["location"] == expected
    assert set(lake.dataset()["partitions"]) == dates
    assert lake.rows() == rows                       # nothing lost, nothing doubled
    assert all(path.exists() for path in lake.committed_files())
    committed = set(lake.committed_files())
    cold_path = lake.settings.cold_path
    assert cold_path is not None
    stray = [path for root in (lake.settings.hot_path, cold_path)
             for path in files_under(root / "metrics/v1") if path not in committed]
    if point == "retention_before_manifest_replace":
        assert stray and all(path.is_relative_to(cold_path) for path in stray)
    assert uncommitted_reported(lake) == len(stray)  # `tslake inspect` counts both tiers

    # The next command of any kind (here a tick with nothing due) tidies both tiers.
    lake.run("dbt", "run", TSLAKE_HOT_RETENTION_DAYS="60")
    assert lake.rows() == rows
    assert_tiers_are_clean(lake)
    assert uncommitted_reported(lake) == 0
    assert not (lake.settings.state_dir / "cold-writes.json").exists()

    lake.run("tslake", "retention", TSLAKE_HOT_RETENTION_DAYS="4")
    cutoff = (watermark_date(lake) - timedelta(days=4)).isoformat()
    assert {d: p["location"] for d, p in lake.dataset()["partitions"].items()} == \
        {d: "cold" if d < cutoff else "hot" for d in dates}
    assert lake.rows() == rows
    assert_tiers_are_clean(lake)


def test_retention_killed_at_random_moments_never_loses_or_doubles(old_lake: Lake):
    lake = old_lake
    rng = random.Random(20261122)
    rows, dates = lake.rows(), set(lake.dataset()["partitions"])
    assert lake.settings.cold_path is not None
    cold_root = lake.settings.cold_path / "metrics/v1"
    kills = 0
    for days in (10, 8, 6, 4, 2):
        before = snapshot(cold_root)
        process = subprocess.Popen([str(BIN / "tslake"), "retention"], cwd=PROJECT_ROOT,
                                   env={**lake.env, "TSLAKE_HOT_RETENTION_DAYS": str(days)},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if snapshot(cold_root) - before:
                break  # the move has begun: kill it somewhere inside
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.15))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        assert set(lake.dataset()["partitions"]) == dates
        assert lake.rows() == rows
        assert all(path.exists() for path in lake.committed_files())
    assert kills >= 3, "the kills must land while partitions move"
    lake.run("tslake", "retention", TSLAKE_HOT_RETENTION_DAYS="2")
    assert lake.rows() == rows
    assert_tiers_are_clean(lake)
    assert not list(cold_root.rglob("*.tmp"))
