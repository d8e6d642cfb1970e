"""A hot standby as the source, against a real streaming standby (Debian's PostgreSQL 15:
a primary and a `pg_basebackup -R` replica, started once for the module), and Postgres's
clock behind the committed watermark. What each test proves is in its docstring."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_service import free_port, get, health, wait_for

from conftest import BIN, Lake, SourceDb, source_rows
from runner.config import PROJECT_ROOT, Settings
from runner.core import manifest
from runner.dev import synthetic
from runner.postgres.connection import SourceConninfo
from runner.postgres.standby import format_lsn, wal_end

pytestmark = pytest.mark.integration

PG15 = Path("/usr/lib/postgresql/15/bin")
PRIMARY_PORT, STANDBY_PORT = "5433", "5434"  # unix sockets only, in the cluster's own dir


class Cluster:
    """A primary (wal_level=replica) and its hot standby, both on unix sockets in `root`.
    Postgres refuses to run as root: as root every server command runs as `postgres`."""

    def __init__(self, root: Path) -> None:
        self.root, self.socket = root, root / "sock"
        self.server = {"PGHOST": str(self.socket), "PGUSER": "postgres"}
        self._databases = 0

    def _as_postgres(self, *args: object) -> None:
        command = [str(arg) for arg in args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.root.chmod(0o755)
        self._as_postgres("mkdir", self.socket)
        primary, standby = self.root / "primary", self.root / "standby"
        self._as_postgres(PG15 / "initdb", "-D", primary, "-U", "postgres", "--auth=trust",
                          "--no-sync")
        settings = (f"listen_addresses = ''\nunix_socket_directories = '{self.socket}'\n"
                    f"port = {PRIMARY_PORT}\nwal_level = replica\nfsync = off\n")
        self._as_postgres("sh", "-c", f"printf %s \"$1\" >> {primary}/postgresql.auto.conf",
                          "sh", settings)
        self._as_postgres(PG15 / "pg_ctl", "-D", primary, "-l", self.root / "primary.log",
                          "-w", "start")
        self._as_postgres(PG15 / "pg_basebackup", "-D", standby, "-R", "-h", self.socket,
                          "-p", PRIMARY_PORT, "-U", "postgres", "--no-sync")
        self._as_postgres("sh", "-c", f"printf 'port = {STANDBY_PORT}\\nhot_standby = on\\n' "
                          f">> {standby}/postgresql.auto.conf")
        self._as_postgres(PG15 / "pg_ctl", "-D", standby, "-l", self.root / "standby.log",
                          "-w", "start")

    def stop(self) -> None:
        for name in ("standby", "primary"):
            if (self.root / name / "postmaster.pid").exists():
                self._as_postgres(PG15 / "pg_ctl", "-D", self.root / name, "-m", "immediate",
                                  "stop")

    def primary(self, database: str = "postgres") -> SourceDb:
        return SourceDb({**self.server, "PGPORT": PRIMARY_PORT}, database)

    def standby(self, database: str = "postgres") -> SourceDb:
        return SourceDb({**self.server, "PGPORT": STANDBY_PORT}, database)

    def new_database(self) -> str:
        """A database with the seed's metrics table, created on the primary, replayed."""
        self._databases += 1
        name = f"standby_{self._databases}"
        self.primary().execute(f'create database "{name}"')
        with self.primary(name).connect() as conn:
            synthetic.create_metrics_table(conn)
        self.wait_replayed()
        return name

    def wait_replayed(self) -> None:
        target = self.primary().execute("select pg_current_wal_lsn()")[0][0]
        wait_for(lambda: self.standby().execute(
            "select pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,))[0][0], 30,
            "the standby to replay the primary's WAL")


def _skip_reason() -> str | None:
    if not (PG15 / "pg_basebackup").exists():
        return f"PostgreSQL 15 is not installed ({PG15}; Debian package postgresql-15)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "no `postgres` system user to run PostgreSQL 15 as (it refuses root)"
    if shutil.which("runuser") is None and os.geteuid() == 0:
        return "runuser (util-linux) is missing"
    return None


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    # Not under pytest's basetemp, which a concurrent session may prune under a live server.
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="tslake-standby-")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


def standby_lake(tmp_path: Path, cluster: Cluster, **env: str) -> tuple[Lake, SourceDb]:
    """A lake whose source is the standby, its primary named by TSLAKE_PRIMARY_DSN with only
    the port: host, user and database come from the source's PG* variables."""
    database = cluster.new_database()
    lake = Lake(tmp_path / "data", cluster.standby(database))
    lake.configure(TSLAKE_PRIMARY_DSN=f"port={PRIMARY_PORT}", **env)
    return lake, cluster.primary(database)


