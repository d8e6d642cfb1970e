"""What keeps a commit's cost from growing with the lake's days (issue 16 item 4): the
manifest read and written by pydantic in one pass, commits drafted copy-on-write,
containment resolved per directory, the leftover sweep skipped after a clean end."""

from __future__ import annotations

import json
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import Lake, SourceDb, assert_clean_disk, source_rows
from runner.config import Settings
from runner.core import leftovers, lock, manifest, publish, roots
from runner.core.manifest import parse_rfc3339
from runner.errors import ManifestError

NOW = datetime(2026, 1, 22, 10, 15, tzinfo=UTC)


def file_entry(date: str, shard: int, run_id: str, kind: str = "part",
               rows: int = 5) -> dict[str, object]:
    return {"date": date, "shard": shard, "rows": rows, "bytes": 100 + rows, "kind": kind,
            "run_id": run_id, "path": f"date={date}/shard={shard:02d}/{kind}-{run_id}.parquet"}


def year_of_days(days: int = 365) -> manifest.Manifest:
    """A manifest shaped like a backfilled lake: `days` dates x 8 shards, two datasets."""
    document = manifest.empty()
    for name in ("metrics/v1", "forecast_points/v1"):
        entry = document.dataset(name, 8)
        entry.computed_through_ts = "2026-01-22T10:00:00Z"
        first = datetime(2026, 1, 22) - timedelta(days=days - 1)
        files = [file_entry((first + timedelta(days=n)).date().isoformat(), shard, "b1",
                            "backfill") for n in range(days) for shard in range(8)]
        manifest.add_files(entry, files, now=NOW)
    return document


@pytest.mark.unit
def test_a_drafted_commit_changes_only_the_draft_and_equals_a_deep_copy_commit():
    original = year_of_days(40)
    before = original.model_dump(mode="json")
    dates = sorted(original.datasets["metrics/v1"].partitions)
    inputs = frozenset(f.path for f in original.datasets["metrics/v1"].partitions[dates[3]].files)
    steps = [  # (files, replace_dates, replace_paths): a tick, a backfill day, a compaction
        ([file_entry(dates[-1], 2, "t1"), file_entry("2026-01-23", 0, "t1")], (), ()),
        ([file_entry(dates[5], 1, "b2", "backfill")], (dates[5], dates[6]), ()),
        ([file_entry(dates[3], 0, "c1", "compact", rows=4)], (), inputs)]
    results = []
    for make_copy in (lambda d: manifest.draft(d, "metrics/v1"),
                      lambda d: d.model_copy(deep=True)):
        document = make_copy(original)
        entry = document.datasets["metrics/v1"]
        removed = []
        for files, replace_dates, replace_paths in steps:
            removed += manifest.add_files(entry, files, replace_dates=frozenset(replace_dates),
                                          replace_paths=frozenset(replace_paths), now=NOW)
        manifest.record_compaction(entry, run_id="c1", finished_at="2026-01-22T10:15:00Z",
                                   shard_days=1, files_in=1, rows_in=5, rows_out=4)
        manifest.schedule_deletes(entry, removed, NOW)
        entry.last_run = {"run_id": "t1"}
        assert original.model_dump(mode="json") == before  # the drafted-from is untouched
        results.append(document.model_dump(mode="json"))
    assert results[0] == results[1]
    metrics = results[0]["datasets"]["metrics/v1"]
    assert "2026-01-23" in metrics["partitions"] and dates[6] not in metrics["partitions"]
    assert metrics["partitions"][dates[3]]["file_count"] == 1
    # the untouched dataset is shared, not copied
    draft = manifest.draft(original, "metrics/v1")
    assert draft.datasets["forecast_points/v1"] is original.datasets["forecast_points/v1"]


