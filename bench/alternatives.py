"""Other ways to read and write the same table, measured side by side with the backfill.

    python -m bench.alternatives NAME --out DIR      (Postgres from PG*; prints JSON)

- parallel_scan:        DuckDB's own scan of the attached table (ctid ranges over
                        pg_connection_limit connections, `threads` DuckDB threads), written
                        unsorted to one Parquet file: the reader's and writer's ceiling.
- parallel_scan_sorted: the same with one global ORDER BY sensor_id, ts (spills).
- dlt + connectorx:      bench/dlt_load.py, run with .venv-dlt's interpreter (dlt_python).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from runner.config import PROJECT_ROOT, Settings
from runner.postgres.connection import connect

COLUMNS = "sensor_id, ts, value, quality, inserted_at"


def parallel_scan(out: Path, *, sorted_rows: bool, pages_per_task: int) -> int:
    conn = connect(Settings.from_env(), attach=True)
    conn.execute(f"set pg_pages_per_task = {pages_per_task}")
    order = "order by sensor_id, ts" if sorted_rows else ""
    row = conn.execute(f"copy (select {COLUMNS} from pg.public.metrics {order}) to "
                       f"'{out / 'all.parquet'}' (format parquet, compression snappy)").fetchone()
    return int(row[0]) if row else 0


DLT_VENV = PROJECT_ROOT / ".venv-dlt"
DLT_PACKAGES = ["dlt[parquet,filesystem,sql_database]==1.31.0", "connectorx==0.4.6",
                "sqlalchemy", "psycopg[binary]"]


def dlt_python() -> Path:
    """The interpreter of .venv-dlt, created on first use (offline PyPI works)."""
    python = DLT_VENV / "bin" / "python"
    if not (DLT_VENV / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", str(DLT_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", *DLT_PACKAGES], check=True)
        (DLT_VENV / ".installed").touch()
    return python


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.alternatives")
    parser.add_argument("name", choices=["parallel_scan", "parallel_scan_sorted"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pages-per-task", type=int, default=1000)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    rows = parallel_scan(args.out, sorted_rows=args.name.endswith("sorted"),
                         pages_per_task=args.pages_per_task)
    print(json.dumps({"rows": rows, "seconds": time.monotonic() - began,
                      "threads": Settings.from_env().threads, "pid": os.getpid()}))


if __name__ == "__main__":
    main()
