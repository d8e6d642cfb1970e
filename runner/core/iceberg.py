"""Iceberg metadata per dataset (SPEC section 9): the manifest's files as an Iceberg v2 table.

Every commit (tick, backfill, compaction, retention, repair) is followed by `refresh`,
which makes `${hot}/<dataset>/metadata/` name exactly the manifest's committed files, hot
and cold, in a new snapshot; no data file is read or rewritten. Layout (a Hadoop-catalog
table, so Spark's `type=hadoop` catalog with warehouse `${hot}` finds `metrics.v1`):

    metadata/v<N>.metadata.json         schema, day(<time>) partition spec, snapshots
    metadata/version-hint.text          N: the current version (replaced last: the commit)
    metadata/snap-<snapshot id>.avro    a snapshot's manifest list
    metadata/m-<date>-<digest>-<snapshot id>.avro   one manifest per date partition

One manifest per date, named by a digest of its files: a tick that touched one date writes
one manifest, reuses the others from the previous snapshot's list, and writes a new list
and metadata file, so a refresh costs the same at 9 or 90 days. pyiceberg supplies the
metadata model and the Avro writers, in runner/core/iceberg_writer.py: imported only by a
refresh with files to name (the import costs ~1 s, which readers and no-op commits skip).

The manifest stays the commit point: a process killed after the manifest replace and
before the refresh leaves Iceberg one generation behind, and the next writing command
(`publish.open_write`) catches it up. A dataset whose files did not change gets no new
snapshot (its files' digest is in the snapshot summary). History is bounded: the newest
`KEEP_SNAPSHOTS` snapshots and metadata files are kept; older ones, and manifests only
they named, are deleted. Data files are never deleted here: the manifest decides that.

The data files have no Iceberg field ids; the table's `schema.name-mapping.default` maps
the columns by name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from runner.config import Settings
from runner.core import tiers
from runner.core.manifest import DatasetState, Manifest
from runner.errors import TslakeError

log = logging.getLogger("tslake.iceberg")

KEEP_SNAPSHOTS = 10  # ~10 minutes of time travel at one tick a minute
VERSION_HINT = "version-hint.text"
FILES_DIGEST = "tslake.files-sha256"  # snapshot summary: which file set it names
GENERATION = "tslake.manifest-generation"
METADATA_FILE = re.compile(r"^v([0-9]+)\.metadata\.json$")
MANIFEST_FILE = re.compile(
    r"^m-(?P<date>[0-9-]{10})-(?P<digest>[0-9a-f]{20})-(?P<id>[0-9]+)\.avro$")
MANIFEST_LIST = re.compile(r"^snap-(?P<id>[0-9]+)\.avro$")


@dataclass(frozen=True)
class DateFiles:
    """One date partition's committed files as Iceberg sees them."""

    date: str
    files: tuple[tuple[str, int, int], ...]  # (absolute path or URL, rows, bytes)

    @property
    def digest(self) -> str:
        text = "\n".join(f"{path}\t{rows}\t{size}" for path, rows, size in self.files)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def metadata_dir(settings: Settings, dataset: str) -> Path:
    return settings.hot_path / dataset / "metadata"


def metadata_location(settings: Settings, dataset: str) -> str | None:
    """The absolute path of the dataset's current `v<N>.metadata.json` (None before the
    first refresh)."""
    version = _current_version(metadata_dir(settings, dataset))
    if version is None:
        return None
    return str(metadata_dir(settings, dataset) / f"v{version}.metadata.json")


def refresh(settings: Settings, document: Manifest) -> None:
    """Bring every dataset's Iceberg metadata to this (committed) manifest. A failure is
    logged, not raised: the commit already happened and the next command catches up."""
    for name, entry in sorted(document.datasets.items()):
        if entry.declaration is None:
            continue
        try:
            refresh_dataset(settings, name, entry, document.generation)
        except (OSError, TslakeError) as error:
            log.warning("Iceberg metadata of %s is not refreshed yet (%s); the lake's commit "
                        "stands and the next command catches it up", name, error)




def refresh_dataset(settings: Settings, dataset: str, entry: DatasetState,
                    generation: int) -> bool:
    """Write a snapshot naming exactly `entry`'s committed files; False when the current
    snapshot names them already (checked without pyiceberg, whose import costs ~1 s: a
    command whose commit changed no files, and every reader, never loads it)."""
    assert entry.declaration is not None
    directory = metadata_dir(settings, dataset)
    dates = _date_files(settings, dataset, entry)
    digest = hashlib.sha256("\n".join(f"{d.date}:{d.digest}" for d in dates).encode()).hexdigest()
    version = _current_version(directory)
    if version is not None and _current_digest(directory, version) == digest:
        return False
    from runner.core import iceberg_writer  # only when there is something to write

    iceberg_writer.write_snapshot(settings, dataset, entry, generation, dates, digest, version)
    return True


def _current_digest(directory: Path, version: int) -> str | None:
    """The file-set digest in the current snapshot's summary, read as plain JSON (None when
    unreadable: the writer then decides)."""
    try:
        metadata = json.loads((directory / f"v{version}.metadata.json").read_text())
        current = metadata.get("current-snapshot-id")
        for snapshot in metadata.get("snapshots", []):
            if snapshot.get("snapshot-id") == current:
                digest = (snapshot.get("summary") or {}).get(FILES_DIGEST)
                return digest if isinstance(digest, str) else None
    except (OSError, ValueError, AttributeError):
        return None
    return None


def _date_files(settings: Settings, dataset: str, entry: DatasetState) -> list[DateFiles]:
    roots: dict[str, str] = {}  # location -> the tier's dataset root, resolved once
    result = []
    for date, partition in sorted(entry.partitions.items()):
        if partition.location not in roots:
            roots[partition.location] = _tier_root(settings, dataset, partition.location)
        root = roots[partition.location]
        files = tuple(sorted((f"{root}/{file.path}", file.rows, file.bytes)
                             for file in partition.files))
        if files:
            result.append(DateFiles(date=date, files=files))
    return result


def _tier_root(settings: Settings, dataset: str, location: str) -> str:
    """Where a tier's committed files of `dataset` are: an absolute path (or URL)."""
    if location == "hot":
        return str(settings.hot_path / dataset)
    return tiers.cold_location(settings, dataset)  # a path, or s3://bucket/prefix/<dataset>






def _current_version(directory: Path) -> int | None:
    try:
        text = (directory / VERSION_HINT).read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None



