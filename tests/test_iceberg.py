"""Iceberg metadata per dataset (SPEC section 9): its layout, that the current snapshot names
exactly the manifest's files, unchanged dates' manifests reused, bounded history, and the
manifest staying the commit point when a process is SIGKILLed around the refresh."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyiceberg.manifest import read_manifest_list
from pyiceberg.table import StaticTable
from pyiceberg.transforms import DayTransform

from conftest import NO_TRIGGER, Lake, SourceDb
from runner.config import Settings
from runner.core import iceberg, manifest
from runner.core.datasets import declared
from runner.dev import synthetic


def iceberg_files(location: str) -> list[str]:
    """The data files the table's current snapshot names."""
    return sorted(task.file.file_path for task in
                  StaticTable.from_metadata(location).scan().plan_files())


def fake_lake(tmp_path: Path, days: int) -> tuple[Settings, manifest.Manifest]:
    """A manifest listing `days` x 8 shards of files (the refresh never opens them)."""
    settings = Settings.from_env({"TSLAKE_DATA_ROOT": str(tmp_path / "data")})
    document = manifest.empty()
    entry = document.dataset("metrics/v1", 8)
    entry.declaration = declared()["metrics/v1"].record()
    entry.source_columns = {"quality": "smallint"}
    for day in range(days):
        add_tick(entry, f"2026-01-{day + 1:02d}", f"20260101T0000{day:02d}Z-0000abcd")
    return settings, document


def add_tick(entry: manifest.DatasetState, date: str, run_id: str) -> None:
    files = [{"date": date, "shard": shard, "rows": 10, "bytes": 1000 + shard, "kind": "part",
              "run_id": run_id,
              "path": f"date={date}/shard={shard:02d}/part-{run_id}.parquet"}
             for shard in range(8)]
    manifest.add_files(entry, files, now=manifest.utc_now())


def expected_paths(settings: Settings, entry: manifest.DatasetState) -> list[str]:
    return sorted(str(settings.hot_path / "metrics/v1" / file.path)
                  for _, _, file in entry.files_of())


@pytest.mark.unit
def test_each_refresh_names_the_manifest_files_reuses_unchanged_dates_and_keeps_history_bounded(
        tmp_path: Path):
    settings, document = fake_lake(tmp_path, days=20)
    entry = document.datasets["metrics/v1"]
    assert iceberg.refresh_dataset(settings, "metrics/v1", entry, 1)
    location = iceberg.metadata_location(settings, "metrics/v1")
    assert location == str(settings.hot_path / "metrics/v1/metadata/v1.metadata.json")
    table = StaticTable.from_metadata(location)
    first = table.current_snapshot()
    assert first is not None
    assert table.metadata.format_version == 2
    assert table.metadata.location == str(settings.hot_path / "metrics/v1")
    (field,) = table.spec().fields
    assert isinstance(field.transform, DayTransform)
    assert table.schema().find_field(field.source_id).name == "ts"
    assert [f.name for f in table.schema().fields] == list(entry.declaration.columns)  # type: ignore[union-attr]
    assert iceberg_files(location) == expected_paths(settings, entry)
    # The same files again: no new snapshot.
    assert not iceberg.refresh_dataset(settings, "metrics/v1", entry, 2)

    for tick in range(15):  # each tick adds files to the newest date only
        add_tick(entry, "2026-01-20", f"20260102T0000{tick:02d}Z-0000abcd")
        assert iceberg.refresh_dataset(settings, "metrics/v1", entry, 3 + tick)
    location = iceberg.metadata_location(settings, "metrics/v1")
    assert location is not None and location.endswith("/v16.metadata.json")
    assert (settings.hot_path / "metrics/v1/metadata/version-hint.text").read_text() == "16"
    table = StaticTable.from_metadata(location)
    assert iceberg_files(location) == expected_paths(settings, entry)
    assert len(table.metadata.snapshots) == iceberg.KEEP_SNAPSHOTS
    assert len(table.metadata.metadata_log) == iceberg.KEEP_SNAPSHOTS - 1
    # The 19 unchanged dates still use the manifests the first snapshot wrote.
    current = table.current_snapshot()
    assert current is not None
    lists = list(read_manifest_list(table.io.new_input(current.manifest_list)))
    assert len(lists) == 20
    assert sum(item.added_snapshot_id == first.snapshot_id for item in lists) == 19
    assert first.snapshot_id not in {s.snapshot_id for s in table.metadata.snapshots}
    # On disk: only what a kept snapshot or metadata-log entry names.
    metadata = settings.hot_path / "metrics/v1/metadata"
    names = {path.name for path in metadata.iterdir()}
    kept_lists = {Path(s.manifest_list).name for s in table.metadata.snapshots}
    assert {name for name in names if name.startswith("snap-")} == kept_lists
    assert len([name for name in names if name.endswith(".metadata.json")]) == \
        iceberg.KEEP_SNAPSHOTS
    assert len([name for name in names if name.startswith("m-")]) == 19 + iceberg.KEEP_SNAPSHOTS
    for snapshot in table.metadata.snapshots:  # every kept snapshot is still readable
        for item in read_manifest_list(table.io.new_input(snapshot.manifest_list)):
            assert (metadata / Path(item.manifest_path).name).is_file()


@pytest.mark.integration
def test_a_kill_around_the_refresh_leaves_iceberg_behind_and_the_next_command_catches_up(
        lake: Lake, source_db: SourceDb):
    with source_db.connect() as conn:
        synthetic.fill_uniform(conn, sensors=4, days=2, cadence_seconds=3600)
    lake.run("dbt", "run", "--vars", "{backfill_days: 2}", env=NO_TRIGGER)
    report = json.loads(lake.run("tslake", "inspect").stdout)
    location = report["datasets"]["metrics/v1"]["iceberg_metadata"]
    assert iceberg_files(location) == sorted(map(str, lake.committed_files()))

    for point in ("after_manifest_replace", "iceberg_before_version_hint"):
        with source_db.connect() as conn:
            synthetic.insert_live(conn, sensors=4)
        before = iceberg_files(iceberg.metadata_location(lake.settings, "metrics/v1") or "")
        killed = lake.run("dbt", "run", check=False, env=NO_TRIGGER, TSLAKE_FAILPOINT=point)
        assert killed.returncode != 0, point
        committed = sorted(map(str, lake.committed_files()))
        assert committed != before, point  # the manifest committed the tick...
        # ...and Iceberg is one generation behind, whole and readable.
        assert iceberg_files(iceberg.metadata_location(lake.settings, "metrics/v1") or "") \
            == before, point
        # The next command catches it up, even one that commits nothing (nothing is due).
        generation = lake.manifest()["generation"]
        lake.run("tslake", "retention")
        assert lake.manifest()["generation"] == generation, point
        location = iceberg.metadata_location(lake.settings, "metrics/v1") or ""
        assert iceberg_files(location) == sorted(map(str, lake.committed_files())), point
        table = StaticTable.from_metadata(location)
        # Leftovers of the killed refresh are gone: each file is named by a kept snapshot.
        metadata = lake.settings.hot_path / "metrics/v1/metadata"
        named = {Path(s.manifest_list).name for s in table.metadata.snapshots}
        assert {p.name for p in metadata.glob("snap-*")} == named, point
        assert not list(metadata.glob("*.tmp")), point
