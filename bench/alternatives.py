"""Other ways to read and write the same table, measured side by side with the backfill.

    python -m bench.alternatives NAME --out DIR      (Postgres from PG*; prints JSON)

- parallel_scan:        DuckDB's own scan of the attached table (ctid ranges over
                        pg_connection_limit connections, `threads` DuckDB threads), written
                        unsorted to one Parquet file: the reader's and writer's ceiling.
- parallel_scan_sorted: the same with one global ORDER BY sensor_id, ts (spills).
- per_day_temp_table:   the first version's shape: one postgres_query per UTC day, ts bounds
                        only, into a DuckDB table, then one sorted COPY per shard, serially.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from runner.config import Settings
from runner.postgres.connection import connect

COLUMNS = "sensor_id, ts, value, quality, inserted_at"
SHARD = "(('0x' || left(md5(sensor_id), 8))::ubigint % 8)::integer"


def parallel_scan(out: Path, *, sorted_rows: bool, pages_per_task: int) -> int:
    conn = connect(Settings.from_env(), attach=True)
    conn.execute(f"set pg_pages_per_task = {pages_per_task}")
    order = "order by sensor_id, ts" if sorted_rows else ""
    row = conn.execute(f"copy (select {COLUMNS} from pg.public.metrics {order}) to "
                       f"'{out / 'all.parquet'}' (format parquet, compression snappy)").fetchone()
    return int(row[0]) if row else 0


def per_day_temp_table(out: Path) -> int:
    conn = connect(Settings.from_env(), attach=True)
    first, last = conn.execute(
        "select min(ts)::date, max(ts)::date from postgres_query('pg', "  # the session is UTC
        "'select min(ts) as ts from metrics union all select max(ts) from metrics')"
    ).fetchone() or (None, None)
    total, day = 0, first
    while day is not None and day <= last:
        query = (f"select {COLUMNS} from metrics where ts >= ''{day}''::timestamptz "
                 f"and ts < ''{day}''::timestamptz + interval ''1 day''")
        conn.execute(f"create or replace temp table day as select *, {SHARD} as shard "
                     f"from postgres_query('pg', '{query}')")
        for shard in range(8):
            target = out / f"date={day}" / f"shard={shard:02d}"
            target.mkdir(parents=True, exist_ok=True)
            row = conn.execute(f"copy (select {COLUMNS} from day where shard = {shard} "
                               f"order by sensor_id, ts) to '{target / 'f.parquet'}' "
                               "(format parquet, compression snappy)").fetchone()
            total += int(row[0]) if row else 0
        day = conn.execute("select ?::date + 1", [day]).fetchone()[0]  # type: ignore[index]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.alternatives")
    parser.add_argument("name", choices=["parallel_scan", "parallel_scan_sorted",
                                         "per_day_temp_table"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pages-per-task", type=int, default=1000)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    if args.name == "per_day_temp_table":
        rows = per_day_temp_table(args.out)
    else:
        rows = parallel_scan(args.out, sorted_rows=args.name.endswith("sorted"),
                             pages_per_task=args.pages_per_task)
    print(json.dumps({"rows": rows, "seconds": time.monotonic() - began,
                      "threads": Settings.from_env().threads, "pid": os.getpid()}))


if __name__ == "__main__":
    main()
