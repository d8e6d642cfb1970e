"""`make bench`, reader layout: the lake's files rewritten with other Parquet options (codec,
row-group size), each variant read by the same queries, so the choice in
`macros/lake/lake_parquet_options.sql` stays a measurement. Run by bench.readers on its lake.

Every variant is written from the same sorted rows, one file per shard-day like the lake,
and measured interleaved with the others (best of `runs`), on one DuckDB connection."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb

from runner.config import Settings
from runner.core import manifest
from runner.readers import views
from runner.readers.query import shard_of

DATASET = "metrics/v1"
VARIANTS = {
    "snappy (the lake's)": "compression snappy",
    "zstd": "compression zstd",
    "zstd, level 1": "compression zstd, compression_level 1",
    "lz4_raw": "compression lz4_raw",
    "uncompressed": "compression uncompressed",
    "snappy, 16,384-row groups": "compression snappy, row_group_size 16384",
}
QUERIES = {
    "full scan, 3 columns": "select sum(length(sensor_id)), sum(epoch_us(ts)), sum(value) "
                            "from read_parquet($files)",
    "hourly avg per sensor": "select count(*), sum(v) from (select sensor_id, "
                             "date_trunc('hour', ts), avg(value) as v "
                             "from read_parquet($files) group by 1, 2)",
}
POINT = ("select count(*), sum(value) from read_parquet($files) where sensor_id = $sensor "
         "and ts >= $start")


@dataclass(frozen=True)
class Layout:
    label: str
    mebibytes: float
    write_cpu_seconds: float
    seconds: dict[str, float]  # query label -> best of the runs


def compare(settings: Settings, work: Path, *, sensor: str, runs: int) -> list[Layout]:
    document = manifest.load(settings.manifest_path)
    assert document is not None, "bench.layout needs a committed lake"
    entry = document.datasets[DATASET]
    single, multi = views.files_by_overlap(settings, DATASET, entry)
    assert not multi, "bench.layout expects one file per shard-day (a fresh backfill)"
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    written: dict[str, list[Path]] = {}
    cpu: dict[str, float] = {}
    for number, (label, options) in enumerate(VARIANTS.items()):
        folder = work / str(number)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        started = time.process_time()
        for source in single:  # the lake's date=/shard= folders again, under `folder`
            target = folder / Path(source).parent.parent.name / Path(source).parent.name
            target.mkdir(parents=True, exist_ok=True)
            target = target / "data.parquet"
            conn.execute(f"copy (select * from read_parquet($source) order by sensor_id, ts) "
                         f"to '{target}' (format parquet, {options})", {"source": source})
        cpu[label] = time.process_time() - started
        written[label] = sorted(folder.glob("date=*/shard=*/data.parquet"))

    last = max(_date_of(str(path)) for path in written[next(iter(VARIANTS))])
    first = last - timedelta(days=7)
    shard = shard_of(sensor, entry.shards)
    best: dict[str, dict[str, float]] = {label: {} for label in VARIANTS}
    for _ in range(runs):
        for label, paths in written.items():
            files = [str(path) for path in paths]
            week = [str(path) for path in paths if _shard_of(str(path)) == shard
                    and first <= _date_of(str(path))]
            plans: list[tuple[str, str, dict[str, Any]]] = [
                (query, sql, {"files": files}) for query, sql in QUERIES.items()]
            plans.append(("one sensor, 7 days", POINT,
                          {"files": week, "sensor": sensor, "start": first}))
            for query, sql, params in plans:
                started = time.perf_counter()
                conn.execute(sql, params).fetchall()
                elapsed = time.perf_counter() - started
                best[label][query] = min(best[label].get(query, elapsed), elapsed)
    conn.close()
    layouts = [Layout(label, sum(os.path.getsize(p) for p in written[label]) / 2**20,
                      cpu[label], best[label]) for label in VARIANTS]
    shutil.rmtree(work, ignore_errors=True)
    return layouts


def markdown(layouts: list[Layout]) -> list[str]:
    queries = [*QUERIES, "one sensor, 7 days"]
    lines = ["### Reader layout: the lake's files rewritten with other Parquet options", "",
             "The lake's shard-day files rewritten per variant from the same sorted "
             "rows (one file per shard-day), read with `read_parquet` on one connection, "
             "variants interleaved, best of the runs. Write CPU includes reading and sorting "
             "the source file. The lake's choice is `macros/lake/lake_parquet_options.sql`.", "",
             "| file options | size | write (CPU) | " + " | ".join(queries) + " |",
             "| --- | ---: | ---: | " + " | ".join("---:" for _ in queries) + " |"]
    for layout in layouts:
        cells = [layout.label, f"{layout.mebibytes:.1f} MiB", f"{layout.write_cpu_seconds:.2f} s"]
        cells += [f"{layout.seconds[query] * 1000:.1f} ms" for query in queries]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _date_of(path: str) -> date:
    return date.fromisoformat(Path(path).parent.parent.name.removeprefix("date="))


def _shard_of(path: str) -> int:
    return int(Path(path).parent.name.removeprefix("shard="))
