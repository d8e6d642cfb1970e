"""The manifest: the list of committed files and the watermark. Replacing it is the commit.

Layout (SPEC section 6, a superset):

    {"version": 1, "generation": 42, "updated_at": "...Z",
     "datasets": {"metrics/v1": {
        "computed_through_ts": "...Z", "last_inserted_at": "...Z", "shards": 8,
        "last_run": {...}, "last_compaction": {...},
        "pending_deletes": [{"path": "date=.../part-<run_id>.parquet", "replaced_at": "...Z"}],
        "partitions": {"2026-01-22": {"location": "hot", "updated_at": "...Z",
            "last_compacted_at": null, "file_count": 2, "rows": 10, "bytes": 2048,
            "files": [{"path": "date=2026-01-22/shard=03/part-<run_id>.parquet",
                       "shard": 3, "rows": 5, "bytes": 1024, "kind": "part",
                       "run_id": "..."}]}}}}}

File paths are relative to the dataset's root in the partition's location (hot or cold).
`pending_deletes` (only with TSLAKE_DELETE_GRACE_SECONDS > 0) lists files a commit replaced
that stay on disk for readers of the previous manifest until the grace has passed; they
are not part of the lake.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.core.durable import write_json_atomic
from runner.errors import ConfigError, ManifestError

MANIFEST_VERSION = 1

Manifest = dict[str, Any]


def rfc3339(moment: datetime) -> str:
    """UTC, microseconds only when present: 2026-01-23T10:15:00Z / ...:00.000123Z."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def parse_rfc3339(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return moment.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


def empty() -> Manifest:
    return {"version": MANIFEST_VERSION, "generation": 0, "updated_at": rfc3339(utc_now()),
            "datasets": {}}


def migrate(document: Manifest, path: Path) -> Manifest:
    """Step an older manifest forward to MANIFEST_VERSION (one place for every upgrade)."""
    version = document.get("version")
    if version == MANIFEST_VERSION:
        return document
    raise ManifestError(f"manifest at {path} has version {version!r}, this tslake reads "
                        f"version {MANIFEST_VERSION}: upgrade tslake, or restore a manifest "
                        "written by this version")


def load(path: Path) -> Manifest | None:
    """The committed manifest, or None when the lake has never committed anything."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        document = json.loads(raw)
    except ValueError:
        raise ManifestError(f"manifest at {path} is not valid JSON: restore it from a backup, "
                            "or move the lake aside and run `tslake backfill`") from None
    if not isinstance(document, dict) or not isinstance(document.get("datasets"), dict):
        raise ManifestError(f"manifest at {path} has no 'datasets' object: restore it from a "
                            "backup, or move the lake aside and run `tslake backfill`")
    return migrate(document, path)


def save(path: Path, document: Manifest) -> None:
    """Commit: bump the generation and replace the file atomically."""
    document["generation"] = int(document.get("generation", 0)) + 1
    document["updated_at"] = rfc3339(utc_now())
    write_json_atomic(path, document)


def dataset(document: Manifest, name: str, shards: int) -> dict[str, Any]:
    """The dataset's section, created on first use; refuses a different shard count."""
    entry = document["datasets"].setdefault(
        name, {"computed_through_ts": None, "last_inserted_at": None, "shards": shards,
               "partitions": {}})
    if entry["shards"] != shards:
        raise ConfigError(f"dataset {name} was written with TSLAKE_SHARDS={entry['shards']}, "
                          f"but TSLAKE_SHARDS is {shards}: set it back to {entry['shards']} "
                          "(changing it needs a new lake and a full backfill)")
    return entry


def committed_paths(entry: dict[str, Any], location: str = "hot") -> set[str]:
    """Relative paths of every committed file of a dataset in one location."""
    return {file["path"]
            for partition in entry["partitions"].values() if partition["location"] == location
            for file in partition["files"]}


