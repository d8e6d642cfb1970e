"""`tslake parity`: an exact Postgres <-> lake comparison, with drill-down.

Both sides are aggregated where the rows are: Postgres in one pushed-down
`postgres_query` per level (rows with `inserted_at <= computed_through_ts` only), the lake
by DuckDB over the files the committed manifest lists (hot and cold, newest version per
key). Everything follows the dataset's declaration (runner/core/datasets.py): groups are
(bucket, series, shard), time bounds apply to its time column, the watermark to its
version column. Each group carries a row count, min/max time and the sum of per-row md5
checksums of the key's columns other than the series and of the value columns
(macros/parity/parity_row_hash.sql; for metrics/v1 (ts, value, quality)): equal sums
mean equal rows, whatever their order. The SQL is the dbt project's `macros/parity/`
(rendered by runner/dbt_bridge/sqlmacros.py), the same `dbt test` runs; the committed
file list comes from the typed manifest, bound as DuckDB variables.

Level 1 compares per day and shard (or per day and series when series ids are named);
each differing group is drilled into series, then hours, then example rows (one per key).
Keys with a version newer than the watermark in Postgres (in flight) are left out on both
sides. Report rows name the series id `sensor_id` whatever the column is called (the
report's `series_column` says which it is).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from runner.cli_params import days_in
from runner.config import Settings
from runner.core import datasets, manifest
from runner.core.datasets import DatasetSpec
from runner.dbt_bridge import sqlmacros
from runner.errors import ConfigError, ManifestError, SourceError
from runner.postgres.connection import configure_session, connect

MAX_SHARD_DAYS = 200   # differing (day, shard) groups drilled into sensors
MAX_SENSOR_DAYS = 50   # differing (day, sensor) groups drilled into hours
MAX_ROW_TARGETS = 10   # differing (day, sensor) groups drilled into example rows
MAX_EXAMPLES = 20      # example rows per (day, sensor)
_FAR_FUTURE = "infinity"


def run_parity(settings: Settings, dataset: str, *, start: datetime | None = None,
               end: datetime | None = None, sensors: list[str] | None = None,
               sample: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """Compare `dataset` with Postgres; `start`/`end` None means the whole lake horizon.
    `sensors` (and `sample`) are ids of the dataset's series column.
    Returns the report (JSON-able); `report["verdict"]` is "match" or "mismatch"."""
    began = time.monotonic()
    (spec,) = datasets.select(settings.datasets, dataset)
    document = manifest.load(settings.manifest_path)
    entry = document.datasets.get(dataset) if document is not None else None
    if entry is None or not entry.computed_through_ts or not entry.partitions:
        raise ManifestError(f"dataset {dataset} has nothing committed in "
                            f"{settings.manifest_path}: run `tslake backfill` first")
    spec.check_recorded(entry.declaration)
    watermark = manifest.parse_rfc3339(entry.computed_through_ts)
    horizon = datetime.fromisoformat(min(entry.partitions) + "T00:00:00+00:00")
    # The time column may run ahead of the version (forecasts): then the lake ends with its
    # newest partition, not at the watermark.
    newest = datetime.fromisoformat(max(entry.partitions) + "T00:00:00+00:00")
    ahead = newest.date() > watermark.date()
    lo, hi, warnings = _clip(start, end, horizon,
                             newest + timedelta(days=1) if ahead else watermark, ahead)
    files = committed_files(settings, dataset, entry)
    session = _Session(settings, spec, entry.shards, watermark, files)
    report: dict[str, Any] = {
        "dataset": dataset, "source_table": f"{spec.source_schema}.{spec.source_table}",
        "series_column": spec.series, "key": list(spec.key),
        "generated_at": manifest.rfc3339(manifest.utc_now()),
        "mode": "sample" if sample else "sensors" if sensors else
        "all" if start is None else "window",
        "window": {"from": _text(lo), "to": _text(hi)}, "watermark": _text(watermark),
        "horizon_start": _text(horizon), "warnings": warnings, "sensors": None,
        "differences": [], "truncated": False}
    try:
        session.prepare(lo, hi)
        if sample:
            sensors, report["sample_seed"] = session.sample(lo, hi, sample, seed)
        report["sensors"] = sensors
        grain = "day_sensor" if sensors is not None else "day_shard"
        level1 = session.compare(grain, lo, hi, sensors=sensors)
        if sensors and not sample:
            session.check_known(sensors, {group["sensor_id"] for group in level1}, lo, hi)
        report["groups"] = level1
        report["missing_files"] = session.missing_files(lo, hi, sensors)
        report["in_flight_keys"] = session.in_flight
        report["differences"], report["truncated"] = _drill(session, grain, level1, lo, hi)
    finally:
        session.close()
    bad = [group for group in level1 if group["status"] != "match"]
    report["totals"] = {"groups": len(level1), "differing_groups": len(bad),
                        "source_rows": sum(g["source_rows"] or 0 for g in level1),
                        "lake_rows": sum(g["lake_rows"] or 0 for g in level1)}
    report["verdict"] = "mismatch" if bad or report["missing_files"] else "match"
    report["seconds"] = round(time.monotonic() - began, 3)
    return report


@dataclass(frozen=True)
class CommittedFile:
    """A file the committed manifest lists, with its absolute path."""

    date: str
    shard: int
    location: str
    path: str
    rows: int
    files_in_shard_day: int
    on_disk: bool


def committed_files(settings: Settings, dataset: str,
                    entry: manifest.DatasetState) -> list[CommittedFile]:
    """Every committed file of `dataset`, by date, shard and path: hot files under
    TSLAKE_HOT_PATH/<dataset>, cold ones under TSLAKE_COLD_PATH/<dataset>. A path that
    leads out of its root (through a symlink) is a ManifestError: nothing outside the
    lake's roots is read."""
    listed = entry.files_of()
    per_shard_day: dict[tuple[str, int], int] = {}
    for date, _, file in listed:
        per_shard_day[date, file.shard] = per_shard_day.get((date, file.shard), 0) + 1
    found = []
    for date, partition, file in listed:
        root = _root(settings, dataset, partition.location, date)
        path = root / file.path
        on_disk = path.exists()
        if on_disk and not path.resolve().is_relative_to(root.resolve()):
            raise ManifestError(f"manifest at {settings.manifest_path} lists {file.path} of "
                                f"{dataset}, which leads outside {root}: restore the manifest "
                                "from a backup, or remove the link")
        found.append(CommittedFile(date=date, shard=file.shard, location=partition.location,
                                   path=str(path), rows=file.rows,
                                   files_in_shard_day=per_shard_day[date, file.shard],
                                   on_disk=on_disk))
    return sorted(found, key=lambda f: (f.date, f.shard, f.path))


