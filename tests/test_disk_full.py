"""A disk that fills (ENOSPC on a real, small tmpfs): the writing command fails with one
clear line and its own exit code, commits nothing, removes what it wrote, and once there
is room again the next tick brings the lake to exact parity."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Lake, SourceDb, canonical, source_rows

pytestmark = pytest.mark.integration


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1.5 MiB filesystem of its own (tmpfs: mounting needs root on Linux)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(mount)],
                             capture_output=True, text=True, check=False) \
        if shutil.which("mount") else None
    if mounted is None or mounted.returncode != 0:
        pytest.skip("needs a small filesystem of its own: `mount -t tmpfs` (root on Linux)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def readings(db: SourceDb, count: int, *, offset: int = 0) -> None:
    """Readings with random values (they do not compress) in the last hours."""
    db.execute("insert into metrics (sensor_id, ts, value) select 's' || (i %% 50), "
               "now() - make_interval(secs => %s + i), random() "
               "from generate_series(1, %s) as i", (offset, count))


def test_a_full_disk_fails_the_tick_in_one_line_and_loses_nothing(
        lake: Lake, source_db: SourceDb, small_disk: Path):
    lake.configure(TSLAKE_HOT_PATH=str(small_disk / "hot"))
    readings(source_db, 2_000)
    lake.run("tslake", "tick")
    committed = lake.manifest()
    readings(source_db, 300_000, offset=3_000)  # ~4 MiB of Parquet: more than the disk

    failed = lake.run("tslake", "tick", check=False)
    assert failed.returncode == 74, failed.stderr  # PublishError: EX_IOERR
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("tslake: error: dbt run failed, a disk is full:")
    assert "No space left on device" in last and "run again" in last
    assert lake.manifest() == committed                 # watermark and files as they were
    assert lake.files_on_disk() == lake.committed_files()  # its own files removed at once

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    lake.run("tslake", "tick")
    assert canonical(lake.rows()) == source_rows(source_db)


def test_a_backfill_that_fills_the_disk_keeps_its_committed_days_and_resumes(
        lake: Lake, source_db: SourceDb, small_disk: Path):
    lake.configure(TSLAKE_HOT_PATH=str(small_disk / "hot"))
    readings(source_db, 400_000)  # ~4.6 days of rows, ~5 MiB of Parquet
    # Room for a day or two (~1.1 MiB each; the plan starts at the first day with rows).
    subprocess.run(["mount", "-o", "remount,size=3m", str(small_disk)], check=True)

    failed = lake.run("tslake", "backfill", "--days", "6", check=False)
    assert failed.returncode == 74, failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    # The disk fills while a day's files are written or while it is committed: one line
    # either way, naming the day.
    assert last.startswith("tslake: error: ") and "metrics/v1 day " in last, last
    assert "No space left on device" in last and "run the backfill again" in last
    assert lake.files_on_disk() == lake.committed_files()
    done = lake.dataset()["backfill"]["committed_dates"]
    assert done, "no day fitted: the test no longer shows committed days surviving"
    assert lake.dataset()["backfill"]["status"] == "running"

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    resumed = lake.run("tslake", "backfill", "--days", "6")
    assert '"days_done_before": ' + str(len(done)) in resumed.stdout
    assert canonical(lake.rows()) == source_rows(source_db)
