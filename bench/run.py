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

from bench import alternatives, dataset, explain, measure, profile
from bench.report import Alternative, Production, Report, SizeResult, write_report
from runner.config import PROJECT_ROOT, Settings

ALTERNATIVES = {
    "parallel_scan": "DuckDB's own postgres scanner: a parallel scan of the attached table "
                     "(ctid ranges), one unsorted Parquet file",
    "parallel_scan_sorted": "the same with a global ORDER BY sensor_id, ts",
}
DLT = "dlt 1.31 + connectorx 0.4.6 (`sql_table(backend=\"connectorx\")` into dlt's filesystem " \
      "destination): unsorted, unpartitioned Parquet"


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def measure_size(server: dataset.Server, table: dataset.Table, work: Path,
                 args: argparse.Namespace, *, ticks: int = 3) -> SizeResult:
    env = measure.lake_env(server, table.database, work / f"lake-{table.database}")
    measure.copy_drain(server, table.database)  # warm the caches for both contenders
    copies, backfills = [], []
    for attempt in range(args.repeat):
        copies.append(measure.copy_drain(server, table.database))
        log(f"{table.database}: raw COPY {table.rows / copies[-1].seconds / 1e6:.2f}M rows/s")
        shutil.rmtree(work / f"lake-{table.database}", ignore_errors=True)
        backfills.append(measure.backfill(server, env, args.backfill_days))
        log(f"{table.database}: backfill {attempt + 1}: {backfills[-1].rate / 1e6:.2f}M rows/s, "
            f"command {backfills[-1].command_seconds:.1f} s, "
            f"peak RSS {backfills[-1].peak_rss / 2**20:.0f} MiB")
    copies.append(measure.copy_drain(server, table.database))
    tick_runs = []
    for _ in range(ticks):
        dataset.insert_new_rows(server, table.database, table.sensors, args.tick_rows_per_sensor)
        tick_runs.append(measure.tick(server, table.database, env))
        log(f"{table.database}: tick of {tick_runs[-1].rows} rows in "
            f"{tick_runs[-1].model_seconds:.3f} s (model)")
    shutil.rmtree(work / f"lake-{table.database}", ignore_errors=True)
    return SizeResult(table, copies, backfills, tick_runs)


def run_alternatives(server: dataset.Server, table: dataset.Table,
                     work: Path) -> list[Alternative]:
    """DuckDB's own scanner and dlt + connectorx on `table`, one run each."""
    env = measure.lake_env(server, table.database, work / "alt-root")
    commands = {name: (["python", "-m", "bench.alternatives", name], what)
                for name, what in ALTERNATIVES.items()}
    commands["dlt_connectorx"] = ([str(alternatives.dlt_python()),
                                   str(PROJECT_ROOT / "bench" / "dlt_load.py")], DLT)
    results = []
    for name, (command, what) in commands.items():
        out = work / f"alt-{name}"
        out.mkdir(parents=True, exist_ok=True)
        timed = measure.run_measured([*command, "--out", str(out)], env)
        result = json.loads(timed.stdout.strip().splitlines()[-1])
        results.append(Alternative(name, what, result["rows"], result["seconds"],
                                   timed.peak_rss, timed.seconds))
        log(f"{table.database}: {name} {result['rows'] / result['seconds'] / 1e6:.2f}M rows/s")
        shutil.rmtree(out, ignore_errors=True)
    return results


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


def production(server: dataset.Server, work: Path, args: argparse.Namespace,
               report: Report) -> None:
    """The production-shaped table on `server`: COPY vs backfill, and the alternatives."""
    name = f"bench_production_pg{server.version}"
    table = dataset.create_table(server, name, sensors=args.sensors, days=args.days,
                                 cadence_seconds=args.cadence, shape="production")
    log(f"{name}: {table.rows:,} rows in {table.load_seconds:.0f} s")
    with server.connect("postgres") as conn:
        report.postgres[server.version] = str(conn.execute("select version()").fetchone()[0])  # type: ignore[index]
    size = measure_size(server, table, work, args, ticks=0)
    found = [] if args.no_alternatives else run_alternatives(server, table, work)
    report.production.append(Production(server.version, size, found))
    if not report.task_stages:
        env = measure.lake_env(server, table.database, work / "profile-root")
        report.task_stages = profile.task_stages(server, table, env)
        report.startup_stages = profile.startup_stages(env)
        log("profiled the backfill's stages")
    if server.version < 18:
        report.old_plans[server.version] = {
            plan_name: plan for plan_name, plan in plans(server, table, work).items()
            if "discovery" not in plan_name}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sensors", type=int, default=200)
    parser.add_argument("--cadence", type=int, default=60, help="seconds between readings")
    parser.add_argument("--days", type=float, default=35, help="days of data, large table")
    parser.add_argument("--small-days", type=float, default=3.5, help="days, small table")
    parser.add_argument("--backfill-days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=2, help="backfills per table")
    parser.add_argument("--tick-rows-per-sensor", type=int, default=10)
    parser.add_argument("--no-alternatives", action="store_true")
    parser.add_argument("--no-pg15", action="store_true",
                        help="skip the system's PostgreSQL 15 (Debian's postgresql-15)")
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
        for name, days in (("bench_small", args.small_days), ("bench_large", args.days)):
            table = dataset.create_table(server, name, sensors=args.sensors, days=days,
                                         cadence_seconds=args.cadence)
            log(f"{name}: {table.rows:,} rows in {table.load_seconds:.0f} s")
            report.sizes.append(measure_size(server, table, work, args))
            if name == "bench_large":
                report.plans = plans(server, table, work)
            with server.connect("postgres") as conn:
                conn.execute(f'drop database "{name}" with (force)')  # room for the next
        production(server, work, args, report)
        dataset.stop(servers.pop())
        if not args.no_pg15:
            log("starting PostgreSQL 15 (the system's)")
            servers.append(dataset.start_system(work / "pg15", 15))
            production(servers[-1], work, args, report)
    finally:
        for server in servers:
            dataset.stop(server)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report.load["end"] = measure.load_average()
    write_report(args.out, report)
    log(f"wrote {args.out} in {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