def _root(settings: Settings, dataset: str, location: str, date: str) -> Path:
    if location == "cold":
        if settings.cold_path is None:
            raise ConfigError(f"partition {date} of {dataset} is in the cold tier but "
                              "TSLAKE_COLD_PATH is not set: set it to the cold lake's path")
        return settings.cold_path / dataset
    return settings.hot_path / dataset


def declaration(spec: DatasetSpec) -> dict[str, Any]:
    """The declaration in the form the parity macros take (parity_check_declaration)."""
    return {"key": list(spec.key), "series": spec.series, "time": spec.time,
            "version": spec.version, "columns": [list(column) for column in spec.columns]}


def _clip(start: datetime | None, end: datetime | None, horizon: datetime,
          limit: datetime, ahead: bool = False) -> tuple[datetime, datetime | None, list[str]]:
    """The window inside the lake: from its horizon to the watermark (`limit`), or to the
    end of its newest partition (`ahead`: times run past the watermark)."""
    if start is None or end is None:
        return horizon, None, []
    warnings, lo, hi = [], start, end
    if lo < horizon:
        warnings.append(f"--start {_text(start)} is before the lake's horizon (its oldest "
                        f"partition, {_text(horizon)}): compared from there")
        lo = horizon
    if hi > limit and ahead:
        warnings.append(f"--end {_text(end)} is past the lake's newest partition (up to "
                        f"{_text(limit)}): compared up to there")
        hi = limit
    elif hi > limit:
        warnings.append(f"--end {_text(end)} is past the watermark {_text(limit)}: rows "
                        "after it may still be in flight; compared up to the watermark")
        hi = limit
    if lo >= hi:
        raise ConfigError(f"the window {_text(start)} .. {_text(end)} is outside the lake "
                          f"({_text(horizon)} .. {_text(limit)}): choose a window inside it")
    return lo, hi, warnings


