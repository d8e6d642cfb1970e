"""Reader views: DuckDB views over exactly the files the manifest lists, one per dataset.

- `_state/lake.duckdb` holds, for every dataset in the manifest, a view named by its first
  path segment (`metrics`, `forecast_points`: newest version per key, hot and cold) and a
  macro `<name>_shard(<series>)`: the runner rewrites it atomically after each manifest
  replace (a backfill's days in between excepted, see publish.publish_segments). Readers
  `ATTACH '<hot>/_state/lake.duckdb' AS lake (READ_ONLY)` and query `lake.metrics`.
- `tslake views` prints the same views plus `<name>_fresh` (the lake plus the Postgres rows
  past the watermark) as SQL to run in the reader's own session (DuckDB binds a view's
  postgres_query when the view is created). The file starts by installing the postgres
  extension from the wheel's file (no download: the Mac mini may be offline) and attaching
  Postgres read-only from libpq's PG* variables, if the session has no `pg` yet; with
  `--no-attach` it leaves both to the session.

Every view is generic over the dataset's declaration (runner/core/datasets): its columns,
key, series, time and version columns and its source table. The project's declaration is
used when it declares the dataset, else the one the manifest recorded (a dataset since
removed from the project still gets its view). Only shard-days holding more than one file
pay for dedupe: a single file never repeats a key (every writer keeps the newest version
per key within its file).
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable

import duckdb

from runner.config import Settings
from runner.core import datasets, roots, tiers
from runner.core.datasets import DatasetSpec
from runner.core.durable import durable_rename, fsync_path
from runner.core.manifest import DatasetState, Manifest
from runner.dbt_bridge import sqlmacros
from runner.errors import ColdTierError, ManifestError
from runner.postgres.connection import SOURCE_CATALOG, postgres_extension_file, sql_literal

log = logging.getLogger("tslake.views")

VIEWS_FILE = "lake.duckdb"
PARTITION_TYPES = {"date": "date", "shard": "integer"}  # from the hive paths
_READ_OPTIONS = "hive_partitioning = true, hive_types = {'date': 'DATE', 'shard': 'INTEGER'}"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
# The DuckDB type of each lake type; `int` is the source's integer type (manifest's
# source_columns), smallint when it was never recorded.
_DUCK_TYPES = {"varchar": "varchar", "double": "double", "timestamptz": "timestamptz",
               "smallint": "smallint", "integer": "integer", "bigint": "bigint",
               "boolean": "boolean", "date": "date"}
_SOURCE_INTEGERS = {"smallint": "smallint", "integer": "integer", "bigint": "bigint"}


def identifier(name: str) -> str:
    """An identifier from a declaration, checked against the allow-list before it enters SQL."""
    if not _IDENTIFIER.match(name):
        raise ManifestError(f"column or view name {name!r} is not a lowercase identifier: fix the "
                            "dataset's declaration (models/lake/) or restore the manifest")
    return name


def newest_per_key(key: Iterable[str], version: str) -> str:
    """The newest version of each key among rows that may repeat one (several files of a
    shard-day, the Postgres tail); views and `tslake query` append it to their SELECT."""
    columns = ", ".join(identifier(column) for column in key)
    return (f"qualify row_number() over (partition by {columns} "
            f"order by {identifier(version)} desc) = 1")


def view_name(dataset: str) -> str:
    """`metrics/v1` -> `metrics` (the reader view name, README "Datasets")."""
    return identifier(dataset.split("/")[0])


def reader_spec(dataset: str, entry: DatasetState) -> DatasetSpec:
    """The declaration the views of `dataset` follow: the project's, else the manifest's."""
    declared = datasets.declared().get(dataset)
    if declared is not None:
        return declared
    recorded = entry.declaration
    if recorded is None:
        raise ManifestError(f"dataset {dataset} in the manifest has no recorded declaration and "
                            "the project declares no such dataset: declare it in models/lake/ "
                            "or run a `tslake tick` with it enabled")
    spec = DatasetSpec.from_record(dataset, recorded)
    for column in (*spec.column_names, *spec.key, spec.series, spec.time, spec.version):
        identifier(column)
    return spec


def duck_type(spec: DatasetSpec, entry: DatasetState, column: str) -> str:
    """The DuckDB type of a declared column as the files hold it."""
    lake_type = spec.lake_type(column)
    if lake_type == "int":
        return _SOURCE_INTEGERS.get((entry.source_columns or {}).get(column, ""), "smallint")
    return _DUCK_TYPES[lake_type]


def files_by_overlap(settings: Settings, dataset: str, entry: DatasetState,
                     keep: Callable[[str, int], bool] = lambda date, shard: True,
                     ) -> tuple[list[str], list[str]]:
    """Absolute paths of the committed files of the shard-days `keep(date, shard)` accepts:
    (shard-days with one file, shard-days with more; only the latter need dedupe)."""
    groups: dict[tuple[str, int], list[str]] = defaultdict(list)
    containment = roots.Containment(settings.manifest_path)
    for date, partition, file in entry.files_of():
        if not keep(date, file.shard):
            continue
        # A cold tier that is unset or not mounted: ColdTierUnavailableError, naming it.
        groups[(date, file.shard)].append(roots.file_location(
            settings, dataset, partition.location, file.path, containment))
    single = sorted(paths[0] for paths in groups.values() if len(paths) == 1)
    multi = sorted(path for paths in groups.values() if len(paths) > 1 for path in paths)
    return single, multi


def empty_sql(spec: DatasetSpec, entry: DatasetState, columns: Iterable[str] | None = None,
              *, partitions: bool = True) -> str:
    """A typed SELECT of no rows with the lake's columns (and date, shard)."""
    names = list(spec.column_names if columns is None else columns)
    typed = [f"null::{duck_type(spec, entry, name)} as {identifier(name)}" for name in names]
    if partitions:
        typed += [f"null::{kind} as {name}" for name, kind in PARTITION_TYPES.items()]
    return f"select {', '.join(typed)} where false"


