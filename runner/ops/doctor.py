"""`tslake doctor`: is the lake what its manifest says? And, with `--restore`, put back the
newest kept manifest generation whose files all exist.

Checks, per dataset: committed files missing on disk or of another size than the manifest
records (errors: readers would fail or read the wrong bytes), files on disk the manifest
does not list (a killed run's leftovers: the next writing command removes them), the cold
tier's reachability when a partition is cold, who holds the write lock, and a watermark
older than the service would call stale. Read-only: nothing is changed without --restore.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from runner.config import Settings
from runner.core import generations, lock, manifest, publish, roots
from runner.core.durable import write_json_atomic
from runner.core.manifest import DatasetState
from runner.errors import ColdTierError, ConfigError, ManifestError, TslakeError
from runner.readers import views
from runner.readers.status import stale_after_seconds

_LISTED_AT_MOST = 20  # paths shown per finding; the counts are always complete


def diagnose(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """The report: {"ok", "errors", "warnings", "datasets": {name: counts and paths},
    "lock", "generations"}."""
    now = now or manifest.utc_now()
    errors: list[str] = []
    warnings: list[str] = []
    report: dict[str, Any] = {"manifest": str(settings.manifest_path), "datasets": {},
                              "lock": lock.holder(settings.lock_path),
                              "generations": [path.name for path in
                                              generations.kept(settings.manifest_path)]}
    try:
        document = manifest.load(settings.manifest_path)
    except TslakeError as error:
        errors.append(str(error))
        document = None
    if document is None and not errors:
        warnings.append(f"no manifest at {settings.manifest_path}: the lake has never "
                        "committed (run `tslake tick` or `tslake backfill`)")
    for name, entry in sorted((document.datasets if document else {}).items()):
        report["datasets"][name] = _check_dataset(settings, name, entry, now, errors,
                                                  warnings)
    if report["lock"] is not None:
        warnings.append(f"the write lock {settings.lock_path} is held by {report['lock']}")
    report.update(ok=not errors, errors=errors, warnings=warnings)
    return report


def _check_dataset(settings: Settings, name: str, entry: DatasetState, now: datetime,
                   errors: list[str], warnings: list[str]) -> dict[str, Any]:
    missing: list[str] = []
    wrong_size: list[str] = []
    unlisted: list[str] = []
    unreachable: list[str] = []
    for location in ("hot", "cold"):
        files = [(date, file) for date, partition, file in entry.files_of(location)]
        if not files and location == "cold":
            continue
        try:  # an unset, unmounted or object-store cold tier: named, not listed file by file
            root = roots.dataset_root(settings, name, location)
        except (ConfigError, ColdTierError) as error:
            unreachable.append(str(error))
            continue
        for _, file in files:
            try:
                size = (root / file.path).stat().st_size
            except FileNotFoundError:
                missing.append(f"{location}:{file.path}")
                continue
            if size != file.bytes:
                wrong_size.append(f"{location}:{file.path} ({size} bytes, manifest "
                                  f"{file.bytes})")
        known = entry.committed_paths(location) | {item.path for item in entry.pending_deletes}
        unlisted += [f"{location}:{path}" for path in _on_disk(root) if path not in known]
    for problem, items in (("missing", missing), ("of another size than the manifest says",
                                                  wrong_size)):
        if items:
            errors.append(f"{name}: {len(items)} committed file(s) {problem}, e.g. {items[0]}: "
                          "run `tslake doctor --restore` (an earlier manifest whose files "
                          "exist), or `tslake repair` for those days")
    errors.extend(f"{name}: {text}" for text in unreachable)
    if unlisted:
        warnings.append(f"{name}: {len(unlisted)} file(s) on disk are not in the manifest "
                        f"(e.g. {unlisted[0]}): a killed run's leftovers; the next tick "
                        "removes them")
    watermark = entry.computed_through_ts
    stale_after = stale_after_seconds(settings)  # the service's and `tslake status`'s bound
    age = (now - manifest.parse_rfc3339(watermark)).total_seconds() if watermark else None
    if age is not None and age > stale_after:
        warnings.append(f"{name}: the watermark {watermark} is {age:.0f} s old (stale after "
                        f"{stale_after:.0f} s): is the timer or `tslake run` running?")
    return {"files": len(entry.files_of()), "missing": missing[:_LISTED_AT_MOST],
            "missing_count": len(missing), "wrong_size": wrong_size[:_LISTED_AT_MOST],
            "wrong_size_count": len(wrong_size), "unlisted": unlisted[:_LISTED_AT_MOST],
            "unlisted_count": len(unlisted), "watermark": watermark,
            "watermark_age_seconds": None if age is None else round(age, 1)}


def _on_disk(root: Path) -> list[str]:
    """Relative paths of the files under `date=*/shard=*/` of a dataset root."""
    found = []
    for directory, _, names in os.walk(root):
        relative = Path(directory).relative_to(root)
        if len(relative.parts) == 2 and relative.parts[0].startswith("date="):
            found += [(relative / name).as_posix() for name in names]
    return sorted(found)


def restore(settings: Settings) -> dict[str, Any]:
    """Under the write lock, replace the manifest with the newest kept generation that
    loads and whose committed files all exist with the recorded sizes. The restored
    manifest's generation continues the current one (readers see a new commit)."""
    with lock.lake_lock(settings.lock_path, settings.lock_timeout_seconds, "tslake doctor"):
        current = _current_generation(settings)
        rejected: list[str] = []
        for candidate in reversed(generations.kept(settings.manifest_path)):
            problem = _restorable(settings, candidate)
            if problem is not None:
                rejected.append(f"{candidate.name}: {problem}")
                continue
            document = manifest.load(candidate, hot_root=settings.hot_path)
            assert document is not None
            restored_from = document.generation
            document._file_stamp = manifest.file_stamp(settings.manifest_path)  # replaces it
            document.generation = max(current, restored_from)
            manifest.save(settings.manifest_path, document)
            write_json_atomic(settings.replication_path, publish.replication_state(document))
            views.refresh(settings, document)
            return {"restored": candidate.name, "generation_restored": restored_from,
                    "generation_now": document.generation, "rejected": rejected}
    where = generations.directory(settings.manifest_path)
    reasons = "; ".join(rejected) or "none is kept"
    raise ManifestError(f"no kept manifest generation in {where} has all its files ({reasons}): "
                        "move the lake aside and run `tslake backfill`")


def _current_generation(settings: Settings) -> int:
    """The generation of the manifest in place, read leniently (it may be the broken one)."""
    try:
        number = json.loads(settings.manifest_path.read_bytes()).get("generation", 0)
    except (OSError, ValueError, AttributeError):
        number = 0
    kept = [int(path.stem.split("-")[1]) for path in generations.kept(settings.manifest_path)]
    return max([number if isinstance(number, int) else 0, *kept])


def _restorable(settings: Settings, candidate: Path) -> str | None:
    try:
        document = manifest.load(candidate, hot_root=settings.hot_path)
    except TslakeError as error:
        return str(error)
    if document is None:
        return "gone"
    for name, entry in document.datasets.items():
        found = _missing_file(settings, name, entry)
        if found is not None:
            return found
    return None


def _missing_file(settings: Settings, name: str, entry: DatasetState) -> str | None:
    for _, partition, file in entry.files_of():
        try:
            path = roots.dataset_root(settings, name, partition.location) / file.path
            size = path.stat().st_size
        except (OSError, ConfigError):
            return f"{partition.location}:{file.path} of {name} is missing"
        if size != file.bytes:
            return f"{partition.location}:{file.path} of {name} has {size} bytes, not {file.bytes}"
    return None
