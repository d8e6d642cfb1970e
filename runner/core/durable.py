"""Durable file operations: what makes a rename a commit that survives power loss.

Every durable write in tslake goes through `flush_fd` (tests/test_durable.py checks that no
other module calls fsync): on macOS, fsync(2) hands the data to the drive but leaves it in
the drive's volatile cache, so a power cut after a "committed" rename can lose the file or
the rename; fcntl(F_FULLFSYNC) asks the drive to flush that cache too. Filesystems that
refuse it (some network or FAT volumes) get a plain fsync.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path
from typing import Any

PLATFORM = sys.platform  # a module attribute, so a test can play macOS on Linux
F_FULLFSYNC = getattr(fcntl, "F_FULLFSYNC", 51)  # 51 in macOS's <sys/fcntl.h>


def flush_fd(fd: int) -> None:
    """Flush an open file's or directory's data and metadata to stable storage."""
    if PLATFORM == "darwin":
        try:
            fcntl.fcntl(fd, F_FULLFSYNC)
            return
        except OSError:
            pass  # refused by this filesystem: fsync is the best it offers
    os.fsync(fd)


def fsync_path(path: Path) -> None:
    """Flush a file's or a directory's contents and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        flush_fd(fd)
    finally:
        os.close(fd)


def makedirs_durable(*directories: Path) -> None:
    """mkdir -p each directory, then flush each parent that gained an entry, once: a day's
    eight shard directories cost one flush of the date directory, not eight."""
    parents: dict[Path, None] = {}  # insertion-ordered: the outermost parent first
    for directory in directories:
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for new in reversed(missing):
            new.mkdir(exist_ok=True)
            parents[new.parent] = None
    for parent in parents:
        fsync_path(parent)


def durable_rename(src: Path, dst: Path) -> None:
    """Rename `src` over `dst` (same filesystem) and flush the directory entry."""
    os.replace(src, dst)
    fsync_path(dst.parent)


def write_json_atomic(path: Path, document: Any) -> None:
    """Replace `path` with `document` so readers see the old or the new file, never a mix.

    Temp file in the same directory, write, flush, rename, flush the directory; the temp
    file is removed if anything fails before the rename.
    """
    write_bytes_atomic(path, json.dumps(document, indent=2, sort_keys=True).encode() + b"\n")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """`write_json_atomic` for bytes that are not JSON (Iceberg's `version-hint.text`)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            flush_fd(handle.fileno())
        durable_rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
