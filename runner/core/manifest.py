"""The manifest: the list of committed files and the watermark. Replacing it is the commit.

This module is the one place that reads and writes `_state/manifest.json`: `load` parses
and validates it once (pydantic models, strict types: a wrong type anywhere is a
ManifestError naming the field's path), `migrate` steps older versions forward, `save`
commits. Everything else gets the typed objects below.

Layout (version 2; a superset of the contract's example):

    {"version": 2, "generation": 42, "updated_at": "...Z",
     "datasets": {"metrics/v1": {
        "computed_through_ts": "...Z", "last_inserted_at": "...Z", "shards": 8,
        "declaration": {...}, "source_columns": {"sensor_id": "text", ...},
        "last_run": {...}, "last_compaction": {...}, "backfill": {...},
        "pending_deletes": [{"path": "date=.../part-<run_id>.parquet", "replaced_at": "...Z"}],
        "partitions": {"2026-01-22": {"location": "hot", "updated_at": "...Z",
            "last_compacted_at": null, "file_count": 2, "rows": 10, "bytes": 2048,
            "files": [{"path": "date=2026-01-22/shard=03/part-<run_id>.parquet",
                       "shard": 3, "rows": 5, "bytes": 1024, "kind": "part",
                       "run_id": "..."}]}}}}}

File paths are relative to the dataset's root in the partition's location (hot or cold).
`pending_deletes` (only with TSLAKE_DELETE_GRACE_SECONDS > 0) lists files a commit replaced
that stay on disk for readers of the previous manifest until the grace has passed; they
are not part of the lake. `declaration` is the dataset's declaration (runner/core/datasets)
the lake was written with; `source_columns` the source's column types it was read from.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from datetime import date as date_type
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from runner.core import generations
from runner.core.durable import write_bytes_atomic
from runner.errors import ConfigError, ManifestError

MANIFEST_VERSION = 2
FILE_KINDS = ("part", "backfill", "compact")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


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


def _timestamp(text: str) -> str:
    parse_rfc3339(text)  # raises ValueError: pydantic reports it with the field's path
    return text


def _relative_path(text: str) -> str:
    """A committed file's path: relative, inside its dataset root (README, "Commands").
    String tests, not PurePosixPath: this runs for every file of every load."""
    if not text or text.startswith("/") or "\\" in text or ".." in text.split("/"):
        raise ValueError(f"{text!r} is not a path inside the dataset's root")
    return text


def is_calendar_date(text: str) -> bool:
    """YYYY-MM-DD and a real date."""
    try:
        return bool(_DATE.match(text)) and bool(date_type.fromisoformat(text))
    except ValueError:
        return False


def _calendar_date(text: str) -> str:
    if not is_calendar_date(text):
        raise ValueError(f"{text!r} is not a date like 2026-01-22")
    return text


Timestamp = Annotated[str, AfterValidator(_timestamp)]
RelativePath = Annotated[str, AfterValidator(_relative_path)]
CalendarDate = Annotated[str, AfterValidator(_calendar_date)]
Count = Annotated[int, Field(ge=0)]


class _Model(BaseModel):
    # strict: "5" is not an int, 1 is not a str; extra keys are kept (a superset is fine).
    model_config = ConfigDict(strict=True, extra="allow", validate_assignment=False)


class LakeFile(_Model):
    """One committed Parquet file."""

    path: RelativePath
    shard: Count
    rows: Count
    bytes: Count
    kind: Literal["part", "backfill", "compact"]
    run_id: str


class Partition(_Model):
    """One UTC date of a dataset: where its files are, and their totals."""

    location: Literal["hot", "cold"]
    updated_at: Timestamp
    last_compacted_at: Timestamp | None = None
    file_count: Count = 0
    rows: Count = 0
    bytes: Count = 0
    files: list[LakeFile] = Field(default_factory=list)

    def refresh_totals(self) -> None:
        self.files.sort(key=lambda file: file.path)
        self.file_count = len(self.files)
        self.rows = sum(file.rows for file in self.files)
        self.bytes = sum(file.bytes for file in self.files)


class PendingDelete(_Model):
    path: RelativePath
    replaced_at: Timestamp


class BackfillRecord(_Model):
    """A backfill's progress: what a killed backfill, run again, resumes from."""

    status: Literal["running", "complete"]
    days: Count
    replace_existing: bool
    first_date: CalendarDate
    last_date: CalendarDate
    cap: Timestamp
    run_ids: list[str]
    started_at: Timestamp
    updated_at: Timestamp
    finished_at: Timestamp | None = None
    committed_dates: list[CalendarDate] = Field(default_factory=list)
    rows: Count = 0
    files: Count = 0


