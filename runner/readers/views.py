"""Reader views: DuckDB views over exactly the files the manifest lists.

- `_state/lake.duckdb` holds `metrics` (newest version per key, hot and cold) and
  `metrics_shard(sensor_id)`: the runner rewrites it atomically after each manifest replace
  (a backfill's days in between excepted, see publish.publish_segments). Readers
  `ATTACH '<hot>/_state/lake.duckdb' AS lake (READ_ONLY)` and query `lake.metrics`.
- `tslake views` prints the same views plus `metrics_fresh` (the lake plus the Postgres rows
  past the watermark) as SQL to run in the reader's own session, where Postgres is attached
  (DuckDB binds a view's postgres_query when the view is created).

Only shard-days holding more than one file pay for dedupe: a single file never repeats a
key (every writer keeps the newest version per key within its file).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import duckdb

from runner.config import Settings
from runner.core import manifest
from runner.core.durable import durable_rename, fsync_path
from runner.core.manifest import DatasetState
from runner.dbt_bridge import sqlmacros
from runner.postgres.connection import SOURCE_CATALOG, sql_literal

log = logging.getLogger("tslake.views")

VIEWS_FILE = "lake.duckdb"
_READ_OPTIONS = "hive_partitioning = true, hive_types = {'date': 'DATE', 'shard': 'INTEGER'}"
_EMPTY = ("select null::varchar as sensor_id, null::timestamptz as ts, null::double as value, "
          "null::smallint as quality, null::timestamptz as inserted_at, null::date as date, "
          "null::integer as shard where false")


# The newest version of each key among rows that may repeat one (several files of a
# shard-day, the Postgres tail); views and `tslake query` append it to their SELECT.
NEWEST_PER_KEY = ("qualify row_number() over (partition by sensor_id, ts "
                  "order by inserted_at desc) = 1")


def view_name(dataset: str) -> str:
    """`metrics/v1` -> `metrics` (SPEC's reader view name)."""
    return dataset.split("/")[0]


def files_by_overlap(settings: Settings, dataset: str, entry: DatasetState,
                     keep: Callable[[str, int], bool] = lambda date, shard: True,
                     ) -> tuple[list[str], list[str]]:
    """Absolute paths of the committed files of the shard-days `keep(date, shard)` accepts:
    (shard-days with one file, shard-days with more; only the latter need dedupe)."""
    groups: dict[tuple[str, int], list[str]] = defaultdict(list)
    for date, partition in entry.partitions.items():
        base = settings.hot_path if partition.location == "hot" else settings.cold_path
        for file in partition.files:
            if keep(date, file.shard):
                groups[(date, file.shard)].append(
                    str(Path(str(base)) / dataset / file.path))
    single = sorted(paths[0] for paths in groups.values() if len(paths) == 1)
    multi = sorted(path for paths in groups.values() if len(paths) > 1 for path in paths)
    return single, multi


def lake_view_sql(settings: Settings, dataset: str, entry: DatasetState) -> str:
    single, multi = files_by_overlap(settings, dataset, entry)
    parts = []
    if single:
        parts.append(f"select * from read_parquet({_list(single)}, {_READ_OPTIONS})")
    if multi:
        parts.append(f"select * from read_parquet({_list(multi)}, {_READ_OPTIONS}) "
                     f"{NEWEST_PER_KEY}")
    body = "\nunion all by name\n".join(f"({part})" for part in parts) or _EMPTY
    return f"create or replace view {view_name(dataset)} as\n{body};\n"


def fresh_view_sql(settings: Settings, dataset: str, entry: DatasetState) -> str:
    """`<name>_fresh`: the lake view plus Postgres rows with inserted_at past the watermark
    (those win over the lake's version of the same key: they are newer by construction)."""
    source = (entry.declaration.source.split(".", 1) if entry.declaration
              else ["public", view_name(dataset)])
    table = ".".join('"' + part.replace('"', '""') + '"' for part in source)
    watermark = entry.computed_through_ts or "-infinity"
    tail_query = ("select sensor_id, ts, value, quality, inserted_at from " + table
                  + " where inserted_at > " + sql_literal(watermark) + "::timestamptz")
    name = view_name(dataset)
    return f"""create or replace view {name}_fresh as
with tail as (
    select sensor_id::varchar as sensor_id, ts::timestamptz as ts, value::double as value,
           quality, inserted_at::timestamptz as inserted_at
    from postgres_query({sql_literal(SOURCE_CATALOG)}, {sql_literal(tail_query)})
    {NEWEST_PER_KEY}
)
(select * from {name} anti join tail using (sensor_id, ts))
union all by name
(select *, (ts at time zone 'UTC')::date as date, {shard_sql('sensor_id', entry)} as shard
 from tail);
"""


def shard_sql(sensor_id: str, entry: DatasetState) -> str:
    """SPEC section 3's shard formula in DuckDB SQL: the dbt macro `shard_of` itself."""
    return sqlmacros.render("shard_of", sensor_id=sensor_id, shards=int(entry.shards))


def shard_macro_sql(dataset: str, entry: DatasetState) -> str:
    """`<name>_shard(sensor_id)`: lets a reader prune by shard without computing md5 itself
    (`where sensor_id = $s and shard = lake.metrics_shard($s)` opens one shard's files)."""
    return (f"create or replace macro {view_name(dataset)}_shard(sensor_id) as "
            f"{shard_sql('sensor_id', entry)};\n")


def render_sql(settings: Settings, document: manifest.Manifest, *, fresh: bool) -> str:
    lines = [f"-- tslake reader views for manifest generation {document.generation} "
             f"({settings.manifest_path})"]
    if fresh:
        lines.append(f"-- *_fresh views need Postgres attached as {SOURCE_CATALOG}, e.g.\n"
                     f"--   ATTACH '' AS {SOURCE_CATALOG} (TYPE postgres, READ_ONLY);"
                     "  -- libpq's PG* variables")
    for name, entry in sorted(document.datasets.items()):
        lines.append(f"-- {name}: watermark {entry.computed_through_ts}")
        lines.append(lake_view_sql(settings, name, entry))
        lines.append(shard_macro_sql(name, entry))
        if fresh:
            lines.append(fresh_view_sql(settings, name, entry))
    return "\n".join(lines)


def refresh(settings: Settings, document: manifest.Manifest) -> None:
    """Rewrite `_state/lake.duckdb` for this manifest (temp file, fsync, rename). A failure
    is logged, not raised: the commit already happened and the next one retries."""
    target = settings.state_dir / VIEWS_FILE
    tmp = settings.state_dir / f"{VIEWS_FILE}.{os.getpid()}.tmp"
    try:
        tmp.unlink(missing_ok=True)
        conn = duckdb.connect(str(tmp))
        try:
            conn.execute(render_sql(settings, document, fresh=False))
            conn.execute("create table tslake_state as select ? as manifest_generation, "
                         "? as updated_at", [document.generation, document.updated_at])
            conn.execute("checkpoint")
        finally:
            conn.close()
        fsync_path(tmp)
        durable_rename(tmp, target)
    except (duckdb.Error, OSError) as error:
        log.warning("could not refresh %s: %s; readers see the previous commit's views until "
                    "the next commit", target, error)
        tmp.unlink(missing_ok=True)


def refresh_if_stale(settings: Settings, document: manifest.Manifest) -> None:
    """After a run killed between the manifest replace and the views refresh."""
    target = settings.state_dir / VIEWS_FILE
    try:
        conn = duckdb.connect(str(target), read_only=True)
        try:
            row = conn.execute("select manifest_generation from tslake_state").fetchone()
        finally:
            conn.close()
        current = row is not None and row[0] == document.generation
    except (duckdb.Error, OSError):
        current = False
    if not current and document.generation > 0:
        refresh(settings, document)


def _list(paths: list[str]) -> str:
    return "[" + ", ".join(sql_literal(path) for path in paths) + "]"
