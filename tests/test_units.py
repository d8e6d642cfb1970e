"""Unit tests: settings, manifest bookkeeping, the lock, conninfo hygiene, CLI help."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest

from runner.cli import cli
from runner.cli_params import parse_date
from runner.config import Settings
from runner.core import lock, manifest
from runner.errors import ConfigError, LakeBusyError, ManifestError
from runner.postgres.connection import SourceConninfo, sql_literal

pytestmark = pytest.mark.unit


def test_settings_defaults_follow_the_spec(tmp_path: Path):
    settings = Settings.from_env({"TSLAKE_DATA_ROOT": str(tmp_path)})
    assert settings.hot_path == tmp_path / "storage/analysis/lake/hot"
    assert settings.tmp_path == tmp_path / "storage/analysis/tmp"
    assert settings.cold_path is None
    assert (settings.interval_seconds, settings.lag_seconds) == (60, 300)
    assert (settings.hot_retention_days, settings.shards, settings.compact_min_files) == (90, 8, 10)
    assert settings.manifest_path == settings.hot_path / "_state/manifest.json"


def test_settings_accept_the_seed_aliases(tmp_path: Path):
    settings = Settings.from_env({"TSLAKE_DATA_ROOT": str(tmp_path),
                                  "CORE_ANALYSIS_LAKE_COLD_PATH": "/nas/cold",
                                  "CORE_ANALYSIS_REPLICATION_LAG_SECONDS": "30",
                                  "CORE_ANALYSIS_HOT_RETENTION_DAYS": "7"})
    assert (settings.cold_path, settings.lag_seconds, settings.hot_retention_days) == \
        (Path("/nas/cold"), 30, 7)


@pytest.mark.parametrize("name, value, words", [
    ("TSLAKE_SHARDS", "eight", "not a whole number"),
    ("TSLAKE_SHARDS", "0", "below the minimum"),
    ("TSLAKE_SHARDS", "101", "two digits"),
    ("TSLAKE_REPLICATION_LAG_SECONDS", "nan", "below the minimum"),
    ("TSLAKE_MEMORY_LIMIT", "lots", "not a size"),
])
def test_bad_settings_are_one_line_errors_naming_the_variable(name: str, value: str, words: str):
    with pytest.raises(ConfigError) as error:
        Settings.from_env({name: value})
    assert name in str(error.value) and words in str(error.value)
    assert "\n" not in str(error.value)


def test_manifest_add_and_replace_files():
    now = datetime(2026, 1, 22, 10, 15, tzinfo=UTC)
    document = manifest.empty()
    entry = document.dataset("metrics/v1", 8)
    file = {"date": "2026-01-22", "shard": 3, "rows": 5, "bytes": 100, "kind": "part",
            "run_id": "r1", "path": "date=2026-01-22/shard=03/part-r1.parquet"}
    assert manifest.add_files(entry, [file], now=now) == []
    second = {**file, "run_id": "r2", "path": "date=2026-01-22/shard=03/part-r2.parquet"}
    manifest.add_files(entry, [second], now=now)
    partition = entry.partitions["2026-01-22"]
    assert (partition.file_count, partition.rows, partition.bytes) == (2, 10, 200)
    replacement = {**file, "kind": "backfill", "run_id": "r3", "rows": 7,
                   "path": "date=2026-01-22/shard=03/backfill-r3.parquet"}
    removed = manifest.add_files(entry, [replacement], replace_dates=frozenset({"2026-01-22"}),
                                 now=now)
    assert sorted(removed) == [file["path"], second["path"]]
    assert entry.committed_paths() == {replacement["path"]}
    assert entry.partitions["2026-01-22"].rows == 7


def test_manifest_compaction_replaces_its_inputs_in_one_commit():
    now = datetime(2026, 1, 22, 10, 15, tzinfo=UTC)
    entry = manifest.empty().dataset("metrics/v1", 8)
    parts = [{"date": "2026-01-22", "shard": shard, "rows": 5, "bytes": 100, "kind": "part",
              "run_id": f"r{n}", "path": f"date=2026-01-22/shard={shard:02d}/part-r{n}.parquet"}
             for n in range(3) for shard in (1, 2)]
    manifest.add_files(entry, parts, now=now)
    inputs = frozenset(f["path"] for f in parts if f["shard"] == 1)
    compacted = {"date": "2026-01-22", "shard": 1, "rows": 12, "bytes": 90, "kind": "compact",
                 "run_id": "c1", "path": "date=2026-01-22/shard=01/compact-c1.parquet"}
    later = datetime(2026, 1, 22, 11, tzinfo=UTC)
    removed = manifest.add_files(entry, [compacted], replace_paths=inputs, now=later)
    assert sorted(removed) == sorted(inputs)
    partition = entry.partitions["2026-01-22"]
    assert (partition.file_count, partition.rows) == (4, 27)
    assert partition.last_compacted_at == "2026-01-22T11:00:00Z"
    with pytest.raises(ManifestError, match="does not list it"):
        manifest.add_files(entry, [compacted], replace_paths=inputs, now=later)


def test_pending_deletes_wait_for_the_grace_period():
    entry = manifest.empty().dataset("metrics/v1", 8)
    replaced = datetime(2026, 1, 22, 10, 0, tzinfo=UTC)
    path = "date=2026-01-22/shard=01/part-r1.parquet"
    manifest.schedule_deletes(entry, [path], replaced)
    soon = datetime(2026, 1, 22, 10, 0, 30, tzinfo=UTC)
    assert manifest.pending_paths(entry, soon, 60) == {path}
    assert manifest.take_due_deletes(entry, soon, 60) == []
    assert manifest.pending_paths(entry, soon, 0) == set()
    assert manifest.take_due_deletes(entry, soon, 10) == [path]
    assert entry.pending_deletes == []


@pytest.mark.parametrize("text", ["2026-02-30", "2026-1-2", "20260122", "today", ""])
def test_compact_date_must_be_a_calendar_date(text: str):
    with pytest.raises(ConfigError, match="is not a calendar date"):
        parse_date(text)
    assert parse_date("2024-02-29") == "2024-02-29"


def test_manifest_refuses_a_different_shard_count():
    document = manifest.empty()
    document.dataset("metrics/v1", 8)
    with pytest.raises(ConfigError, match="TSLAKE_SHARDS=8"):
        document.dataset("metrics/v1", 16)


def test_manifest_save_is_atomic_and_versioned(tmp_path: Path):
    path = tmp_path / "manifest.json"
    document = manifest.empty()
    manifest.save(path, document)
    manifest.save(path, document)
    loaded = manifest.load(path)
    assert loaded is not None and loaded.generation == 2
    kept = tmp_path / "manifests"  # the last commits, for `tslake doctor --restore`
    assert sorted(tmp_path.iterdir()) == [path, kept]
    assert [p.name for p in sorted(kept.iterdir())] == [
        "manifest-000000000001.json", "manifest-000000000002.json"]
    assert (kept / "manifest-000000000002.json").read_bytes() == path.read_bytes()
    path.write_text('{"version": 99, "datasets": {}}')
    with pytest.raises(ManifestError, match="version 99"):
        manifest.load(path)
    path.write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        manifest.load(path)


def test_rfc3339_round_trip():
    moment = datetime(2026, 1, 23, 10, 15, 0, 123, tzinfo=UTC)
    assert manifest.rfc3339(moment) == "2026-01-23T10:15:00.000123Z"
    assert manifest.rfc3339(moment.replace(microsecond=0)) == "2026-01-23T10:15:00Z"
    assert manifest.parse_rfc3339("2026-01-23T10:15:00.000123Z") == moment


def test_lock_is_reentrant_in_process_and_exclusive_across_processes(tmp_path: Path):
    path = tmp_path / "lock"
    with lock.lake_lock(path, 0, "outer"):
        with lock.lake_lock(path, 0, "inner"):
            pass
        # still held after the inner block: another process cannot take it
        probe = subprocess.run(
            [sys.executable, "-c", "import sys; from runner.core import lock\n"
             "from pathlib import Path\n"
             "try:\n lock.acquire(Path(sys.argv[1]), 0.2, 'probe')\nexcept Exception as e:\n"
             " print(type(e).__name__, e); sys.exit(3)", str(path)],
            capture_output=True, text=True)
        assert probe.returncode == 3 and "lake is busy" in probe.stdout and "outer" in probe.stdout
    lock.acquire(path, 0, "again")
    lock.release(path)


def test_lock_times_out_with_lake_busy(tmp_path: Path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from runner.core import lock; "
         "from pathlib import Path; lock.acquire(Path(sys.argv[1]), 0, 'holder'); "
         "print('held', flush=True); time.sleep(30)",
         str(tmp_path / "lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LakeBusyError, match="holder"):
            lock.acquire(tmp_path / "lock", 0.3, "second")
    finally:
        holder.kill()
        holder.wait()
    lock.acquire(tmp_path / "lock", 5, "after the holder died")  # the kernel released it
    lock.release(tmp_path / "lock")


def test_conninfo_keeps_the_password_out_of_the_attach_string():
    source = SourceConninfo({"TSLAKE_PG_DSN": "postgresql://farm:pa%27ss@db.local:5433/metrics"})
    assert source.password == "pa'ss"
    assert "pa'ss" not in source.conninfo and "password" not in source.conninfo
    assert "application_name=tslake" in source.conninfo
    assert source.describe() == "host=db.local port=5433 dbname=metrics user=farm"
    assert source.redact("failed for pa'ss") == "failed for ***"


def test_bad_dsn_error_does_not_echo_the_dsn():
    with pytest.raises(ConfigError) as error:
        SourceConninfo({"TSLAKE_PG_DSN": "host=x password=hunter2 nonsense"})
    assert "hunter2" not in str(error.value)


def test_sql_literal_quotes_quotes():
    assert sql_literal("o'brien") == "'o''brien'"


def test_every_cli_command_has_help_text():
    assert isinstance(cli, click.Group)
    for name, command in cli.commands.items():
        assert command.help and command.help.strip(), f"tslake {name} has no help"
        for parameter in command.params:
            if isinstance(parameter, click.Option):
                assert parameter.help, f"tslake {name} {parameter.opts[0]} has no help"
