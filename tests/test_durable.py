"""Durability on macOS: every durable write goes through runner/core/durable.flush_fd, which
uses fcntl(F_FULLFSYNC) on Darwin (fsync there leaves data in the drive's cache) and falls
back to fsync where a filesystem refuses it."""

from __future__ import annotations

import ast
import errno
import fcntl
import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conftest import Lake, SourceDb
from runner import cli
from runner.config import PROJECT_ROOT
from runner.core import durable
from runner.dev import synthetic


def test_no_module_but_durable_calls_fsync_or_fcntl_flushes():
    offenders = []
    for path in sorted((PROJECT_ROOT / "runner").rglob("*.py")):
        if path == PROJECT_ROOT / "runner/core/durable.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in (
                    "fsync", "fdatasync", "sync", "F_FULLFSYNC", "F_BARRIERFSYNC"):
                offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.attr}")
    assert offenders == [], "durable writes must use runner.core.durable: " + ", ".join(offenders)


def _fd_target(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.fixture
def darwin(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Play macOS: record what F_FULLFSYNC flushes (then really fsync it); fsync itself is
    allowed only as durable's fallback."""
    flushed: list[str] = []
    real_fsync, real_fcntl = os.fsync, fcntl.fcntl

    def fake_fcntl(fd: int, command: int, *args: Any) -> Any:
        if command == durable.F_FULLFSYNC:
            flushed.append(_fd_target(fd))
            real_fsync(fd)
            return 0
        return real_fcntl(fd, command, *args)

    def guarded_fsync(fd: int) -> None:
        raise AssertionError(f"os.fsync({_fd_target(fd)}) on Darwin: F_FULLFSYNC was not used")

    monkeypatch.setattr(durable, "PLATFORM", "darwin")
    monkeypatch.setattr(fcntl, "fcntl", fake_fcntl)
    monkeypatch.setattr(os, "fsync", guarded_fsync)
    return flushed


def test_on_darwin_a_json_commit_full_fsyncs_the_file_and_its_directory(
        darwin: list[str], tmp_path: Path):
    target = tmp_path / "manifest.json"
    durable.write_json_atomic(target, {"generation": 1})
    assert darwin[0].startswith(str(target) + ".")  # the temp file, before the rename
    assert darwin[1] == str(tmp_path)                # the directory entry, after it
    assert target.read_text().strip() == '{\n  "generation": 1\n}'


def test_where_f_fullfsync_is_refused_fsync_is_the_fallback(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path):
    fsynced: list[str] = []
    real_fsync = os.fsync

    def refusing_fcntl(fd: int, command: int, *args: Any) -> Any:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    def recording_fsync(fd: int) -> None:
        fsynced.append(_fd_target(fd))
        real_fsync(fd)

    monkeypatch.setattr(durable, "PLATFORM", "darwin")
    monkeypatch.setattr(fcntl, "fcntl", refusing_fcntl)
    monkeypatch.setattr(os, "fsync", recording_fsync)
    durable.fsync_path(tmp_path)
    assert fsynced == [str(tmp_path)]


def test_off_darwin_fsync_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    called: list[int] = []
    monkeypatch.setattr(durable, "PLATFORM", "linux")
    monkeypatch.setattr(fcntl, "fcntl", lambda *a: called.append(1))
    durable.fsync_path(tmp_path)
    assert called == []


def _tslake(*args: str) -> None:
    try:
        cli.main(list(args))
    except SystemExit as done:
        assert done.code in (0, None), args


def test_every_commit_path_full_fsyncs_on_darwin(darwin: list[str], lake: Lake,
                                                 source_db: SourceDb, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch):
    """A backfill, a tick, a compaction and a retention move to a cold tier, in process,
    as on macOS: each commit's files, directories, manifest and lake.duckdb are flushed
    with F_FULLFSYNC (os.fsync would fail the test). Each flush empties the drive's cache
    (milliseconds): the backfill flushes each of its files once (its worker does; the commit
    does not again) and each date directory once for all of its new shard directories."""
    with source_db.connect() as conn:
        synthetic.fill_history(conn, days=3, sensors=24, end=source_db.now())
    cold = tmp_path / "cold"
    cold.mkdir()
    for key, value in {**lake.env, "TSLAKE_COLD_PATH": str(cold),
                       "TSLAKE_COMPACT_MIN_FILES": "1000"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["tslake"])
    # cli.main points the root logger at this test's stderr: put pytest's handlers back after
    monkeypatch.setattr(logging.getLogger(), "handlers", list(logging.getLogger().handlers))
    hot = lake.settings.hot_path
    _tslake("backfill", "--days", "3")
    counts = Counter(darwin)
    files = [path for path in counts if path.endswith(".parquet.tmp")]
    dates = [path for path in counts if Path(path).name.startswith("date=")]
    assert len(files) >= 24 and len(dates) >= 3  # 3-4 days of 8 shards
    assert {path: counts[path] for path in files if counts[path] != 1} == {}
    assert {path: counts[path] for path in dates if counts[path] != 1} == {}
    source_db.execute("insert into metrics (sensor_id, ts, value, quality) "
                      "values ('late', now() - interval '2 days', 1, 0)")
    _tslake("tick")
    _tslake("compact")
    monkeypatch.setenv("TSLAKE_HOT_RETENTION_DAYS", "1")
    _tslake("retention")

    def flushed(predicate: Any) -> bool:
        return any(predicate(path) for path in darwin)

    assert flushed(lambda p: "/backfill-" in p and p.endswith(".parquet.tmp"))
    assert flushed(lambda p: "/part-" in p and p.endswith(".parquet.tmp"))
    assert flushed(lambda p: "/compact-" in p)
    assert flushed(lambda p: p.startswith(str(hot / "_state" / "manifest.json.")))
    assert flushed(lambda p: p.startswith(str(hot / "_state" / "lake.duckdb.")))
    assert flushed(lambda p: p == str(hot / "_state" / "manifests"))
    assert flushed(lambda p: p.startswith(str(cold)) and p.endswith(".parquet.tmp"))
    assert flushed(lambda p: p.startswith(str(cold / "metrics/v1" / "date=")))
    assert flushed(lambda p: p == str(hot / "metrics/v1"))  # a new date= entry
    assert lake.dataset()["partitions"], "the lake was written"

