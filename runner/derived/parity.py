"""`tslake parity --dataset derived/v1`: the definitions recomputed over Postgres, compared
per bucket with the committed derived rows.

Postgres computes every definition in ONE pushed-down `postgres_query` (macros/derived/ in
the Postgres dialect, the expression rendered from the same parsed tree), over the rows
with `inserted_at <= computed_through_ts` and `ts` inside the lake's horizon; the same
query returns the buckets holding an input version newer than the watermark (in flight),
which both sides leave out. A bucket matches when both sides have it with equal quality and
inserted_at and values equal within a relative 1e-9 (NaN equals NaN, NULL equals NULL).
The report has the shape of the other datasets' (runner/ops/parity_report.py renders it).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import duckdb

from runner.config import Settings
from runner.core import datasets, manifest
from runner.core.datasets import DatasetSpec
from runner.derived import sql
from runner.derived.definitions import Definition
from runner.errors import ManifestError, SourceError
from runner.ops import derived
from runner.postgres.connection import SOURCE_CATALOG, connect
from runner.readers.query import shard_of

RELATIVE_TOLERANCE = 1e-9
MAX_DIFFERENCES = 50
MAX_EXAMPLES = 20


def run_derived_parity(settings: Settings, spec: DatasetSpec, *, start: datetime | None,
                       end: datetime | None, sensors: list[str] | None) -> dict[str, Any]:
    began = time.monotonic()
    document = manifest.load(settings.manifest_path)
    entry = document.datasets.get(spec.name) if document else None
    if entry is None or entry.computed_through_ts is None:
        raise ManifestError(f"dataset {spec.name} has nothing committed in "
                            f"{settings.manifest_path}: run `tslake tick` first")
    metrics = derived.input_state(document)
    definitions = [d for d in derived.load_definitions(settings)
                   if sensors is None or d.id in sensors]
    watermark = entry.computed_through_ts
    first = (metrics.backfill.first_date if metrics.backfill else None) or min(
        metrics.partitions, default=watermark[:10])
    horizon = datetime.fromisoformat(first + "T00:00:00+00:00")
    lo = max(start, horizon) if start else horizon
    hi = end
    conn = connect(settings, attach=True)
    try:
        _source(conn, spec.lake_source or derived.INPUT_DATASET, definitions, watermark, lo, hi)
        _lake(conn, settings, spec, entry, definitions, lo, hi)
        groups, differences = _compare(conn, entry.shards)
        flight = conn.execute("select count(*) from derived_source where in_flight").fetchone()
    finally:
        conn.close()
    bad = [group for group in groups if group["status"] != "match"]
    return {
        "dataset": spec.name, "source_table": _table(spec.lake_source or derived.INPUT_DATASET),
        "series_column": "sensor_id", "key": list(spec.key),
        "generated_at": manifest.rfc3339(manifest.utc_now()),
        "mode": "sensors" if sensors else "all" if start is None else "window",
        "window": {"from": manifest.rfc3339(lo), "to": manifest.rfc3339(hi) if hi else None},
        "watermark": watermark, "horizon_start": manifest.rfc3339(horizon), "warnings": [],
        "sensors": sensors, "definitions": [d.id for d in definitions], "groups": groups,
        "missing_files": [], "in_flight_keys": int(flight[0]) if flight else 0,
        "differences": differences[:MAX_DIFFERENCES],
        "truncated": len(differences) > MAX_DIFFERENCES,
        "totals": {"groups": len(groups), "differing_groups": len(bad),
                   "source_rows": sum(g["source_rows"] for g in groups),
                   "lake_rows": sum(g["lake_rows"] for g in groups)},
        "verdict": "mismatch" if bad else "match",
        "seconds": round(time.monotonic() - began, 3)}


def _table(dataset: str) -> str:
    spec = datasets.declared()[dataset]
    return f"{spec.source_schema}.{spec.source_table}"


def _source(conn: duckdb.DuckDBPyConnection, dataset: str, definitions: list[Definition],
            watermark: str, lo: datetime, hi: datetime | None) -> None:
    """Table derived_source: the Postgres side, one pushed-down query."""
    spec = datasets.declared()[dataset]
    table = ".".join('"' + part.replace('"', '""') + '"'
                     for part in (spec.source_schema, spec.source_table))
    cap = f"{sql.literal(watermark)}::timestamptz"
    window = f"ts >= {sql.literal(manifest.rfc3339(lo))}::timestamptz" + (
        f" and ts < {sql.literal(manifest.rfc3339(hi))}::timestamptz" if hi else "")
    if not definitions:
        conn.execute("create or replace temp table derived_source (sensor_id varchar, "
                     "ts timestamptz, value double, quality bigint, inserted_at timestamptz, "
                     "in_flight boolean)")
        return
    inside = f"(select sensor_id, ts, value, quality, inserted_at from {table} " \
             f"where inserted_at <= {cap} and {window}) as inside"
    parts = []
    for definition in definitions:
        rows = sql.sensor_rows(definition, inside, "postgres",
                               bucket_filter=_bucket_window(lo, hi))
        parts.append(f"select sensor_id, ts, value, quality::bigint, inserted_at, false "
                     f"from ({rows}) as d")
        parts.append(
            f"select distinct {sql.literal(definition.id)}, "
            f"{sql.bucket_start('ts', definition, 'postgres')}, null::float8, null::bigint, "
            f"null::timestamptz, true from {table} where inserted_at > {cap} and {window} "
            f"and sensor_id in ({', '.join(sql.literal(s) for s in definition.input_sensors)})")
    query = " union all ".join(parts)
    try:
        conn.execute(f"""create or replace temp table derived_source as
            select column0 as sensor_id, column1::timestamptz as ts, column2 as value,
                   column3 as quality, column4::timestamptz as inserted_at,
                   column5 as in_flight
            from postgres_query({sql.literal(SOURCE_CATALOG)}, {sql.literal(
                'select * from (' + query + ') as q(column0, column1, column2, column3, '
                'column4, column5)')})""")
    except duckdb.Error as error:
        raise SourceError(f"derived parity: the Postgres side failed: "
                          f"{' '.join(str(error).split())}; check that Postgres is up") from None


def _bucket_window(lo: datetime, hi: datetime | None) -> str:
    return f"bucket >= {sql.literal(manifest.rfc3339(lo))}::timestamptz" + (
        f" and bucket < {sql.literal(manifest.rfc3339(hi))}::timestamptz" if hi else "")


def _lake(conn: duckdb.DuckDBPyConnection, settings: Settings, spec: DatasetSpec,
          entry: manifest.DatasetState, definitions: list[Definition], lo: datetime,
          hi: datetime | None) -> None:
    """Table derived_lake: the committed derived rows of the definitions in the window."""
    paths = [f.path for f in derived.lake_files(settings, spec.name, entry)
             if f.date >= lo.date().isoformat()]
    ids = ", ".join(sql.literal(d.id) for d in definitions) or "null"
    if not paths:
        conn.execute("create or replace temp table derived_lake as select * exclude "
                     "(in_flight) from derived_source where false")
        return
    listed = "[" + ", ".join(sql.literal(path) for path in paths) + "]"
    conn.execute(f"""create or replace temp table derived_lake as
        select sensor_id, ts, value, quality::bigint as quality, inserted_at
        from read_parquet({listed})
        where sensor_id in ({ids}) and {_bucket_window(lo, hi).replace('bucket', 'ts')}
        qualify row_number() over (partition by sensor_id, ts order by inserted_at desc) = 1""")


def _compare(conn: duckdb.DuckDBPyConnection, shards: int) -> tuple[list[dict[str, Any]],
                                                       list[dict[str, Any]]]:
    conn.execute(f"""create or replace temp table derived_compared as
        with flight as (select distinct sensor_id, ts from derived_source where in_flight),
        source as (select * from derived_source s where not in_flight
                   and not exists (select 1 from flight f where f.sensor_id = s.sensor_id
                                   and f.ts = s.ts)),
        lake as (select * from derived_lake l where not exists (
                   select 1 from flight f where f.sensor_id = l.sensor_id and f.ts = l.ts))
        select coalesce(s.sensor_id, l.sensor_id) as sensor_id, coalesce(s.ts, l.ts) as ts,
               s.sensor_id is not null as in_source, l.sensor_id is not null as in_lake,
               case when s.sensor_id is null then 'missing_in_source'
                    when l.sensor_id is null then 'missing_in_lake'
                    when not (s.value is not distinct from l.value or abs(s.value - l.value)
                              <= {RELATIVE_TOLERANCE} * greatest(abs(s.value), abs(l.value)))
                         then 'value_differs'
                    when s.quality is distinct from l.quality then 'quality_differs'
                    when s.inserted_at is distinct from l.inserted_at
                         then 'inserted_at_differs'
                    else 'match' end as status
        from source s full join lake l on s.sensor_id = l.sensor_id and s.ts = l.ts""")
    groups = [{"date": str(date), "shard": shard_of(sensor, shards),
               "sensor_id": sensor, "status": "match" if differing == 0 else "mismatch",
               "source_rows": int(source_rows),
               "lake_rows": int(lake_rows), "differing_buckets": int(differing),
               "source_checksum": None, "lake_checksum": None}
              for date, sensor, source_rows, lake_rows, differing in conn.execute("""
                  select (ts at time zone 'UTC')::date, sensor_id, count(*) filter (in_source),
                         count(*) filter (in_lake), count(*) filter (status <> 'match')
                  from derived_compared group by all order by all""").fetchall()]
    differences = []
    for group in groups:
        if group["status"] == "match":
            continue
        examples = conn.execute("""
            select strftime(ts, '%Y-%m-%dT%H:%M:%SZ'), status from derived_compared
            where sensor_id = ? and (ts at time zone 'UTC')::date = ?::date
              and status <> 'match' order by ts limit ?""",
                                [group["sensor_id"], group["date"], MAX_EXAMPLES]).fetchall()
        differences.append({**group, "source_min_ts": None, "source_max_ts": None,
                            "lake_min_ts": None, "lake_max_ts": None,
                            "examples": [{"ts": ts, "status": status} for ts, status in examples]})
    return groups, differences
