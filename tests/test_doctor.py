"""`tslake doctor`: the manifest against the disk, the cold tier, the lock, the watermark;
`--restore` puts back the newest kept manifest generation whose files all exist."""

from __future__ import annotations

import json
from typing import Any

from conftest import Lake, SourceDb
from runner.core import generations, lock


def doctor(lake: Lake, *args: str, code: int = 0, **env: str) -> dict[str, Any]:
    result = lake.run("tslake", "doctor", *args, check=False, env=env)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_doctor_finds_what_differs_and_restores_the_newest_whole_generation(
        lake: Lake, source_db: SourceDb):
    source_db.execute("insert into metrics (sensor_id, ts, value, quality) "
                      "values ('a', now() - interval '1 minute', 1, 0)")
    lake.run("tslake", "tick")
    healthy = doctor(lake)
    assert healthy["ok"] and healthy["errors"] == [] and healthy["lock"] is None
    first_generation = lake.manifest()["generation"]
    source_db.execute("insert into metrics (sensor_id, ts, value, quality) "
                      "values ('b', now() - interval '1 minute', 2, 0)")
    lake.run("tslake", "tick", TSLAKE_COMPACT_MIN_FILES="1000")
    assert len(generations.kept(lake.settings.manifest_path)) >= 2

    # lose the second tick's file, truncate the first's, leave a stray file
    files = lake.committed_files()
    newest = max(files, key=lambda path: path.stat().st_mtime_ns)
    data = newest.read_bytes()
    newest.unlink()
    stray = newest.parent / "part-leftover.parquet"
    stray.write_bytes(b"x")
    report = doctor(lake, code=65)
    entry = report["datasets"]["metrics/v1"]
    assert entry["missing_count"] == 1 and newest.name in entry["missing"][0]
    assert entry["unlisted_count"] == 1 and "part-leftover.parquet" in entry["unlisted"][0]
    assert not report["ok"] and "tslake doctor --restore" in report["errors"][0]

    restored = doctor(lake, "--restore")
    assert restored["generation_restored"] == first_generation
    assert restored["generation_now"] > first_generation + 1  # readers see a new commit
    assert {row[0] for row in lake.rows()} == {"a"}  # the first tick's lake
    stray.unlink()
    assert doctor(lake)["ok"]

    # a wrong size is an error too; a corrupt manifest is restored from its generations
    kept = lake.committed_files()[0]
    original = kept.read_bytes()
    kept.write_bytes(original + b"\0")
    assert doctor(lake, code=65)["datasets"]["metrics/v1"]["wrong_size_count"] == 1
    kept.write_bytes(original)
    lake.settings.manifest_path.write_text("{ not json")
    assert "not valid JSON" in doctor(lake, code=65)["errors"][0]
    doctor(lake, "--restore")
    assert doctor(lake)["ok"] and {row[0] for row in lake.rows()} == {"a"}
    newest.write_bytes(data)  # (only to keep the test's view of the disk simple)


def test_doctor_reports_the_lock_holder_a_stale_watermark_and_an_unset_cold_path(
        lake: Lake, source_db: SourceDb):
    source_db.execute("insert into metrics (sensor_id, ts, value, quality) "
                      "values ('a', now() - interval '1 minute', 1, 0)")
    lake.run("tslake", "tick")
    lock.acquire(lake.settings.lock_path, 0, "test holder")
    try:
        report = doctor(lake)
    finally:
        lock.release(lake.settings.lock_path)
    assert "test holder" in report["lock"]
    assert any("write lock" in warning for warning in report["warnings"])

    document = lake.manifest()
    entry = document["datasets"]["metrics/v1"]
    entry["computed_through_ts"] = "2020-01-01T00:00:00Z"
    next(iter(entry["partitions"].values()))["location"] = "cold"
    lake.settings.manifest_path.write_text(json.dumps(document))
    report = doctor(lake, code=65)
    assert any("watermark 2020-01-01T00:00:00Z" in warning and "stale" in warning
               for warning in report["warnings"])
    assert any("TSLAKE_COLD_PATH is not set" in error for error in report["errors"])