@pytest.mark.unit
def test_the_manifest_written_compactly_reads_back_the_same_and_older_files_still_load(
        tmp_path: Path):
    path = tmp_path / "_state" / "manifest.json"
    path.parent.mkdir()
    document = year_of_days(3)
    document.datasets["metrics/v1"].last_run = {"run_id": "r", "rows": 3, "nested": {"a": [1]}}
    manifest.save(path, document)
    raw = path.read_bytes()
    assert b"\n" not in raw.rstrip(b"\n")  # one line: pydantic's serialiser, no indentation
    loaded = manifest.load(path)
    assert loaded is not None
    assert loaded.model_dump(mode="json") == document.model_dump(mode="json")
    # A manifest as earlier versions wrote it (json.dumps, indented, sorted keys) ...
    path.write_text(json.dumps(json.loads(raw), indent=2, sort_keys=True))
    pretty = manifest.load(path)
    assert pretty is not None
    assert pretty.model_dump(mode="json") == document.model_dump(mode="json")
    # ... and a version 1 file goes through migrate(), the same as before.
    old = json.loads(raw)
    old["version"] = 1
    path.write_text(json.dumps(old))
    migrated = manifest.load(path)
    assert migrated is not None and migrated.version == 2
    # A wrong type still names its place (the dict path explains what the fast one refused).
    old["version"] = 2
    old["datasets"]["metrics/v1"]["partitions"][sorted(old["datasets"]["metrics/v1"][
        "partitions"])[0]]["files"][0]["rows"] = "5"
    path.write_text(json.dumps(old))
    with pytest.raises(ManifestError, match=r"malformed at \$\.datasets\.metrics/v1\.partitions"
                                            r"\..*\.files\[0\]\.rows"):
        manifest.load(path)


def reference_inside(root: Path, relative: str) -> bool:
    """The containment rule as os.path.realpath states it (the check it replaced)."""
    path = root / relative
    real_root = os.path.realpath(root)
    real = os.path.join(os.path.realpath(path.parent), path.name)
    if os.path.islink(real):
        real = os.path.realpath(real)
    return os.path.commonpath([real_root, real]) == real_root


@pytest.mark.unit
def test_containment_resolved_per_directory_agrees_with_realpath(tmp_path: Path):
    lake = tmp_path / "hot" / "metrics" / "v1"
    outside = tmp_path / "outside"
    (lake / "date=2026-01-01" / "shard=00").mkdir(parents=True)
    (lake / "date=2026-01-02").mkdir()
    (lake / "elsewhere").mkdir()
    outside.mkdir()
    (outside / "x.parquet").write_bytes(b"x")
    (lake / "date=2026-01-01" / "shard=00" / "a.parquet").write_bytes(b"a")
    (lake / "date=2026-01-01" / "shard=00" / "out.parquet").symlink_to(outside / "x.parquet")
    (lake / "date=2026-01-01" / "shard=00" / "in.parquet").symlink_to(
        lake / "date=2026-01-01" / "shard=00" / "a.parquet")
    (lake / "date=2026-01-02" / "shard=00").symlink_to(outside, target_is_directory=True)
    (lake / "date=2026-01-02" / "shard=01").symlink_to(lake / "elsewhere",
                                                       target_is_directory=True)
    (lake / "date=2026-01-03").symlink_to(tmp_path, target_is_directory=True)
    cases = ["date=2026-01-01/shard=00/a.parquet", "date=2026-01-01/shard=00/out.parquet",
             "date=2026-01-01/shard=00/in.parquet", "date=2026-01-01/shard=00/missing.parquet",
             "date=2026-01-02/shard=00/x.parquet", "date=2026-01-02/shard=01/y.parquet",
             "date=2026-01-03/outside/x.parquet", "date=2026-01-03/hot/metrics/v1/z.parquet",
             "date=2026-01-01//shard=00/./a.parquet", "date=2026-01-09/shard=00/new.parquet"]
    containment = roots.Containment(tmp_path / "manifest.json")
    for relative in cases * 2:  # the second round from the cached directories
        expected = reference_inside(lake, relative)
        try:
            containment.inside(lake, relative)
            found = True
        except ManifestError as error:
            assert "leads outside" in str(error)
            found = False
        assert found == expected, relative
    assert not reference_inside(lake, "date=2026-01-01/shard=00/out.parquet")  # cases bite


def settings_for(root: Path) -> Settings:
    return Settings.from_env({"TSLAKE_DATA_ROOT": str(root)})


def lake_with_one_file(root: Path) -> tuple[Settings, manifest.Manifest, Path]:
    settings = settings_for(root)
    settings.state_dir.mkdir(parents=True)
    document = manifest.empty()
    entry = document.dataset("metrics/v1", 8)
    manifest.add_files(entry, [file_entry("2026-01-22", 1, "r1")], now=NOW)
    manifest.save(settings.manifest_path, document)
    shard = settings.hot_path / "metrics/v1" / "date=2026-01-22" / "shard=01"
    shard.mkdir(parents=True)
    (shard / "part-r1.parquet").write_bytes(b"committed")
    return settings, document, shard


