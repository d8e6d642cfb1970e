"""Where a backfill's CPU goes: the stages of its shard tasks, one at a time.

A backfill task (macros/export/lake_backfill_task.sql) is one statement: Postgres reads a
shard's rows of a day (a bitmap scan of the primary key), DuckDB's postgres scanner decodes
the binary COPY stream, DuckDB sorts the rows by (sensor_id, ts) and writes Snappy Parquet.
Here the same Postgres query runs for every shard of every day of the table, three times:
read only, read + sort, read + sort + write (the task), on one DuckDB thread as the
backfill's workers use; the CPU of this process and of Postgres is measured per pass, so the
differences are the cost of each stage. The start-up of a `tslake` command (imports, dbt's
project) is measured apart."""

from __future__ import annotations

import hashlib
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from bench.dataset import Server, Table
from bench.measure import BIN, postgres_cpu
from runner.config import PROJECT_ROOT, Settings
from runner.postgres.connection import connect

COLUMNS = "sensor_id, ts, value, quality, inserted_at"


@dataclass(frozen=True)
class Stage:
    name: str
    client_cpu: float  # seconds, this process (DuckDB)
    postgres_cpu: float
    wall: float


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def task_stages(server: Server, table: Table, env: dict[str, str]) -> list[Stage]:
    settings = Settings.from_env(env)
    conn = connect(settings, attach=True, env=env)
    conn.execute("set threads = 1")
    names = [f"s{i:04d}" for i in range(table.sensors)]
    shards: dict[int, list[str]] = {}
    for name in names:
        shards.setdefault(int(hashlib.md5(name.encode()).hexdigest()[:8], 16) % 8, []).append(name)
    with server.connect(table.database) as pg:
        first, last = pg.execute("select min(ts)::date, max(ts)::date from metrics").fetchone()  # type: ignore[misc]
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]

    def source(day: date, ids: list[str]) -> str:
        query = (f"select {COLUMNS} from metrics where sensor_id = any('{{{','.join(ids)}}}') "
                 f"and ts >= '{day}'::timestamptz and ts < '{day + timedelta(days=1)}'"
                 "::timestamptz and inserted_at <= 'infinity'::timestamptz")
        return "postgres_query('pg', '" + query.replace("'", "''") + "')"

    out = Path(tempfile.mkdtemp(prefix="tslake-profile-"))
    # max() of every column: DuckDB must decode (and, under the sort, carry) all of them,
    # where a count(*) would let it drop the columns it does not return.
    every = "max(sensor_id), max(ts), max(value), max(quality), max(inserted_at)"
    passes = {
        "Postgres read + DuckDB's scanner": lambda s: f"select {every} from {s}",
        "+ sort by (sensor_id, ts)": lambda s: f"select {every} from (select * from {s} "
                                               "order by sensor_id, ts offset 0)",
        "+ Parquet write (the task)": lambda s: f"copy (select * from {s} order by sensor_id, "
                                                f"ts) to '{out / 'f.parquet'}' (format parquet, "
                                                "compression snappy)",
    }
    stages = []
    for name, statement in passes.items():
        client, pg_cpu, began = _cpu(), postgres_cpu(server), time.monotonic()
        for day in days:
            for ids in shards.values():
                conn.execute(statement(source(day, ids))).fetchall()
        wall = time.monotonic() - began
        time.sleep(0.3)
        stages.append(Stage(name, _cpu() - client, postgres_cpu(server) - pg_cpu, wall))
    conn.close()
    shutil.rmtree(out, ignore_errors=True)
    return stages


def startup_stages(env: dict[str, str]) -> list[Stage]:
    """CPU of a command's start-up, in three steps: Python importing tslake's CLI, then
    dbt too, then a `dbt parse` of the project from the checkout's partial-parse cache."""
    commands = {
        "python + `import runner.cli`": [str(BIN / "python"), "-c", "import runner.cli"],
        "+ `import dbt.cli.main`": [str(BIN / "python"), "-c",
                                    "import runner.cli, dbt.cli.main"],
        "`dbt parse` (partial, from the cache)": [str(BIN / "dbt"), "parse", "--no-write-json",
                                                  "--quiet"],
    }
    stages = []
    for name, command in commands.items():
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.monotonic()
        subprocess.run(command, cwd=PROJECT_ROOT, env=env, check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        stages.append(Stage(name, after.ru_utime + after.ru_stime - before.ru_utime
                            - before.ru_stime, 0.0, time.monotonic() - began))
    return stages