def lake_view_sql(settings: Settings, dataset: str, entry: DatasetState) -> str:
    spec = reader_spec(dataset, entry)
    single, multi = files_by_overlap(settings, dataset, entry)
    parts = []
    if single:
        parts.append(f"select * from read_parquet({_list(single)}, {_READ_OPTIONS})")
    if multi:
        parts.append(f"select * from read_parquet({_list(multi)}, {_READ_OPTIONS}) "
                     f"{newest_per_key(spec.key, spec.version)}")
    body = "\nunion all by name\n".join(f"({part})" for part in parts) or empty_sql(spec, entry)
    return f"create or replace view {view_name(dataset)} as\n{body};\n"


def fresh_view_sql(settings: Settings, dataset: str, entry: DatasetState) -> str:
    """`<name>_fresh`: the lake view plus Postgres rows with the version column past the
    watermark (those win over the lake's version of the same key: they are newer by
    construction), from the declared source table and columns."""
    spec = reader_spec(dataset, entry)
    table = ".".join('"' + part.replace('"', '""') + '"'
                     for part in (spec.source_schema, spec.source_table))
    watermark = entry.computed_through_ts or "-infinity"
    columns = [identifier(column) for column in spec.column_names]
    tail_query = (f"select {', '.join(columns)} from {table} where {spec.version} > "
                  f"{sql_literal(watermark)}::timestamptz")
    casts = ",\n           ".join(
        column if spec.lake_type(column) == "int"
        else f"{column}::{duck_type(spec, entry, column)} as {column}" for column in columns)
    name = view_name(dataset)
    return f"""create or replace view {name}_fresh as
with tail as (
    select {casts}
    from postgres_query({sql_literal(SOURCE_CATALOG)}, {sql_literal(tail_query)})
    {newest_per_key(spec.key, spec.version)}
)
(select * from {name} anti join tail using ({', '.join(spec.key)}))
union all by name
(select *, ({spec.time} at time zone 'UTC')::date as date,
        {shard_sql(spec.series, entry)} as shard
 from tail);
"""


def shard_sql(series: str, entry: DatasetState) -> str:
    """The shard formula (README, "Reading the lake") in DuckDB SQL: the macro `shard_of`."""
    return sqlmacros.render("shard_of", sensor_id=identifier(series), shards=int(entry.shards))


