"""Leftovers of killed runs: staged `*.tmp` files, Parquet files no manifest lists (a killed
write's outputs, a killed commit's replaced files), temp files in `_state/`.

Every writing command removes them before it writes (`publish.open_write`): SPEC, "the next
command of any kind cleans such leftovers up first". Walking the lake for them costs a
directory listing per shard-day (~3,000 at a year of days), on every tick. A writing
command that ends cleanly (`publish.writing`) leaves none, and says so in
`_state/tidy.json`: this boot of the machine and the stamp (inode, size, mtime) of the
manifest it left. The next writer walks the lake only when that record does not hold:

- a command killed or failed after its first `open_write` (which removes the record before
  anything is written) left none, or a `dbt run` typed by hand, which never writes one;
- another boot: the power was lost, and unlinks or renames that had not reached the disk
  may have come back (so the record itself needs no fsync);
- the manifest changed since (`tslake doctor --restore`, a writer that bypassed the lock):
  files the restored manifest does not list are leftovers now.

Within one hold of the lock, the first `open_write` decides; later ones (the next
dataset, the retention post-hook) do not walk again: what the lake holds is this
process's own doing meanwhile.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from runner.config import Settings
from runner.core import lock, manifest, tiers
from runner.core.manifest import Manifest
from runner.core.roots import dataset_root

log = logging.getLogger("tslake.publish")

TIDY_FILE = "tidy.json"
_BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
# (lock path, hold number) of the hold whose first open_write removed the leftovers.
_swept_hold: tuple[Path, int] | None = None


def remove_leftovers(settings: Settings, document: Manifest) -> int:
    """Delete what killed runs left: `*.tmp` files, and Parquet files no manifest lists."""
    removed = 0
    now = manifest.utc_now()
    for stale in [*settings.state_dir.glob("*.tmp"), *settings.state_dir.glob("*.tmp.wal")]:
        stale.unlink(missing_ok=True)
        removed += 1
    for name, entry in document.datasets.items():
        root = dataset_root(settings, name)
        committed = entry.committed_paths() | manifest.pending_paths(
            entry, now, settings.delete_grace_seconds)
        removed += tiers.remove_uncommitted(root, "date=*", committed)
    removed += tiers.remove_cold_leftovers(settings, document)
    if removed:
        log.info("removed %d leftover file(s) of interrupted runs", removed)
    return removed


def before_write(settings: Settings, document: Manifest) -> int:
    """`remove_leftovers`, unless the last writer ended cleanly (`tidy`) or this hold of the
    lock did it already; then forget the record: from here on this command writes."""
    global _swept_hold
    hold = _current_hold(settings)
    if hold is not None and hold == _swept_hold:
        return 0
    removed = 0 if tidy(settings) else remove_leftovers(settings, document)
    _tidy_path(settings).unlink(missing_ok=True)
    _swept_hold = hold
    return removed


def mark_tidy(settings: Settings) -> None:
    """A writing command ended cleanly: record it, if this hold of the lock removed the
    leftovers before its writes (else the lake was never checked, and stays unchecked)."""
    hold = _current_hold(settings)
    boot = boot_id()
    if hold is None or hold != _swept_hold or boot is None:
        return
    record = {"boot": boot, "manifest": manifest.file_stamp(settings.manifest_path)}
    path = _tidy_path(settings)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)  # no fsync: a record from another boot does not count
    except OSError as error:  # the next writer walks the lake; nothing else changes
        log.debug("could not record a tidy lake: %s", error)
        tmp.unlink(missing_ok=True)


def tidy(settings: Settings) -> bool:
    """Whether `_state/tidy.json` holds for this boot and the manifest as it is now."""
    try:
        record = json.loads(_tidy_path(settings).read_bytes())
    except (OSError, ValueError):
        return False
    stamp = manifest.file_stamp(settings.manifest_path)
    boot = boot_id()
    return (isinstance(record, dict) and boot is not None and record.get("boot") == boot
            and stamp is not None and record.get("manifest") == list(stamp))


def boot_id() -> str | None:
    """An id of this boot of the machine (None where none is known: every writer then
    walks the lake, as before)."""
    try:
        return _BOOT_ID_FILE.read_text().strip() or None
    except OSError:
        pass
    if sys.platform == "darwin":
        return _darwin_boot_session()
    return None


def _darwin_boot_session() -> str | None:
    """macOS's `kern.bootsessionuuid` (sysctl), new at each boot."""
    import ctypes

    try:
        libc = ctypes.CDLL("/usr/lib/libc.dylib", use_errno=True)
        name = b"kern.bootsessionuuid"
        size = ctypes.c_size_t(0)
        if libc.sysctlbyname(name, None, ctypes.byref(size), None, ctypes.c_size_t(0)) != 0:
            return None
        buffer = ctypes.create_string_buffer(size.value or 64)
        if libc.sysctlbyname(name, buffer, ctypes.byref(size), None, ctypes.c_size_t(0)) != 0:
            return None
        return buffer.value.decode("ascii", "replace") or None
    except (OSError, AttributeError, ValueError):
        return None


def _current_hold(settings: Settings) -> tuple[Path, int] | None:
    number = lock.hold_number(settings.lock_path)
    return None if number is None else (settings.lock_path.absolute(), number)


def _tidy_path(settings: Settings) -> Path:
    return settings.state_dir / TIDY_FILE
