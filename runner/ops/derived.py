"""derived/v1 (SPEC section 8): derived sensors recomputed from the committed metrics/v1 files.

A tick, after metrics/v1 committed (the derived model runs downstream of it in the same
`dbt run`), finds what changed since the last derived commit, recomputes exactly that, and
commits it with metrics' watermark, in one manifest replace:

- touched buckets: every bucket of a definition that an input row in a metrics file not
  yet read (`DerivedState.inputs_read`) falls in: new, late or updated rows, a backfill's
  or a compaction's output. Such a bucket is recomputed from all committed metrics files
  (newest version per key), so the result depends only on the committed inputs, never on
  the order they arrived in;
- a definition whose hash differs from the recorded one is recomputed over the whole lake;
  a recorded one that is gone has its rows removed.

A recomputed row is appended as a new version when it is newer than the committed one (its
inserted_at is the newest input's, so a new input version makes it newer); a bucket that
no longer qualifies, or whose result is not newer (a removed definition, a changed bucket),
makes its date rewritten: that date's files are replaced in the same commit. The SQL of a
definition is macros/derived/ with the expression rendered by runner/derived/.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from runner.config import Settings
from runner.core import manifest, publish, roots
from runner.core.datasets import DatasetSpec
from runner.core.failpoints import failpoint
from runner.core.manifest import DatasetState, DerivedState, Manifest
from runner.dbt_bridge import sqlmacros
from runner.derived import definitions as definitions_file
from runner.derived import sql
from runner.derived.definitions import Definition
from runner.errors import ConfigError, ManifestError
from runner.ops import export
from runner.readers import views
from runner.readers.query import shard_of

log = logging.getLogger("tslake.derived")

INPUT_DATASET = "metrics/v1"
_FRESH, _EXISTING, _TOUCHED, _OUT = ("derived_fresh", "derived_existing", "derived_touched",
                                     "derived_out")
_COLUMNS = "sensor_id, ts, value, quality, inserted_at"
# A recomputed value equal to the committed one but for the last bits (parallel sums add in
# another order) is the same row: skipped, not a reason to rewrite its date.
_SAME_VALUE = ("(f.value is not distinct from e.value or abs(f.value - e.value) <= "
               "1e-12 * greatest(abs(f.value), abs(e.value)))")


@dataclass(frozen=True)
class LakeFile:
    relative: str  # as the manifest lists it
    path: str      # absolute, in its tier
    date: str
    shard: int


def load_definitions(settings: Settings) -> list[Definition]:
    """The validated definitions (ConfigError, exit 2, before any SQL runs)."""
    return definitions_file.load(settings.derived_sensors)


def input_state(document: Manifest | None) -> DatasetState:
    """metrics/v1's committed state: derived/v1 is computed from it."""
    entry = document.datasets.get(INPUT_DATASET) if document else None
    if entry is None or entry.computed_through_ts is None:
        raise ManifestError("derived/v1 is computed from metrics/v1, which has nothing "
                            "committed yet: run `tslake tick` or `tslake backfill` with "
                            "metrics/v1 enabled first")
    return entry


def tick(settings: Settings, conn: duckdb.DuckDBPyConnection, document: Manifest,
         spec: DatasetSpec, run_id: str, definitions: list[Definition]) -> dict[str, Any]:
    """Apply every metrics/v1 commit since the last derived one; commit with its watermark."""
    metrics = input_state(document)
    entry = document.dataset(spec.name, settings.shards)
    state = entry.derived or DerivedState()
    whole = [d for d in definitions if state.definitions.get(d.id) != d.hash]
    incremental = [d for d in definitions if state.definitions.get(d.id) == d.hash]
    removed = sorted(set(state.definitions) - {d.id for d in definitions})
    inputs = lake_files(settings, INPUT_DATASET, metrics)
    read = set(state.inputs_read)
    touched = _touched(conn, [f for f in inputs if f.relative not in read], incremental,
                       settings.shards)
    scope = Scope(whole=[d.id for d in whole] + removed, touched=touched)
    _compute(settings, conn, spec, metrics, inputs, [
        *((d, None) for d in whole),
        *((d, f"bucket in (select ts from {_TOUCHED} where sensor_id = {sql.literal(d.id)})")
          for d in incremental if d.id in touched.sensors)],
        ranges=touched.ranges)
    _warn_missing_inputs(conn, whole)
    rewrite = _merge(settings, conn, spec, entry, scope)
    files = export.write_window(settings, conn, spec, f"select * from {_OUT}", run_id, "part")
    failpoint("derived_before_publish")
    summary = publish.publish_segments(
        settings, document, spec.name, run_id=run_id, kind="part", files=files,
        watermark=metrics.computed_through_ts, replace_dates=frozenset(rewrite),
        derived=DerivedState(definitions={d.id: d.hash for d in definitions},
                             inputs_read=sorted(f.relative for f in inputs)),
        run_info={"mode": "tick", "touched_buckets": touched.count,
                  "recomputed_sensors": [d.id for d in whole], "removed_sensors": removed,
                  "rewritten_dates": sorted(rewrite)})
    log.info("tslake: %s: tick %s: %d touched bucket(s), %d sensor(s) recomputed, %d removed, "
             "%d rows in %d files through %s", spec.name, run_id, touched.count, len(whole),
             len(removed), summary["rows"], summary["files"], metrics.computed_through_ts)
    return summary


