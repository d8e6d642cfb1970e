"""`tslake compact`: compaction on demand, under the lake's lock.

The SQL lives in dbt macros (`lake_compact` and what it calls: `compaction_candidates`,
`write_compacted_shard_day`); the commit is `publish.publish_segments` with the inputs in
`replace_paths`. This module checks the arguments before any SQL runs, holds the lock,
runs `dbt run-operation lake_compact` in-process and reports what the manifest recorded.

On demand, every hot shard-day with more than one file is compacted (an operator who
types `tslake compact` wants the lake compact now); after a tick only shard-days with more
than TSLAKE_COMPACT_MIN_FILES files are (the trigger keeps ticks cheap).
"""

from __future__ import annotations

import re
from datetime import date as Date
from typing import Any

from runner.config import Settings
from runner.core import manifest, publish
from runner.dbt_bridge.invoke import run_dbt
from runner.errors import ConfigError

ON_DEMAND_MIN_FILES = 1  # `tslake compact`: every shard-day that is not one file yet
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def parse_date(text: str) -> str:
    """A UTC calendar date as YYYY-MM-DD, or ConfigError (checked before any SQL runs)."""
    try:
        if not _DATE.match(text):
            raise ValueError(text)
        return Date.fromisoformat(text).isoformat()
    except ValueError:
        raise ConfigError(f"--date {text!r} is not a calendar date: give a UTC date like "
                          "2026-01-22 (YYYY-MM-DD)") from None


def compact(settings: Settings, *, dataset: str | None = None,
            date: str | None = None) -> dict[str, Any]:
    """Compact every hot shard-day with more than one file (of `dataset`, on `date`), one
    manifest commit per shard-day. Returns per dataset what this run compacted."""
    if date is not None:
        date = parse_date(date)
    before = _last_compactions(settings)
    if dataset is not None and dataset not in before:
        known = ", ".join(sorted(before)) or "none yet"
        raise ConfigError(f"--dataset {dataset!r} is not in the lake (datasets: {known}): "
                          "give one of those, or run `tslake tick` first")
    arguments: dict[str, Any] = {"min_files": ON_DEMAND_MIN_FILES}
    if dataset is not None:
        arguments["dataset"] = dataset
    if date is not None:
        arguments["date"] = date
    from runner.dbt_bridge import (
        plugin as dbt_plugin,  # imports dbt (about a second): only when compacting
    )

    with (publish.writing(settings, "tslake compact"),
          dbt_plugin.without_source()):  # compaction reads no Postgres: works while it is down
        run_dbt(settings, ["run-operation", "lake_compact"], macro_args=arguments)
    report: dict[str, Any] = {}
    for name, last in _last_compactions(settings).items():
        if dataset not in (None, name):
            continue
        fresh = last is not None and last.get("run_id") != (before.get(name) or {}).get("run_id")
        report[name] = dict(last) if fresh and last else {
            "run_id": None, "shard_days": 0, "files_in": 0, "rows_in": 0, "rows_out": 0}
        report[name]["max_files_per_shard_day"] = _max_files_per_shard_day(settings, name, date)
    return report


def _last_compactions(settings: Settings) -> dict[str, dict[str, Any] | None]:
    document = manifest.load(settings.manifest_path) or {"datasets": {}}
    return {name: entry.get("last_compaction") for name, entry in document["datasets"].items()}


def _max_files_per_shard_day(settings: Settings, dataset: str, date: str | None) -> int:
    document = manifest.load(settings.manifest_path) or {"datasets": {}}
    counts: dict[tuple[str, int], int] = {}
    for day, partition in document["datasets"][dataset]["partitions"].items():
        if date in (None, day) and partition["location"] == "hot":
            for file in partition["files"]:
                counts[day, file["shard"]] = counts.get((day, file["shard"]), 0) + 1
    return max(counts.values(), default=0)