class LastCompaction(_Model):
    run_id: str
    finished_at: Timestamp
    shard_days: Count = 0
    files_in: Count = 0
    rows_in: Count = 0
    rows_out: Count = 0


class Declaration(_Model):
    """What the lake of a dataset was written with (runner/core/datasets.DatasetSpec)."""

    source: str
    columns: dict[str, str]
    key: list[str]
    series: str
    time: str
    version: str


class DerivedState(_Model):
    """What derived/v1 was computed from (runner/ops/derived.py): each definition's hash
    (a changed one recomputes that sensor, a missing one removes its rows) and the
    metrics/v1 files already read (a file not among them holds input versions not yet
    applied: new, late or updated rows, a backfill's or a compaction's output)."""

    definitions: dict[str, str] = Field(default_factory=dict)
    inputs_read: list[RelativePath] = Field(default_factory=list)


class DatasetState(_Model):
    """One dataset's section: watermark, layout, partitions and bookkeeping."""

    computed_through_ts: Timestamp | None = None
    last_inserted_at: Timestamp | None = None
    shards: Annotated[int, Field(ge=1, le=100)]
    declaration: Declaration | None = None
    source_columns: dict[str, str] | None = None
    source: dict[str, str] | None = None  # version 1's {schema, table}; kept for old readers
    last_run: dict[str, Any] | None = None
    last_compaction: LastCompaction | None = None
    backfill: BackfillRecord | None = None
    derived: DerivedState | None = None  # derived/v1 only (SPEC section 8)
    pending_deletes: list[PendingDelete] = Field(default_factory=list)
    partitions: dict[CalendarDate, Partition] = Field(default_factory=dict)

    def committed_paths(self, location: str = "hot") -> set[str]:
        """Relative paths of every committed file in one location."""
        return {file.path for partition in self.partitions.values()
                if partition.location == location for file in partition.files}

    def files_of(self, location: str | None = None) -> list[tuple[str, Partition, LakeFile]]:
        """(date, partition, file) of every committed file, by date."""
        return [(date, partition, file) for date, partition in sorted(self.partitions.items())
                if location in (None, partition.location) for file in partition.files]

    def hot_dates(self) -> list[str]:
        return sorted(date for date, p in self.partitions.items() if p.location == "hot")


class Manifest(_Model):
    version: Literal[2]
    generation: Count
    updated_at: Timestamp
    datasets: dict[str, DatasetState] = Field(default_factory=dict)
    # (inode, size, mtime) of the file this was read from or last saved to: a commit
    # refuses when the file changed meanwhile (a writer that bypassed the lock).
    _file_stamp: tuple[int, int, int] | None = PrivateAttr(default=None)

    def dataset(self, name: str, shards: int) -> DatasetState:
        """The dataset's section, created on first use; refuses a different shard count."""
        entry = self.datasets.get(name)
        if entry is None:
            entry = self.datasets[name] = DatasetState(shards=shards)
        if entry.shards != shards:
            raise ConfigError(f"dataset {name} was written with TSLAKE_SHARDS={entry.shards}, "
                              f"but TSLAKE_SHARDS is {shards}: set it back to {entry.shards} "
                              "(changing it needs a new lake and a full backfill)")
        return entry

    def adopt(self, other: Manifest) -> None:
        """Become `other` (a copy a commit changed and saved), in place, for the holders
        of this object."""
        self.__dict__.update(other.__dict__)
        self.__pydantic_extra__ = other.__pydantic_extra__
        self._file_stamp = other._file_stamp


def serialise(document: Manifest) -> bytes:
    """The manifest file's bytes: compact JSON from pydantic's serialiser, fields in the
    models' order (a year of days is ~3,000 file entries: `json.dumps` of a dict dump with
    indentation took ~15x longer and wrote ~1.7x the bytes; `jq .` pretty-prints it)."""
    return document.model_dump_json().encode() + b"\n"


def empty() -> Manifest:
    return Manifest(version=2, generation=0, updated_at=rfc3339(utc_now()))


def migrate(document: dict[str, Any], path: Path) -> dict[str, Any]:
    """Step an older manifest forward to MANIFEST_VERSION (one place for every upgrade).

    1 -> 2: datasets gain `declaration` and `source_columns`, recorded by the next command
    that reads the source (until then they are null: a lake written before declarations
    accepts the current one once); nothing else changes."""
    version = document.get("version")
    if version == 1:
        document = {**document, "version": 2}
        version = 2
    if version == MANIFEST_VERSION:
        return document
    raise ManifestError(f"manifest at {path} has version {version!r}, this tslake reads "
                        f"versions 1 to {MANIFEST_VERSION}: upgrade tslake, or restore a "
                        "manifest written by this version")