def rebuild(settings: Settings, conn: duckdb.DuckDBPyConnection, document: Manifest,
            spec: DatasetSpec, run_id: str, definitions: list[Definition], *,
            first_date: str, end_date: str | None, mode: str) -> dict[str, Any]:
    """Backfill or repair: recompute every definition's buckets that start in
    [first_date, end_date) (None: onward) from the lake, those dates' files replaced in one
    commit. A tick first brings derived/v1 to metrics' watermark."""
    tick(settings, conn, document, spec, run_id, definitions)
    metrics = input_state(document)
    entry = document.dataset(spec.name, settings.shards)
    lo = f"{first_date}T00:00:00Z"
    hi = f"{end_date}T00:00:00Z" if end_date else None
    bounds = f"bucket >= {sql.literal(lo)}::timestamptz" + (
        f" and bucket < {sql.literal(hi)}::timestamptz" if hi else "")
    longest = max((d.bucket_seconds for d in definitions), default=0)
    end = (datetime.fromisoformat(hi) + timedelta(seconds=longest)) if hi else None
    _compute(settings, conn, spec, metrics, lake_files(settings, INPUT_DATASET, metrics),
             [(d, bounds) for d in definitions],
             ranges=[(datetime.fromisoformat(lo), end)])
    conn.execute(f"create or replace temp table {_OUT} as select * from {_FRESH}")
    dates = {day for day in entry.partitions
             if day >= first_date and (end_date is None or day < end_date)}
    dates |= {row[0].isoformat() for row in
              conn.execute(f"select distinct date from {_FRESH}").fetchall()}
    files = export.write_window(settings, conn, spec, f"select * from {_OUT}", run_id,
                                "backfill")
    summary = publish.publish_segments(
        settings, document, spec.name, run_id=run_id, kind="backfill", files=files,
        watermark=entry.computed_through_ts, replace_dates=frozenset(dates),
        run_info={"mode": mode, "first_date": first_date, "end_date": end_date,
                  "days": len(dates)})
    log.info("tslake: %s: %s %s recomputed %d rows over %d date(s) from %s", spec.name, mode,
             run_id, summary["rows"], len(dates), first_date)
    return summary


def backfill_first_date(days: int, now: datetime | None = None) -> str:
    """The first UTC date of a `--days N` backfill (metrics': 00:00 UTC N days ago)."""
    if not 1 <= days <= 3650:
        raise ConfigError(f"backfill_days={days} is outside 1-3650")
    return ((now or datetime.now(UTC)) - timedelta(days=days)).date().isoformat()


def lake_files(settings: Settings, dataset: str, entry: DatasetState) -> list[LakeFile]:
    """Every committed file of `dataset`, hot and cold (paths, or URLs in an S3 cold tier)."""
    containment = roots.Containment(settings.manifest_path)
    return [LakeFile(relative=file.path, date=date, shard=file.shard,
                     path=roots.file_location(settings, dataset, partition.location, file.path,
                                              containment))
            for date, partition, file in entry.files_of()]


@dataclass(frozen=True)
class Touched:
    count: int
    sensors: frozenset[str]
    ranges: list[tuple[datetime, datetime | None]]  # input ts ranges the buckets cover


