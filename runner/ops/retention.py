"""Retention (README, "Hot and cold tiers"): partitions older than the hot horizon leave
the hot tier.

A partition whose date is more than TSLAKE_HOT_RETENTION_DAYS days before the date of the
watermark (`computed_through_ts`, Postgres's clock) moves to TSLAKE_COLD_PATH when that is
set, and is deleted otherwise. With N days, the dates from watermark date - N up to today
stay hot: exactly the days `backfill --days N` writes. One manifest commit per partition:

1. copy each file into the cold tier (`tiers.copy_verified`: `*.tmp`, fsync, rename,
   read-back of the SHA-256 and the Parquet row count);
2. commit the manifest with the partition `location: cold` (the same relative paths);
3. delete the hot files.

Killed before step 2, the manifest still says hot and the hot files are intact; the cold
copies are leftovers that the next command deletes. Killed after it, the partition is cold
and complete; its hot files are leftovers. A reader that follows the manifest sees the
partition in exactly one tier at every instant. Without a cold path, step 1 is skipped and
the commit drops the partition.

Before copying, the date is recorded in `_state/cold-writes.json` (runner/core/tiers.py), so the
next command finds a killed move's cold leftovers without listing the whole NAS (or, in
object storage, by listing only that date's prefix). The steps and failpoints are the same
for a NAS and for an S3 cold tier; only `tiers.cold_tier()` differs.

It runs under the lake lock after every `dbt run` (the lake models' post-hook
`lake_retention`, so ticks, backfills, repairs and the service all keep the hot tier
bounded) and as `tslake retention`.
"""

from __future__ import annotations

import logging
import time
from datetime import date as date_type
from datetime import timedelta
from pathlib import Path
from typing import Any

from runner.config import Settings
from runner.core import datasets, iceberg, manifest, publish, tiers
from runner.core.durable import write_json_atomic
from runner.core.failpoints import failpoint
from runner.core.lock import lake_lock
from runner.core.manifest import DatasetState, LakeFile, Manifest
from runner.errors import ManifestError
from runner.readers import views

log = logging.getLogger("tslake.retention")


def cutoff_date(entry: DatasetState, retention_days: int) -> str | None:
    """Partitions with a date before this (YYYY-MM-DD) leave the hot tier; None before the
    first commit of a watermark."""
    watermark = entry.computed_through_ts
    if not watermark:
        return None
    return (manifest.parse_rfc3339(watermark).date() - timedelta(days=retention_days)).isoformat()


def due_partitions(entry: DatasetState, retention_days: int) -> list[str]:
    cutoff = cutoff_date(entry, retention_days)
    if cutoff is None:
        return []
    return [date for date in entry.hot_dates() if date < cutoff]


def apply_retention(settings: Settings, dataset: str,
                    document: Manifest | None = None) -> dict[str, Any]:
    """Move (or delete) every hot partition of `dataset` older than the hot horizon.
    `document` is the manifest the caller loaded under the lock (else it is loaded)."""
    started = time.monotonic()
    summary: dict[str, Any] = {"dataset": dataset, "action": "move" if settings.has_cold_tier
                               else "delete", "cutoff": None, "partitions": [], "files": 0,
                               "rows": 0, "bytes": 0}
    with lake_lock(settings.lock_path, settings.lock_timeout_seconds, f"retention {dataset}"):
        if document is None:
            document = manifest.load(settings.manifest_path)
        if document is None or dataset not in document.datasets:
            return summary
        entry = document.datasets[dataset]
        summary["cutoff"] = cutoff_date(entry, settings.hot_retention_days)
        due = due_partitions(entry, settings.hot_retention_days)
        if not due:
            return summary
        hot = publish.dataset_root(settings, dataset)
        cold = tiers.cold_tier(settings)
        if settings.cold_path is not None:
            tiers.cold_root(settings, dataset)  # a NAS that is not mounted: say so, move nothing
        try:
            _apply(settings, dataset, document, due, hot, cold, summary)
        finally:
            if cold is not None:
                cold.close()
        write_json_atomic(settings.replication_path, publish.replication_state(document))
        tiers.clear_cold_writes(settings)
    summary["seconds"] = round(time.monotonic() - started, 3)
    return summary


def _apply(settings: Settings, dataset: str, document: Manifest, due: list[str], hot: Path,
           cold: tiers.ColdTier | None, summary: dict[str, Any]) -> None:
    """One manifest commit per due partition (the module's steps 1-3)."""
    for date in due:
        # Changed on a copy, adopted once committed: a failed commit leaves `document`
        # as the file is (the caller may go on with it).
        work = manifest.draft(document, dataset)
        entry = work.datasets[dataset]
        files = list(entry.partitions[date].files)
        if cold is not None:
            tiers.record_cold_writes(settings, dataset, {date})
            _copy_partition(hot, cold, dataset, date, files)
            partition = manifest.own_partition(entry, date)
            partition.location = "cold"
            partition.updated_at = manifest.rfc3339(manifest.utc_now())
        else:
            del entry.partitions[date]
        grace = settings.delete_grace_seconds > 0
        if grace:  # readers of the previous commit keep their files for the grace
            manifest.schedule_deletes(entry, [file.path for file in files],
                                      manifest.utc_now())
        failpoint("retention_before_manifest_replace")
        manifest.save(settings.manifest_path, work)  # the commit point
        document.adopt(work)
        failpoint("retention_after_manifest_replace")
        iceberg.refresh(settings, document)
        views.refresh(settings, document)
        if not grace:
            _remove_hot_files(hot, files)
        summary["partitions"].append(date)
        summary["files"] += len(files)
        summary["rows"] += sum(file.rows for file in files)
        summary["bytes"] += sum(file.bytes for file in files)
        log.info("retention: %s %s %s (%d files, %d rows)", dataset,
                 "moved to the cold tier" if cold is not None else "deleted", date,
                 len(files), sum(file.rows for file in files))


def _copy_partition(hot: Path, cold: tiers.ColdTier, dataset: str, date: str,
                    files: list[LakeFile]) -> None:
    for number, file in enumerate(files):
        source = hot / file.path
        if not source.exists():
            after = (date_type.fromisoformat(date) + timedelta(days=1)).isoformat()
            raise ManifestError(f"committed file {source} is missing from the hot tier, so "
                                f"partition {date} cannot move: run `tslake repair --start "
                                f"{date} --end {after}` to re-export that day")
        cold.copy_verified(source, dataset, file.path, file.rows)
        if number == 0:
            failpoint("retention_after_cold_copy")


def _remove_hot_files(hot: Path, files: list[LakeFile]) -> None:
    for number, file in enumerate(files):
        (hot / file.path).unlink(missing_ok=True)
        if number == 0:
            failpoint("retention_during_hot_removal")
    for shard_dir in sorted({(hot / file.path).parent for file in files}):
        tiers.remove_empty_dirs(shard_dir)


def run_retention(settings: Settings, dataset: str | None = None) -> dict[str, Any]:
    """`tslake retention`: clean leftovers, then apply retention to each dataset."""
    specs = datasets.select(settings.datasets, dataset)
    with lake_lock(settings.lock_path, settings.lock_timeout_seconds, "tslake retention"):
        if manifest.load(settings.manifest_path) is None:
            return {}
        summaries = {}
        document = None
        for spec in specs:
            document = publish.open_write(settings, spec, "tslake retention", document=document)
        if document is not None:  # the explicit command also looks through the whole cold tier
            tiers.remove_cold_leftovers(settings, document, everything=True)
            for spec in specs:
                summaries[spec.name] = apply_retention(settings, spec.name, document)
    return summaries
