"""Atomic publish: data files become visible to manifest readers in one manifest replace.

A write goes through three calls, made by the operations in runner/ops/ (a tick, a
backfill, a repair, a compaction):

1. `open_write`   takes the lock, makes sure a manifest exists, checks and records the
                  dataset's declaration and source columns, removes leftovers of killed
                  runs, and returns the typed manifest the write goes on with;
2. `prepare_partitions` creates the `date=/shard=` directories DuckDB will COPY into
                  (DuckDB does not create parent directories);
3. `publish_segments` fsyncs and renames each `*.parquet.tmp`, then commits the new file
                  list and watermark by replacing the manifest, then deletes replaced files
                  (a backfill's replaced days, a compaction's inputs), or, with
                  TSLAKE_DELETE_GRACE_SECONDS, lists them as pending deletes for later.

Killed anywhere before the manifest replace, the next `open_write` deletes the new files;
killed after it, the files are committed and only the replaced ones are left to delete
(runner/core/leftovers.py: how the next writer knows whether to look).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.config import Settings
from runner.core import iceberg, leftovers, lock, manifest, tiers
from runner.core.datasets import DatasetSpec
from runner.core.durable import durable_rename, fsync_path, makedirs_durable, write_json_atomic
from runner.core.failpoints import failpoint
from runner.core.lock import acquire, lake_lock
from runner.core.manifest import FILE_KINDS, Manifest
from runner.core.roots import dataset_root
from runner.errors import ManifestError, PublishError, TslakeError
from runner.readers import views

log = logging.getLogger("tslake.publish")

_RUN_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


@dataclass(frozen=True)
class StagedFile:
    """A `*.parquet.tmp` file the materialization wrote and wants committed."""

    date: str
    shard: int
    rows: int
    path: str
    flushed: bool = False  # the writer fsynced it already (the backfill's workers do)


def segment_path(root: Path, date: str, shard: int, kind: str, run_id: str) -> Path:
    """`date=YYYY-MM-DD/shard=NN/<kind>-<run_id>.parquet` under the dataset root."""
    return root / f"date={date}" / f"shard={shard:02d}" / f"{kind}-{run_id}.parquet"


def open_write(settings: Settings, spec: DatasetSpec, purpose: str,
               source_columns: dict[str, str] | None = None,
               document: Manifest | None = None) -> Manifest:
    """Lock the lake for a write and return the manifest the write starts from.

    The dataset's declaration, and the source's column types (`source_columns`, as
    Postgres has them now, when the write reads the source), are checked against what the
    lake was written with, and recorded on first use; a mismatch refuses before anything
    is written. `document`: the manifest this process already loaded under the lock."""
    dataset = spec.name
    root = dataset_root(settings, dataset)
    acquire(settings.lock_path, settings.lock_timeout_seconds, purpose)
    if document is None:
        document = manifest.load(settings.manifest_path)
    if document is None:
        strays = next(root.glob("date=*/shard=*/*.parquet"), None) if root.exists() else None
        if strays is not None:
            raise ManifestError(
                f"{settings.manifest_path} is missing but {root} holds Parquet files such as "
                f"{strays.name}: restore the manifest from a backup, or move {root} aside and "
                "run `tslake backfill`")
        document = manifest.empty()
    entry = document.dataset(dataset, settings.shards)
    spec.check_recorded(entry.declaration)
    declaration = spec.record()
    changed = document.generation == 0 or entry.declaration != declaration
    entry.declaration = declaration
    if source_columns is not None:
        types = spec.check_source(source_columns, entry.source_columns)
        if entry.source_columns != types:
            entry.source_columns, changed = types, True
    leftovers.before_write(settings, document)  # before a save changes the manifest's stamp
    if changed:
        manifest.save(settings.manifest_path, document)
    views.refresh_if_stale(settings, document)
    iceberg.refresh(settings, document)  # catches up after a kill before its refresh
    return document


@contextmanager
def writing(settings: Settings, purpose: str) -> Iterator[None]:
    """The lake's lock around a writing command (tick, backfill, repair, compact). If the
    command fails, what it left uncommitted is removed before the lock is released: a run
    that failed on a full disk must not keep the disk full of its own `*.tmp` files. If it
    succeeds, it left nothing, and says so for the next writer (runner/core/leftovers.py)."""
    outermost = lock.hold_number(settings.lock_path) is None  # a nested one vouches for nothing
    with lake_lock(settings.lock_path, settings.lock_timeout_seconds, purpose):
        try:
            yield
        except TslakeError:
            try:
                document = manifest.load(settings.manifest_path)
                if document is not None:
                    leftovers.remove_leftovers(settings, document)
            except TslakeError:
                pass  # e.g. an unreadable manifest: the error being raised says so already
            except OSError as error:  # the next command tries again
                log.warning("could not remove the failed run's files yet: %s", error)
            raise
        if outermost:
            leftovers.mark_tidy(settings)


def new_run_id() -> str:
    """YYYYMMDDTHHMMSSZ-<8 hex>: file names sort by time (dbt runs use lake_run_id())."""
    return f"{manifest.utc_now():%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def staged_path(root: Path, date: str, shard: int, kind: str, run_id: str) -> Path:
    """Where a writer stages a file: its final path plus `.tmp`."""
    final = segment_path(root, date, shard, kind, run_id)
    return final.with_name(final.name + ".tmp")


def prepare_partitions(settings: Settings, dataset: str,
                       partitions: list[tuple[str, int]]) -> None:
    """Create the `date=/shard=` directories DuckDB will COPY into."""
    root = dataset_root(settings, dataset)
    for date, shard in partitions:
        if not _DATE.match(date) or not 0 <= shard < settings.shards:
            raise PublishError(f"partition date={date} shard={shard} is not valid for "
                               f"{dataset} ({settings.shards} shards)")
    makedirs_durable(*(root / f"date={date}" / f"shard={shard:02d}" for date, shard in partitions))


def publish_segments(settings: Settings, document: Manifest, dataset: str, *, run_id: str,
                     kind: str, files: list[StagedFile], watermark: str | None,
                     replace_dates: frozenset[str] = frozenset(),
                     replace_paths: frozenset[str] = frozenset(),
                     run_info: dict[str, Any] | None = None,
                     backfill: manifest.BackfillRecord | None = None,
                     derived: manifest.DerivedState | None = None,
                     refresh_views: bool = True) -> dict[str, Any]:
    """Commit staged files (and the new watermark) with one manifest replace of `document`
    (the manifest the writer loaded under the lock, which this updates); the files of
    `replace_dates` and the files `replace_paths` (relative paths: a compaction's inputs)
    leave the manifest in the same commit and are deleted after it. `backfill`, when given,
    becomes the dataset's backfill progress record in the same commit (`derived`, derived/v1's
    record of its inputs and definitions, likewise). `refresh_views=False`
    leaves `_state/lake.duckdb` on an older commit (a backfill's days in between: readers
    see fewer days, never a missing file); a commit that deletes files always refreshes."""
    step = "compact_" if kind == "compact" else ""  # compaction has failpoints of its own
    if kind not in FILE_KINDS or not _RUN_ID.match(run_id):
        raise PublishError(f"cannot publish kind={kind!r} run_id={run_id!r}: kind must be one "
                           f"of {', '.join(FILE_KINDS)} and run_id like 20260122T101500Z-1a2b3c4d")
    committed_document = document
    document = manifest.draft(document, dataset)  # adopted once the commit succeeded
    entry = document.dataset(dataset, settings.shards)
    root = dataset_root(settings, dataset)

    committed: list[dict[str, Any]] = []
    failpoint(step + "before_data_rename")
    for staged in files:
        final = segment_path(root, staged.date, staged.shard, kind, run_id)
        tmp = Path(staged.path)
        if tmp != staged_path(root, staged.date, staged.shard, kind, run_id):
            raise PublishError(f"staged file {tmp} is not where {final.name}.tmp belongs: "
                               "the materialization and the runner disagree on the layout")
        try:
            if not staged.flushed:
                fsync_path(tmp)
            durable_rename(tmp, final)
        except OSError as error:
            raise PublishError(f"cannot publish {tmp}: {error.strerror}; the lake is unchanged, "
                               "free space or fix permissions and run again") from error
        committed.append({"date": staged.date, "shard": staged.shard, "rows": staged.rows,
                          "bytes": final.stat().st_size, "kind": kind, "run_id": run_id,
                          "path": final.relative_to(root).as_posix()})
    failpoint(step + "after_data_rename")
    # Files for a date whose partition is cold go to the cold tier before the commit.
    cold = tiers.place_cold_files(settings, dataset, entry, committed, replace_dates, root)

    now = manifest.utc_now()
    rows_in = {file.path: file.rows for _, _, file in entry.files_of()
               if file.path in replace_paths} if replace_paths else {}
    replaced = manifest.add_files(entry, committed, replace_dates=replace_dates,
                                  replace_paths=replace_paths, now=now)
    if watermark is not None:
        # Normalise the SQL side's text (and refuse anything that is not a timestamp).
        watermark = manifest.rfc3339(manifest.parse_rfc3339(watermark))
        entry.computed_through_ts = entry.last_inserted_at = watermark
    summary = {"run_id": run_id, "kind": kind, "finished_at": manifest.rfc3339(now),
               "files": len(committed), "rows": sum(file["rows"] for file in committed),
               "computed_through_ts": entry.computed_through_ts, **(run_info or {})}
    if kind == "compact":
        _check_compaction(dataset, committed, rows_in)
        manifest.record_compaction(
            entry, run_id=run_id, finished_at=summary["finished_at"], shard_days=len(committed),
            files_in=len(rows_in), rows_in=sum(rows_in.values()), rows_out=summary["rows"])
    else:  # `last_run` stays the last tick or backfill: what an operator checks first
        entry.last_run = summary
    if backfill is not None:
        entry.backfill = backfill
    if derived is not None:  # derived/v1's inputs and definitions, in the same commit
        entry.derived = derived
    due = manifest.take_due_deletes(entry, now, settings.delete_grace_seconds)
    if settings.delete_grace_seconds > 0:
        manifest.schedule_deletes(entry, replaced, now)
    else:
        due += replaced
    failpoint(step + "before_manifest_replace")
    try:
        manifest.save(settings.manifest_path, document)  # the commit point
    except OSError as error:
        raise PublishError(f"cannot write {settings.manifest_path}: {error.strerror}; nothing "
                           f"of run {run_id} was committed: free space or fix permissions "
                           "there and run again") from error
    failpoint(step + "after_manifest_replace")
    committed_document.adopt(document)
    iceberg.refresh(settings, document)  # after the commit: Iceberg follows the manifest

    write_json_atomic(settings.replication_path, replication_state(document))
    if refresh_views or replaced:
        views.refresh(settings, document)
    for number, relative in enumerate(due):
        (root / relative).unlink(missing_ok=True)
        if number == 0:
            failpoint(step + "after_first_delete")
    cold.finish()
    return summary


def _check_compaction(dataset: str, committed: list[dict[str, Any]],
                      rows_in: dict[str, int]) -> None:
    """A compaction replaces the files of one shard-day with one file holding at most their
    rows (duplicate versions dropped), in the same partition."""
    places = {path.rsplit("/", 1)[0] for path in rows_in}
    if (len(committed) != 1 or not rows_in or places != {committed[0]["path"].rsplit("/", 1)[0]}
            or committed[0]["rows"] > sum(rows_in.values())):
        raise PublishError(f"compaction of {dataset} {sorted(places)} would commit "
                           f"{[file['path'] for file in committed]} with "
                           f"{sum(file['rows'] for file in committed)} rows for "
                           f"{sum(rows_in.values())} input rows in {len(rows_in)} files: "
                           "refused, the lake is unchanged; report this as a bug")


def replication_state(document: Manifest) -> dict[str, Any]:
    """`replication.json`: the watermark per dataset; the top level is the oldest of them,
    so "everything is replicated through computed_through_ts" holds for every dataset."""
    datasets = {name: {"computed_through_ts": entry.computed_through_ts,
                       "last_inserted_at": entry.last_inserted_at}
                for name, entry in document.datasets.items()}
    marks = [state["computed_through_ts"] for state in datasets.values()
             if state["computed_through_ts"]]
    oldest = min(marks, key=manifest.parse_rfc3339) if marks else None
    return {"version": 1, "updated_at": document.updated_at, "computed_through_ts": oldest,
            "last_inserted_at": oldest, "manifest_generation": document.generation,
            "datasets": datasets}