@dataclass(frozen=True)
class Scope:
    """The derived keys a tick recomputes: every row of `whole` sensors, and the buckets
    in the touched table."""

    whole: list[str]
    touched: Touched


def _touched(conn: duckdb.DuckDBPyConnection, new_files: list[LakeFile],
             incremental: list[Definition], shards: int) -> Touched:
    """Fill the touched table (sensor_id, ts = bucket start) from the input rows of files
    not read yet."""
    conn.execute(f"create or replace temp table {_TOUCHED} (sensor_id varchar, "
                 "ts timestamptz, bucket_end timestamptz)")
    sensors = sorted({s for d in incremental for s in d.input_sensors})
    wanted = {shard_of(s, shards) for s in sensors}
    paths = [f.path for f in new_files if f.shard in wanted]
    if not paths or not incremental:
        return Touched(0, frozenset(), [])
    conn.execute(f"""create or replace temp table derived_new_inputs as
        select distinct sensor_id, ts from read_parquet({_list(paths)})
        where sensor_id in ({_list_items(sensors)})""")
    selects = [f"""select distinct {sql.literal(d.id)} as sensor_id,
                      {sql.bucket_start('ts', d)} as ts,
                      {sql.bucket_start('ts', d)} + to_seconds({d.bucket_seconds}) as bucket_end
                   from derived_new_inputs where sensor_id in ({_list_items(d.input_sensors)})"""
               for d in incremental]
    conn.execute(f"insert into {_TOUCHED} " + " union all ".join(selects))
    # The input rows to read: per UTC date of touched buckets, from its first bucket's
    # start to its last bucket's end (late rows touch old days, not the days between).
    ranges = [(lo, hi) for lo, hi in conn.execute(
        f"select min(ts), max(bucket_end) from {_TOUCHED} group by "
        f"{sqlmacros.render('utc_date', ts='ts')} order by 1").fetchall()]
    found = {r[0] for r in conn.execute(f"select distinct sensor_id from {_TOUCHED}").fetchall()}
    count = conn.execute(f"select count(*) from {_TOUCHED}").fetchone()
    return Touched(int(count[0]) if count else 0, frozenset(found), ranges)


def _compute(settings: Settings, conn: duckdb.DuckDBPyConnection, spec: DatasetSpec,
             metrics: DatasetState, inputs: list[LakeFile],
             work: list[tuple[Definition, str | None]],
             ranges: list[tuple[datetime, datetime | None]]) -> None:
    """Fill the fresh table: the rows of each (definition, bucket filter), from the newest
    versions of its inputs in the committed files (only the shards of its inputs; only the
    dates of `ranges` for definitions with a bucket filter)."""
    quality = views.duck_type(spec, metrics, "quality")
    conn.execute(f"""create or replace temp table {_FRESH} (sensor_id varchar,
        ts timestamptz, value double, quality {quality}, inserted_at timestamptz,
        date date, shard integer)""")
    if not work:
        return
    reads = []
    for bounded in (False, True):
        group = [d for d, where in work if (where is not None) == bounded]
        sensors = sorted({s for d in group for s in d.input_sensors})
        wanted = {shard_of(s, settings.shards) for s in sensors}
        paths = [f.path for f in inputs if f.shard in wanted and
                 (not bounded or any(_overlaps(f.date, lo, hi) for lo, hi in ranges))]
        if not paths:
            continue
        where = f"sensor_id in ({_list_items(sensors)})"
        if bounded:
            where += " and (" + " or ".join(
                f"(ts >= {sql.literal(manifest.rfc3339(lo))}::timestamptz" + (
                    f" and ts < {sql.literal(manifest.rfc3339(hi))}::timestamptz)" if hi else ")")
                for lo, hi in ranges) + ")"
        reads.append(f"select {_COLUMNS} from read_parquet({_list(paths)}) where {where}")
    if not reads:
        return
    conn.execute("create or replace temp table derived_inputs as " + sqlmacros.render(
        "newest_versions", relation="(" + " union all ".join(reads) + ")",
        key=["sensor_id", "ts"], version_column="inserted_at"))
    rows = " union all ".join(f"({sql.sensor_rows(d, 'derived_inputs', 'duckdb', where)})"
                              for d, where in work)
    conn.execute(f"""insert into {_FRESH}
        select {_COLUMNS}, {sqlmacros.render('utc_date', ts='ts')} as date,
               {sqlmacros.render('shard_of', sensor_id='sensor_id', shards=settings.shards)}
               as shard
        from ({rows}) as computed""")