def insert(db: SourceDb, sensor: str, count: int) -> None:
    db.execute("insert into metrics (sensor_id, ts, value) select %s, now() - i * interval "
                "'1 second', i from generate_series(1, %s) as i", (sensor, count))


def tick(lake: Lake) -> dict[str, Any]:
    result = lake.run("tslake", "tick")
    summary: dict[str, Any] = json.loads(result.stdout)["metrics/v1"]
    summary["stderr"] = result.stderr
    return summary


def lake_sensor_rows(lake: Lake, sensor: str) -> list[tuple[Any, ...]]:
    return [row for row in lake.rows(newest=True) if row[0] == sensor]


def test_wal_end_steps_back_over_a_page_header() -> None:
    """An idle primary reports its insert position past a page header (0/3000028 right
    after pg_basebackup), where the standby's replay (0/3000000) can never get: waiting for
    it would hold every tick until the next write."""
    page, segment = 8192, 16 * 1024 * 1024
    assert wal_end(0x3000028, page, segment) == 0x3000000  # a segment's long header
    assert wal_end(0x3002018, page, segment) == 0x3002000  # any other page's short header
    assert wal_end(0x3002048, page, segment) == 0x3002048  # mid-page: a record's end
    assert format_lsn(0x16B374D848) == "16/B374D848"


def test_primary_dsn_names_only_what_differs_and_its_password_stays_secret() -> None:
    env = {"PGHOST": "standby.example", "PGUSER": "tslake", "PGDATABASE": "farm",
           "PGPASSWORD": "standby-secret"}
    primary = SourceConninfo(env, primary_dsn="host=primary.example password=primary-secret")
    assert primary.describe() == "host=primary.example port=default dbname=farm user=tslake"
    assert primary.password == "primary-secret" and "secret" not in primary.conninfo
    settings = Settings.from_env({"TSLAKE_PRIMARY_DSN": "host=p password=primary-secret"})
    assert "primary-secret" not in repr(settings)


def test_transaction_open_on_the_primary_across_ticks_loses_no_row(
        tmp_path: Path, cluster: Cluster) -> None:
    """The standby's pg_stat_activity cannot see the primary's open transaction: the cap
    comes from the primary, so three ticks stay below its start, and after its commit one
    more tick brings all 50 of its rows (the loss this replaces: all 50 gone for good)."""
    lake, primary = standby_lake(tmp_path, cluster)
    insert(primary, "before", 10)
    with primary.connect(autocommit=False) as long_running:
        long_running.execute("insert into metrics (sensor_id, ts, value) select 'long', "
                             "now() - i * interval '1 second', i from generate_series(1, 50) i")
        started = long_running.execute("select now()").fetchone()
        assert started is not None
        for number in range(3):
            insert(primary, f"during-{number}", 5)  # committed rows the ticks must pass on
            summary = tick(lake)
            assert summary["source"] == "standby" and summary["primary_wal_lsn"]
            assert "held" not in summary
            assert manifest.parse_rfc3339(summary["computed_through_ts"]) < started[0]
            assert summary["oldest_open_xact_start"] is not None
        long_running.commit()
    tick(lake)
    assert len(lake_sensor_rows(lake, "long")) == 50
    watermark = lake.dataset()["computed_through_ts"]
    assert lake.rows(newest=True) == source_rows(primary, "inserted_at <= %s", (watermark,))
    assert len(lake.rows(newest=True)) == 10 + 15 + 50


def test_paused_replay_holds_the_watermark_until_the_standby_caught_up(
        tmp_path: Path, cluster: Cluster) -> None:
    """Rows committed on the primary while the standby's replay is paused: ticks wait for
    the standby (TSLAKE_STANDBY_REPLAY_TIMEOUT_SECONDS), then hold the watermark and say why
    (the manifest's last_run, the log); after pg_wal_replay_resume() every row arrives."""
    lake, primary = standby_lake(tmp_path, cluster, TSLAKE_STANDBY_REPLAY_TIMEOUT_SECONDS="3")
    insert(primary, "early", 5)
    cluster.wait_replayed()
    first = tick(lake)
    assert "held" not in first
    standby_admin = cluster.standby()
    standby_admin.execute("select pg_wal_replay_pause()")
    try:
        insert(primary, "unreplayed", 30)
        for _ in range(2):
            summary = tick(lake)
            assert summary["held"]["reason"] == "standby_replay", summary
            assert "replay is paused" in summary["held"]["message"]
            assert summary["computed_through_ts"] == first["computed_through_ts"]
            assert "watermark held" in summary["stderr"]
            assert lake_sensor_rows(lake, "unreplayed") == []
    finally:
        standby_admin.execute("select pg_wal_replay_resume()")
    after = tick(lake)
    assert "held" not in after and after["computed_through_ts"] > first["computed_through_ts"]
    assert len(lake_sensor_rows(lake, "unreplayed")) == 30
    assert lake.rows(newest=True) == source_rows(
        primary, "inserted_at <= %s", (after["computed_through_ts"],))


