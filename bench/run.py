"""`make bench`: a synthetic table in a throwaway embedded Postgres, then, in the same run
on the same server: the raw binary COPY drain, the backfill's rows/s and peak RSS at two
table sizes, the tick cost at both sizes, alternatives, plans; written to BENCHMARKS.md.

    python -m bench.run [--sensors 200] [--cadence 60] [--days 35] [--small-days 3.5] ...

Defaults: 200 sensors x 1 reading/min x 35 days ~ 10M rows, and 3.5 days ~ 1M rows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import dataset, explain, measure
from bench.report import Alternative, Report, SizeResult, render
from runner.config import PROJECT_ROOT, Settings

ALTERNATIVES = {
    "parallel_scan": "DuckDB's parallel scan of the attached table (ctid ranges), one "
                     "unsorted Parquet file",
    "parallel_scan_sorted": "the same with a global ORDER BY sensor_id, ts",
    "per_day_temp_table": "one query per day with ts bounds only, a DuckDB table, a sorted "
                          "COPY per shard, serially (the first version's shape)",
}


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def measure_size(server: dataset.Server, table: dataset.Table, work: Path,
                 args: argparse.Namespace) -> SizeResult:
    env = measure.lake_env(server, table.database, work / f"lake-{table.database}")
    measure.copy_drain(server, table.database)  # warm the caches for both contenders
    copies, backfills = [], []
    for attempt in range(args.repeat):
        copies.append(measure.copy_drain(server, table.database))
        log(f"{table.database}: raw COPY {table.rows / copies[-1].seconds / 1e6:.2f}M rows/s")
        shutil.rmtree(work / f"lake-{table.database}", ignore_errors=True)
        backfills.append(measure.backfill(server, env, args.backfill_days))
        log(f"{table.database}: backfill {attempt + 1}: {backfills[-1].rate / 1e6:.2f}M rows/s, "
            f"peak RSS {backfills[-1].peak_rss / 2**20:.0f} MiB")
    copies.append(measure.copy_drain(server, table.database))
    ticks = []
    for _ in range(3):
        dataset.insert_new_rows(server, table.database, table.sensors, args.tick_rows_per_sensor)
        ticks.append(measure.tick(server, table.database, env))
        log(f"{table.database}: tick of {ticks[-1].rows} rows in "
            f"{ticks[-1].model_seconds:.3f} s (model)")
    return SizeResult(table, copies, backfills, ticks)


def run_alternatives(server: dataset.Server, table: dataset.Table, work: Path,
                     report: Report, args: argparse.Namespace) -> None:
    env = measure.lake_env(server, table.database, work / "alt-root")
    for name, what in ALTERNATIVES.items():
        out = work / f"alt-{name}"
        timed = measure.run_measured(["python", "-m", "bench.alternatives", name, "--out",
                                      str(out)], env)
        result = json.loads(timed.stdout)
        report.alternatives.append(Alternative(name, what, result["rows"], result["seconds"],
                                               timed.peak_rss))
        log(f"alternative {name}: {result['rows'] / result['seconds'] / 1e6:.2f}M rows/s")
        shutil.rmtree(out, ignore_errors=True)
    for workers in (1, 2):
        root = work / f"alt-workers-{workers}"
        run = measure.backfill(server, {**measure.lake_env(server, table.database, root),
                                        "TSLAKE_BACKFILL_WORKERS": str(workers)},
                               args.backfill_days)
        report.alternatives.append(Alternative(
            f"backfill, {workers} worker{'s' * (workers > 1)}", "this backfill with "
            f"TSLAKE_BACKFILL_WORKERS={workers} (default: cores + 1)", run.rows,
            float(run.summary["seconds"]), run.peak_rss))
        log(f"backfill with {workers} workers: {run.rate / 1e6:.2f}M rows/s")
        shutil.rmtree(root, ignore_errors=True)


def plans(server: dataset.Server, table: dataset.Table, work: Path) -> dict[str, str]:
    env = measure.lake_env(server, table.database, work / "explain-root",
                           DBT_LOG_PATH=str(work / "explain-logs"))
    model = explain.compiled_model(env, work / "explain-target")
    day = (datetime.now(UTC) - timedelta(days=2)).date()
    queries = explain.day_queries(model, str(day), str(day + timedelta(days=1)),
                                  explain.shard_zero(table.sensors))
    naive = (f"select sensor_id, ts, value, quality, inserted_at from metrics where ts >= "
             f"'{day}' and ts < '{day + timedelta(days=1)}'")
    return {f"series discovery of a day ({table.rows:,} rows)":
            explain.explain(server, table.database, queries["discovery"]),
            f"one shard of a day ({table.rows:,} rows)":
            explain.explain(server, table.database, queries["shard"]),
            f"a day with ts bounds only, for comparison ({table.rows:,} rows)":
            explain.explain(server, table.database, naive)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sensors", type=int, default=200)
    parser.add_argument("--cadence", type=int, default=60, help="seconds between readings")
    parser.add_argument("--days", type=float, default=35, help="days of data, large table")
    parser.add_argument("--small-days", type=float, default=3.5, help="days, small table")
    parser.add_argument("--backfill-days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=2, help="backfills per table size")
    parser.add_argument("--tick-rows-per-sensor", type=int, default=10)
    parser.add_argument("--no-alternatives", action="store_true")
    parser.add_argument("--no-pg16", action="store_true")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "BENCHMARKS.md")
    parser.add_argument("--keep", action="store_true", help="keep the servers' directory")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="tslake-bench-"))
    settings = Settings.from_env({})
    report = Report(settings={
        "memory_limit": settings.memory_limit, "threads": settings.threads,
        "backfill_workers": settings.backfill_workers, "backfill_days": args.backfill_days,
        "tick_rows": args.sensors * args.tick_rows_per_sensor, "pg_version": 18},
        sizes=[], load={"start": measure.load_average()})
    began = time.monotonic()
    servers = []
    try:
        log(f"starting PostgreSQL 18 under {work}")
        server = dataset.start(work / "pg18", 18)
        servers.append(server)
        tables = []
        for name, days in (("bench_small", args.small_days), ("bench_large", args.days)):
            tables.append(dataset.create_table(server, name, sensors=args.sensors, days=days,
                                               cadence_seconds=args.cadence))
            log(f"{name}: {tables[-1].rows:,} rows in {tables[-1].load_seconds:.0f} s")
        with server.connect("postgres") as conn:
            report.postgres[18] = str(conn.execute("select version()").fetchone()[0])  # type: ignore[index]
        for table in tables:
            report.sizes.append(measure_size(server, table, work, args))
        report.plans = plans(server, tables[-1], work)
        if not args.no_alternatives:
            run_alternatives(server, tables[-1], work, report, args)
        if not args.no_pg16:
            log("starting PostgreSQL 16")
            old = dataset.start(work / "pg16", 16)
            servers.append(old)
            table = dataset.create_table(old, "bench_pg16", sensors=args.sensors,
                                         days=args.small_days, cadence_seconds=args.cadence)
            with old.connect("postgres") as conn:
                report.postgres[16] = str(conn.execute("select version()").fetchone()[0])  # type: ignore[index]
            report.pg16 = measure_size(old, table, work, args)
            report.pg16_plans = {name: plan for name, plan in plans(old, table, work).items()
                                 if "discovery" not in name}
    finally:
        for server in servers:
            dataset.stop(server)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report.load["end"] = measure.load_average()
    args.out.write_text(render(report))
    log(f"wrote {args.out} in {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
