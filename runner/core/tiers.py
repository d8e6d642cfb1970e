"""The cold tier: a second lake root, usually a NAS mount on another filesystem.

`rename()` across filesystems fails (EXDEV), so a file reaches the cold tier by copy:
`<final>.tmp` on the cold side, fsync, rename, fsync the directory, then a read-back that
checks the SHA-256 against the hot bytes and the Parquet row count against the manifest.
Only a verified copy may be committed; the hot original is deleted after the commit.

A cold partition stays cold: new files for its date (late rows from a tick, a repair or a
`backfill --replace-existing`) are copied into the cold tier before the commit that lists
them (`place_cold_files`), so the manifest never mixes locations within a partition.
The cold dataset root mirrors the hot one: `${cold}/<dataset>/date=.../shard=NN/...`.

Listing a NAS is slow, so leftovers are not found by scanning it on every command: before
anything is written to the cold tier, the dates about to be written are recorded in
`_state/cold-writes.json` (hot side); the record is removed once the write is committed
and tidied. The next writing command scans only the dates a killed run left recorded
(`tslake retention` scans the whole cold tier).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from runner.config import Settings
from runner.core import manifest
from runner.core.durable import durable_rename, flush_fd, makedirs_durable, write_json_atomic
from runner.errors import ColdTierError

log = logging.getLogger("tslake.tiers")

_CHUNK = 1 << 20


def cold_root(settings: Settings, dataset: str) -> Path:
    """`${cold}/<dataset>`; the cold path itself must exist (a NAS that is not mounted
    must not silently become a directory on the local disk)."""
    if settings.cold_path is None:
        raise ColdTierError(f"dataset {dataset} has partitions in the cold tier but "
                            "TSLAKE_COLD_PATH is not set: set it to the cold lake's path")
    if not settings.cold_path.is_dir():
        raise ColdTierError(f"TSLAKE_COLD_PATH={settings.cold_path} is not a directory: mount "
                            "the NAS (or create the directory), then run `tslake retention`")
    return settings.cold_path / dataset


def copy_verified(source: Path, target: Path, rows: int) -> None:
    """Copy `source` to `target` durably across filesystems and verify the copy."""
    tmp = target.with_name(target.name + ".tmp")
    digest = hashlib.sha256()
    try:
        makedirs_durable(target.parent)
        with open(source, "rb") as reader, open(tmp, "wb") as writer:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                writer.write(chunk)
            writer.flush()
            flush_fd(writer.fileno())
        durable_rename(tmp, target)
        copied = _sha256(target)
    except OSError as error:
        raise ColdTierError(f"cannot copy {source.name} to {target.parent}: {error.strerror}; "
                            "check that the cold path is mounted and writable, then run "
                            "`tslake retention`") from error
    if copied != digest.hexdigest():
        raise ColdTierError(f"copy of {source.name} at {target} does not match the hot file "
                            "(SHA-256 differs): check the NAS, then run `tslake retention`")
    found = parquet_rows(target)
    if found != rows:
        raise ColdTierError(f"copy of {source.name} at {target} has {found} rows, the manifest "
                            f"says {rows}: check the NAS, then run `tslake retention`")


def parquet_rows(path: Path) -> int:
    """The row count in a Parquet file's footer."""
    with duckdb.connect() as conn:
        row = conn.execute("select sum(num_rows) from parquet_file_metadata(?)",
                           [str(path)]).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


@dataclass
class ColdPlacement:
    """What a publish into cold partitions leaves to do once its commit is done."""

    settings: Settings | None = None
    hot_copies: list[Path] = field(default_factory=list)
    replaced: list[Path] = field(default_factory=list)

    def finish(self) -> None:
        paths = [*self.hot_copies, *self.replaced]
        for path in paths:
            path.unlink(missing_ok=True)
        for shard_dir in sorted({path.parent for path in paths}):
            remove_empty_dirs(shard_dir)
        if self.settings is not None:
            clear_cold_writes(self.settings)


