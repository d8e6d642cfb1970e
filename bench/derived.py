"""Benchmark: what derived sensors (derived/v1) add to a tick and to a backfill day.

    .venv/bin/python -m bench.derived [--sensors 100 --days 3 --cadence 60 --ticks 3]

One synthetic lake (sensors x days at one reading per `cadence` s), backfilled; then ticks,
each after one new reading per sensor plus a few late ones, measured side by side in one
run: metrics alone, then metrics + derived with 2 and with 50 definitions (5-minute VPD-like
expressions over pairs of sensors; the first tick after a switch recomputes the lake and is
not counted). Reports the median tick per configuration and its ratio to the metrics tick
(goal: 50 definitions <= 1.5x), and the derived backfill's seconds per day. Uses the
Postgres of PGHOST when set, else an embedded one; writes its section of BENCHMARKS.md
between <!-- derived --> markers and prints the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.parity import DATABASE, _conninfo, timed
from runner.config import PROJECT_ROOT
from runner.dev import devdb, synthetic

BENCHMARKS = PROJECT_ROOT / "BENCHMARKS.md"
MARKERS = ("<!-- derived -->", "<!-- /derived -->")


def definitions(count: int, sensors: int) -> str:
    width = max(4, len(str(sensors - 1)))
    items = []
    for number in range(count):
        t, rh = (2 * number) % sensors, (2 * number + 1) % sensors
        items.append(f"""  - id: derived/vpd-{number:02d}
    bucket: 5m
    inputs: {{t: s{t:0{width}d}, rh: s{rh:0{width}d}}}
    agg: {{t: avg, rh: max}}
    expression: "0.61078 * exp(17.27 * t / (t + 237.3)) * (1 - rh / 100)"
""")
    return "derived_sensors:\n" + "".join(items)


def new_readings(env: dict[str, str], sensors: int) -> None:
    width = max(4, len(str(sensors - 1)))
    with psycopg.connect(_conninfo(env), autocommit=True) as conn:
        conn.execute(f"""insert into metrics (sensor_id, ts, value, quality)
            select 's' || lpad(i::text, {width}, '0'), date_trunc('second', now()),
                   random() * 30, 0 from generate_series(0, {sensors - 1}) as i
            union all  -- late rows: yesterday, arriving now
            select 's' || lpad(i::text, {width}, '0'),
                   date_trunc('second', now()) - interval '1 day', random() * 30, 0
            from generate_series(0, {sensors - 1}, 10) as i
            on conflict (sensor_id, ts) do update set value = excluded.value,
                inserted_at = now()""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sensors", type=int, default=100)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--cadence", type=int, default=60)
    parser.add_argument("--ticks", type=int, default=3, help="measured ticks per configuration")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="tslake-bench-derived-"))
    own_server = not os.environ.get("PGHOST")
    server = devdb.start(work / "pgdata", database="postgres") if own_server else {}
    env = {**os.environ, **server, "DO_NOT_TRACK": "1", "TSLAKE_DATA_ROOT": str(work / "lake"),
           "TSLAKE_REPLICATION_LAG_SECONDS": "0", "TSLAKE_HOT_RETENTION_DAYS": "400"}
    env.pop("TSLAKE_PG_DSN", None)
    admin = {**env, "PGDATABASE": "postgres"}
    with psycopg.connect(_conninfo(admin), autocommit=True) as conn:
        conn.execute(f"drop database if exists {DATABASE} with (force)")
        conn.execute(f"create database {DATABASE}")
    env["PGDATABASE"] = DATABASE
    files = {count: work / f"derived-{count}.yml" for count in (2, 50)}
    for count, path in files.items():
        path.write_text(definitions(count, args.sensors))
    results: dict[str, Any] = {"sensors": args.sensors, "days": args.days,
                               "cadence_seconds": args.cadence, "ticks": args.ticks}
    try:
        with psycopg.connect(_conninfo(env), autocommit=True) as conn:
            synthetic.create_metrics_table(conn, with_indexes=False)
            results["rows"] = synthetic.fill_uniform(conn, sensors=args.sensors,
                                                     days=args.days,
                                                     cadence_seconds=args.cadence)
            synthetic.create_metrics_table(conn)
            conn.execute("vacuum analyze metrics")
        metrics_only = {**env, "TSLAKE_DATASETS": "metrics/v1"}
        results["metrics_backfill_seconds"], _ = timed(
            metrics_only, "tslake", "backfill", "--days", str(args.days))
        with_50 = {**env, "TSLAKE_DATASETS": "metrics/v1,derived/v1",
                   "TSLAKE_DERIVED_SENSORS": str(files[50])}
        seconds, _ = timed(with_50, "tslake", "backfill", "--dataset", "derived/v1",
                           "--days", str(args.days))
        results["derived_backfill_50_seconds_per_day"] = round(seconds / args.days, 2)
        ticks: dict[str, list[float]] = {}
        for name, tick_env in (("metrics", metrics_only),
                               ("derived_2", {**with_50,
                                              "TSLAKE_DERIVED_SENSORS": str(files[2])}),
                               ("derived_50", with_50)):
            if name != "metrics":  # a switched file recomputes the lake once: not counted
                new_readings(env, args.sensors)
                timed(tick_env, "tslake", "tick")
            ticks[name] = []
            for _ in range(args.ticks):
                new_readings(env, args.sensors)
                time.sleep(1.1)  # a new second: the rows are inside the next window
                ticks[name].append(timed(tick_env, "tslake", "tick")[0])
        base = statistics.median(ticks["metrics"])
        results["tick_seconds"] = {name: statistics.median(values)
                                   for name, values in ticks.items()}
        results["tick_ratio"] = {name: round(statistics.median(values) / base, 2)
                                 for name, values in ticks.items()}
        results["goal_50_definitions_ratio"] = 1.5
    finally:
        with psycopg.connect(_conninfo(admin), autocommit=True) as conn:
            conn.execute(f"drop database if exists {DATABASE} with (force)")
        if own_server:
            devdb.stop(work / "pgdata")
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    write_section(results)
    print(json.dumps(results, indent=2))


def write_section(results: dict[str, Any]) -> None:
    ratio = results["tick_ratio"]
    body = "\n".join([
        MARKERS[0], "## Derived sensors", "",
        f"{results['sensors']} sensors x {results['days']} days ({results['rows']} rows), "
        f"median of {results['ticks']} `tslake tick` runs each (one new reading per sensor "
        "and a late one for every tenth), side by side in one run (`python -m bench.derived`).",
        "", "| configuration | tick (s) | ratio to the metrics tick |", "|---|---:|---:|",
        *(f"| {name.replace('_', ' ')} | {results['tick_seconds'][name]} | {ratio[name]} |"
          for name in ("metrics", "derived_2", "derived_50")),
        "", f"Goal: 50 definitions <= 1.5x (measured {ratio['derived_50']}x). Derived backfill "
        f"with 50 definitions: {results['derived_backfill_50_seconds_per_day']} s per day "
        f"(metrics backfill: {results['metrics_backfill_seconds']} s for all days).",
        MARKERS[1]])
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    if MARKERS[0] in text and MARKERS[1] in text:
        head, rest = text.split(MARKERS[0], 1)
        text = head + body + rest.split(MARKERS[1], 1)[1]
    else:
        text = text.rstrip() + "\n\n" + body + "\n"
    BENCHMARKS.write_text(text)


if __name__ == "__main__":
    main()
