"""The service's tick worker (runner/service/worker.py) as real processes: its ticks commit
what `tslake tick` commits, a wedged tick is killed at its deadline, the worker is recycled
every N ticks, and a SIGKILL mid-tick loses nothing."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Lake, SourceDb, assert_no_doubled_versions, source_rows
from runner.service.loop import ReplicationService

pytestmark = pytest.mark.integration


@pytest.fixture
def services(lake: Lake) -> Iterator[Any]:
    made: list[ReplicationService] = []

    def make(target: Lake = lake, *, worker_ticks: int = 100, **env: str) -> ReplicationService:
        service = ReplicationService(target.settings, interval_seconds=1,
                                     http_host="127.0.0.1", http_port=None,
                                     worker_ticks=worker_ticks)
        service.child_env = {**target.env, **env}
        made.append(service)
        return service

    yield make
    for service in made:
        if service.worker is not None:
            service.worker.kill()


def insert(db: SourceDb, sensors: int, ago_seconds: int) -> None:
    db.execute("insert into metrics (sensor_id, ts, value, inserted_at) "
               "select 's' || g, now() - make_interval(secs => %s), g, "
               "now() - make_interval(secs => %s) from generate_series(1, %s) g "
               "on conflict (sensor_id, ts) do update set value = excluded.value + 1, "
               "inserted_at = excluded.inserted_at", (ago_seconds, ago_seconds, sensors))


def layout(lake: Lake) -> dict[str, Any]:
    """What a commit published, without its run ids and times."""
    entry = lake.dataset()
    return {key: sorted((file["shard"], file["rows"], file["kind"])
                        for file in partition["files"])
            for key, partition in entry["partitions"].items()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_worker_ticks_commit_what_tslake_tick_commits(tmp_path: Path, lake: Lake,
                                                      source_db: SourceDb, services: Any):
    by_command = Lake(tmp_path / "by-command", source_db)
    service = services(lake)
    for round_number, ago in enumerate((600, 0)):
        insert(source_db, 40 + round_number, ago)
        time.sleep(1.1)  # both windows end past the rows: same rows for both
        by_command.run("tslake", "tick")
        outcome = service.tick()
        assert outcome.ok, outcome.error
        assert outcome.rows == by_command.dataset()["last_run"]["rows"] > 0
        assert layout(lake) == layout(by_command)
        assert lake.rows() == by_command.rows()
        watermark = lake.dataset()["computed_through_ts"]
        assert lake.rows(newest=True) == source_rows(source_db, "inserted_at <= %s",
                                                     (watermark,))
        assert lake.dataset()["last_run"]["mode"] == "tick"
    assert service.worker is not None and service.worker.ticks == 2  # one worker did both


def test_wedged_tick_is_killed_at_its_deadline_and_the_worker_replaced(
        lake: Lake, source_db: SourceDb, services: Any):
    service = services()
    insert(source_db, 10, 60)
    assert service.tick().ok
    assert service.worker is not None
    wedged_pid = service.worker.pid
    held = lake.dataset()["computed_through_ts"]
    service.tick_timeout = 6
    insert(source_db, 10, 0)
    with source_db.connect(autocommit=False) as blocker:
        blocker.execute("lock table metrics in access exclusive mode")
        began = time.monotonic()
        outcome = service.tick()
        took = time.monotonic() - began
        blocker.rollback()
    assert not outcome.ok and outcome.error == "tick killed after 6 s"
    assert 6 <= took < 12
    assert service.worker is None and not alive(wedged_pid)
    assert lake.dataset()["computed_through_ts"] == held
    service.tick_timeout = 300
    outcome = service.tick()
    assert outcome.ok, outcome.error
    assert service.worker is not None and service.worker.pid != wedged_pid
    watermark = lake.dataset()["computed_through_ts"]
    assert watermark > held
    assert lake.rows(newest=True) == source_rows(source_db, "inserted_at <= %s", (watermark,))


def test_worker_is_replaced_every_n_ticks(lake: Lake, source_db: SourceDb, services: Any):
    service = services(worker_ticks=2)
    pids = []
    for _ in range(3):
        insert(source_db, 5, 0)
        service._start_worker()
        assert service.worker is not None
        pids.append(service.worker.pid)
        worker = service.worker
        assert service.tick().ok
    assert pids[0] == pids[1] != pids[2]
    assert worker.process.returncode is None  # the third worker has one tick left
    assert service.worker is worker


def test_sigkill_of_the_worker_mid_tick_loses_nothing(lake: Lake, source_db: SourceDb,
                                                      services: Any):
    service = services()
    insert(source_db, 20, 60)
    assert service.tick().ok
    held = lake.dataset()["computed_through_ts"]
    generation = lake.manifest()["generation"]
    # The worker SIGKILLs itself with the tick's data renamed but not committed.
    service.child_env = {**lake.env, "TSLAKE_FAILPOINT": "after_data_rename"}
    if service.worker is not None:
        service.worker.close()
        service.worker = None
    insert(source_db, 20, 0)
    outcome = service.tick()
    assert not outcome.ok and "killed by SIGKILL" in outcome.error
    assert service.worker is None
    assert lake.manifest()["generation"] == generation
    assert lake.dataset()["computed_through_ts"] == held
    service.child_env = lake.env
    outcome = service.tick()
    assert outcome.ok, outcome.error
    watermark = lake.dataset()["computed_through_ts"]
    assert watermark > held
    assert lake.rows(newest=True) == source_rows(source_db, "inserted_at <= %s", (watermark,))
    assert_no_doubled_versions(lake)
    listed = set(lake.committed_files())
    assert all(path in listed for path in lake.files_on_disk() if path.suffix == ".parquet")