def shard_macro_sql(dataset: str, entry: DatasetState) -> str:
    """`<name>_shard(<series>)`: lets a reader prune by shard without computing md5 itself
    (`where sensor_id = $s and shard = lake.metrics_shard($s)` opens one shard's files)."""
    series = reader_spec(dataset, entry).series
    return (f"create or replace macro {view_name(dataset)}_shard({identifier(series)}) as "
            f"{shard_sql(series, entry)};\n")


def render_sql(settings: Settings, document: Manifest, *, fresh: bool,
               attach: bool = True) -> str:
    lines = [f"-- tslake reader views for manifest generation {document.generation} "
             f"({settings.manifest_path})"]
    if settings.cold_url is not None:  # what a reader session needs first
        lines.append(cold_reads_sql(settings))
    if fresh and attach:
        lines += ["-- the postgres extension from its wheel (offline), then Postgres read-only",
                  "-- from libpq's PG* variables (PGHOST, PGDATABASE, PGPASSFILE, ...)",
                  f"INSTALL {sql_literal(postgres_extension_file())};", "LOAD postgres;",
                  f"ATTACH IF NOT EXISTS '' AS {SOURCE_CATALOG} (TYPE postgres, READ_ONLY);"]
    elif fresh:
        lines.append(f"-- *_fresh views need Postgres attached as {SOURCE_CATALOG}, e.g.\n"
                     f"--   ATTACH '' AS {SOURCE_CATALOG} (TYPE postgres, READ_ONLY);"
                     "  -- libpq's PG* variables")
    for name, entry in sorted(document.datasets.items()):
        lines.append(f"-- {name}: watermark {entry.computed_through_ts}")
        lines.append(lake_view_sql(settings, name, entry))
        lines.append(shard_macro_sql(name, entry))
        if fresh and reader_spec(name, entry).lake_source is None:  # derived: no source table
            lines.append(fresh_view_sql(settings, name, entry))
    return "\n".join(lines)


def cold_reads_sql(settings: Settings) -> str:
    """What a reader's session needs before these views when cold files are in object
    storage: httpfs from its wheel, and an S3 secret the reader makes itself (no
    credential is ever written into this SQL)."""
    from runner.core.object_store import httpfs_extension_file

    return (f"-- cold partitions are read in place from {settings.cold_url}: create an S3 "
            "secret first, e.g.\n--   CREATE TEMPORARY SECRET (TYPE s3, "
            "KEY_ID '<AWS_ACCESS_KEY_ID>', "
            "SECRET '<AWS_SECRET_ACCESS_KEY>', REGION '<AWS_REGION>'\n--     "
            "[, ENDPOINT 'host:port', URL_STYLE 'path', USE_SSL false]);\n"
            f"INSTALL {sql_literal(httpfs_extension_file())};\nLOAD httpfs;")


def refresh(settings: Settings, document: Manifest) -> None:
    """Rewrite `_state/lake.duckdb` for this manifest (temp file, fsync, rename). A failure
    is logged, not raised: the commit already happened and the next one retries."""
    target = settings.state_dir / VIEWS_FILE
    tmp = settings.state_dir / f"{VIEWS_FILE}.{os.getpid()}.tmp"
    try:
        tmp.unlink(missing_ok=True)
        conn = duckdb.connect(str(tmp))
        try:
            tiers.enable_cold_reads(conn, settings)  # a temporary secret: not in the file
            conn.execute(render_sql(settings, document, fresh=False))
            conn.execute("create table tslake_state as select ? as manifest_generation, "
                         "? as updated_at", [document.generation, document.updated_at])
            conn.execute("checkpoint")
        finally:
            conn.close()
        fsync_path(tmp)
        durable_rename(tmp, target)
    except (duckdb.Error, OSError, ManifestError, ColdTierError) as error:
        log.warning("could not refresh %s: %s; readers see the previous commit's views until "
                    "the next commit", target, error)
        tmp.unlink(missing_ok=True)


def refresh_if_stale(settings: Settings, document: Manifest) -> None:
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