def lake_bytes(lake: Lake) -> dict[str, bytes]:
    """Every file under the data root but the lock (its holder record is rewritten by
    every writer that takes it)."""
    root = lake.settings.data_root
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*"))
            if path.is_file() and path.name != "lock" and "dbt-" not in str(path)
            and "storage/analysis/tmp" not in str(path)}


def test_standby_without_primary_dsn_is_refused_with_one_line_and_nothing_written(
        tmp_path: Path, cluster: Cluster) -> None:
    """A lake fed from the primary, then pointed at the standby without TSLAKE_PRIMARY_DSN:
    `tslake tick` and plain `dbt run` refuse, naming the standby and the setting; the lake
    stays byte for byte as it was."""
    database = cluster.new_database()
    primary = cluster.primary(database)
    insert(primary, "a", 5)
    lake = Lake(tmp_path / "data", primary)
    lake.run("tslake", "tick")
    before = lake_bytes(lake)
    lake.configure(PGPORT=STANDBY_PORT)
    refused = lake.run("tslake", "tick", check=False)
    assert refused.returncode == 69, refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("tslake: error")]
    assert len(errors) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == errors[0]
    assert "is a hot standby" in errors[0] and "TSLAKE_PRIMARY_DSN" in errors[0]
    assert f"port={STANDBY_PORT}" in errors[0]
    plain = lake.run("dbt", "run", check=False)
    assert plain.returncode != 0 and "TSLAKE_PRIMARY_DSN" in plain.stdout
    assert lake_bytes(lake) == before


def test_clock_behind_the_committed_watermark_holds_it_and_says_why(
        tmp_path: Path, cluster: Cluster) -> None:
    """A watermark committed by a real tick, then Postgres's clock minus the lag guard
    behind it (the lag guard raised to an hour: now() - lag is what a tick compares, as after
    a clock step back or a restored database): the tick holds the watermark (no move back,
    no window), logs why, and the service shows the reason in /healthz and as
    tslake_watermark_held; with the clock past it again, the waiting row arrives."""
    database = cluster.new_database()
    primary = cluster.primary(database)
    insert(primary, "a", 5)
    lake = Lake(tmp_path / "data", primary)
    committed = tick(lake)["computed_through_ts"]
    insert(primary, "b", 3)
    behind = {"TSLAKE_REPLICATION_LAG_SECONDS": "3600"}
    held = lake.run("tslake", "tick", env=behind)
    summary = json.loads(held.stdout)["metrics/v1"]
    assert summary["held"]["reason"] == "clock_behind"
    assert summary["computed_through_ts"] == committed and summary["rows"] == 0
    assert "watermark held" in held.stderr and "behind the committed watermark" in held.stderr
    status = lake.run("tslake", "status", check=False)  # `tslake status` names the hold
    assert status.returncode == 4 and "held the watermark (clock_behind)" in status.stdout
    port = free_port()
    service = subprocess.Popen(
        [str(BIN / "tslake"), "run", "--interval", "1", "--http-port", str(port)],
        cwd=PROJECT_ROOT, env={**lake.env, **behind}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        report = wait_for(lambda: (h := health(port)).get("ticks", 0) >= 1 and h, 60,
                          "a service tick")
        assert report["watermark_held"]["metrics/v1"]["reason"] == "clock_behind"
        assert "behind the committed watermark" in report["watermark_held"]["metrics/v1"][
            "message"]
        _, metrics = get(port, "/metrics")
        assert 'tslake_watermark_held{dataset="metrics/v1",reason="clock_behind"} 1.0' in metrics
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=60)
    assert lake.dataset()["computed_through_ts"] == committed
    time.sleep(0.01)
    resumed = tick(lake)
    assert "held" not in resumed and resumed["computed_through_ts"] > committed
    assert len(lake_sensor_rows(lake, "b")) == 3