def _merge(settings: Settings, conn: duckdb.DuckDBPyConnection, spec: DatasetSpec,
           entry: DatasetState, scope: Scope) -> set[str]:
    """Fill the out table from the fresh one and the committed derived rows in scope;
    returns the dates whose files the commit replaces."""
    in_scope = (f"(sensor_id in ({_list_items(scope.whole)}) or " if scope.whole else "(") + \
        f"exists (select 1 from {_TOUCHED} t where t.sensor_id = e.sensor_id and t.ts = e.ts))"
    fresh_dates = {r[0].isoformat() for r in
                   conn.execute(f"select distinct date from {_FRESH}").fetchall()}
    touched_dates = {r[0].isoformat() for r in conn.execute(
        f"select distinct {sqlmacros.render('utc_date', ts='ts')} from {_TOUCHED}").fetchall()}
    sensors = set(scope.whole) | set(scope.touched.sensors)
    wanted = {shard_of(s, settings.shards) for s in sensors}
    files = [f.path for f in lake_files(settings, spec.name, entry) if f.shard in wanted and
             (bool(scope.whole) or f.date in fresh_dates | touched_dates)]
    _committed(conn, _EXISTING, files, f"where {in_scope}")
    rewrite = {r[0].isoformat() for r in conn.execute(f"""
        select distinct date from (
            select e.date from {_EXISTING} e anti join {_FRESH} f using (sensor_id, ts)
            union all
            select f.date from {_FRESH} f join {_EXISTING} e using (sensor_id, ts)
            where f.inserted_at <= e.inserted_at and (f.inserted_at <> e.inserted_at
                or f.quality is distinct from e.quality or not {_SAME_VALUE})
        )""").fetchall()}
    kept = [f.path for f in lake_files(settings, spec.name, entry) if f.date in rewrite]
    _committed(conn, "derived_kept", kept, f"where not {in_scope}")
    rewritten = f"date in ({_list_items(sorted(rewrite))})" if rewrite else "false"
    appended = f"f.date not in ({_list_items(sorted(rewrite))})" if rewrite else "true"
    conn.execute(f"""create or replace temp table {_OUT} as
        select f.* from {_FRESH} f left join {_EXISTING} e using (sensor_id, ts)
        where (e.inserted_at is null or f.inserted_at > e.inserted_at)
          and {appended}
        union all
        select * from {_FRESH} where {rewritten}
        union all
        select * from derived_kept""")
    return rewrite


def _committed(conn: duckdb.DuckDBPyConnection, table: str, paths: list[str],
               where: str) -> None:
    """`table`: the newest committed derived rows of `paths` (with date and shard) that
    satisfy `where` (over alias e)."""
    if not paths:
        conn.execute(f"create or replace temp table {table} as select * from {_FRESH} "
                     "where false")
        return
    newest = sqlmacros.render("newest_versions",
                              relation=f"read_parquet({_list(paths)}, hive_partitioning = true)",
                              key=["sensor_id", "ts"], version_column="inserted_at")
    conn.execute(f"""create or replace temp table {table} as
        select {_COLUMNS}, date::date as date, shard::integer as shard
        from ({newest}) as e {where}""")


def _warn_missing_inputs(conn: duckdb.DuckDBPyConnection, recomputed: list[Definition]) -> None:
    """A recomputed definition whose input the lake does not hold: a warning, not an error
    (runner/derived/definitions.py says why)."""
    if not recomputed:
        return
    try:
        known = {r[0] for r in conn.execute(
            "select distinct sensor_id from derived_inputs").fetchall()}
    except duckdb.CatalogException:  # no input file at all
        known = set()
    for line in definitions_file.missing_inputs(recomputed, known):
        log.warning("tslake: %s", line)


def _overlaps(date: str, lo: datetime, hi: datetime | None) -> bool:
    day = datetime.fromisoformat(date + "T00:00:00+00:00")
    return day + timedelta(days=1) > lo and (hi is None or day < hi)


def _list(paths: Iterable[str]) -> str:
    return "[" + _list_items(paths) + "]"


def _list_items(values: Iterable[str]) -> str:
    return ", ".join(sql.literal(value) for value in values)
