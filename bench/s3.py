"""`make bench`, S3 cold tier: `tslake query` over days in an S3 cold tier (a local moto
endpoint: no network latency, so this is the floor of the object-store cost) vs days in the
hot tier, same lake, same run (issue 15: "`query` over S3-cold vs hot days").

    python -m bench.s3 [--sensors 100] [--days 14] [--cadence 60] [--runs 5]

Writes its section of BENCHMARKS.md between <!-- s3 --> markers."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import duckdb

from bench import dataset, measure, report
from runner.config import PROJECT_ROOT, Settings
from runner.core import manifest, tiers
from runner.dev.s3server import S3Server
from runner.readers.query import series_sql

SENSOR = "s0042"
HOT_DAYS = 7


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sensors", type=int, default=100)
    parser.add_argument("--days", type=float, default=14)
    parser.add_argument("--cadence", type=int, default=60)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    load_before = measure.load_average()
    work = Path(tempfile.mkdtemp(prefix="tslake-bench-s3-"))
    server = dataset.start(work / "pg", 18)
    s3 = S3Server(work, key_id="bench", secret="bench-secret")
    try:
        table = dataset.create_table(server, "s3cold", sensors=args.sensors, days=args.days,
                                     cadence_seconds=args.cadence)
        s3.client().create_bucket(Bucket="bench")
        env = measure.lake_env(server, "s3cold", work / "lake", **s3.env,
                               TSLAKE_COLD_PATH="s3://bench/lake",
                               TSLAKE_HOT_RETENTION_DAYS=str(HOT_DAYS))
        started = time.perf_counter()
        subprocess.run([str(PROJECT_ROOT / ".venv/bin/tslake"), "backfill", "--days",
                        str(int(args.days) + 1)], cwd=PROJECT_ROOT, env=env, check=True,
                       capture_output=True)
        backfill_s = time.perf_counter() - started
        results = compare(Settings.from_env(env), env, args.runs)
    finally:
        s3.stop()
        dataset.stop(server)
        shutil.rmtree(work, ignore_errors=True)
    write_section(table, results, args.runs, backfill_s,
                  f"{load_before} at start, {measure.load_average()} at end")
    print(json.dumps(results, indent=2))
    return 0


def compare(settings: Settings, env: dict[str, str], runs: int) -> dict[str, Any]:
    """One sensor, one day and a 3-day span, on cold (S3) and hot days, alternating, best of
    `runs`: in-process (`runner.readers.query.series`, what `tslake query` runs) and the
    whole `tslake query` command."""
    document = manifest.load(settings.manifest_path)
    assert document is not None
    entry = document.datasets["metrics/v1"]
    cold = sorted(d for d, p in entry.partitions.items() if p.location == "cold")
    hot = sorted(d for d, p in entry.partitions.items() if p.location == "hot")
    assert len(cold) >= 4 and len(hot) >= 4, (cold, hot)
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})

    def window(day: str, days: int) -> tuple[datetime, datetime]:
        start = datetime.fromisoformat(day).replace(tzinfo=UTC)
        return start, start + timedelta(days=days)

    conn = duckdb.connect()  # one session, set up once: the query's own cost is compared
    conn.execute("set TimeZone = 'UTC'")
    tiers.enable_cold_reads(conn, settings)
    cases = {"one sensor, one day": 1, "one sensor, 3 days": 3}
    results: dict[str, Any] = {}
    for label, days in cases.items():
        # Whole days inside each tier (the first cold day and the last whole hot day).
        spans = {"cold": window(cold[1], days), "hot": window(hot[-days - 1], days)}
        best = {"cold": float("inf"), "hot": float("inf")}
        best_cli = {"cold": float("inf"), "hot": float("inf")}
        rows = {}
        for _ in range(runs):
            for tier, (start, end) in spans.items():
                sql, params = series_sql(settings, dataset="metrics/v1", sensors=[SENSOR],
                                         start=start, end=end, bucket=None, agg="avg")
                began = time.perf_counter()
                rows[tier] = len(conn.execute(sql, params).fetchall())
                best[tier] = min(best[tier], time.perf_counter() - began)
                began = time.perf_counter()
                subprocess.run([str(PROJECT_ROOT / ".venv/bin/tslake"), "query", "--sensor",
                                SENSOR, "--start", manifest.rfc3339(start), "--end",
                                manifest.rfc3339(end), "--format", "csv"], cwd=PROJECT_ROOT,
                               env=env, check=True, capture_output=True)
                best_cli[tier] = min(best_cli[tier], time.perf_counter() - began)
        assert rows["cold"] == rows["hot"] > 0, rows
        results[label] = {"rows": rows["hot"],
                          "in_process": {tier: round(s, 4) for tier, s in best.items()},
                          "command": {tier: round(s, 4) for tier, s in best_cli.items()},
                          "cold_over_hot": round(best["cold"] / best["hot"], 1),
                          "command_cold_over_hot": round(best_cli["cold"] / best_cli["hot"], 2)}
    return results


def write_section(table: dataset.Table, results: dict[str, Any], runs: int,
                  backfill_s: float, load: str) -> None:
    lines = ["## `tslake query`: S3-cold days vs hot days, same lake, same run", "",
             f"Table: {table.rows:,} rows ({table.sensors} sensors, {table.days:g} days), "
             f"backfilled with `tslake backfill` ({backfill_s:.1f} s, including the retention "
             f"move of every day older than {HOT_DAYS} to the S3 cold tier) into a lake whose "
             "`TSLAKE_COLD_PATH` is an `s3://` URL on a local moto server (no network "
             "latency: real S3 adds its round trips, ~2 per file read). Sensor "
             f"{SENSOR}; best of {runs}, cold and hot alternating; load average {load}. "
             "*In process*: the SQL of `runner.readers.query.series_sql` (what `tslake query` "
             "runs: the files of those dates and that shard, from the manifest; cold ones read "
             "in place by httpfs) on one DuckDB session set up once; *command*: the whole "
             f"`tslake query` process. Versions: boto3 {version('boto3')}, moto "
             f"{version('moto')}, duckdb-extension-httpfs {version('duckdb-extension-httpfs')}.",
             "",
             "| query | rows | hot, in process | S3-cold, in process | cold / hot | "
             "hot, command | S3-cold, command | cold / hot |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, r in results.items():
        lines.append(
            f"| {label} | {r['rows']:,} | {r['in_process']['hot'] * 1000:.1f} ms | "
            f"{r['in_process']['cold'] * 1000:.1f} ms | {r['cold_over_hot']}x | "
            f"{r['command']['hot'] * 1000:.0f} ms | {r['command']['cold'] * 1000:.0f} ms | "
            f"{r['command_cold_over_hot']}x |")
    lines += ["", "The cold side also pays for the session's httpfs load and S3 secret "
              "(once per process) and an HTTP request per footer and column chunk."]
    report.write_marked_section("s3", lines)


if __name__ == "__main__":
    raise SystemExit(main())