def place_cold_files(settings: Settings, dataset: str, entry: manifest.DatasetState,
                     committed: list[dict[str, Any]], replace_dates: frozenset[str],
                     hot_root: Path) -> ColdPlacement:
    """Copy just-published hot files whose date is a cold partition into the cold tier.

    Called by the publish between the data renames and the manifest commit. The file
    entries keep their relative paths, which now resolve in the cold root; files the
    commit replaces in cold partitions are returned for deletion after the commit."""
    cold_dates = {date for date, partition in entry.partitions.items()
                  if partition.location == "cold"}
    touched = cold_dates & ({file["date"] for file in committed} | set(replace_dates))
    if not touched:
        return ColdPlacement()
    root = cold_root(settings, dataset)
    record_cold_writes(settings, dataset, touched)
    placement = ColdPlacement(settings=settings, replaced=[
        root / file.path for date in sorted(touched & replace_dates)
        for file in entry.partitions[date].files])
    for file in committed:
        if file["date"] in cold_dates:
            copy_verified(hot_root / file["path"], root / file["path"], file["rows"])
            placement.hot_copies.append(hot_root / file["path"])
    log.info("placed %d file(s) of cold partition(s) %s in the cold tier",
             len(placement.hot_copies), ", ".join(sorted(touched)))
    return placement


def record_cold_writes(settings: Settings, dataset: str, dates: set[str]) -> None:
    """Durably note that files of these dates are about to be written to the cold tier."""
    pending = _cold_writes(settings) or {}
    known = set(pending.get(dataset, []))
    if not dates <= known:
        pending[dataset] = sorted(known | dates)
        write_json_atomic(_cold_writes_path(settings), pending)


def clear_cold_writes(settings: Settings) -> None:
    """The recorded cold writes are committed and tidied: forget them."""
    _cold_writes_path(settings).unlink(missing_ok=True)


def remove_cold_leftovers(settings: Settings, document: manifest.Manifest, *,
                          everything: bool = False) -> int:
    """Delete cold `*.tmp` files and cold Parquet files the manifest does not list, in the
    dates a killed run recorded (every date with `everything`). Without a reachable cold
    path nothing is done and the record is kept for the next command."""
    pending = _cold_writes(settings)
    if pending is None:  # unreadable: look everywhere
        pending, everything = {}, True
    if not (pending or everything) or settings.cold_path is None \
            or not settings.cold_path.is_dir():
        return 0
    removed = 0
    for name, entry in document.datasets.items():
        root = settings.cold_path / name
        committed = entry.committed_paths("cold")
        patterns = ["date=*"] if everything else [f"date={d}" for d in pending.get(name, [])]
        for pattern in patterns:
            removed += remove_uncommitted(root, pattern, committed)
    clear_cold_writes(settings)
    return removed


def remove_uncommitted(root: Path, date_pattern: str, committed: set[str]) -> int:
    """Under `root/<date_pattern>/shard=*` (either tier): delete `*.tmp` files and Parquet
    files not in `committed` (paths relative to `root`), then empty directories."""
    removed = 0
    for shard_dir in root.glob(f"{date_pattern}/shard=*"):
        for file in shard_dir.iterdir():
            relative = file.relative_to(root).as_posix()
            if file.name.endswith(".tmp") or (file.suffix == ".parquet"
                                              and relative not in committed):
                file.unlink(missing_ok=True)
                removed += 1
        remove_empty_dirs(shard_dir)
    return removed


def _cold_writes_path(settings: Settings) -> Path:
    return settings.state_dir / "cold-writes.json"


def _cold_writes(settings: Settings) -> dict[str, list[str]] | None:
    """The recorded dates per dataset; {} when none; None when the record is unreadable."""
    try:
        pending = json.loads(_cold_writes_path(settings).read_bytes())
    except FileNotFoundError:
        return {}
    except ValueError:
        return None
    if not isinstance(pending, dict):
        return None
    return {str(name): [str(date) for date in dates] for name, dates in pending.items()}


def remove_empty_dirs(shard_dir: Path) -> None:
    """Remove `shard=NN` and its `date=` directory if they are empty."""
    for candidate in (shard_dir, shard_dir.parent):
        try:
            os.rmdir(candidate)
        except OSError:
            return


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as reader:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
