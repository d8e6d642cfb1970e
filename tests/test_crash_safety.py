"""A tick SIGKILLed at any point, then run again, leaves exactly the committed rows once.

Named failpoints kill the real `dbt run` process at exact steps of the publish; random
kills hit wherever the process happens to be."""

from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest

from conftest import BIN, Lake, SourceDb, source_rows
from runner.config import PROJECT_ROOT
from runner.core.failpoints import PUBLISH_FAILPOINTS
from runner.core.manifest import parse_rfc3339

pytestmark = pytest.mark.integration


def add_rows(db: SourceDb, sensor: str, count: int = 40) -> None:
    db.execute("""insert into metrics (sensor_id, ts, value)
                  select %s, now() - make_interval(secs => i), i
                  from generate_series(1, %s) as i""", (sensor, count))


def assert_exactly_once(lake: Lake, db: SourceDb) -> None:
    """Every committed row version once; no stray or temporary files; nothing missing."""
    watermark = parse_rfc3339(lake.dataset()["computed_through_ts"])
    assert lake.rows() == source_rows(db, "inserted_at <= %s", (watermark,))
    assert lake.files_on_disk() == lake.committed_files()
    assert not list(lake.settings.state_dir.glob("*.tmp"))


@pytest.mark.parametrize("point", PUBLISH_FAILPOINTS)
def test_tick_killed_at_a_failpoint_recovers_exactly_once(lake: Lake, source_db: SourceDb,
                                                          point: str):
    add_rows(source_db, "first")
    lake.run("dbt", "run")
    add_rows(source_db, "second")
    killed = lake.run("dbt", "run", check=False, TSLAKE_FAILPOINT=point)
    assert killed.returncode == -signal.SIGKILL
    if point == "after_manifest_replace":
        assert "second" in {row[0] for row in lake.rows()}   # committed before the kill
    else:
        assert "second" not in {row[0] for row in lake.rows()}
    add_rows(source_db, "third")
    lake.run("dbt", "run")
    assert_exactly_once(lake, source_db)
    assert {row[0] for row in lake.rows()} == {"first", "second", "third"}


def test_ticks_killed_at_random_moments_recover_exactly_once(lake: Lake, source_db: SourceDb):
    rng = random.Random(20261122)
    add_rows(source_db, "seed")
    lake.run("dbt", "run")
    kills = 0
    for round_number in range(8):
        add_rows(source_db, f"round-{round_number}", rng.randint(1, 200))
        process = subprocess.Popen([str(BIN / "dbt"), "run"], cwd=PROJECT_ROOT, env=lake.env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.5, 4.0))  # dbt starts in ~2.5 s; the tick itself is short
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        assert_committed_state_is_consistent(lake, source_db)
    lake.run("dbt", "run")
    assert kills >= 3, "the kills must land while the tick runs"
    assert_exactly_once(lake, source_db)


def assert_committed_state_is_consistent(lake: Lake, db: SourceDb) -> None:
    """Right after a kill: what the manifest lists is exactly the source up to its
    watermark, whatever debris is on disk."""
    watermark = parse_rfc3339(lake.dataset()["computed_through_ts"])
    assert lake.rows() == source_rows(db, "inserted_at <= %s", (watermark,))