def in_a_hold(settings: Settings, document: manifest.Manifest) -> int:
    with lock.lake_lock(settings.lock_path, 5, "test"):
        removed = leftovers.before_write(settings, document)
        assert leftovers.before_write(settings, document) == 0  # once per hold
        leftovers.mark_tidy(settings)
        return removed


@pytest.mark.unit
def test_the_sweep_runs_unless_the_last_writer_ended_cleanly_this_boot_on_this_manifest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    boot = tmp_path / "boot_id"
    boot.write_text("boot-1\n")
    monkeypatch.setattr(leftovers, "_BOOT_ID_FILE", boot)
    settings, document, shard = lake_with_one_file(tmp_path / "data")
    (shard / "part-killed.parquet").write_bytes(b"x")
    (shard / "part-killed.parquet.tmp").write_bytes(b"x")
    assert in_a_hold(settings, document) == 2  # no record yet: the whole lake is looked at
    assert sorted(p.name for p in shard.iterdir()) == ["part-r1.parquet"]
    assert (settings.state_dir / leftovers.TIDY_FILE).exists()

    stray = shard / "part-stray.parquet"
    stray.write_bytes(b"x")  # not something a clean writer leaves: proves nothing is walked
    assert in_a_hold(settings, document) == 0 and stray.exists()
    boot.write_text("boot-2\n")  # power lost since: unlinks may have come back
    assert in_a_hold(settings, document) == 1 and not stray.exists()
    stray.write_bytes(b"x")
    manifest.save(settings.manifest_path, document)  # a restore, another writer: new stamp
    assert in_a_hold(settings, document) == 1 and not stray.exists()

    stray.write_bytes(b"x")
    with lock.lake_lock(settings.lock_path, 5, "killed"):
        leftovers.before_write(settings, document)  # a writer starts ... and dies here
    assert not (settings.state_dir / leftovers.TIDY_FILE).exists()
    assert in_a_hold(settings, document) == 1 and not stray.exists()
    with lock.lake_lock(settings.lock_path, 5, "no writes"):
        (settings.state_dir / leftovers.TIDY_FILE).unlink()
        leftovers.mark_tidy(settings)  # a hold that never swept cannot vouch for the lake
    assert not (settings.state_dir / leftovers.TIDY_FILE).exists()
    with publish.writing(settings, "outer"):  # a command's hold, as the CLI takes it
        leftovers.before_write(settings, document)
        with publish.writing(settings, "nested"):
            pass
        assert not (settings.state_dir / leftovers.TIDY_FILE).exists()  # the outer still writes
    assert (settings.state_dir / leftovers.TIDY_FILE).exists()
    monkeypatch.setattr(leftovers, "_BOOT_ID_FILE", tmp_path / "no-such-file")
    monkeypatch.setattr(leftovers.sys, "platform", "unknown")
    assert leftovers.boot_id() is None
    in_a_hold(settings, document)
    assert not (settings.state_dir / leftovers.TIDY_FILE).exists()  # no boot id: no record


def add_rows(db: SourceDb, sensor: str, count: int = 30) -> None:
    db.execute("""insert into metrics (sensor_id, ts, value)
                  select %s, now() - make_interval(secs => i), i
                  from generate_series(1, %s) as i""", (sensor, count))


@pytest.mark.integration
@pytest.mark.parametrize("point", ["after_data_rename", "compact_after_manifest_replace"])
def test_a_tick_killed_after_clean_ticks_is_cleaned_up_by_the_next(lake: Lake,
                                                                   source_db: SourceDb,
                                                                   point: str):
    tidy = lake.settings.state_dir / leftovers.TIDY_FILE
    add_rows(source_db, "s", 30)
    lake.run("tslake", "tick")
    assert tidy.exists()  # a clean end: the next tick need not walk the lake
    add_rows(source_db, "s", 20)  # the same sensor: a second file in its shard-day
    killed = lake.run("tslake", "tick", check=False, TSLAKE_FAILPOINT=point,
                      TSLAKE_COMPACT_MIN_FILES="1")  # the kill lands in a compaction commit
    assert killed.returncode == -signal.SIGKILL
    assert not tidy.exists()
    assert lake.files_on_disk() != lake.committed_files()  # the killed run's debris
    add_rows(source_db, "s", 10)
    lake.run("tslake", "tick")
    assert_clean_disk(lake)
    watermark = parse_rfc3339(lake.dataset()["computed_through_ts"])
    assert sorted(lake.rows(newest=True)) == source_rows(source_db, "inserted_at <= %s",
                                                         (watermark,))
    assert tidy.exists()
