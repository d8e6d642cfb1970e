"""Benchmark: backfill, `tslake parity --all`, `dbt test` and a retention move over a large
synthetic lake (10M rows by default: 200 sensors x 35 days at one reading a minute).

    .venv/bin/python benchmarks/bench_parity.py [--sensors 200 --days 35 --cadence 60]

Uses the Postgres of the PG* variables if PGHOST is set (it creates and drops database
tslake_bench there), else an embedded PostgreSQL 18 under the work directory. Prints one
JSON document.
Speed is measured here, never asserted by the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from runner.config import PROJECT_ROOT
from runner.dev import devdb, synthetic

BIN = Path(sys.executable).parent
DATABASE = "tslake_bench"


def timed(env: dict[str, str], *args: str) -> tuple[float, str]:
    began = time.monotonic()
    result = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {result.returncode}: {result.stderr[-2000:]}")
    return round(time.monotonic() - began, 2), result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sensors", type=int, default=200)
    parser.add_argument("--days", type=int, default=35)
    parser.add_argument("--cadence", type=int, default=60, help="seconds between readings")
    parser.add_argument("--work", type=Path, default=None, help="work directory (default: tmp)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the database, the lake and the server for manual runs")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="tslake-bench-"))
    if os.environ.get("TSLAKE_PG_DSN"):
        raise SystemExit("bench: unset TSLAKE_PG_DSN and use PGHOST/PGPORT/PGUSER: the "
                         "benchmark creates and drops its own database")
    own_server = not os.environ.get("PGHOST")
    server = devdb.start(work / "pgdata", database="postgres") if own_server else {}
    env = {**os.environ, **server, "DO_NOT_TRACK": "1", "TSLAKE_DATA_ROOT": str(work / "lake"),
           "TSLAKE_REPLICATION_LAG_SECONDS": "0", "TSLAKE_HOT_RETENTION_DAYS": "400"}
    admin = {**env, "PGDATABASE": "postgres"}
    results: dict[str, Any] = {"sensors": args.sensors, "days": args.days,
                               "cadence_seconds": args.cadence}
    with psycopg.connect(_conninfo(admin), autocommit=True) as conn:
        conn.execute(f"drop database if exists {DATABASE} with (force)")
        conn.execute(f"create database {DATABASE}")
    env["PGDATABASE"] = DATABASE
    try:
        with psycopg.connect(_conninfo(env), autocommit=True) as conn:
            began = time.monotonic()
            synthetic.create_metrics_table(conn, with_indexes=False)
            results["rows"] = synthetic.fill_uniform(conn, sensors=args.sensors, days=args.days,
                                                     cadence_seconds=args.cadence)
            synthetic.create_metrics_table(conn)
            conn.execute("vacuum analyze metrics")
            results["generate_seconds"] = round(time.monotonic() - began, 2)
        results["backfill_seconds"], _ = timed(
            env, "dbt", "run", "--vars", f"{{backfill_days: {args.days}}}")
        for attempt in (1, 2):
            seconds, out = timed(env, "tslake", "parity", "--all", "--fail-on-mismatch")
            results[f"parity_all_seconds_run{attempt}"] = seconds
        summary = json.loads(out)
        results["parity_rows_compared"] = summary["totals"]["source_rows"]
        results["parity_internal_seconds"] = summary["seconds"]
        results["dbt_test_seconds"], _ = timed(env, "dbt", "test")
        cold = work / "cold"
        cold.mkdir(exist_ok=True)
        seconds, out = timed({**env, "TSLAKE_COLD_PATH": str(cold),
                              "TSLAKE_HOT_RETENTION_DAYS": "7"}, "tslake", "retention")
        moved = json.loads(out)["metrics/v1"]
        results["retention"] = {"seconds": seconds, "partitions": len(moved["partitions"]),
                                "files": moved["files"], "rows": moved["rows"],
                                "megabytes": round(moved["bytes"] / 1e6, 1)}
        results["parity_all_after_move_seconds"], _ = timed(
            {**env, "TSLAKE_COLD_PATH": str(cold)}, "tslake", "parity", "--all",
            "--fail-on-mismatch")
    finally:
        if not args.keep:
            with psycopg.connect(_conninfo(admin), autocommit=True) as conn:
                conn.execute(f"drop database if exists {DATABASE} with (force)")
            if own_server:
                devdb.stop(work / "pgdata")
            if args.work is None:
                shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))


def _conninfo(env: dict[str, str]) -> str:
    names = {"PGHOST": "host", "PGPORT": "port", "PGUSER": "user", "PGDATABASE": "dbname",
             "PGPASSWORD": "password"}
    return make_conninfo(**{names[key]: value for key, value in env.items() if key in names})


if __name__ == "__main__":
    main()
