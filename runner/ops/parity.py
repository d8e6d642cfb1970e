"""`tslake parity`: an exact Postgres <-> lake comparison, with drill-down.

Both sides are aggregated where the rows are: Postgres in one pushed-down
`postgres_query` per level (rows with `inserted_at <= computed_through_ts` only), the lake
by DuckDB over the files the committed manifest lists (hot and cold, newest version per
key). Each group carries a row count, min/max ts and the sum of per-row md5 checksums of
(ts, value, quality): equal sums mean equal rows, whatever their order. The SQL is the
dbt project's `macros/parity/` (rendered by runner/dbt_bridge/sqlmacros.py), the same
`dbt test` runs.

Level 1 compares per day and shard (or per day and sensor when sensors are named); each
differing group is drilled into sensors, then hours, then example rows. Keys with a
version newer than the watermark in Postgres (in flight) are left out on both sides.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from runner.cli_params import days_in
from runner.config import Settings
from runner.core import datasets, manifest
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
    Returns the report (JSON-able); `report["verdict"]` is "match" or "mismatch"."""
    began = time.monotonic()
    spec = datasets.select(settings.datasets, dataset)[0]
    document = manifest.load(settings.manifest_path)
    entry = document.datasets.get(dataset) if document else None
    if not entry or not entry.computed_through_ts or not entry.partitions:
        raise ManifestError(f"dataset {dataset} has nothing committed in "
                            f"{settings.manifest_path}: run `tslake backfill` first")
    watermark = manifest.parse_rfc3339(entry.computed_through_ts)
    horizon = datetime.fromisoformat(min(entry.partitions) + "T00:00:00+00:00")
    lo, hi, warnings = _clip(start, end, horizon, watermark)
    schema, table = spec.source_schema, spec.source_table
    session = _Session(settings, dataset, entry.shards, schema, table, watermark)
    report: dict[str, Any] = {
        "dataset": dataset, "source_table": f"{schema}.{table}",
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


def _clip(start: datetime | None, end: datetime | None, horizon: datetime,
          watermark: datetime) -> tuple[datetime, datetime | None, list[str]]:
    if start is None or end is None:
        return horizon, None, []
    warnings, lo, hi = [], start, end
    if lo < horizon:
        warnings.append(f"--start {_text(start)} is before the lake's horizon (its oldest "
                        f"partition, {_text(horizon)}): compared from there")
        lo = horizon
    if hi > watermark:
        warnings.append(f"--end {_text(end)} is past the watermark {_text(watermark)}: rows "
                        "after it may still be in flight; compared up to the watermark")
        hi = watermark
    if lo >= hi:
        raise ConfigError(f"the window {_text(start)} .. {_text(end)} is outside the lake "
                          f"({_text(horizon)} .. {_text(watermark)}): choose a window inside it")
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
            difference["examples"] = [{"ts": row["bucket"], "status": row["status"]}
                                      for row in rows if row["status"] != "match"][:MAX_EXAMPLES]
    return bad, truncated


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

    def __init__(self, settings: Settings, dataset: str, shards: int, schema: str,
                 table: str, watermark: datetime) -> None:
        self.settings, self.dataset, self.shards = settings, dataset, shards
        self.schema, self.table, self.watermark = schema, table, watermark
        self.conn = connect(settings, attach=True)
        self.source_conn = self.conn.cursor()
        configure_session(self.source_conn, settings)
        self.files: list[dict[str, Any]] = []
        self.in_flight = 0

    def close(self) -> None:
        self.source_conn.close()
        self.conn.close()

    def prepare(self, lo: datetime, hi: datetime | None) -> None:
        """The committed file list, and the in-flight keys of the window."""
        listing = sqlmacros.render("lake_manifest_files", dataset=self.dataset,
                                   with_cold=self.settings.cold_path is not None)
        self.files = _rows(self.conn.execute(listing))
        self._bind(lo, hi, None, [], [])
        inflight = sqlmacros.render("parity_source_inflight", schema=self.schema,
                                    table=self.table, **_BOUNDS)
        self._run(self.conn, f"create or replace table parity_inflight as {inflight}", "source")
        row = self.conn.execute("select count(*) from parity_inflight").fetchone()
        self.in_flight = int(row[0]) if row else 0

    def sample(self, lo: datetime, hi: datetime | None, count: int,
               seed: int | None) -> tuple[list[str], int]:
        """`count` sensors drawn from those the lake has in the window (a spot check;
        `--all` is the exhaustive one)."""
        files = [f["path"] for f in self._files(lo, hi, None, None) if f["on_disk"]]
        self._bind(lo, hi, None, files, [])
        names = sorted(row[0] for row in self.conn.execute(
            "select distinct sensor_id from read_parquet(getvariable('tslake_parity_single')) "
            "where ts >= getvariable('tslake_parity_from') "
            "and ts < getvariable('tslake_parity_to')").fetchall()) if files else []
        seed = random.SystemRandom().randrange(1 << 31) if seed is None else seed
        return random.Random(seed).sample(names, min(count, len(names))), seed

    def compare(self, grain: str, lo: datetime, hi: datetime | None, *,
                sensors: list[str] | None = None,
                shards: list[int] | None = None) -> list[dict[str, Any]]:
        files = [f for f in self._files(lo, hi, sensors, shards) if f["on_disk"]]
        single = [f["path"] for f in files if f["files_in_shard_day"] == 1]
        multi = [f["path"] for f in files if f["files_in_shard_day"] > 1]
        self._bind(lo, hi, sensors, single, multi)
        sensors_expression = None if sensors is None else "getvariable('tslake_parity_sensors')"
        lake = sqlmacros.render(
            "parity_lake_aggregates", grain=grain, shards=self.shards,
            single_files="getvariable('tslake_parity_single')" if single else None,
            multi_files="getvariable('tslake_parity_multi')" if multi else None,
            ts_from=_BOUNDS["ts_from"], ts_to=_BOUNDS["ts_to"],
            exclude="select * from parity_inflight", sensors=sensors_expression,
            shard_filter=shards)
        source = sqlmacros.render(
            "parity_source_aggregates", schema=self.schema, table=self.table, grain=grain,
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
        compared = sqlmacros.render("parity_compare", lake="select * from parity_lake",
                                    source="select * from parity_source")
        rows = _rows(self.conn.execute(f"{compared} order by bucket, shard, sensor_id"))
        for row in rows:
            row["date"] = row["bucket"].date().isoformat()
            row["bucket"] = _text(row["bucket"].replace(tzinfo=UTC))
            for key in ("source_min_ts", "lake_min_ts", "source_max_ts", "lake_max_ts"):
                row[key] = _text(row[key])
        return rows

    def missing_files(self, lo: datetime, hi: datetime | None,
                      sensors: list[str] | None) -> list[dict[str, Any]]:
        return [{"date": f["date"], "shard": f["shard"], "location": f["location"],
                 "path": f["path"]} for f in self._files(lo, hi, sensors, None)
                if not f["on_disk"]]

    def _files(self, lo: datetime, hi: datetime | None, sensors: list[str] | None,
               shards: list[int] | None) -> list[dict[str, Any]]:
        first = lo.date().isoformat()
        last = None if hi is None else days_in(lo, hi)[-1]
        wanted = set(shards) if shards is not None else None
        if sensors is not None:
            shard_of = sqlmacros.render("shard_of", sensor_id="s", shards=self.shards)
            found = self.conn.execute(f"select distinct {shard_of} from unnest(?) as t(s)",
                                      [sensors]).fetchall()
            by_sensor = {int(row[0]) for row in found}
            wanted = by_sensor if wanted is None else wanted & by_sensor
        return [f for f in self.files if f["date"] >= first and (last is None or f["date"] <= last)
                and (wanted is None or f["shard"] in wanted)]

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
                                  f"{self.schema}.{self.table}") from None
            raise ManifestError(f"reading the lake's committed files failed: {reason}; "
                                "run `tslake parity` again, or `tslake repair` over the "
                                "days it names") from None


_BOUNDS = {"ts_from": "getvariable('tslake_parity_from')",
           "ts_to": "getvariable('tslake_parity_to')",
           "watermark": "getvariable('tslake_parity_watermark')"}


def _rows(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [column[0] for column in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else manifest.rfc3339(moment)
