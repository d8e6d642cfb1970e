"""Durable file operations: what makes a rename a commit that survives power loss."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def fsync_path(path: Path) -> None:
    """Flush a file's or a directory's contents and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_rename(src: Path, dst: Path) -> None:
    """Rename `src` over `dst` (same filesystem) and flush the directory entry."""
    os.replace(src, dst)
    fsync_path(dst.parent)


def write_json_atomic(path: Path, document: Any) -> None:
    """Replace `path` with `document` so readers see the old or the new file, never a mix.

    Temp file in the same directory, write, fsync, rename, fsync the directory; the temp
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
            os.fsync(handle.fileno())
        durable_rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
