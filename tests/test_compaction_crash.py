"""A compaction SIGKILLed at any moment, followed by a normal command: no row lost, no
version doubled, no *.tmp left, and manifest readers exact even right after the kill.

Named failpoints kill the real `tslake compact` at each step of its commit; random kills
land wherever the process is once it has started compacting."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from datetime import date, timedelta

import pytest

from conftest import (
    BIN,
    NO_TRIGGER,
    Lake,
    SourceDb,
    assert_clean_disk,
    assert_newest_view_matches_source,
    max_files_per_shard_day,
)
from runner.config import PROJECT_ROOT
from runner.core.failpoints import COMPACT_FAILPOINTS

pytestmark = pytest.mark.integration

SENSORS = [f"field-{n}/soil" for n in range(16)]  # every shard gets rows


def add_work(lake: Lake, db: SourceDb, round_number: int) -> None:
    """New rows today and late rows on two earlier days, corrections of some old rows,
    then a tick without compaction (also the normal command after a kill): one more file
    in every shard-day of three dates."""
    db.execute("""insert into metrics (sensor_id, ts, value)
                  select sensor, date_trunc('day', now()) - make_interval(days => d)
                                 + make_interval(secs => 60 * %s + i), i
                  from unnest(%s::text[]) as sensor, generate_series(1, 3) as i,
                       generate_series(0, 2) as d""",
               (round_number, SENSORS))
    db.execute("update metrics set value = -value, inserted_at = now() "
               "where extract(second from ts)::int %% 7 = %s", (round_number % 7,))
    lake.run("tslake", "tick", env=NO_TRIGGER)
    assert_clean_disk(lake)
    assert_newest_view_matches_source(lake, db)


def debris(lake: Lake) -> str:
    """What a kill left on disk besides the committed files (for the test's report)."""
    extra = {path.name.split("-")[0] for path in set(lake.files_on_disk())
             - set(lake.committed_files())}
    return "+".join(sorted(extra)) or "nothing"


def test_compaction_killed_at_each_failpoint_loses_and_doubles_nothing(lake: Lake,
                                                                      source_db: SourceDb):
    add_work(lake, source_db, 0)
    for number, point in enumerate(COMPACT_FAILPOINTS, start=1):
        add_work(lake, source_db, number)  # the normal command after the previous kill
        before = lake.rows(newest=True)
        compactions = (lake.dataset().get("last_compaction") or {}).get("run_id")
        killed = lake.run("tslake", "compact", check=False, TSLAKE_FAILPOINT=point)
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr[-2000:])
        assert lake.rows(newest=True) == before
        assert_newest_view_matches_source(lake, source_db)
        committed = (lake.dataset().get("last_compaction") or {}).get("run_id") != compactions
        assert committed == point.endswith(("after_manifest_replace", "after_first_delete"))
    add_work(lake, source_db, 99)
    lake.run("tslake", "compact")
    assert max_files_per_shard_day(lake) == 1
    assert lake.rows() == lake.rows(newest=True)
    assert_newest_view_matches_source(lake, source_db)
    assert_clean_disk(lake)


def test_compactions_killed_at_random_moments_lose_and_double_nothing(lake: Lake,
                                                                      source_db: SourceDb):
    rng = random.Random(20261122)
    add_work(lake, source_db, 0)
    kills = rounds = 0
    landed: Counter[str] = Counter()
    while kills < 22 and rounds < 40:
        rounds += 1
        add_work(lake, source_db, rounds)  # the normal command after the previous kill
        # --verbose: the per-shard-day "compacting" lines (condensed to one summary otherwise)
        process = subprocess.Popen([str(BIN / "tslake"), "--verbose", "compact"], cwd=PROJECT_ROOT,
                                   env=lake.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        for line in process.stderr:  # wait until it is compacting: dbt's start-up is long
            if "compacting" in line:
                break
        time.sleep(rng.uniform(0.0, 0.8))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
            landed[debris(lake)] += 1
        process.wait()
        process.stderr.close()
        assert_newest_view_matches_source(lake, source_db)  # readers, right after the kill
    print(f"{kills} kills in {rounds} rounds; debris they left: {dict(landed)}")
    assert kills >= 20, f"only {kills} of {rounds} compactions were still running"
    add_work(lake, source_db, 99)
    lake.run("tslake", "compact")
    assert max_files_per_shard_day(lake) == 1
    assert_newest_view_matches_source(lake, source_db)
    assert_clean_disk(lake)
    today = date.fromisoformat(lake.dataset()["computed_through_ts"][:10])
    assert {str(today - timedelta(days=n)) for n in range(3)} <= set(lake.dataset()["partitions"])
