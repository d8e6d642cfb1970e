"""The Iceberg snapshot writer (runner/core/iceberg.py says what and when): pyiceberg's
metadata model and Avro writers, loaded only by a refresh that has files to name.
"""

from __future__ import annotations

import json
import os
import secrets
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
from runner.core.durable import write_bytes_atomic, write_json_atomic
from runner.core.failpoints import failpoint
from runner.core.iceberg import (
    FILES_DIGEST,
    GENERATION,
    KEEP_SNAPSHOTS,
    MANIFEST_FILE,
    MANIFEST_LIST,
    METADATA_FILE,
    VERSION_HINT,
    DateFiles,
    log,
    metadata_dir,
)
from runner.core.manifest import DatasetState, Declaration

_EPOCH = date_type(1970, 1, 1)
_TYPES: dict[str, IcebergType] = {
    "varchar": StringType(), "double": DoubleType(), "timestamptz": TimestamptzType(),
    "smallint": IntegerType(), "integer": IntegerType(), "bigint": LongType(),
    "boolean": BooleanType(), "date": DateType()}


def write_snapshot(settings: Settings, dataset: str, entry: DatasetState, generation: int,
                   dates: list[DateFiles], digest: str, version: int | None) -> None:
    """Write a snapshot naming `dates`' files (their digest `digest`) as version+1, then
    point version-hint.text at it (Iceberg's commit) and expire what no kept snapshot needs."""
    assert entry.declaration is not None
    directory = metadata_dir(settings, dataset)
    metadata = _read_metadata(directory, version) if version is not None else None
    current = metadata.current_snapshot() if metadata is not None else None
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
            FILES_DIGEST: digest, GENERATION: str(generation),
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


def _manifests(directory: Path, io: PyArrowFileIO, metadata: TableMetadataV2,
               current: Snapshot | None, dates: list[DateFiles],
               snapshot_id: int) -> list[ManifestFile]:
    """One manifest per date: the previous snapshot's when the date's files are the same,
    else a new one."""
    reusable: dict[str, ManifestFile] = {}
    if current is not None:
        for manifest_file in read_manifest_list(io.new_input(current.manifest_list)):
            match = MANIFEST_FILE.match(_name(manifest_file.manifest_path))
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
    needed = {_name(item.manifest_path)
              for item in read_manifest_list(io.new_input(oldest.manifest_list))}
    needed |= {_name(item.metadata_file) for item in metadata.metadata_log}
    needed |= {f"v{version}.metadata.json", VERSION_HINT}
    for name in os.listdir(directory):
        if name in needed:
            continue
        manifest = MANIFEST_FILE.match(name) or MANIFEST_LIST.match(name)
        if manifest and manifest["id"] in kept_ids:
            continue
        if manifest or METADATA_FILE.match(name) or name.endswith(".tmp"):
            (directory / name).unlink(missing_ok=True)


def _name(location: str) -> str:
    """The file name of a metadata location (a string split: there are one per date)."""
    return location.rsplit("/", 1)[-1]
