"""`make bench`, readers: the queries the lake exists for, on the lake and directly on
Postgres, same data, same run (issue 7's targets: hourly average per sensor over the
horizon >= 15x faster than Postgres, one sensor-week >= 2x faster).

    python -m bench.readers [--sensors 200] [--days 35] [--cadence 60]

Writes its section of BENCHMARKS.md between <!-- readers --> markers."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb

from bench import dataset, layout, measure, report
from runner.config import PROJECT_ROOT, Settings
from runner.readers.query import series_sql

SENSOR = "s0042"


def best_of(runs: int, action: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


@dataclass(frozen=True)
class Reader:
    """One way to run a query: `engine` leaves the result in the engine (count and sum over
    every result row, so nothing is pruned away), `fetch` brings the rows into Python."""

    engine: Callable[[], Any]
    fetch: Callable[[], list[Any]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sensors", type=int, default=200)
    parser.add_argument("--days", type=float, default=35)
    parser.add_argument("--cadence", type=int, default=60)
    parser.add_argument("--runs", type=int, default=5)
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
        settings = Settings.from_env(env)
        results = compare(server, settings, args.runs)
        layouts = layout.compare(settings, work / "layouts", sensor=SENSOR, runs=args.runs)
    finally:
        dataset.stop(server)
        shutil.rmtree(work, ignore_errors=True)
    write_section(table, results, args.runs, layouts)
    print(json.dumps(results, indent=2))
    for variant in layouts:
        print(variant)
    return 0


def compare(server: dataset.Server, settings: Settings, runs: int) -> dict[str, Any]:
    """Each query on the lake and on Postgres, alternating, best of `runs`. The hourly query
    is the same SQL text on both sides. Fetched rows carry naive UTC timestamps on both
    sides: DuckDB's Python client turns each TIMESTAMPTZ into a pytz-aware datetime at
    ~1.5 us a value, a client cost that is not the lake's."""
    lake = duckdb.connect()
    lake.execute("set TimeZone = 'UTC'")
    lake.execute(f"attach '{settings.state_dir / 'lake.duckdb'}' as lake (read_only)")
    source = server.connect("readers")
    (end,) = source.execute("select max(ts) from metrics").fetchone() or (None,)
    assert end is not None, "the benchmark table is empty"
    start = end - timedelta(days=7)
    week = {"s": SENSOR, "d0": start.date(), "d1": end.date(), "t0": start, "t1": end}
    hourly = ("select sensor_id, date_trunc('hour', ts) as t, avg(value) as v from {metrics} "
              "group by 1, 2")
    lake_week = ("select ts as t, value as v from lake.metrics where sensor_id = $s"
                 " and shard = lake.metrics_shard($s) and date between $d0 and $d1"
                 " and ts >= $t0 and ts < $t1 order by ts")
    pg_week = ("select ts as t, value as v from metrics where sensor_id = %(s)s"
               " and ts >= %(t0)s and ts < %(t1)s order by ts")

    def on_lake(sql: str, params: dict[str, Any] | None = None) -> Reader:
        return Reader(lambda: lake.execute(f"select count(*), sum(v) from ({sql})",
                                           params).fetchall(),
                      lambda: lake.execute(f"select * replace (make_timestamp(epoch_us(t)) "
                                           f"as t) from ({sql})", params).fetchall())

    def on_postgres(sql: str, params: dict[str, Any] | None = None) -> Reader:
        return Reader(lambda: source.execute(f"select count(*), sum(v) from ({sql}) as q",
                                             params).fetchall(),
                      lambda: source.execute(f"select q.*, t at time zone 'UTC' from ({sql}) "
                                             "as q", params).fetchall())

    pruned = series_sql(settings, dataset="metrics/v1", sensors=[week["s"]], start=start,
                        end=end, bucket=None, agg="avg")
    assert pruned is not None
    pruned_sql = f"select ts as t, value as v from ({pruned[0]})"

    cases = {
        "hourly average per sensor, whole horizon": (
            on_lake(hourly.format(metrics="lake.metrics")),
            on_postgres(hourly.format(metrics="metrics"))),
        "one sensor, 7 days of raw rows (`metrics` view)": (on_lake(lake_week, week),
                                                            on_postgres(pg_week, week)),
        "one sensor, 7 days of raw rows (files picked from the manifest)": (
            on_lake(pruned_sql, pruned[1]), on_postgres(pg_week, week)),
    }
    results: dict[str, Any] = {}
    for label, (lake_reader, pg_reader) in cases.items():
        lake_answer, pg_answer = lake_reader.engine(), pg_reader.engine()
        assert lake_answer[0][0] == pg_answer[0][0], (label, lake_answer, pg_answer)
        result: dict[str, Any] = {"rows": lake_answer[0][0]}
        for how in ("engine", "fetch"):
            lake_action, pg_action = getattr(lake_reader, how), getattr(pg_reader, how)
            lake_s, pg_s = float("inf"), float("inf")
            for _ in range(runs):  # alternate, so both see the same machine state
                lake_s = min(lake_s, best_of(1, lake_action))
                pg_s = min(pg_s, best_of(1, pg_action))
            result[how] = {"lake_seconds": round(lake_s, 4), "postgres_seconds": round(pg_s, 4),
                           "speedup": round(pg_s / lake_s, 1)}
        results[label] = result
    source.close()
    return results


def write_section(table: dataset.Table, results: dict[str, Any], runs: int,
                  layouts: list[layout.Layout]) -> None:
    lines = ["## Readers: the lake vs Postgres, same data, same run", "",
             f"Table: {table.rows:,} rows ({table.sensors} sensors, {table.days:g} days); lake "
             "backfilled with `tslake backfill`; DuckDB attaches `_state/lake.duckdb` and reads "
             f"its `metrics` view, Postgres the table (warm caches); best of {runs}, lake and "
             "Postgres alternating. *In the engine*: `select count(*), sum(..) from (query)`, "
             "so each engine computes every result row and the client gets one. *Fetched*: "
             "every row into Python (DuckDB's and psycopg's `fetchall`), timestamps as naive "
             "UTC on both sides (DuckDB's Python client spends ~1.5 us per TIMESTAMPTZ value "
             "on pytz: 10,080 rows took 13 ms more; see README, Readers).", "",
             "| query | rows | lake, in the engine | Postgres, in the engine | lake is | "
             "lake, fetched | Postgres, fetched | lake is |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, result in results.items():
        cells = [label, f"{result['rows']:,}"]
        for how in ("engine", "fetch"):
            r = result[how]
            cells += [f"{r['lake_seconds'] * 1000:.1f} ms",
                      f"{r['postgres_seconds'] * 1000:.1f} ms", f"**{r['speedup']}x** faster"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "The hourly query is the same SQL on both sides (`date_trunc('hour', ts)`: "
              "fast on DuckDB's TIMESTAMPTZ; `time_bucket` and casts to TIMESTAMP are what walk "
              "ICU's calendar per row, see docs/ARCHITECTURE.md, \"Reader layout\"). The view "
              "query prunes with `shard = lake.metrics_shard($s)` and a `date` range; the last "
              "row runs `tslake query`'s SQL (`runner.readers.query.series_sql`: the files of "
              "those dates and that shard, named from the manifest) on the same connection.", ""]
    lines += layout.markdown(layouts)
    report.write_marked_section("readers", lines)


if __name__ == "__main__":
    raise SystemExit(main())
