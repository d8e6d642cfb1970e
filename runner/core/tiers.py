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

The cold tier is a directory (a NAS mount) or, with `TSLAKE_COLD_PATH=s3://bucket/prefix`,
object storage (runner/core/object_store.py): `cold_tier()` gives either behind one
interface (`ColdTier`: copy + verify, leftovers of one date, delete), and `cold_location()`
/ `file_location()` are where readers (views, query, parity, Iceberg) find cold files: an
absolute path, or an `s3://` URL read in place by DuckDB's httpfs. In object storage, the
leftovers of the recorded dates are found by listing those dates' prefixes only.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from runner.config import Settings
from runner.core import manifest
from runner.core.durable import durable_rename, flush_fd, makedirs_durable, write_json_atomic
from runner.core.object_store import ObjectStore, configure_duckdb, file_sha256
from runner.errors import ColdTierError, ColdTierUnavailableError

log = logging.getLogger("tslake.tiers")

_CHUNK = 1 << 20


def cold_root(settings: Settings, dataset: str) -> Path:
    """`${cold}/<dataset>` of a NAS cold tier; the cold path itself must exist (a NAS that
    is not mounted must not silently become a directory on the local disk)."""
    if settings.cold_url is not None:
        raise ColdTierError(f"the cold tier of {dataset} is object storage ({settings.cold_url}),"
                            " not a directory: use tiers.cold_location()")
    if settings.cold_path is None:
        raise ColdTierUnavailableError(_unset_message(dataset))
    if not settings.cold_path.is_dir():
        raise ColdTierUnavailableError(
            f"TSLAKE_COLD_PATH={settings.cold_path} is not a directory (not mounted?): "
            f"{dataset} has partitions there; mount the NAS (or create the directory), then "
            "run the command again")
    return settings.cold_path / dataset


def _unset_message(dataset: str) -> str:
    return (f"dataset {dataset} has partitions in the cold tier but TSLAKE_COLD_PATH is not "
            "set: set it to the cold lake's path or s3:// URL (nothing is missing; no repair "
            "is needed)")


def cold_location(settings: Settings, dataset: str) -> str:
    """Where readers find `dataset`'s cold files: `${cold}/<dataset>` as an absolute path,
    or `s3://bucket/prefix/<dataset>`. Unset or unmounted: ColdTierUnavailableError."""
    if settings.cold_url is not None:
        return f"{settings.cold_url}/{dataset}"
    return str(cold_root(settings, dataset))


def file_location(settings: Settings, dataset: str, location: str, relative: str) -> str:
    """The absolute path or URL of a committed file (`location` hot or cold)."""
    if location == "hot":
        return str(settings.hot_path / dataset / relative)
    return f"{cold_location(settings, dataset)}/{relative}"


