"""The backfill, run as `dbt run --vars ...` and `tslake backfill` against a
real Postgres: exact parity, the file layout, plain and TimescaleDB-shaped sources read
through indexes, replace_existing vs skip, ticks after a backfill, the progress record."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from conftest import Lake, SourceDb, source_rows
from runner.core import lock
from runner.core.manifest import parse_rfc3339
from runner.dev import synthetic

pytestmark = pytest.mark.integration


def exact(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows compared bit for bit: floats by their hex form (-0.0 is not 0.0; NaN is 'nan')."""
    return sorted((tuple(v.hex() if isinstance(v, float) else v for v in row) for row in rows),
                  key=repr)


def window_start(db: SourceDb, days: int) -> date:
    """00:00 UTC `days` days ago, by Postgres's clock."""
    return db.execute("select (now() at time zone 'UTC')::date - %s", (days,))[0][0]


def expected_window(db: SourceDb, lake: Lake, days: int) -> list[tuple[Any, ...]]:
    watermark = parse_rfc3339(lake.dataset()["computed_through_ts"])
    return source_rows(db, "ts >= %s::date::timestamp at time zone 'UTC' and inserted_at <= %s",
                       (window_start(db, days), watermark))


def backfill(lake: Lake, days: int, *, replace: bool = False, **env: str) -> Any:
    flags = ["--replace-existing"] if replace else []
    result = lake.run("tslake", "backfill", "--days", str(days), *flags, env=env)
    return json.loads(result.stdout)["metrics/v1"]


def test_backfill_exports_every_row_of_the_window_exactly_once(lake: Lake, source_db: SourceDb):
    now = source_db.now()
    with source_db.connect() as conn:
        synthetic.fill_history(conn, days=6, sensors=10, end=now)
        synthetic.insert_awkward_rows(conn, end=now)  # quotes, unicode, NaN, +-Inf, NULL, -0.0

    lake.run("dbt", "run", "--vars", "{backfill_days: 3}")

    assert exact(lake.rows()) == exact(expected_window(source_db, lake, 3))
    assert lake.files_on_disk() == lake.committed_files()
    run_id = lake.dataset()["last_run"]["run_id"]
    reader = duckdb.connect()
    for path in lake.committed_files():
        assert path.name == f"backfill-{run_id}.parquet"
        day = path.parent.parent.name.removeprefix("date=")
        shard = int(path.parent.name.removeprefix("shard="))
        rows = reader.execute("select sensor_id, ts, (ts at time zone 'UTC')::date from "
                              "read_parquet(?)", [str(path)]).fetchall()
        assert [row[:2] for row in rows] == sorted(row[:2] for row in rows)
        assert {str(row[2]) for row in rows} == {day}
        assert {int(hashlib.md5(row[0].encode()).hexdigest()[:8], 16) % 8 for row in rows} \
            == {shard}
    record = lake.dataset()["backfill"]
    first = window_start(source_db, 3)
    assert record["status"] == "complete" and record["days"] == 3
    assert record["committed_dates"] == [str(first + timedelta(days=i)) for i in range(4)]
    assert record["cap"] == lake.dataset()["computed_through_ts"]
    assert record["rows"] == len(lake.rows())
    # The reader views skip the days in between but follow the backfill's last commit.
    reader.execute(f"attach '{lake.settings.state_dir / 'lake.duckdb'}' as lake (read_only)")
    assert reader.execute("select manifest_generation from lake.tslake_state").fetchone() == \
        (lake.manifest()["generation"],)
    assert reader.execute("select count(*) from lake.metrics").fetchone() == (len(lake.rows()),)


