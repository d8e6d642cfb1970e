"""Late rows, updated rows and compaction, with real Postgres, real dbt
and tslake processes and real files: one sorted file per shard-day holding the newest
version of each key, the trigger after ticks, bounded file counts, the grace period."""

from __future__ import annotations

import json
import subprocess
from datetime import date, timedelta

import duckdb
import pytest

from conftest import (
    BIN,
    NO_TRIGGER,
    Lake,
    SourceDb,
    assert_clean_disk,
    assert_newest_view_matches_source,
    max_files_per_shard_day,
    source_rows,
)
from runner.config import PROJECT_ROOT

pytestmark = pytest.mark.integration


def readings(db: SourceDb, sensors: list[str], day: date | None = None, *, count: int = 5,
             offset: int = 0) -> None:
    """`count` readings per sensor: on `day` (late rows: old ts, inserted_at now()) from
    12:00 UTC + offset seconds, or just before now() when day is None."""
    start = f"'{day}T12:00:00Z'::timestamptz + make_interval(secs => %s)" if day else \
        "now() - make_interval(secs => %s + 3600)"
    db.execute(f"""insert into metrics (sensor_id, ts, value, quality)
                   select sensor, {start} + make_interval(secs => i), i, 0
                   from unnest(%s::text[]) as sensor, generate_series(1, %s) as i""",
               (offset, sensors, count))


def update_some(db: SourceDb, modulo: int, remainder: int = 0) -> int:
    """Give a new version (new value, inserted_at now()) to about 1/modulo of the rows."""
    return len(db.execute("""update metrics set value = value + 1000, inserted_at = now()
                             where extract(epoch from ts)::bigint %% %s = %s
                             returning 1""", (modulo, remainder)))


def files_of(lake: Lake, day: str) -> dict[int, list[str]]:
    """Committed file names of a date, per shard."""
    shards: dict[int, list[str]] = {}
    for file in lake.dataset()["partitions"].get(day, {"files": []})["files"]:
        shards.setdefault(file["shard"], []).append(file["path"].rsplit("/", 1)[1])
    return shards


def test_late_rows_and_updates_land_as_new_segments(lake: Lake, source_db: SourceDb):
    readings(source_db, ["a", "b"], count=20)
    lake.run("dbt", "run", env=NO_TRIGGER)
    today = lake.dataset()["last_run"]["window_to"][:10]
    first_files = {path: path.read_bytes() for path in lake.committed_files()}

    late_day = date.fromisoformat(today) - timedelta(days=3)
    updated = update_some(source_db, 4)               # corrections of rows already exported
    readings(source_db, ["a"], late_day, count=4)     # late: old ts, new inserted_at
    lake.run("dbt", "run", env=NO_TRIGGER)

    run_id = lake.dataset()["last_run"]["run_id"]
    # The late rows are a segment of their own date, written by the second tick.
    assert all(names == [f"part-{run_id}.parquet"]
               for names in files_of(lake, str(late_day)).values())
    # Committed files are never changed: the corrections are newer versions in new files.
    for path, content in first_files.items():
        assert path.read_bytes() == content
    assert any(f"part-{run_id}.parquet" in names for names in files_of(lake, today).values())
    assert len(lake.rows()) == len(source_rows(source_db)) + updated
    assert lake.rows(newest=True) == source_rows(source_db)