def add_files(entry: dict[str, Any], files: list[dict[str, Any]], *,
              replace_dates: frozenset[str] = frozenset(),
              replace_paths: frozenset[str] = frozenset(), now: datetime) -> list[str]:
    """Add committed files; for dates in `replace_dates`, drop the files they had; drop the
    files in `replace_paths` (a compaction's inputs), which must be committed hot files.
    A partition that receives a `compact` file gets `last_compacted_at`.

    Returns the relative paths that left the manifest (to delete after the commit)."""
    removed: list[str] = []
    stamp = rfc3339(now)
    missing = sorted(replace_paths - committed_paths(entry))
    if missing:
        raise ManifestError(f"cannot replace {missing[0]}: the manifest does not list it (another "
                            "writer changed the lake); run the command again")
    touched: set[str] = set()
    for date, partition in entry["partitions"].items():
        gone = {file["path"] for file in partition["files"]
                if date in replace_dates or file["path"] in replace_paths}
        if gone:
            removed.extend(sorted(gone))
            partition["files"] = [file for file in partition["files"] if file["path"] not in gone]
            partition["updated_at"] = stamp
            touched.add(date)
    for file in files:
        partition = entry["partitions"].setdefault(
            file["date"], {"location": "hot", "updated_at": stamp, "last_compacted_at": None,
                           "files": []})
        partition["files"].append({key: file[key] for key in
                                   ("path", "shard", "rows", "bytes", "kind", "run_id")})
        partition["updated_at"] = stamp
        if file["kind"] == "compact":
            partition["last_compacted_at"] = stamp
    for date in {file["date"] for file in files} | touched:
        _refresh_totals(entry, date)
    return removed


def record_compaction(entry: dict[str, Any], summary: dict[str, Any]) -> None:
    """`last_compaction`: totals of the latest compaction run (one commit per shard-day)."""
    counters = ("shard_days", "files_in", "rows_in", "rows_out")
    last = entry.get("last_compaction") or {}
    if last.get("run_id") != summary["run_id"]:
        last = {"run_id": summary["run_id"], **dict.fromkeys(counters, 0)}
    for counter in counters:
        last[counter] += summary[counter]
    last["finished_at"] = summary["finished_at"]
    entry["last_compaction"] = last


def schedule_deletes(entry: dict[str, Any], paths: list[str], now: datetime) -> None:
    """Keep replaced files on disk for the grace period: list them as pending deletes."""
    pending = entry.setdefault("pending_deletes", [])
    pending.extend({"path": path, "replaced_at": rfc3339(now)} for path in paths)


def take_due_deletes(entry: dict[str, Any], now: datetime, grace_seconds: float) -> list[str]:
    """Remove the pending deletes whose grace has passed from the entry; return their paths."""
    due: list[dict[str, str]] = []
    kept: list[dict[str, str]] = []
    for item in entry.get("pending_deletes", []):
        age = (now - parse_rfc3339(item["replaced_at"])).total_seconds()
        (due if age >= grace_seconds else kept).append(item)
    if "pending_deletes" in entry:
        entry["pending_deletes"] = kept
    return [item["path"] for item in due]


def pending_paths(entry: dict[str, Any], now: datetime, grace_seconds: float) -> set[str]:
    """Replaced files still inside their grace period (not leftovers: keep them on disk)."""
    return {item["path"] for item in entry.get("pending_deletes", [])
            if (now - parse_rfc3339(item["replaced_at"])).total_seconds() < grace_seconds}


def _refresh_totals(entry: dict[str, Any], date: str) -> None:
    partition = entry["partitions"][date]
    if not partition["files"]:
        del entry["partitions"][date]
        return
    partition["files"].sort(key=lambda file: file["path"])
    partition["file_count"] = len(partition["files"])
    partition["rows"] = sum(file["rows"] for file in partition["files"])
    partition["bytes"] = sum(file["bytes"] for file in partition["files"])