@pytest.mark.parametrize("hypertable_like", [False, True], ids=["plain", "hypertable-like"])
def test_backfill_reads_days_through_indexes_not_full_scans(lake: Lake, source_db: SourceDb,
                                                            hypertable_like: bool):
    """Only the primary key (sensor_id, ts) and the inserted_at index: each day is found by
    index (a loose scan for its series, a bitmap scan for their rows), never by scanning the
    table or a chunk sequentially; on the TimescaleDB-shaped table, week chunks."""
    source_db.execute("drop table metrics")
    with source_db.connect() as conn:
        synthetic.create_metrics_table(conn, hypertable_like=hypertable_like)
        synthetic.fill_uniform(conn, sensors=40, days=9, cadence_seconds=120,
                               end=source_db.now())
    source_db.execute("analyze metrics")
    for (chunk,) in source_db.execute("select inhrelid::regclass::text from pg_inherits"):
        source_db.execute(f"analyze {chunk}")
    before = seq_scans(source_db)

    summary = backfill(lake, 5)

    after = seq_scans(source_db)
    if hypertable_like:  # the empty parent is "scanned" (0 pages); the chunks never are
        assert source_db.execute("select count(*) from only metrics") == [(0,)]
        del before["metrics"], after["metrics"]
        assert len(after) >= 2
    assert after == before
    assert summary["rows"] == len(lake.rows()) > 0
    assert exact(lake.rows()) == exact(expected_window(source_db, lake, 5))


def test_without_replace_existing_days_in_the_lake_are_skipped(lake: Lake, source_db: SourceDb):
    with source_db.connect() as conn:
        synthetic.fill_history(conn, days=4, sensors=6, end=source_db.now())
    lake.run("dbt", "run")  # the first tick: the last hour, as part-* files
    ticked = {day: part["files"] for day, part in lake.dataset()["partitions"].items()}

    summary = backfill(lake, 3)

    partitions = lake.dataset()["partitions"]
    assert summary["days_skipped"] == len(ticked) and summary["status"] == "complete"
    for day, part in partitions.items():
        kinds = {file["kind"] for file in part["files"]}
        assert kinds == ({"part"} if day in ticked else {"backfill"})
    assert {day: partitions[day]["files"] for day in ticked} == ticked

    summary = backfill(lake, 3, replace=True)

    assert summary["days_skipped"] == 0 and summary["days_processed"] == 4
    run_id = summary["run_id"]
    assert {(file["kind"], file["run_id"]) for part in lake.dataset()["partitions"].values()
            for file in part["files"]} == {("backfill", run_id)}
    assert lake.files_on_disk() == lake.committed_files()  # the replaced files are gone
    assert exact(lake.rows()) == exact(expected_window(source_db, lake, 3))


def test_tick_after_a_backfill_continues_from_its_watermark(lake: Lake, source_db: SourceDb):
    # Keep the awkward pre-1970 rows hot: past the horizon, retention would rightly drop them.
    lake.env["TSLAKE_HOT_RETENTION_DAYS"] = "36500"
    with source_db.connect() as conn:
        synthetic.fill_history(conn, days=3, sensors=6, end=source_db.now())
    lake.run("dbt", "run", "--vars", "{backfill_days: 2, replace_existing: true}")
    watermark = lake.dataset()["computed_through_ts"]
    assert lake.dataset()["backfill"]["cap"] == watermark

    with source_db.connect() as conn:
        synthetic.insert_live(conn, sensors=6)                   # new readings
        synthetic.insert_awkward_rows(conn)                      # pre-1970 ts, -0.0, NaN, ...
    source_db.execute("insert into metrics (sensor_id, ts, value) select 'late', "
                      "now() - make_interval(days => i), i from generate_series(0, 2) as i")
    with source_db.connect() as conn:  # corrected readings: a newer version of old rows
        corrected = conn.execute(
            "update metrics set value = -value, inserted_at = now() "
            "where sensor_id = 'greenhouse-1/air-temp-01' and ts > now() - interval '1 day' "
            "and inserted_at <= %s", (parse_rfc3339(watermark),)).rowcount
    assert corrected > 0
    lake.run("tslake", "tick")

    entry = lake.dataset()
    assert entry["last_run"]["window_from"] == watermark
    new_watermark = parse_rfc3339(entry["computed_through_ts"])
    expected = source_rows(
        source_db, "inserted_at <= %s and (ts >= %s::date::timestamp at time zone 'UTC' "
        "or inserted_at > %s)", (new_watermark, window_start(source_db, 2),
                                 parse_rfc3339(watermark)))
    assert exact(lake.rows(newest=True)) == exact(expected)
    assert ("epoch/before-1970",) in {(row[0],) for row in lake.rows()}
    # Nothing doubled: besides the newest versions, only the corrected rows' old ones.
    assert len(lake.rows()) == len(expected) + corrected


