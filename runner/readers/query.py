"""`tslake query`: a (downsampled) series straight from the lake, opening only the files of
the requested dates and of the series' shards (picked from the manifest: no view to bind).

Generic over the dataset's declaration: `--sensor` ids match its series column (sensor_id
for metrics/v1, series_id for forecast_points/v1), `--start`/`--end` its time column; rows
come out with the dataset's columns but the version, sorted by the key; buckets aggregate
its `value` column over the time column, per series.

Buckets are integer arithmetic on epoch microseconds: any width, UTC whatever the session's
TimeZone, and no ICU calendar per row (`time_bucket` on a TIMESTAMPTZ took 3x as long on
10M rows: docs/ARCHITECTURE.md, "Reader layout"); only the bucket keys become timestamps."""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime, timedelta
from typing import Any

import duckdb

from runner.config import Settings
from runner.core import datasets, manifest, tiers
from runner.core.datasets import DatasetSpec
from runner.core.manifest import DatasetState
from runner.errors import ConfigError
from runner.readers import views

_BUCKET = re.compile(r"^([1-9][0-9]*)(s|m|h|d)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Per bucket, over the `value` column; {time} is the dataset's time column.
AGGREGATES = {"avg": "avg(value)", "min": "min(value)", "max": "max(value)",
              "sum": "sum(value)", "count": "count(value)", "first": "arg_min(value, {time})",
              "last": "arg_max(value, {time})", "median": "median(value)",
              "stddev": "stddev_samp(value)"}
VALUE_COLUMN = "value"
MAX_BUCKET_SECONDS = 31 * 86400  # a bucket from 1 s to 31 days (README, "Commands")


def shard_of(sensor_id: str, shards: int) -> int:
    """The shard formula (README, "Reading the lake"): int(md5(id as UTF-8)[:8], 16) % shards."""
    return int(hashlib.md5(sensor_id.encode()).hexdigest()[:8], 16) % shards


def parse_bucket(text: str) -> int:
    """'5m' -> microseconds."""
    match = _BUCKET.match(text)
    if not match:
        raise ConfigError(f"--bucket {text!r} is not a duration like 30s, 5m, 1h or 1d")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_BUCKET_SECONDS:
        raise ConfigError(f"--bucket {text!r} is longer than 31 days: choose from 1s to 31d")
    return seconds * 1_000_000


def files_for(settings: Settings, dataset: str, entry: DatasetState, sensors: list[str],
              start: datetime, end: datetime) -> tuple[list[str], list[str]]:
    """The committed files that can hold these series between start and end: (shard-days
    with one file, shard-days with more)."""
    shards = {shard_of(sensor, entry.shards) for sensor in sensors}
    first, last = start.date(), (end - timedelta(microseconds=1)).date()
    return views.files_by_overlap(
        settings, dataset, entry,
        keep=lambda day, shard: shard in shards and first <= date.fromisoformat(day) <= last)


def output_columns(spec: DatasetSpec) -> list[str]:
    """A row's columns in `tslake query`: the dataset's columns but the version."""
    return [column for column in spec.column_names if column != spec.version]


def series_sql(settings: Settings, *, dataset: str, sensors: list[str], start: datetime,
               end: datetime, bucket: str | None, agg: str) -> tuple[str, dict[str, Any]]:
    """The query and its parameters for these rows (or buckets). The files are named in the
    parameters, chosen from the manifest; when none can hold a row, the query reads a typed
    empty relation (same columns, no rows)."""
    if not sensors or any(not sensor for sensor in sensors):
        raise ConfigError("--sensor needs one or more non-empty series ids, comma-separated")
    if end <= start:
        raise ConfigError(f"--end {manifest.rfc3339(end)} is not after --start "
                          f"{manifest.rfc3339(start)}")
    if agg not in AGGREGATES:
        raise ConfigError(f"--agg {agg!r} is not one of {', '.join(AGGREGATES)}")
    width = parse_bucket(bucket) if bucket else None
    (spec,) = datasets.select(settings.datasets, dataset)
    _refuse_derived_ids(settings, spec, sensors)
    document = manifest.load(settings.manifest_path)
    entry = document.datasets.get(dataset) if document is not None else None
    if entry is None:
        raise ConfigError(f"dataset {dataset} is not in the lake at {settings.hot_path}: "
                          "run `tslake tick` or `tslake backfill` first")
    if width is not None and VALUE_COLUMN not in spec.column_names:
        raise ConfigError(f"--bucket: dataset {dataset} has no {VALUE_COLUMN} column to "
                          f"aggregate (columns: {', '.join(spec.column_names)}): leave out "
                          "--bucket for its rows")
    series_column, time_column = views.identifier(spec.series), views.identifier(spec.time)
    columns = [views.identifier(column) for column in spec.column_names]
    single, multi = files_for(settings, dataset, entry, sensors, start, end)
    params: dict[str, Any] = {"sensors": sensors, "start": start, "end": end}
    parts = []
    for name, files in (("single", single), ("multi", multi)):
        if files:
            params[name] = files
            parts.append(f"select {', '.join(columns)} from read_parquet(${name}) "
                         f"where {series_column} in (select unnest($sensors)) "
                         f"and {time_column} >= $start and {time_column} < $end")
    if multi:  # only shard-days with several files can repeat a key
        parts[-1] += " " + views.newest_per_key(spec.key, spec.version)
    if not parts:
        parts.append(views.empty_sql(spec, entry, partitions=False))
        for name in ("sensors", "start", "end"):  # DuckDB refuses unused named parameters
            del params[name]
    rows = " union all ".join(f"({part})" for part in parts)
    if width is None:
        order = ", ".join(spec.key)
        return (f"select {', '.join(output_columns(spec))} from ({rows}) order by {order}",
                params)
    params["width"], params["start"] = width, start
    aggregate = AGGREGATES[agg].format(time=time_column)
    # Floor (not truncating) division keeps buckets right before 1970 too; the first
    # bucket starts at --start, not before it (it holds no earlier row).
    return (f"select {series_column}, greatest(make_timestamptz(bucket_us), $start) "
            "as bucket_start, "
            f"{aggregate} as {agg}, count(*) as samples from ("
            f"select *, epoch_us({time_column}) - ((epoch_us({time_column}) % $width) + $width)"
            f" % $width as bucket_us from ({rows})) group by {series_column}, bucket_us "
            f"order by {series_column}, bucket_us", params)


def _refuse_derived_ids(settings: Settings, spec: DatasetSpec, sensors: list[str]) -> None:
    """A derived sensor's id asked of a measured dataset: say where its rows are."""
    if spec.lake_source is not None:
        return
    from runner.derived import definitions  # only read when a query might name one

    try:
        derived_ids = {d.id for d in definitions.load(settings.derived_sensors)}
    except ConfigError:  # an invalid file is the tick's error to report, not the query's
        return
    hits = [sensor for sensor in sensors if sensor in derived_ids]
    if hits:
        raise ConfigError(f"--sensor {hits[0]} is a derived sensor ({settings.derived_sensors}): "
                          f"its rows are in dataset derived/v1, not {spec.name}: add "
                          "--dataset derived/v1")


def series(settings: Settings, *, dataset: str, sensors: list[str], start: datetime,
           end: datetime, bucket: str | None, agg: str) -> duckdb.DuckDBPyRelation:
    """The rows (or buckets) as a DuckDB relation on a new UTC connection (no rows: an
    empty relation with the same columns)."""
    query, params = series_sql(settings, dataset=dataset, sensors=sensors, start=start,
                               end=end, bucket=bucket, agg=agg)
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    tiers.enable_cold_reads(conn, settings)
    check_known(conn, settings, dataset, sensors, start, end)
    return conn.query(query, params=params)


def check_known(conn: duckdb.DuckDBPyConnection, settings: Settings, dataset: str,
                sensors: list[str], start: datetime, end: datetime) -> None:
    """An id the lake holds nowhere (no row on any date) is exit 2 naming it (README,
    "Commands"). Only the series column of the ids' shards is read: the window's files
    first, every date's only for ids not found there (files are sorted by series, so
    row-group statistics skip the rest)."""
    (spec,) = datasets.select(settings.datasets, dataset)
    document = manifest.load(settings.manifest_path)
    entry = document.datasets.get(dataset) if document is not None else None
    if entry is None:
        return
    column = views.identifier(spec.series)
    missing = list(sensors)
    for lo, hi in ((start, end), (datetime.min.replace(tzinfo=start.tzinfo),
                                  datetime.max.replace(tzinfo=start.tzinfo))):
        single, multi = files_for(settings, dataset, entry, missing, lo, hi)
        if single or multi:
            found = {row[0] for row in conn.execute(
                f"select distinct {column} from read_parquet($files) "
                f"where {column} in (select unnest($sensors))",
                {"files": single + multi, "sensors": missing}).fetchall()}
            missing = [sensor for sensor in missing if sensor not in found]
        if not missing:
            return
    raise ConfigError(f"--sensor: dataset {dataset} has no {spec.series} "
                      f"{', '.join(repr(name) for name in missing[:5])} on any date: check the "
                      "ids (`tslake inspect` lists the dates; --dataset picks another dataset)")
