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

import time
from datetime import datetime, timedelta
from typing import Any

from runner.config import Settings
from runner.core import datasets, manifest
from runner.errors import ConfigError, ManifestError
from runner.ops.parity_session import (
    ParitySession,
    committed_files,
    text,
)

MAX_SHARD_DAYS = 200   # differing (day, shard) groups drilled into sensors
MAX_SENSOR_DAYS = 50   # differing (day, sensor) groups drilled into hours
MAX_ROW_TARGETS = 10   # differing (day, sensor) groups drilled into example rows
MAX_EXAMPLES = 20      # example rows per (day, sensor)


def run_parity(settings: Settings, dataset: str, *, start: datetime | None = None,
               end: datetime | None = None, sensors: list[str] | None = None,
               sample: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """Compare `dataset` with Postgres; `start`/`end` None means the whole lake horizon.
    `sensors` (and `sample`) are ids of the dataset's series column.
    Returns the report (JSON-able); `report["verdict"]` is "match" or "mismatch"."""
    began = time.monotonic()
    (spec,) = datasets.select(settings.datasets, dataset)
    if spec.lake_source is not None:  # derived/v1: recomputed from Postgres, per bucket
        from runner.derived.parity import run_derived_parity
        return run_derived_parity(settings, spec, start=start, end=end, sensors=sensors)
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
    session = ParitySession(settings, spec, entry.shards, watermark, files)
    report: dict[str, Any] = {
        "dataset": dataset, "source_table": f"{spec.source_schema}.{spec.source_table}",
        "series_column": spec.series, "key": list(spec.key),
        "generated_at": manifest.rfc3339(manifest.utc_now()),
        "mode": "sample" if sample else "sensors" if sensors else
        "all" if start is None else "window",
        "window": {"from": text(lo), "to": text(hi)}, "watermark": text(watermark),
        "horizon_start": text(horizon), "warnings": warnings, "sensors": None,
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


def _clip(start: datetime | None, end: datetime | None, horizon: datetime,
          limit: datetime, ahead: bool = False) -> tuple[datetime, datetime | None, list[str]]:
    """The window inside the lake: from its horizon to the watermark (`limit`), or to the
    end of its newest partition (`ahead`: times run past the watermark)."""
    if start is None or end is None:
        return horizon, None, []
    warnings, lo, hi = [], start, end
    if lo < horizon:
        warnings.append(f"--start {text(start)} is before the lake's horizon (its oldest "
                        f"partition, {text(horizon)}): compared from there")
        lo = horizon
    if hi > limit and ahead:
        warnings.append(f"--end {text(end)} is past the lake's newest partition (up to "
                        f"{text(limit)}): compared up to there")
        hi = limit
    elif hi > limit:
        warnings.append(f"--end {text(end)} is past the watermark {text(limit)}: rows "
                        "after it may still be in flight; compared up to the watermark")
        hi = limit
    if lo >= hi:
        raise ConfigError(f"the window {text(start)} .. {text(end)} is outside the lake "
                          f"({text(horizon)} .. {text(limit)}): choose a window inside it")
    return lo, hi, warnings


def _drill(session: ParitySession, grain: str, level1: list[dict[str, Any]], lo: datetime,
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
        if ranges and ranges[-1]["to"] == text(start):
            current = ranges[-1]
            current["to"] = text(start + timedelta(hours=1))
            current["source_rows"] += hour["source_rows"] or 0
            current["lake_rows"] += hour["lake_rows"] or 0
        else:
            ranges.append({"from": text(start), "to": text(start + timedelta(hours=1)),
                           "source_rows": hour["source_rows"] or 0,
                           "lake_rows": hour["lake_rows"] or 0})
    return ranges