def test_source_without_a_unique_key_keeps_the_newest_version(lake: Lake, source_db: SourceDb):
    source_db.execute("drop table metrics")
    with source_db.connect() as conn:
        synthetic.create_metrics_table(conn, with_indexes=False)
    source_db.execute("create index on metrics (sensor_id, ts)")
    source_db.execute("""insert into metrics (sensor_id, ts, value, quality, inserted_at)
                         select 's' || (i % 3), date_trunc('hour', now()) - make_interval(
                                    mins => i), v, 0, now() - make_interval(secs => 10 - v)
                         from generate_series(1, 300) as i, generate_series(1, 2) as v""")

    backfill(lake, 1)

    rows = lake.rows()
    assert len({(row[0], row[1]) for row in rows}) == len(rows) == 300
    assert {row[2] for row in rows} == {2.0}  # the newer version of every key


def test_backfill_shares_the_lock_and_refuses_an_empty_lake_with_prepared_transactions(
        lake: Lake, source_db: SourceDb):
    source_db.execute("insert into metrics (sensor_id, ts, value) values ('x', now(), 1)")
    writer = source_db.connect(autocommit=False)
    writer.execute("insert into metrics (sensor_id, ts, value) values ('two-phase', now(), 1)")
    writer.execute("prepare transaction 'tslake_backfill_2pc'")
    writer.close()
    try:
        refused = lake.run("tslake", "backfill", "--days", "1", check=False)
        assert refused.returncode != 0
        assert "COMMIT PREPARED or ROLLBACK PREPARED" in refused.stderr.splitlines()[-1]
    finally:
        source_db.execute("commit prepared 'tslake_backfill_2pc'")
    lock.acquire(lake.settings.lock_path, 0, "test holder")
    try:
        busy = lake.run("tslake", "backfill", "--days", "1", check=False,
                        TSLAKE_LOCK_TIMEOUT_SECONDS="1")
        assert busy.returncode == 75 and "lake is busy" in busy.stderr
    finally:
        lock.release(lake.settings.lock_path)
    result = lake.run("tslake", "backfill", "--days", "1")
    progress = [line for line in result.stderr.splitlines() if "tslake.backfill" in line]
    assert any("rows/s" in line and "ETA" in line and "/2 days" in line for line in progress)
    assert {row[0] for row in lake.rows()} == {"x", "two-phase"}


def seq_scans(db: SourceDb) -> dict[str, int]:
    """Sequential scans of `metrics` and of each of its chunks (stats flushed first)."""
    import time
    time.sleep(1.2)  # backends flush their counters at most once a second when idle
    return dict(db.execute("select relname, seq_scan from pg_stat_user_tables "
                           "where relname like 'metrics%'"))


def test_a_new_lake_and_the_tick_after_a_backfill_reuse_dbt_s_parsed_project(
        lake: Lake, source_db: SourceDb, tmp_path: Path):
    """dbt's parse of the project (~5 CPU-s in full) is shared by the checkout's lakes, and a
    backfill's --vars do not throw it away: neither a new lake's backfill nor the tick after
    it parses the project in full."""
    with source_db.connect() as conn:
        synthetic.fill_history(conn, days=2, sensors=3, end=source_db.now())
    backfill(lake, 1)  # leaves the checkout's parse cache, if no earlier run did
    fresh = Lake(tmp_path / "fresh", source_db)
    backfill(fresh, 1)
    fresh.run("tslake", "tick")
    log = (fresh.settings.tmp_path / "dbt" / "logs" / "dbt.log").read_text()
    assert "Unable to do partial parsing" not in log
    assert log.count("Partial parsing enabled") >= 2