def test_compact_merges_each_shard_day_into_one_sorted_newest_version_file(
        lake: Lake, source_db: SourceDb):
    sensors = [f"greenhouse-{n}/temp" for n in range(12)]
    lake.run("dbt", "run", env=NO_TRIGGER)
    today = date.fromisoformat(lake.dataset()["computed_through_ts"][:10])
    late_day = str(today - timedelta(days=2))
    for round_number in range(5):  # many small ticks with late rows into one day
        readings(source_db, sensors, date.fromisoformat(late_day), offset=100 * round_number)
        readings(source_db, sensors[:3], count=2, offset=10 * round_number)
        update_some(source_db, 3, round_number % 3)
        lake.run("tslake", "tick", env=NO_TRIGGER)
    parity = lake.rows(newest=True)
    assert parity == source_rows(source_db)
    assert max(len(names) for names in files_of(lake, late_day).values()) == 5
    today_files = files_of(lake, str(today))
    versions_before = [row for row in lake.rows() if row[1].startswith(late_day)]

    result = lake.run("tslake", "compact", "--date", late_day)

    report = json.loads(result.stdout)["metrics/v1"]
    partition = lake.dataset()["partitions"][late_day]
    shards = files_of(lake, late_day)
    assert report["shard_days"] == len(shards) and report["max_files_per_shard_day"] == 1
    assert all(len(names) == 1 and names[0] == f"compact-{report['run_id']}.parquet"
               for names in shards.values())
    assert partition["file_count"] == len(partition["files"]) == len(shards)
    assert partition["last_compacted_at"] is not None
    assert files_of(lake, str(today)) == today_files          # --date: only that day
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    for path in lake.committed_files():
        if f"date={late_day}" not in str(path):
            continue
        keys = conn.execute("select sensor_id, ts from read_parquet(?)", [str(path)]).fetchall()
        assert keys == sorted(set(keys))                      # sorted, one row per key
    assert lake.rows(newest=True) == parity                   # parity unchanged
    day_versions = [row for row in lake.rows() if row[1].startswith(late_day)]
    assert day_versions == [row for row in parity if row[1].startswith(late_day)]
    assert (report["rows_in"], report["rows_out"]) == (len(versions_before), len(day_versions))
    assert len(versions_before) > len(day_versions)          # old versions were dropped
    assert_clean_disk(lake)                                   # the inputs are gone

    lake.run("tslake", "compact")                             # every date
    assert max_files_per_shard_day(lake) == 1
    assert lake.rows() == lake.rows(newest=True) == parity
    assert_clean_disk(lake)


def test_steady_ticking_keeps_files_per_shard_day_bounded(lake: Lake, source_db: SourceDb):
    """A tick compacts every shard-day past TSLAKE_COMPACT_MIN_FILES in the same `dbt run`,
    so a shard-day never holds more than min_files + 1 files (10 + 1 by default)."""
    min_files = 3
    sensors = [f"s{n}" for n in range(16)]
    lake.run("dbt", "run")
    late_day = date.fromisoformat(lake.dataset()["computed_through_ts"][:10]) - timedelta(days=1)
    counts = []
    for round_number in range(2 * min_files + 2):
        readings(source_db, sensors, count=2, offset=5 * round_number)
        readings(source_db, sensors, late_day, count=2, offset=5 * round_number)
        update_some(source_db, 5, round_number % 5)
        lake.run("dbt", "run", TSLAKE_COMPACT_MIN_FILES=str(min_files))
        counts.append(max_files_per_shard_day(lake))
        assert_newest_view_matches_source(lake, source_db)
        assert_clean_disk(lake)
    assert max(counts) <= min_files and counts.count(min_files) >= 1, counts
    compacted = [p for p in lake.dataset()["partitions"].values() if p["last_compacted_at"]]
    assert len(compacted) == 2
    assert lake.dataset()["last_run"]["mode"] == "tick"       # compaction keeps last_run


