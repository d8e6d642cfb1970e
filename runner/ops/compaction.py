"""Compaction (README, "Late data, updates and compaction"): a shard-day's files merged
into one, newest version per key.

The merge is SQL in the dbt project (macros/lake/compacted_shard_day.sql, over
`newest_versions`); this module picks the candidates from the typed manifest, runs one
COPY per shard-day and commits each with `publish.publish_segments` (the inputs leave the
manifest in the same commit and are deleted after it).

After a tick (`dbt run`), only shard-days with more than TSLAKE_COMPACT_MIN_FILES files are
compacted (the trigger keeps ticks cheap); on demand (`tslake compact`), every hot
shard-day with more than one file is (an operator who types it wants the lake compact
now). Compaction reads no Postgres: `tslake compact` works while it is down.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import duckdb

from runner.cli_params import parse_date
from runner.config import Settings
from runner.core import datasets, manifest, publish
from runner.core.datasets import DatasetSpec
from runner.core.manifest import DatasetState, Manifest
from runner.dbt_bridge import sqlmacros
from runner.errors import ConfigError
from runner.postgres.connection import connect

log = logging.getLogger("tslake.compaction")

ON_DEMAND_MIN_FILES = 1  # `tslake compact`: every shard-day that is not one file yet


@dataclass(frozen=True)
class ShardDay:
    date: str
    shard: int
    paths: tuple[str, ...]  # relative to the dataset's hot root, sorted
    rows: int


def parse_min_files(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"compaction: min_files must be a whole number >= 1, got {value!r}")
    return value


def candidates(entry: DatasetState, min_files: int, date: str | None = None) -> list[ShardDay]:
    """Hot shard-days with more than `min_files` committed files (only `date`, if given)."""
    groups: dict[tuple[str, int], list[manifest.LakeFile]] = defaultdict(list)
    for day, _, file in entry.files_of("hot"):
        if date in (None, day):
            groups[day, file.shard].append(file)
    return [ShardDay(day, shard, tuple(sorted(file.path for file in files)),
                     sum(file.rows for file in files))
            for (day, shard), files in sorted(groups.items()) if len(files) > min_files]


def compact_dataset(settings: Settings, conn: duckdb.DuckDBPyConnection, document: Manifest,
                    spec: DatasetSpec, run_id: str, *, min_files: int,
                    date: str | None = None) -> int:
    """Compact one dataset of the opened lake (locked, leftovers gone), one commit per
    shard-day. Returns the number of shard-days compacted."""
    entry = document.datasets.get(spec.name)
    if entry is None:
        return 0
    todo = candidates(entry, min_files, date)
    root = publish.dataset_root(settings, spec.name)
    for number, shard_day in enumerate(todo, 1):
        where = f"{spec.name}: date={shard_day.date} shard={shard_day.shard:02d}"
        log.info("tslake: %s: compacting %d files, %d rows (%d/%d)", where,
                 len(shard_day.paths), shard_day.rows, number, len(todo))
        started = time.monotonic()
        path = publish.staged_path(root, shard_day.date, shard_day.shard, "compact", run_id)
        row = conn.execute(sqlmacros.render(
            "compacted_shard_day", inputs=[str(root / relative) for relative in shard_day.paths],
            key=list(spec.key), version_column=spec.version, path=str(path))).fetchone()
        rows = int(row[0]) if row else 0
        publish.publish_segments(
            settings, document, spec.name, run_id=run_id, kind="compact",
            files=[publish.StagedFile(date=shard_day.date, shard=shard_day.shard, rows=rows,
                                      path=str(path))],
            watermark=None, replace_paths=frozenset(shard_day.paths),
            run_info={"mode": "compact", "date": shard_day.date, "shard": shard_day.shard})
        log.info("tslake: %s: compacted into compact-%s.parquet, %d -> %d rows in %.2f s",
                 where, run_id, shard_day.rows, rows, time.monotonic() - started)
    return len(todo)


def compact(settings: Settings, *, dataset: str | None = None, date: str | None = None,
            min_files: object = ON_DEMAND_MIN_FILES) -> dict[str, Any]:
    """Compact every hot shard-day with more than `min_files` files (of `dataset`, on
    `date`), one manifest commit per shard-day, under the lake's lock. Returns per dataset
    what this run compacted. (`tslake compact`, and `dbt run-operation lake_compact`.)"""
    specs = datasets.select(settings.datasets, dataset)
    if date is not None:
        date = parse_date(date)
    threshold = parse_min_files(min_files)
    run_id = publish.new_run_id()
    report: dict[str, Any] = {}
    with publish.writing(settings, "tslake compact"):
        conn = connect(settings, attach=False)
        try:
            for spec in specs:
                document = publish.open_write(settings, spec, f"compaction {run_id}")
                shard_days = compact_dataset(settings, conn, document, spec, run_id,
                                             min_files=threshold, date=date)
                entry = document.datasets[spec.name]
                last = entry.last_compaction
                report[spec.name] = {
                    **(last.model_dump() if shard_days and last else
                       {"run_id": None, "shard_days": 0, "files_in": 0, "rows_in": 0,
                        "rows_out": 0}),
                    "max_files_per_shard_day": max_files_per_shard_day(entry, date)}
        finally:
            conn.close()
    log.info("tslake: compaction %s merged %d shard-day(s)", run_id,
             sum(item["shard_days"] for item in report.values()))
    return report


def max_files_per_shard_day(entry: DatasetState, date: str | None = None) -> int:
    counts: dict[tuple[str, int], int] = defaultdict(int)
    for day, _, file in entry.files_of("hot"):
        if date in (None, day):
            counts[day, file.shard] += 1
    return max(counts.values(), default=0)
