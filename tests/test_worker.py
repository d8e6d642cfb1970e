"""The service's tick worker (runner/service/worker.py) as real processes: its ticks commit
what `tslake tick` commits, a wedged tick is killed at its deadline, the worker is recycled
every N ticks, a SIGKILL mid-tick loses nothing, a Postgres restart between ticks is
survived by the same worker; and the DuckDB database it keeps between runs starts each run
with nothing the last one left (Plugin.start_run)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Lake, SourceDb, assert_no_doubled_versions, source_rows
from runner.dbt_bridge.plugin import Plugin
from runner.dev import devdb, synthetic
from runner.postgres.connection import SOURCE_CATALOG
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


def test_postgres_restart_between_ticks_is_survived_by_the_same_worker(
        tmp_path: Path, services: Any):
    """Its own server, so restarting it disturbs no other test. The worker keeps DuckDB
    between ticks; each run attaches Postgres afresh, so the tick after the restart
    reconnects instead of failing on the dead connection."""
    pgdata = tmp_path / "own-pg"
    env = devdb.start(pgdata, database="restarted")
    try:
        db = SourceDb(env, "restarted")
        with db.connect() as conn:
            synthetic.create_metrics_table(conn)
        lake = Lake(tmp_path / "data", db)
        service = services(lake)
        insert(db, 10, 60)
        assert service.tick().ok
        assert service.worker is not None
        pid = service.worker.pid
        held = lake.dataset()["computed_through_ts"]
        devdb.stop(pgdata)
        assert devdb.start(pgdata, database="restarted")["PGPORT"] == env["PGPORT"]
        insert(db, 10, 0)
        outcome = service.tick()
        assert outcome.ok, outcome.error
        assert service.worker is not None and service.worker.pid == pid
        watermark = lake.dataset()["computed_through_ts"]
        assert watermark > held
        assert lake.rows(newest=True) == source_rows(db, "inserted_at <= %s", (watermark,))
    finally:
        devdb.stop(pgdata)


def test_start_run_leaves_nothing_of_the_last_run(lake: Lake, monkeypatch: pytest.MonkeyPatch):
    """What a run may leave on the kept database (a lowered `threads`, a variable, another
    catalog, a table, a dead Postgres attachment, the plugin's manifest) is gone, and the
    source attached again, when the next run starts."""
    for name, value in lake.env.items():
        monkeypatch.setenv(name, value)
    for name in [name for name in os.environ if name.startswith("TSLAKE_")]:
        if name not in lake.env:
            monkeypatch.delenv(name)
    plugin = Plugin("tslake", {})
    import duckdb

    conn = duckdb.connect()
    plugin.configure_connection(conn)
    configured = conn.execute("select current_setting('threads'), "
                              "current_setting('memory_limit')").fetchall()
    conn.execute("set threads = 1")
    conn.execute("set variable tslake_window_start = now()")
    conn.execute("set variable tslake_hot_path = '/elsewhere'")
    conn.execute("attach ':memory:' as leftover_catalog")
    conn.execute("create table leftover_table as select 1 as x")
    conn.execute("create view leftover_view as select 1 as x")
    conn.execute(f"detach {SOURCE_CATALOG}")  # as if its server had gone away
    plugin._document = object()  # type: ignore[assignment]
    plugin._source_columns = {"metrics/v1": {}}
    plugin.start_run()
    assert plugin._document is None and plugin._source_columns is None
    assert conn.execute("select current_setting('threads'), "
                        "current_setting('memory_limit')").fetchall() == configured
    assert conn.execute("select getvariable('tslake_window_start')").fetchone() == (None,)
    assert conn.execute("select getvariable('tslake_hot_path')").fetchone() == (
        str(lake.settings.hot_path),)
    assert sorted(row[0] for row in conn.execute(
        "select database_name from duckdb_databases() where not internal").fetchall()) == [
        "memory", SOURCE_CATALOG]
    assert conn.execute("select count(*) from duckdb_tables() where database_name = 'memory'"
                        ).fetchone() == (0,)
    assert conn.execute("select count(*) from duckdb_views() where not internal").fetchone() == (0,)
    assert conn.execute(f"select count(*) from {SOURCE_CATALOG}.public.metrics").fetchone() == (0,)
    conn.close()