def test_compact_checks_its_arguments_before_any_sql(lake: Lake, source_db: SourceDb):
    lake.run("dbt", "run")
    before = lake.manifest()
    for bad in ("2026-02-30", "yesterday", "2026-1-2", "20260122"):
        result = lake.run("tslake", "compact", "--date", bad, check=False)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith(
            f"tslake: error: --date '{bad}' is not a calendar date")
    result = lake.run("tslake", "compact", "--dataset", "nope/v9", check=False)
    assert result.returncode == 2 and "metrics/v1" in result.stderr
    assert lake.manifest() == before
    result = lake.run("dbt", "run-operation", "lake_compact", "--args", "{min_files: 0}",
                      check=False)
    assert result.returncode != 0 and "min_files must be a whole number >= 1" in result.stdout
    report = json.loads(lake.run("tslake", "compact", "--date", "2001-01-01").stdout)
    assert report["metrics/v1"]["shard_days"] == 0
    # Errors inside `dbt run-operation` keep their type (and exit code) through the CLI:
    # the write's open refuses a lake whose manifest is gone but whose files are not.
    readings(source_db, ["a"], count=2)
    lake.run("dbt", "run")
    saved = lake.settings.manifest_path.read_bytes()
    lake.settings.manifest_path.unlink()
    result = lake.run("tslake", "compact", check=False)
    lake.settings.manifest_path.write_bytes(saved)
    assert result.returncode == 65 and "restore the manifest" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_compact_works_while_postgres_is_down(lake: Lake, source_db: SourceDb):
    for offset in (0, 10):
        readings(source_db, ["a", "b"], count=3, offset=offset)
        lake.run("dbt", "run", env=NO_TRIGGER)
    rows = lake.rows()
    assert max_files_per_shard_day(lake) == 2
    down = {"TSLAKE_PG_DSN": "host=127.0.0.1 port=1 dbname=x user=nobody"}
    assert lake.run("dbt", "run", check=False, env=down).returncode != 0  # a tick needs it
    report = json.loads(lake.run("tslake", "compact", env=down).stdout)
    assert report["metrics/v1"]["shard_days"] >= 1
    assert max_files_per_shard_day(lake) == 1 and lake.rows() == rows


def test_tick_and_compaction_at_once_keep_both_commits(lake: Lake, source_db: SourceDb):
    sensors = [f"s{n}" for n in range(8)]
    for round_number in range(3):
        readings(source_db, sensors, count=3, offset=10 * round_number)
        lake.run("dbt", "run", env=NO_TRIGGER)
    readings(source_db, ["newcomer"], count=3)
    env = {**lake.env, **NO_TRIGGER, "TSLAKE_LOCK_TIMEOUT_SECONDS": "120"}
    processes = [subprocess.Popen([str(BIN / command[0]), *command[1:]], cwd=PROJECT_ROOT,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for command in (["tslake", "compact"], ["dbt", "run"])]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.communicate()
    assert "newcomer" in {row[0] for row in lake.rows()}       # the tick's commit
    assert lake.dataset()["last_compaction"]["shard_days"] > 0  # the compaction's
    assert_newest_view_matches_source(lake, source_db)
    assert_clean_disk(lake)


def test_grace_period_keeps_replaced_files_until_it_has_passed(lake: Lake,
                                                               source_db: SourceDb):
    for round_number in range(2):
        readings(source_db, ["a", "b", "c"], count=3, offset=10 * round_number)
        lake.run("dbt", "run", env=NO_TRIGGER)
    on_disk = set(lake.files_on_disk())
    lake.run("tslake", "compact", TSLAKE_DELETE_GRACE_SECONDS="3600")
    pending = lake.dataset()["pending_deletes"]
    root = lake.settings.hot_path / "metrics/v1"
    assert {root / item["path"] for item in pending} == on_disk     # still there, for readers
    assert on_disk < set(lake.files_on_disk())
    assert max_files_per_shard_day(lake) == 1                        # but not in the lake
    assert_newest_view_matches_source(lake, source_db)
    report = json.loads(lake.run("tslake", "inspect").stdout)["datasets"]["metrics/v1"]
    assert (report["pending_deletes"], report["uncommitted_files_on_disk"]) == (len(on_disk), 0)
    lake.run("dbt", "run", env=NO_TRIGGER, TSLAKE_DELETE_GRACE_SECONDS="3600")
    assert on_disk < set(lake.files_on_disk())                       # within the grace
    lake.run("dbt", "run", env=NO_TRIGGER)                             # grace 0: due now
    assert lake.dataset()["pending_deletes"] == []
    assert_clean_disk(lake)