def _drill(session: _Session, grain: str, level1: list[dict[str, Any]], lo: datetime,
           hi: datetime | None) -> tuple[list[dict[str, Any]], bool]:
    """Differing groups -> differing sensor-days -> hour ranges and example rows."""
    truncated = False
    bad = [group for group in level1 if group["status"] != "match"]
    if not bad:
        return [], truncated
    if grain == "day_shard":
        if len(bad) > MAX_SHARD_DAYS:
            bad, truncated = bad[:MAX_SHARD_DAYS], True
        wanted = {(group["date"], group["shard"]) for group in bad}
        days = sorted({date for date, _ in wanted})
        rows = session.compare("day_sensor", *_span(days, lo, hi),
                               shards=sorted({shard for _, shard in wanted}))
        bad = [row for row in rows if row["status"] != "match"
               and (row["date"], row["shard"]) in wanted]
    if len(bad) > MAX_SENSOR_DAYS:
        bad, truncated = bad[:MAX_SENSOR_DAYS], True
    if not bad:
        return [], truncated
    days = sorted({row["date"] for row in bad})
    hours = session.compare("hour_sensor", *_span(days, lo, hi),
                            sensors=sorted({row["sensor_id"] for row in bad}))
    for number, difference in enumerate(bad):
        key = (difference["date"], difference["sensor_id"])
        differing = [hour for hour in hours if hour["status"] != "match"
                     and (hour["date"], hour["sensor_id"]) == key]
        difference["time_ranges"] = _ranges(differing)
        difference["examples"] = []
        if number < MAX_ROW_TARGETS and difference["time_ranges"]:
            first = difference["time_ranges"][0]
            until = manifest.parse_rfc3339(first["to"])
            rows = session.compare("row_sensor", max(lo, manifest.parse_rfc3339(first["from"])),
                                   until if hi is None else min(until, hi),
                                   sensors=[difference["sensor_id"]])
            difference["examples"] = [_example(row) for row in rows
                                      if row["status"] != "match"][:MAX_EXAMPLES]
    return bad, truncated


def _example(row: dict[str, Any]) -> dict[str, Any]:
    """A differing key: its time (`ts`), its other key columns (`key`, when the key has
    more than series and time) and what differs."""
    example = {"ts": row["bucket"], "status": row["status"]}
    if row["key"]:
        example["key"] = row["key"]
    return example


def _span(days: list[str], lo: datetime, hi: datetime | None) -> tuple[datetime, datetime | None]:
    first = datetime.fromisoformat(days[0] + "T00:00:00+00:00")
    last = datetime.fromisoformat(days[-1] + "T00:00:00+00:00") + timedelta(days=1)
    return max(first, lo), last if hi is None else min(last, hi)