def enable_cold_reads(conn: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Let a DuckDB session read an object-store cold tier in place (httpfs from its wheel,
    a TEMPORARY secret from the AWS_* variables); nothing to do for a NAS."""
    if settings.cold_url is not None:
        configure_duckdb(conn, ObjectStore(settings.cold_url))


def cold_status(settings: Settings) -> str | None:
    """Why the cold tier cannot be read right now (unset, not mounted), or None."""
    if settings.cold_url is not None:
        return None
    if settings.cold_path is None:
        return "TSLAKE_COLD_PATH is not set"
    if not settings.cold_path.is_dir():
        return f"TSLAKE_COLD_PATH={settings.cold_path} is not a directory (not mounted?)"
    return None


class ColdTier:
    """A NAS cold tier: a directory on another filesystem."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def where(self) -> str:
        return str(self.settings.cold_path)

    def copy_verified(self, source: Path, dataset: str, relative: str, rows: int) -> None:
        copy_verified(source, cold_root(self.settings, dataset) / relative, rows)

    def remove_uncommitted(self, dataset: str, date: str | None, committed: set[str]) -> int:
        """Leftovers of one date (every date with None) that `committed` does not list."""
        if self.settings.cold_path is None or not self.settings.cold_path.is_dir():
            return 0
        return remove_uncommitted(self.settings.cold_path / dataset,
                                  "date=*" if date is None else f"date={date}", committed)

    def delete(self, dataset: str, relatives: list[str]) -> None:
        root = cold_root(self.settings, dataset)
        for relative in relatives:
            (root / relative).unlink(missing_ok=True)
        for shard_dir in sorted({(root / relative).parent for relative in relatives}):
            remove_empty_dirs(shard_dir)

    def close(self) -> None:
        pass


class ObjectStoreTier(ColdTier):
    """An S3-compatible cold tier: `${cold_url}/<dataset>/date=.../shard=NN/<file>`."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        assert settings.cold_url is not None
        self.store = ObjectStore(settings.cold_url)

    def where(self) -> str:
        return self.store.where()

    def copy_verified(self, source: Path, dataset: str, relative: str, rows: int) -> None:
        self.store.copy_verified(source, f"{dataset}/{relative}", rows)

    def remove_uncommitted(self, dataset: str, date: str | None, committed: set[str]) -> int:
        if date is None:  # never list the whole bucket: only recorded dates are looked at
            return 0
        cut = len(dataset) + 1
        stray = [name for name in self.store.list_names(f"{dataset}/date={date}/")
                 if name[cut:] not in committed]
        self.store.delete(stray)
        return len(stray)

    def delete(self, dataset: str, relatives: list[str]) -> None:
        self.store.delete([f"{dataset}/{relative}" for relative in relatives])

    def close(self) -> None:
        self.store.close()


def cold_tier(settings: Settings) -> ColdTier | None:
    """The configured cold tier, or None without TSLAKE_COLD_PATH."""
    if settings.cold_url is not None:
        return ObjectStoreTier(settings)
    if settings.cold_path is not None:
        return ColdTier(settings)
    return None


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
        copied = file_sha256(target)
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
    tier: ColdTier | None = None
    dataset: str = ""
    hot_copies: list[Path] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # cold files the commit replaced

    def finish(self) -> None:
        for path in self.hot_copies:
            path.unlink(missing_ok=True)
        for shard_dir in sorted({path.parent for path in self.hot_copies}):
            remove_empty_dirs(shard_dir)
        if self.tier is not None:
            self.tier.delete(self.dataset, self.replaced)
            self.tier.close()
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
    tier = cold_tier(settings)
    if tier is None:
        raise ColdTierUnavailableError(_unset_message(dataset))
    if settings.cold_url is None:
        cold_root(settings, dataset)  # mounted?
    record_cold_writes(settings, dataset, touched)
    placement = ColdPlacement(settings=settings, tier=tier, dataset=dataset, replaced=[
        file.path for date in sorted(touched & replace_dates)
        for file in entry.partitions[date].files])
    for file in committed:
        if file["date"] in cold_dates:
            tier.copy_verified(hot_root / file["path"], dataset, file["path"], file["rows"])
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
    dates a killed run recorded (every date with `everything`, on a NAS). Without a
    reachable cold tier nothing is done and the record is kept for the next command."""
    pending = _cold_writes(settings)
    if pending is None:  # unreadable: look everywhere (in object storage: every known date)
        pending, everything = {}, True
    tier = cold_tier(settings)
    if not (pending or everything) or tier is None or (
            settings.cold_path is not None and not settings.cold_path.is_dir()):
        return 0
    removed = 0
    try:
        for name, entry in document.datasets.items():
            committed = entry.committed_paths("cold")
            if everything and settings.cold_url is None:
                removed += tier.remove_uncommitted(name, None, committed)
                continue
            dates = set(pending.get(name, []))
            if everything:
                dates |= set(entry.partitions)
            for date in sorted(dates):
                removed += tier.remove_uncommitted(name, date, committed)
    except ColdTierUnavailableError as error:
        log.warning("cold leftovers not removed yet (the next command tries again): %s", error)
        return removed
    finally:
        tier.close()
    clear_cold_writes(settings)
    return removed


def remove_uncommitted(root: Path, date_pattern: str, committed: set[str]) -> int:
    """Under `root/<date_pattern>/shard=*` (either tier): delete `*.tmp` files and Parquet
    files not in `committed` (paths relative to `root`), then empty directories. (os.scandir,
    not pathlib: a year of days is ~3,000 shard directories.)"""
    removed = 0
    for date_dir in _subdirectories(str(root), lambda name: fnmatch.fnmatchcase(name,
                                                                              date_pattern)):
        for shard_dir in _subdirectories(date_dir.path, lambda name: name.startswith("shard=")):
            kept = 0
            prefix = f"{date_dir.name}/{shard_dir.name}/"
            with os.scandir(shard_dir.path) as files:
                for file in files:
                    name = file.name
                    if name.endswith(".tmp") or (name.endswith(".parquet")
                                                 and prefix + name not in committed):
                        Path(file.path).unlink(missing_ok=True)
                        removed += 1
                    else:
                        kept += 1
            if not kept:
                remove_empty_dirs(Path(shard_dir.path))
    return removed


def _subdirectories(path: str, wanted: Callable[[str], bool]) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            return [entry for entry in entries if wanted(entry.name) and entry.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []


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


