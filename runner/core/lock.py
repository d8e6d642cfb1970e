"""The lake's write lock: one writer at a time, released by the kernel if the writer dies.

`flock` on `_state/lock`. The lock is re-entrant within a process because `tslake tick`
takes it and then runs dbt in-process, whose plugin takes it again.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runner.errors import LakeBusyError

_held: dict[Path, tuple[int, int]] = {}  # lock path -> (fd, depth)
# lock path -> which hold of it this is: a number no earlier hold in this process had.
_hold_numbers: dict[Path, int] = {}
_holds = itertools.count(1)


def acquire(path: Path, timeout_seconds: float, purpose: str) -> None:
    """Take the lock (or deepen it if this process holds it); wait up to `timeout_seconds`."""
    path = path.absolute()
    if path in _held:
        fd, depth = _held[path]
        _held[path] = (fd, depth + 1)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = _describe_holder(fd)
                os.close(fd)
                raise LakeBusyError(
                    f"lake is busy: {path} is held by {holder}; wait for it to finish "
                    f"(or raise TSLAKE_LOCK_TIMEOUT_SECONDS, now {timeout_seconds:g})") from None
            time.sleep(0.1)
    # Who holds it, for the next writer's error message. Not used for correctness.
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "purpose": purpose,
                              "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "argv": " ".join(sys.argv[:3])}).encode(), 0)
    _held[path] = (fd, 1)
    _hold_numbers[path] = next(_holds)


def release(path: Path) -> None:
    """Undo one `acquire`; the last release unlocks."""
    path = path.absolute()
    _unwind_to(path, max(0, _depth(path) - 1))


def hold_number(path: Path) -> int | None:
    """Which hold of the lock this process is in (None: it does not hold it): what was
    found out under the lock stays true until this number changes."""
    return _hold_numbers.get(path.absolute())


def _depth(path: Path) -> int:
    return _held[path][1] if path in _held else 0


def _unwind_to(path: Path, depth: int) -> None:
    if path not in _held:
        return
    fd, current = _held[path]
    if depth > 0:
        _held[path] = (fd, min(current, depth))
        return
    del _held[path]
    _hold_numbers.pop(path, None)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextmanager
def lake_lock(path: Path, timeout_seconds: float, purpose: str) -> Iterator[None]:
    """Hold the lock for a block. On exit, every level taken inside the block is released
    too, so a dbt model that failed before its own release cannot keep the lake locked."""
    path = path.absolute()
    outer_depth = _depth(path)
    acquire(path, timeout_seconds, purpose)
    try:
        yield
    finally:
        _unwind_to(path, outer_depth)


def holder(path: Path) -> str | None:
    """Who holds the lock now (None: nobody), without taking it (`tslake doctor`)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe_holder(fd)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _describe_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} ({info['purpose']}, since {info['since']})"
    except (ValueError, KeyError, OSError):
        return "another process"
