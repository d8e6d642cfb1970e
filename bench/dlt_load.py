"""dlt + connectorx, the issue's reference loader: `metrics` into Parquet files with dlt's
filesystem destination, the way its docs show for a fast SQL source. Runs in its own venv
(.venv-dlt, made by bench.alternatives.dlt_python: dlt's dependencies are not tslake's), so it
imports nothing from the project.

    .venv-dlt/bin/python bench/dlt_load.py --out DIR     (Postgres from PG*; prints JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from urllib.parse import quote


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/dlt_load.py")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import dlt
    import pyarrow.parquet as pq
    from dlt.sources.sql_database import sql_table

    # connectorx reaches a unix socket through the `host` query parameter.
    url = (f"postgresql://{quote(os.environ['PGUSER'])}@localhost:{os.environ['PGPORT']}/"
           f"{quote(os.environ['PGDATABASE'])}?host={quote(os.environ['PGHOST'])}")
    began = time.monotonic()
    pipeline = dlt.pipeline(pipeline_name="bench", dataset_name="lake",
                            destination=dlt.destinations.filesystem(f"file://{args.out}"),
                            pipelines_dir=str(args.out / "_pipelines"))
    pipeline.run(sql_table(credentials=url, table="metrics", backend="connectorx"),
                 loader_file_format="parquet", write_disposition="replace")
    seconds = time.monotonic() - began
    rows = sum(pq.ParquetFile(path).metadata.num_rows
               for path in (args.out / "lake" / "metrics").rglob("*.parquet"))
    print(json.dumps({"rows": rows, "seconds": seconds, "pid": os.getpid()}))


if __name__ == "__main__":
    main()
