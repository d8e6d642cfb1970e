"""`make bench`, readers: the queries the lake exists for, on the lake and directly on
Postgres, same data, same run (issue 7's targets: hourly average per sensor over the
horizon >= 15x faster than Postgres, one sensor-week >= 2x faster).

    python -m bench.readers [--sensors 200] [--days 35] [--cadence 60]

Writes its section of BENCHMARKS.md between <!-- readers --> markers."""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb

from bench import dataset, measure
from runner.config import PROJECT_ROOT, Settings
from runner.query import shard_of

BENCHMARKS = PROJECT_ROOT / "BENCHMARKS.md"
MARK_START, MARK_END = "<!-- readers -->", "<!-- /readers -->"
BUCKET_US = 3_600_000_000


def best_of(runs: int, action: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sensors", type=int, default=200)
    parser.add_argument("--days", type=float, default=35)
    parser.add_argument("--cadence", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tslake-bench-readers-"))
    server = dataset.start(work / "pg", 18)
    try:
        table = dataset.create_table(server, "readers", sensors=args.sensors, days=args.days,
                                     cadence_seconds=args.cadence)
        env = measure.lake_env(server, "readers", work / "lake")
        subprocess.run([str(PROJECT_ROOT / ".venv/bin/tslake"), "backfill", "--days",
                        str(int(args.days) + 1)], cwd=PROJECT_ROOT, env=env, check=True,
                       capture_output=True)
        results = compare(server, Settings.from_env(env), args.runs)
    finally:
        dataset.stop(server)
    write_section(table, results)
    print(json.dumps(results, indent=2))
    return 0


def compare(server: dataset.Server, settings: Settings, runs: int) -> dict[str, Any]:
    lake = duckdb.connect()
    lake.execute("set TimeZone = 'UTC'")
    lake.execute(f"attach '{settings.state_dir / 'lake.duckdb'}' as lake (read_only)")
    source = server.connect("readers")
    (end,) = source.execute("select max(ts) from metrics").fetchone() or (None,)
    assert end is not None, "the benchmark table is empty"
    start = end - timedelta(days=7)
    sensor = "s0042"
    queries = {
        "hourly average per sensor, whole horizon": (
            f"select sensor_id, make_timestamptz(b) as hour, avg(value) from (select sensor_id,"
            f" value, epoch_us(ts) - ((epoch_us(ts) % {BUCKET_US}) + {BUCKET_US}) % {BUCKET_US}"
            " as b from lake.metrics) group by sensor_id, b",
            "select sensor_id, date_trunc('hour', ts), avg(value) from metrics group by 1, 2",
            [], ()),
        "one sensor, 7 days of raw rows": (
            "select ts, value from lake.metrics where sensor_id = ? and shard = ? and "
            "date between ?::date and ?::date and ts >= ? and ts < ? order by ts",
            "select ts, value from metrics where sensor_id = %s and ts >= %s and ts < %s "
            "order by ts",
            [sensor, shard_of(sensor, settings.shards), start.date(), end.date(), start, end],
            (sensor, start, end)),
    }
    results: dict[str, Any] = {}
    for label, (lake_sql, pg_sql, lake_params, pg_params) in queries.items():
        def on_lake(q: str = lake_sql, p: list[Any] = lake_params) -> list[Any]:
            return lake.execute(q, p).fetchall()

        def on_postgres(q: str = pg_sql, p: tuple[Any, ...] = pg_params) -> list[Any]:
            return source.execute(q, p).fetchall()

        lake_rows, pg_rows = len(on_lake()), len(on_postgres())
        lake_s, pg_s = best_of(runs, on_lake), best_of(runs, on_postgres)
        results[label] = {"rows": lake_rows, "postgres_rows": pg_rows,
                          "lake_seconds": round(lake_s, 4), "postgres_seconds": round(pg_s, 4),
                          "speedup": round(pg_s / lake_s, 1)}
    source.close()
    return results


def write_section(table: dataset.Table, results: dict[str, Any]) -> None:
    lines = [MARK_START, "## Readers: the lake vs Postgres, same data, same run", "",
             f"Table: {table.rows:,} rows ({table.sensors} sensors, {table.days:g} days); "
             f"lake backfilled with `tslake backfill`; best of 3; DuckDB reads "
             "`_state/lake.duckdb`'s `metrics` view, Postgres the table (warm caches).", "",
             "| query | rows | lake | Postgres | lake is |", "|---|---:|---:|---:|---:|"]
    for label, result in results.items():
        lines.append(f"| {label} | {result['rows']:,} | {result['lake_seconds']:.3f} s | "
                     f"{result['postgres_seconds']:.3f} s | {result['speedup']}x faster |")
    lines += ["", "Hourly buckets are epoch arithmetic on the lake side (see README: "
              "`date_trunc` on a TIMESTAMPTZ goes through ICU for every row).", MARK_END]
    section = "\n".join(lines)
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    if MARK_START in text:
        before, _, rest = text.partition(MARK_START)
        text = before + section + rest.partition(MARK_END)[2]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    BENCHMARKS.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
