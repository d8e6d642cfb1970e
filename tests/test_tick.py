"""The incremental tick, run as `dbt run` and `tslake tick` against a real
Postgres: the exact window, the watermark's bounds, open transactions, fail-closed."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from conftest import Lake, SourceDb, source_rows

pytestmark = pytest.mark.integration


def insert(db: SourceDb, sensor: str, count: int, *, inserted_ago: str | None = None,
           ts_ago: str = "0 seconds") -> None:
    """`count` readings of `sensor`, one per second before now() - ts_ago; inserted_at is
    now() (the default) or now() - inserted_ago."""
    inserted = f"now() - interval '{inserted_ago}'" if inserted_ago else "now()"
    db.execute(f"""insert into metrics (sensor_id, ts, value, quality, inserted_at)
                   select %s, now() - interval '{ts_ago}' - make_interval(secs => i), i, 0,
                          {inserted}
                   from generate_series(1, %s) as i""", (sensor, count))


def test_first_tick_exports_the_last_hour_and_sets_the_watermark(lake: Lake, source_db: SourceDb):
    insert(source_db, "old", 5, inserted_ago="2 hours")
    insert(source_db, "recent", 7, inserted_ago="10 minutes")
    before = source_db.now()

    lake.run("dbt", "run")

    entry = lake.dataset()
    watermark = lake_time(entry["computed_through_ts"])
    assert before <= watermark <= source_db.now()
    assert lake.rows() == source_rows(source_db, "sensor_id = 'recent'")
    assert json.loads(lake.settings.replication_path.read_text())["computed_through_ts"] \
        == entry["computed_through_ts"]


def test_ticks_publish_exactly_the_window_with_updates_and_late_rows(lake: Lake,
                                                                     source_db: SourceDb):
    insert(source_db, "a", 20)
    lake.run("dbt", "run")
    first_lo = lake.dataset()["last_run"]["window_from"]

    insert(source_db, "b", 10)                                # new rows
    insert(source_db, "late", 5, ts_ago="3 days")             # late: old ts, new inserted_at
    source_db.execute("update metrics set value = -1, inserted_at = now() "
                      "where sensor_id = 'a' and value <= 3")  # corrected values
    lake.run("tslake", "tick")

    watermark = lake.dataset()["computed_through_ts"]
    expected = source_rows(source_db, "inserted_at > %s and inserted_at <= %s",
                           (lake_time(first_lo), lake_time(watermark)))
    assert lake.rows(newest=True) == expected
    # The old versions of the corrected rows are still there, older by inserted_at.
    assert len(lake.rows()) == len(expected) + 3
    dates = set(lake.dataset()["partitions"])
    assert str((source_db.now() - timedelta(days=3)).date()) in dates


def test_files_are_sorted_sharded_and_named_as_the_spec_says(lake: Lake, source_db: SourceDb):
    for sensor in ("greenhouse-1/air-temp-01", "field-north/soil-03", "o'brien \"probe\"",
                   "température/ß"):
        insert(source_db, sensor, 30)
    lake.run("dbt", "run")
    import duckdb
    conn = duckdb.connect()
    for path in lake.committed_files():
        assert path.name.startswith("part-") and path.parent.name.startswith("shard=")
        shard = int(path.parent.name.split("=")[1])
        rows = conn.execute("select sensor_id, ts from read_parquet(?)", [str(path)]).fetchall()
        assert rows == sorted(rows)
        for (sensor,) in set((r[0],) for r in rows):
            import hashlib
            assert int(hashlib.md5(sensor.encode()).hexdigest()[:8], 16) % 8 == shard
    schema = conn.execute("describe select * from read_parquet(?, hive_partitioning = false)",
                          [str(lake.committed_files()[0])]).fetchall()
    assert [(c[0], c[1]) for c in schema] == [
        ("sensor_id", "VARCHAR"), ("ts", "TIMESTAMP WITH TIME ZONE"), ("value", "DOUBLE"),
        ("quality", "SMALLINT"), ("inserted_at", "TIMESTAMP WITH TIME ZONE")]


def test_awkward_values_round_trip_exactly(lake: Lake, source_db: SourceDb):
    from runner.dev import synthetic
    with source_db.connect() as conn:
        synthetic.insert_awkward_rows(conn, end=source_db.now())
    source_db.execute("update metrics set inserted_at = now()")  # inside the first window
    # Two rows date from before 1970: keep them inside the hot horizon, or the retention
    # after the tick would (rightly) delete their partitions.
    lake.run("dbt", "run", TSLAKE_HOT_RETENTION_DAYS="40000")
    assert lake.rows() == source_rows(source_db)


def test_watermark_stays_lag_behind_postgres_now(lake: Lake, source_db: SourceDb):
    insert(source_db, "fresh", 3)          # inserted now(): inside the lag
    insert(source_db, "settled", 3, inserted_ago="2 minutes")
    lake.run("dbt", "run", TSLAKE_REPLICATION_LAG_SECONDS="60")
    watermark = lake_time(lake.dataset()["computed_through_ts"])
    assert watermark <= source_db.now() - timedelta(seconds=60)
    assert {row[0] for row in lake.rows()} == {"settled"}


def test_open_transaction_holds_the_watermark_and_loses_nothing(lake: Lake, source_db: SourceDb):
    insert(source_db, "before", 3)
    writer = source_db.connect(autocommit=False)
    with writer.cursor() as cur:
        cur.execute("insert into metrics (sensor_id, ts, value) "
                    "select 'slow', now() - make_interval(secs => i), i "
                    "from generate_series(1, 50) as i")
        cur.execute("select now()")
        row = cur.fetchone()
        assert row is not None
        started = row[0]
    for _ in range(3):  # ticks while the transaction stays open
        insert(source_db, "meanwhile", 2)
        lake.run("dbt", "run")
        assert lake_time(lake.dataset()["computed_through_ts"]) < started
        assert lake.dataset()["last_run"]["oldest_open_xact_start"] is not None
    writer.commit()
    writer.close()
    lake.run("dbt", "run")
    assert lake_time(lake.dataset()["computed_through_ts"]) > started
    assert lake.rows(newest=True) == source_rows(source_db)


def test_transaction_without_writes_also_holds_the_watermark(lake: Lake, source_db: SourceDb):
    """A transaction that has not written yet has no xid, but will stamp its rows with its
    start time when it does: it must hold the watermark too."""
    reader = source_db.connect(autocommit=False)
    with reader.cursor() as cur:
        cur.execute("select now()")
        row = cur.fetchone()
        assert row is not None
        started = row[0]
    lake.run("dbt", "run")
    assert lake_time(lake.dataset()["computed_through_ts"]) < started
    with reader.cursor() as cur:
        cur.execute("insert into metrics (sensor_id, ts, value) values ('late-writer', now(), 1)")
    reader.commit()
    reader.close()
    lake.run("dbt", "run")
    assert ("late-writer",) in {(row[0],) for row in lake.rows()}


def test_role_that_cannot_see_other_sessions_fails_closed(lake: Lake, source_db: SourceDb):
    source_db.execute("drop role if exists tslake_limited")
    source_db.execute("create role tslake_limited login")
    source_db.execute("grant select on metrics to tslake_limited")
    lake.run("dbt", "run")
    before = lake.manifest()
    result = lake.run("dbt", "run", check=False, PGUSER="tslake_limited")
    assert result.returncode != 0
    assert "GRANT pg_read_all_stats" in result.stdout
    assert lake.manifest() == before
    result = lake.run("tslake", "tick", check=False, PGUSER="tslake_limited")
    assert result.returncode != 0 and "pg_read_all_stats" in result.stderr.splitlines()[-1]
    source_db.execute("grant pg_read_all_stats to tslake_limited")
    lake.run("tslake", "tick", PGUSER="tslake_limited")
    source_db.execute("drop owned by tslake_limited")
    source_db.execute("drop role tslake_limited")


def test_tick_reads_the_inserted_at_index_not_the_table(lake: Lake, source_db: SourceDb):
    """A tick's cost is O(new rows): Postgres reads the window through the inserted_at index
    and never scans the table sequentially."""
    source_db.execute("""insert into metrics (sensor_id, ts, value, inserted_at)
                         select 's' || (i % 100), now() - make_interval(secs => i), i,
                                now() - interval '1 day'
                         from generate_series(1, 200000) as i""")
    source_db.execute("analyze metrics")
    lake.run("dbt", "run")
    insert(source_db, "new", 25)
    before = table_scans(source_db)
    lake.run("dbt", "run")
    after = table_scans(source_db)
    assert after["seq_scan"] == before["seq_scan"], (before, after)
    assert after["idx_scan"] > before["idx_scan"]
    assert len(lake.rows()) == 25


def test_second_writer_waits_then_reports_a_busy_lake(lake: Lake, source_db: SourceDb):
    from runner.core import lock
    lake.run("dbt", "run")
    before = lake.manifest()
    lock.acquire(lake.settings.lock_path, 0, "test holder")
    try:
        result = lake.run("tslake", "tick", check=False, TSLAKE_LOCK_TIMEOUT_SECONDS="1")
        assert result.returncode == 75
        assert "lake is busy" in result.stderr and "test holder" in result.stderr
        result = lake.run("dbt", "run", check=False, TSLAKE_LOCK_TIMEOUT_SECONDS="1")
        assert result.returncode != 0 and "lake is busy" in result.stdout
    finally:
        lock.release(lake.settings.lock_path)
    assert lake.manifest() == before
    # A writer that frees the lake within the timeout lets the waiting tick through.
    lock.acquire(lake.settings.lock_path, 0, "test holder")
    threading.Timer(1.0, lock.release, [lake.settings.lock_path]).start()
    lake.run("tslake", "tick", TSLAKE_LOCK_TIMEOUT_SECONDS="30")
    assert lake.manifest()["generation"] > before["generation"]


def test_unreachable_postgres_is_one_line_without_the_password(lake: Lake, source_db: SourceDb):
    lake.run("dbt", "run")
    before = lake.manifest()
    dsn = r"host=127.0.0.1 port=1 dbname=x user=nobody password='Sup3r-S3cret\'pw'"
    result = lake.run("tslake", "tick", check=False, TSLAKE_PG_DSN=dsn)
    assert result.returncode == 69
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("tslake: error: cannot connect to Postgres")
    dbt = lake.run("dbt", "run", check=False, TSLAKE_PG_DSN=dsn)
    assert dbt.returncode != 0
    for text in (result.stdout, result.stderr, dbt.stdout, dbt.stderr,
                 *(p.read_text(errors="replace") for p in lake.settings.data_root.rglob("*")
                   if p.is_file() and p.suffix in (".log", ".json"))):
        assert "Sup3r" not in text
    assert lake.manifest() == before


def test_inspect_reports_paths_watermark_and_partitions(lake: Lake, source_db: SourceDb):
    insert(source_db, "x", 10)
    lake.run("dbt", "run")
    report = json.loads(lake.run("tslake", "inspect").stdout)
    assert report["hot_path"] == str(lake.settings.hot_path)
    dataset = report["datasets"]["metrics/v1"]
    assert dataset["computed_through_ts"] == lake.dataset()["computed_through_ts"]
    assert dataset["totals"]["rows"] == 10
    assert dataset["uncommitted_files_on_disk"] == 0
    (partition,) = dataset["partitions"].values()
    assert partition["location"] == "hot" and partition["files"] >= 1


def lake_time(text: str):
    from runner.core.manifest import parse_rfc3339
    return parse_rfc3339(text)


def table_scans(db: SourceDb) -> dict[str, int]:
    """Scan counters of `metrics`, after waiting for other backends' stats to be flushed."""
    import time
    time.sleep(1.2)  # backends flush their counters at most once a second when idle
    (seq_scan, idx_scan), = db.execute(
        "select seq_scan, coalesce(idx_scan, 0) from pg_stat_user_tables where relname = 'metrics'")
    return {"seq_scan": seq_scan, "idx_scan": idx_scan}
