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
metadata model and the Avro writers.

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
import secrets
from dataclasses import dataclass
from datetime import date as date_type
from pathlib import Path

from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.manifest import (
    DataFile,
    DataFileContent,
    FileFormat,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
    read_manifest_list,
    write_manifest,
    write_manifest_list,
)
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table.metadata import (
    TableMetadata,
    TableMetadataUtil,
    TableMetadataV2,
    new_table_metadata,
)
from pyiceberg.table.name_mapping import create_mapping_from_schema
from pyiceberg.table.refs import MAIN_BRANCH, SnapshotRef, SnapshotRefType
from pyiceberg.table.snapshots import (
    MetadataLogEntry,
    Operation,
    Snapshot,
    SnapshotLogEntry,
    Summary,
)
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER
from pyiceberg.transforms import DayTransform
from pyiceberg.typedef import Record
from pyiceberg.types import (
    BooleanType,
    DateType,
    DoubleType,
    IcebergType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

from runner.config import Settings
from runner.core import tiers
from runner.core.durable import write_bytes_atomic, write_json_atomic
from runner.core.failpoints import failpoint
from runner.core.manifest import DatasetState, Declaration, Manifest
from runner.errors import TslakeError

log = logging.getLogger("tslake.iceberg")

KEEP_SNAPSHOTS = 10  # ~10 minutes of time travel at one tick a minute
VERSION_HINT = "version-hint.text"
_FILES_DIGEST = "tslake.files-sha256"  # snapshot summary: which file set it names
_GENERATION = "tslake.manifest-generation"
_METADATA_FILE = re.compile(r"^v([0-9]+)\.metadata\.json$")
_MANIFEST_FILE = re.compile(
    r"^m-(?P<date>[0-9-]{10})-(?P<digest>[0-9a-f]{20})-(?P<id>[0-9]+)\.avro$")
_MANIFEST_LIST = re.compile(r"^snap-(?P<id>[0-9]+)\.avro$")
_EPOCH = date_type(1970, 1, 1)
_TYPES: dict[str, IcebergType] = {
    "varchar": StringType(), "double": DoubleType(), "timestamptz": TimestamptzType(),
    "smallint": IntegerType(), "integer": IntegerType(), "bigint": LongType(),
    "boolean": BooleanType(), "date": DateType()}


@dataclass(frozen=True)
class _DateFiles:
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
    snapshot names them already."""
    assert entry.declaration is not None
    directory = metadata_dir(settings, dataset)
    dates = _date_files(settings, dataset, entry)
    digest = hashlib.sha256("\n".join(f"{d.date}:{d.digest}" for d in dates).encode()).hexdigest()
    version = _current_version(directory)
    metadata = _read_metadata(directory, version) if version is not None else None
    current = metadata.current_snapshot() if metadata is not None else None
    if current is not None and current.summary is not None \
            and current.summary.get(_FILES_DIGEST) == digest:
        return False
    directory.mkdir(parents=True, exist_ok=True)
    io = PyArrowFileIO()
    if metadata is None:
        metadata = _new_metadata(settings, dataset, entry.declaration, entry.source_columns)
    snapshot_id = secrets.randbits(62) + 1
    sequence = metadata.last_sequence_number + 1
    manifests = _manifests(directory, io, metadata, current, dates, snapshot_id)
    list_path = directory / f"snap-{snapshot_id}.avro"
    with write_manifest_list(format_version=2, output_file=io.new_output(str(list_path)),
                             snapshot_id=snapshot_id,
                             parent_snapshot_id=current.snapshot_id if current else None,
                             sequence_number=sequence, avro_compression="deflate") as lister:
        lister.add_manifests(manifests)
    snapshot = Snapshot.model_validate({
        "snapshot-id": snapshot_id,
        "parent-snapshot-id": current.snapshot_id if current else None,
        "sequence-number": sequence, "manifest-list": str(list_path),
        "schema-id": metadata.current_schema_id,
        "summary": Summary(operation=Operation.OVERWRITE, **{
            _FILES_DIGEST: digest, _GENERATION: str(generation),
            "total-data-files": str(sum(len(day.files) for day in dates)),
            "total-records": str(sum(rows for day in dates for _, rows, _ in day.files)),
            "total-delete-files": "0", "total-position-deletes": "0",
            "total-equality-deletes": "0"})})
    new_version = (version or 0) + 1
    updated = _with_snapshot(metadata, snapshot, directory, version)
    write_json_atomic(directory / f"v{new_version}.metadata.json",
                      json.loads(updated.model_dump_json()))
    failpoint("iceberg_before_version_hint")
    write_bytes_atomic(directory / VERSION_HINT, str(new_version).encode())  # Iceberg's commit
    _expire(directory, io, updated, new_version)
    return True


def _manifests(directory: Path, io: PyArrowFileIO, metadata: TableMetadataV2,
               current: Snapshot | None, dates: list[_DateFiles],
               snapshot_id: int) -> list[ManifestFile]:
    """One manifest per date: the previous snapshot's when the date's files are the same,
    else a new one."""
    reusable: dict[str, ManifestFile] = {}
    if current is not None:
        for manifest_file in read_manifest_list(io.new_input(current.manifest_list)):
            match = _MANIFEST_FILE.match(Path(manifest_file.manifest_path).name)
            if match:
                reusable[f"{match['date']}-{match['digest']}"] = manifest_file
    schema, spec = metadata.schema(), metadata.spec()
    manifests: list[ManifestFile] = []
    for day in dates:
        reused = reusable.get(f"{day.date}-{day.digest}")
        if reused is not None:
            manifests.append(reused)
            continue
        path = directory / f"m-{day.date}-{day.digest}-{snapshot_id}.avro"
        partition = Record((date_type.fromisoformat(day.date) - _EPOCH).days)
        with write_manifest(format_version=2, spec=spec, schema=schema,
                            output_file=io.new_output(str(path)), snapshot_id=snapshot_id,
                            avro_compression="deflate") as writer:
            for location, rows, size in day.files:
                writer.add_entry(_entry(snapshot_id, DataFile.from_args(
                    _table_format_version=2, content=DataFileContent.DATA,
                    file_path=location, file_format=FileFormat.PARQUET, partition=partition,
                    record_count=rows, file_size_in_bytes=size, sort_order_id=None,
                    spec_id=spec.spec_id, equality_ids=None, key_metadata=None)))
        manifests.append(writer.to_manifest_file())
    return manifests


def _with_snapshot(metadata: TableMetadataV2, snapshot: Snapshot, directory: Path,
                   version: int | None) -> TableMetadataV2:
    """`metadata` with `snapshot` current and only the newest KEEP_SNAPSHOTS kept."""
    kept = [*metadata.snapshots, snapshot][-KEEP_SNAPSHOTS:]
    kept_ids = {item.snapshot_id for item in kept}
    history = [*metadata.metadata_log]
    if version is not None:
        history.append(MetadataLogEntry.model_validate({
            "metadata-file": str(directory / f"v{version}.metadata.json"),
            "timestamp-ms": metadata.last_updated_ms}))
    log_entry = SnapshotLogEntry.model_validate({"snapshot-id": snapshot.snapshot_id,
                                                 "timestamp-ms": snapshot.timestamp_ms})
    return metadata.model_copy(update={
        "snapshots": kept, "current_snapshot_id": snapshot.snapshot_id,
        "last_sequence_number": snapshot.sequence_number,
        "last_updated_ms": snapshot.timestamp_ms,
        "refs": {MAIN_BRANCH: SnapshotRef.model_validate({
            "snapshot-id": snapshot.snapshot_id, "type": SnapshotRefType.BRANCH})},
        "snapshot_log": [item for item in [*metadata.snapshot_log, log_entry]
                         if item.snapshot_id in kept_ids],
        "metadata_log": history[-(KEEP_SNAPSHOTS - 1):]})


def _entry(snapshot_id: int, data_file: DataFile) -> ManifestEntry:
    return ManifestEntry.from_args(status=ManifestEntryStatus.ADDED, snapshot_id=snapshot_id,
                                   sequence_number=None, file_sequence_number=None,
                                   data_file=data_file)


def _date_files(settings: Settings, dataset: str, entry: DatasetState) -> list[_DateFiles]:
    roots: dict[str, str] = {}  # location -> the tier's dataset root, resolved once
    result = []
    for date, partition in sorted(entry.partitions.items()):
        if partition.location not in roots:
            roots[partition.location] = _tier_root(settings, dataset, partition.location)
        root = roots[partition.location]
        files = tuple(sorted((f"{root}/{file.path}", file.rows, file.bytes)
                             for file in partition.files))
        if files:
            result.append(_DateFiles(date=date, files=files))
    return result


def _tier_root(settings: Settings, dataset: str, location: str) -> str:
    """Where a tier's committed files of `dataset` are: an absolute path (or URL)."""
    if location == "hot":
        return str(settings.hot_path / dataset)
    return tiers.cold_location(settings, dataset)  # a path, or s3://bucket/prefix/<dataset>


def _new_metadata(settings: Settings, dataset: str, declaration: Declaration,
                  source_columns: dict[str, str] | None) -> TableMetadataV2:
    fields = []
    for number, (column, lake_type) in enumerate(declaration.columns.items(), start=1):
        if lake_type == "int":  # keeps the source's integer type (runner/core/datasets.py)
            lake_type = (source_columns or {}).get(column, "bigint")
        fields.append(NestedField(field_id=number, name=column, field_type=_TYPES[lake_type],
                                  required=column in (*declaration.key, declaration.version)))
    schema = Schema(*fields, schema_id=0)
    time_field = schema.find_field(declaration.time)
    spec = PartitionSpec(PartitionField(source_id=time_field.field_id, field_id=1000,
                                        transform=DayTransform(),
                                        name=f"{declaration.time}_day"), spec_id=0)
    properties = {
        "format-version": "2",
        "schema.name-mapping.default": create_mapping_from_schema(schema).model_dump_json(),
        "write.metadata.previous-versions-max": str(KEEP_SNAPSHOTS - 1),
        "tslake.note": "written by tslake after every commit; do not write to this table",
    }
    return _v2(new_table_metadata(schema, spec, UNSORTED_SORT_ORDER,
                                  str(settings.hot_path / dataset), properties))


def _v2(metadata: TableMetadata) -> TableMetadataV2:
    if not isinstance(metadata, TableMetadataV2):
        raise ValueError(f"Iceberg format version {metadata.format_version}, not 2")
    return metadata


def _current_version(directory: Path) -> int | None:
    try:
        text = (directory / VERSION_HINT).read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def _read_metadata(directory: Path, version: int) -> TableMetadataV2 | None:
    """The metadata of `version`; None when it is unreadable (then a fresh table is
    written: the manifest, not this history, is the lake's truth)."""
    try:
        return _v2(TableMetadataUtil.parse_raw(
            (directory / f"v{version}.metadata.json").read_text()))
    except (OSError, ValueError) as error:
        log.warning("Iceberg metadata %s/v%d.metadata.json is unreadable (%s): starting a new "
                    "history", directory, version, error)
        return None


def _expire(directory: Path, io: PyArrowFileIO, metadata: TableMetadata, version: int) -> None:
    """Delete metadata files no kept snapshot or metadata-log entry names (and leftovers of
    killed refreshes). A manifest lives from the snapshot that wrote it through a run of
    later ones, so it is needed iff the oldest kept snapshot lists it or a kept snapshot
    wrote it."""
    kept_ids = {str(item.snapshot_id) for item in metadata.snapshots}
    oldest = min(metadata.snapshots, key=lambda item: item.sequence_number or 0)
    needed = {Path(item.manifest_path).name
              for item in read_manifest_list(io.new_input(oldest.manifest_list))}
    needed |= {Path(item.metadata_file).name for item in metadata.metadata_log}
    needed |= {f"v{version}.metadata.json", VERSION_HINT}
    for path in directory.iterdir():
        name = path.name
        manifest = _MANIFEST_FILE.match(name) or _MANIFEST_LIST.match(name)
        if name in needed or (manifest and manifest["id"] in kept_ids):
            continue
        if manifest or _METADATA_FILE.match(name) or name.endswith(".tmp"):
            path.unlink(missing_ok=True)