def load(path: Path, hot_root: Path | None = None) -> Manifest | None:
    """The committed manifest, or None when the lake has never committed anything.
    `hot_root`: TSLAKE_HOT_PATH, when `path` is not `<hot>/_state/manifest.json` (a kept
    generation).

    A current manifest is parsed and validated in one pass by pydantic's JSON parser (no
    intermediate dicts: a year of days is ~3,000 file entries); anything else (an older
    version to migrate, or a malformed file to explain) goes the dict way below."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ManifestError(f"cannot read the manifest at {path}: {error.strerror}: fix its "
                            "permissions or the disk, then run the command again") from None
    try:
        loaded = Manifest.model_validate_json(raw)
    except ValidationError:
        loaded = _load_document(raw, path)
    check_hot_paths(loaded, path, path.parent.parent if hot_root is None else hot_root)
    loaded._file_stamp = file_stamp(path)
    return loaded


def _load_document(raw: bytes, path: Path) -> Manifest:
    """The manifest from its JSON as a dict, migrated (`migrate`), validated; or a
    ManifestError naming the first thing wrong."""
    try:
        document = json.loads(raw)
    except ValueError:
        raise ManifestError(f"manifest at {path} is not valid JSON: restore an earlier one "
                            "with `tslake doctor --restore`, or move the lake aside and run "
                            "`tslake backfill`") from None
    if not isinstance(document, dict) or not isinstance(document.get("datasets"), dict):
        raise ManifestError(f"manifest at {path} has no 'datasets' object: restore an earlier "
                            "one with `tslake doctor --restore`, or move the lake aside and "
                            "run `tslake backfill`")
    document = migrate(document, path)
    try:
        return Manifest.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = "".join(f"[{part!r}]" if isinstance(part, int) else f".{part}"
                        for part in first["loc"])
        raise ManifestError(f"manifest at {path} is malformed at ${where}: {first['msg']}: "
                            "restore an earlier one with `tslake doctor --restore`, or move "
                            "the lake aside and run `tslake backfill`") from None


def check_hot_paths(document: Manifest, path: Path, hot: Path) -> None:
    """Every hot file and pending delete must stay inside `<hot>/<dataset>` once symlinks
    are followed (the hot root is the manifest's `_state/`'s parent): checked once here, so
    no command reads or deletes a file outside the lake (cold files: runner/core/roots)."""
    from runner.core.roots import Containment  # roots imports settings, which imports us

    containment = Containment(path)
    for name, entry in document.datasets.items():
        root = hot / name
        for relative in entry.committed_paths("hot") | {item.path for item in
                                                         entry.pending_deletes}:
            containment.inside_text(root, relative)


def save(path: Path, document: Manifest) -> None:
    """Commit: bump the generation and replace the file atomically. Refuses when the file
    is not the one `document` was read from (another writer bypassed the lock)."""
    if document._file_stamp != file_stamp(path):
        raise ManifestError(f"{path} changed while this command was writing (another writer "
                            "bypassed the lock): nothing was committed; run the command again")
    document.generation += 1
    document.updated_at = rfc3339(utc_now())
    write_bytes_atomic(path, serialise(document))
    document._file_stamp = file_stamp(path)
    generations.keep(path, document.generation)


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return (status.st_ino, status.st_size, status.st_mtime_ns)


def draft(document: Manifest, dataset: str) -> Manifest:
    """A copy of `document` for a commit that changes `dataset`'s section, adopted
    (`Manifest.adopt`) once saved. Copy on write: the section, its partitions mapping and its
    lists are new objects; the partitions in it stay shared until `add_files` (or
    `own_partition`) replaces one it changes; other datasets are shared as they are. (A deep
    copy of a year of days, ~3,000 file entries, cost as much CPU as parsing the file, on
    every commit.)"""
    copy = document.model_copy()
    copy.datasets = dict(document.datasets)
    entry = document.datasets.get(dataset)
    if entry is not None:
        fresh = copy.datasets[dataset] = entry.model_copy()
        fresh.partitions = dict(entry.partitions)
        fresh.pending_deletes = list(entry.pending_deletes)
        if entry.last_compaction is not None:
            fresh.last_compaction = entry.last_compaction.model_copy()
    copy._file_stamp = document._file_stamp
    return copy


def own_partition(entry: DatasetState, date: str) -> Partition:
    """The partition of `date` in a `draft`'s section as an object of its own (and a list of
    files of its own), to change without touching the document it was drafted from."""
    partition = entry.partitions[date] = entry.partitions[date].model_copy()
    partition.files = list(partition.files)
    return partition


def _partitions_of(entry: DatasetState, paths: frozenset[str]) -> set[str] | None:
    """The dates whose partitions list `paths` (by each path's `date=` directory); None when
    one is not where its directory says (then every partition is looked at)."""
    dates: set[str] = set()
    for path in paths:
        date = path[5:15] if path.startswith("date=") else ""
        partition = entry.partitions.get(date)
        if partition is None or not any(file.path == path for file in partition.files):
            return None
        dates.add(date)
    return dates


def add_files(entry: DatasetState, files: list[dict[str, Any]], *,
              replace_dates: frozenset[str] = frozenset(),
              replace_paths: frozenset[str] = frozenset(), now: datetime) -> list[str]:
    """Add committed files (dicts with date, path, shard, rows, bytes, kind, run_id); for
    dates in `replace_dates`, drop the files they had; drop the files in `replace_paths` (a
    compaction's inputs), which must be committed hot files. A partition that receives a
    `compact` file gets `last_compacted_at`. Only the partitions it changes are looked at
    and replaced (copy on write, see `draft`): a commit's cost does not grow with the days.

    Returns the relative paths that left the manifest (to delete after the commit)."""
    removed: list[str] = []
    stamp = rfc3339(now)
    dates = _partitions_of(entry, replace_paths) if replace_paths else set()
    if dates is None:
        missing = sorted(replace_paths - entry.committed_paths())
        if missing:
            raise ManifestError(f"cannot replace {missing[0]}: the manifest does not list it "
                                "(another writer changed the lake); run the command again")
        dates = set(entry.partitions)
    touched: set[str] = set()
    for date in sorted((dates | replace_dates) & set(entry.partitions)):
        gone = {file.path for file in entry.partitions[date].files
                if date in replace_dates or file.path in replace_paths}
        if gone:
            removed.extend(sorted(gone))
            partition = own_partition(entry, date)
            partition.files = [file for file in partition.files if file.path not in gone]
            partition.updated_at = stamp
            touched.add(date)
    for file in files:
        date = file["date"]
        if date not in entry.partitions:
            entry.partitions[date] = Partition(location="hot", updated_at=stamp)
            touched.add(date)
        partition = entry.partitions[date] if date in touched else own_partition(entry, date)
        touched.add(date)
        partition.files.append(LakeFile(**{key: file[key] for key in
                                           ("path", "shard", "rows", "bytes", "kind", "run_id")}))
        partition.updated_at = stamp
        if file["kind"] == "compact":
            partition.last_compacted_at = stamp
    for date in touched:
        partition = entry.partitions[date]
        if partition.files:
            partition.refresh_totals()
        else:
            del entry.partitions[date]
    return removed


def record_compaction(entry: DatasetState, *, run_id: str, finished_at: str, shard_days: int,
                      files_in: int, rows_in: int, rows_out: int) -> None:
    """`last_compaction`: totals of the latest compaction run (one commit per shard-day)."""
    last = entry.last_compaction
    if last is None or last.run_id != run_id:
        last = entry.last_compaction = LastCompaction(run_id=run_id, finished_at=finished_at)
    last.shard_days += shard_days
    last.files_in += files_in
    last.rows_in += rows_in
    last.rows_out += rows_out
    last.finished_at = finished_at


def schedule_deletes(entry: DatasetState, paths: list[str], now: datetime) -> None:
    """Keep replaced files on disk for the grace period: list them as pending deletes."""
    entry.pending_deletes.extend(PendingDelete(path=path, replaced_at=rfc3339(now))
                                 for path in paths)


def take_due_deletes(entry: DatasetState, now: datetime, grace_seconds: float) -> list[str]:
    """Remove the pending deletes whose grace has passed from the entry; return their paths."""
    due = [item for item in entry.pending_deletes if _age(item, now) >= grace_seconds]
    entry.pending_deletes = [item for item in entry.pending_deletes if item not in due]
    return [item.path for item in due]


def pending_paths(entry: DatasetState, now: datetime, grace_seconds: float) -> set[str]:
    """Replaced files still inside their grace period (not leftovers: keep them on disk)."""
    return {item.path for item in entry.pending_deletes if _age(item, now) < grace_seconds}


def _age(item: PendingDelete, now: datetime) -> float:
    return (now - parse_rfc3339(item.replaced_at)).total_seconds()
