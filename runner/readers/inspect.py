"""`tslake inspect`: the lake as JSON — paths, watermarks, per-date partition stats, for
every dataset in the manifest (the CLI narrows it with --dataset and --date)."""

from __future__ import annotations

from typing import Any

from runner.config import Settings
from runner.core import iceberg, manifest, tiers
from runner.core.manifest import DatasetState, Partition
from runner.core.publish import dataset_root


def inspect_lake(settings: Settings, *, date: str | None = None) -> dict[str, Any]:
    """The lake's report; with `date`, each dataset's partitions are only that date's (the
    totals stay the whole dataset's)."""
    document = manifest.load(settings.manifest_path)
    report: dict[str, Any] = {
        "hot_path": str(settings.hot_path),
        "cold_path": settings.cold_url or (str(settings.cold_path) if settings.cold_path
                                           else None),
        "manifest_path": str(settings.manifest_path),
        "manifest": None,
        "datasets": {},
    }
    if document is None:
        return report
    report["manifest"] = {"version": document.version, "generation": document.generation,
                          "updated_at": document.updated_at}
    now = manifest.utc_now()
    cold_problem = tiers.cold_status(settings)
    for name, entry in sorted(document.datasets.items()):
        watermark = entry.computed_through_ts
        lag = (now - manifest.parse_rfc3339(watermark)).total_seconds() if watermark else None
        partitions = {day: _partition_stats(partition)
                      for day, partition in sorted(entry.partitions.items())}
        declaration = entry.declaration
        report["datasets"][name] = {
            "computed_through_ts": watermark,
            "last_inserted_at": entry.last_inserted_at,
            "watermark_age_seconds": round(lag, 3) if lag is not None else None,
            "shards": entry.shards,
            "declaration": declaration.model_dump(mode="json") if declaration else None,
            "last_run": entry.last_run,
            "last_compaction": (entry.last_compaction.model_dump(mode="json")
                                if entry.last_compaction else None),
            "pending_deletes": len(entry.pending_deletes),
            "totals": {key: sum(p[key] for p in partitions.values())
                       for key in ("files", "bytes", "rows")},
            "uncommitted_files_on_disk": _uncommitted(settings, name, entry),
            # Cold partitions that cannot be read now, and why: the setting or the mount,
            # not missing data (README, "Hot and cold tiers").
            "cold_unreachable": _cold_unreachable(entry, name, cold_problem),
            # SPEC section 9: the current Iceberg metadata file (pyiceberg, iceberg_scan).
            "iceberg_metadata": iceberg.metadata_location(settings, name),
            "partitions": partitions if date is None
            else {day: stats for day, stats in partitions.items() if day == date},
        }
    return report


def _partition_stats(partition: Partition) -> dict[str, Any]:
    per_shard: dict[str, int] = {}
    for file in partition.files:
        key = f"{file.shard:02d}"
        per_shard[key] = per_shard.get(key, 0) + 1
    return {"location": partition.location, "files": partition.file_count,
            "bytes": partition.bytes, "rows": partition.rows,
            "files_per_shard": per_shard, "max_files_per_shard": max(per_shard.values(),
                                                                     default=0),
            "updated_at": partition.updated_at,
            "last_compacted_at": partition.last_compacted_at}


def _uncommitted(settings: Settings, dataset: str, entry: DatasetState) -> int:
    """Files a glob reader could see that the manifest does not list, in either tier (left
    by a killed run; the next writing command removes them), not counting pending deletes.
    An unmounted cold path counts nothing: `tslake retention` reports that one."""
    pending = {item.path for item in entry.pending_deletes}
    roots = {"hot": dataset_root(settings, dataset)}
    if settings.cold_path is not None and settings.cold_path.is_dir():  # (S3: never listed)
        roots["cold"] = settings.cold_path / dataset
    count = 0
    for location, root in roots.items():
        known = entry.committed_paths(location) | pending
        count += sum(1 for file in root.glob("date=*/shard=*/*")
                     if file.relative_to(root).as_posix() not in known)
    return count


def _cold_unreachable(entry: DatasetState, dataset: str,
                      problem: str | None) -> dict[str, Any] | None:
    dates = sorted(date for date, p in entry.partitions.items() if p.location == "cold")
    if problem is None or not dates:
        return None
    return {"partitions": len(dates), "first": dates[0], "last": dates[-1],
            "reason": f"{problem}: {len(dates)} partition(s) of {dataset} are in the cold tier "
                      "and cannot be read until it is set or mounted (nothing is missing; no "
                      "repair is needed)"}