def _ranges(hours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adjacent differing hours of one sensor-day merged into [from, to) ranges."""
    ranges: list[dict[str, Any]] = []
    for hour in sorted(hours, key=lambda h: h["bucket"]):
        start = manifest.parse_rfc3339(hour["bucket"])
        if ranges and ranges[-1]["to"] == _text(start):
            current = ranges[-1]
            current["to"] = _text(start + timedelta(hours=1))
            current["source_rows"] += hour["source_rows"] or 0
            current["lake_rows"] += hour["lake_rows"] or 0
        else:
            ranges.append({"from": _text(start), "to": _text(start + timedelta(hours=1)),
                           "source_rows": hour["source_rows"] or 0,
                           "lake_rows": hour["lake_rows"] or 0})
    return ranges


class _Session:
    """One DuckDB database with Postgres attached; the source side of each comparison runs
    on a second connection, concurrently with the lake side."""

    def __init__(self, settings: Settings, spec: DatasetSpec, shards: int, watermark: datetime,
                 files: list[CommittedFile]) -> None:
        self.settings, self.spec, self.shards = settings, spec, shards
        self.watermark, self.files = watermark, files
        self.declaration = declaration(spec)
        self.extra_key = [name for name in spec.key if name not in (spec.series, spec.time)]
        self.conn = connect(settings, attach=True)
        self.source_conn = self.conn.cursor()
        configure_session(self.source_conn, settings)
        self.in_flight = 0

    def close(self) -> None:
        self.source_conn.close()
        self.conn.close()

    def prepare(self, lo: datetime, hi: datetime | None) -> None:
        """The in-flight keys of the window."""
        self._bind(lo, hi, None, [], [])
        inflight = sqlmacros.render("parity_source_inflight", declaration=self.declaration,
                                    schema=self.spec.source_schema,
                                    table=self.spec.source_table, **_BOUNDS)
        self._run(self.conn, f"create or replace table parity_inflight as {inflight}", "source")
        row = self.conn.execute("select count(*) from parity_inflight").fetchone()
        self.in_flight = int(row[0]) if row else 0

    def sample(self, lo: datetime, hi: datetime | None, count: int,
               seed: int | None) -> tuple[list[str], int]:
        """`count` series drawn from those the lake has in the window (a spot check;
        `--all` is the exhaustive one)."""
        files = [f.path for f in self._files(lo, hi, None, None) if f.on_disk]
        self._bind(lo, hi, None, files, [])
        series, when = _quoted(self.spec.series), _quoted(self.spec.time)
        names = sorted(row[0] for row in self.conn.execute(
            f"select distinct {series} from read_parquet(getvariable('tslake_parity_single')) "
            f"where {when} >= getvariable('tslake_parity_from') "
            f"and {when} < getvariable('tslake_parity_to')").fetchall()) if files else []
        seed = random.SystemRandom().randrange(1 << 31) if seed is None else seed
        return random.Random(seed).sample(names, min(count, len(names))), seed

    def check_known(self, wanted: list[str], seen: set[str], lo: datetime,
                    hi: datetime | None) -> None:
        """Series ids named with --sensor-ids that neither side has in the window must
        exist in Postgres at all (an indexed look-up), else it is a ConfigError."""
        unseen = [name for name in wanted if name not in seen]
        if not unseen:
            return
        self.source_conn.execute("set variable tslake_parity_sensors = ?::varchar[]", [unseen])
        known_sql = sqlmacros.render("parity_source_known", declaration=self.declaration,
                                     schema=self.spec.source_schema,
                                     table=self.spec.source_table,
                                     sensors="getvariable('tslake_parity_sensors')")
        try:
            known = {row[0] for row in self.source_conn.execute(known_sql).fetchall()}
        except duckdb.Error as error:
            raise SourceError(f"looking up --sensor-ids in {self.spec.source_schema}."
                              f"{self.spec.source_table} failed: {' '.join(str(error).split())}"
                              "; check that Postgres is up") from None
        unknown = [name for name in unseen if name not in known]
        if unknown:
            files = [f.path for f in self._files(lo, hi, None, None) if f.on_disk][:50]
            column = _quoted(self.spec.series)
            some = sorted(row[0] for row in self.conn.execute(
                f"select distinct {column} from read_parquet(?) limit 5", [files]).fetchall()
                ) if files else []
            examples = ", ".join(repr(name) for name in some) or "none in the window"
            raise ConfigError(f"--sensor-ids: dataset {self.spec.name} has no {self.spec.series} "
                              f"{', '.join(repr(name) for name in unknown[:5])} (it has e.g. "
                              f"{examples}): check the ids, or the --dataset")

    def compare(self, grain: str, lo: datetime, hi: datetime | None, *,
                sensors: list[str] | None = None,
                shards: list[int] | None = None) -> list[dict[str, Any]]:
        files = [f for f in self._files(lo, hi, sensors, shards) if f.on_disk]
        single = [f.path for f in files if f.files_in_shard_day == 1]
        multi = [f.path for f in files if f.files_in_shard_day > 1]
        self._bind(lo, hi, sensors, single, multi)
        sensors_expression = None if sensors is None else "getvariable('tslake_parity_sensors')"
        lake = sqlmacros.render(
            "parity_lake_aggregates", declaration=self.declaration, grain=grain,
            shards=self.shards,
            single_files="getvariable('tslake_parity_single')" if single else None,
            multi_files="getvariable('tslake_parity_multi')" if multi else None,
            ts_from=_BOUNDS["ts_from"], ts_to=_BOUNDS["ts_to"],
            exclude="select * from parity_inflight", sensors=sensors_expression,
            shard_filter=shards)
        source = sqlmacros.render(
            "parity_source_aggregates", declaration=self.declaration,
            schema=self.spec.source_schema, table=self.spec.source_table, grain=grain,
            shards=self.shards, sensors=sensors_expression, shard_filter=shards, **_BOUNDS)
        failure: list[BaseException] = []

        def source_side() -> None:
            try:
                self._run(self.source_conn, f"create or replace table parity_source as {source}",
                          "source")
            except BaseException as error:  # re-raised below, in the caller's thread
                failure.append(error)

        worker = threading.Thread(target=source_side, name="tslake-parity-source")
        worker.start()
        try:
            self._run(self.conn, f"create or replace table parity_lake as {lake}", "lake")
        finally:
            worker.join()
        if failure:
            raise failure[0]
        extra = self.extra_key if grain == "row_sensor" else []
        compared = sqlmacros.render("parity_compare", lake="select * from parity_lake",
                                    source="select * from parity_source", key_columns=extra)
        order = ", ".join(["bucket", "shard", "series", *(f'"key_{name}"' for name in extra)])
        rows = _rows(self.conn.execute(f"{compared} order by {order}"))
        for row in rows:
            row["sensor_id"] = row.pop("series")
            row["key"] = {name: _value(row.pop(f"key_{name}")) for name in extra}
            row["date"] = row["bucket"].date().isoformat()
            row["bucket"] = _text(row["bucket"].replace(tzinfo=UTC))
            for key in ("source_min_ts", "lake_min_ts", "source_max_ts", "lake_max_ts"):
                row[key] = _text(row[key])
        return rows

    def missing_files(self, lo: datetime, hi: datetime | None,
                      sensors: list[str] | None) -> list[dict[str, Any]]:
        return [{"date": f.date, "shard": f.shard, "location": f.location, "path": f.path}
                for f in self._files(lo, hi, sensors, None) if not f.on_disk]

    def _files(self, lo: datetime, hi: datetime | None, sensors: list[str] | None,
               shards: list[int] | None) -> list[CommittedFile]:
        first = lo.date().isoformat()
        last = None if hi is None else days_in(lo, hi)[-1]
        wanted = set(shards) if shards is not None else None
        if sensors is not None:
            shard_of = sqlmacros.render("shard_of", sensor_id="s", shards=self.shards)
            found = self.conn.execute(f"select distinct {shard_of} from unnest(?) as t(s)",
                                      [sensors]).fetchall()
            by_sensor = {int(row[0]) for row in found}
            wanted = by_sensor if wanted is None else wanted & by_sensor
        return [f for f in self.files if f.date >= first and (last is None or f.date <= last)
                and (wanted is None or f.shard in wanted)]

    def _bind(self, lo: datetime, hi: datetime | None, sensors: list[str] | None,
              single: list[str], multi: list[str]) -> None:
        values = {"from": _text(lo), "to": _text(hi) if hi else _FAR_FUTURE,
                  "watermark": _text(self.watermark)}
        for conn in (self.conn, self.source_conn):
            for name, value in values.items():
                conn.execute(f"set variable tslake_parity_{name} = ?::timestamptz", [value])
            conn.execute("set variable tslake_parity_sensors = ?::varchar[]", [sensors or []])
            conn.execute("set variable tslake_parity_single = ?::varchar[]", [single])
            conn.execute("set variable tslake_parity_multi = ?::varchar[]", [multi])

    def _run(self, conn: duckdb.DuckDBPyConnection, sql: str, side: str) -> None:
        try:
            conn.execute(sql)
        except duckdb.Error as error:
            reason = " ".join(str(error).split())
            if side == "source":
                raise SourceError(f"the Postgres side of the parity check failed: {reason}; "
                                  "check that Postgres is up and the role can read "
                                  f"{self.spec.source_schema}.{self.spec.source_table}") from None
            raise ManifestError(f"reading the lake's committed files failed: {reason}; "
                                "run `tslake parity` again, or `tslake repair` over the "
                                "days it names") from None


_BOUNDS = {"ts_from": "getvariable('tslake_parity_from')",
           "ts_to": "getvariable('tslake_parity_to')",
           "watermark": "getvariable('tslake_parity_watermark')"}


def _rows(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [column[0] for column in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _quoted(column: str) -> str:
    """A declared column (validated: lowercase letters, digits, _) as a DuckDB identifier."""
    return f'"{column}"'


def _value(item: Any) -> Any:
    """A key value in a report: timestamps as RFC 3339, the rest as they are."""
    return _text(item) if isinstance(item, datetime) else item


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else manifest.rfc3339(moment)
