"""Readers: views over exactly the committed files (hot and cold), the fresh Postgres tail,
and `tslake query` with pruning and exact buckets."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import duckdb
import pytest

from conftest import Lake, SourceDb, canonical, source_rows
from runner.core import manifest
from runner.core.manifest import DatasetState, Manifest, parse_rfc3339
from runner.postgres.connection import connect
from runner.readers.query import shard_of

pytestmark = pytest.mark.integration

COLUMNS = "sensor_id, ts, value, quality, inserted_at"


def document_of(lake: Lake) -> Manifest:
    """The committed manifest, typed."""
    document = manifest.load(lake.settings.manifest_path)
    assert document is not None, "no manifest committed"
    return document


def state_of(lake: Lake, name: str = "metrics/v1") -> DatasetState:
    return document_of(lake).datasets[name]


def files_of(lake: Lake, name: str = "metrics/v1") -> list[Path]:
    """Every file the manifest lists, in the hot or the cold root as it says."""
    roots = {"hot": lake.settings.hot_path / name,
             "cold": (lake.settings.cold_path or lake.settings.hot_path) / name}
    return sorted(roots[partition.location] / file.path
                  for _, partition, file in state_of(lake, name).files_of())


def all_versions(lake: Lake, name: str = "metrics/v1", columns: str = COLUMNS) -> list[tuple]:
    files = files_of(lake, name)
    if not files:
        return []
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    return canonical(conn.execute(f"select {columns} from read_parquet(?)",
                                  [[str(f) for f in files]]).fetchall())


def fill(db: SourceDb) -> None:
    db.execute("""insert into metrics (sensor_id, ts, value, quality)
                  select 'sensor-' || (i % 7), now() - make_interval(mins => i), i, (i % 3)
                  from generate_series(1, 600) as i""")


def test_lake_duckdb_and_views_sql_give_exactly_the_newest_committed_rows(
        lake: Lake, source_db: SourceDb, tmp_path: Path):
    fill(source_db)
    lake.run("dbt", "run")
    source_db.execute("update metrics set value = -value, inserted_at = now() "
                      "where sensor_id = 'sensor-3'")  # a second version of 86 keys
    lake.run("dbt", "run")
    declaration = state_of(lake).declaration
    assert declaration is not None and declaration.source == "public.metrics"
    watermark = parse_rfc3339(state_of(lake).computed_through_ts or "")
    expected = source_rows(source_db, "inserted_at <= %s", (watermark,))
    assert len(all_versions(lake)) > len(expected)  # the lake holds both versions

    reader = duckdb.connect()
    reader.execute("set TimeZone = 'UTC'")
    reader.execute(f"attach '{lake.settings.state_dir / 'lake.duckdb'}' as lake (read_only)")
    assert canonical(reader.execute(f"select {COLUMNS} from lake.metrics").fetchall()) == expected
    generation = reader.execute("select manifest_generation from lake.tslake_state").fetchone()
    assert generation == (document_of(lake).generation,)

    lake.run("tslake", "views", "--no-fresh", "--out", str(tmp_path / "views.sql"))
    session = duckdb.connect()
    session.execute("set TimeZone = 'UTC'")
    session.execute((tmp_path / "views.sql").read_text())
    assert canonical(session.execute(f"select {COLUMNS} from metrics").fetchall()) == expected
    dates = session.execute("select distinct date, shard from metrics").fetchall()
    assert dates and all(isinstance(shard, int) for _, shard in dates)


def test_metrics_fresh_includes_rows_inserted_a_second_ago(lake: Lake, source_db: SourceDb,
                                                           tmp_path: Path):
    fill(source_db)
    lake.run("dbt", "run")
    source_db.execute("insert into metrics (sensor_id, ts, value) values ('just-now', now(), 1)")
    source_db.execute("update metrics set value = 999, inserted_at = now() "
                      "where sensor_id = 'sensor-1' and value < 50")
    lake.run("tslake", "views", "--out", str(tmp_path / "views.sql"))
    session = connect(lake.settings, attach=True, env=lake.env)
    session.execute((tmp_path / "views.sql").read_text())
    fresh = canonical(session.execute(f"select {COLUMNS} from metrics_fresh").fetchall())
    assert fresh == source_rows(source_db)
    assert ("just-now",) in {(row[0],) for row in fresh}
    lake_only = canonical(session.execute(f"select {COLUMNS} from metrics").fetchall())
    session.close()  # let the fixture drop the database
    assert ("just-now",) not in {(row[0],) for row in lake_only}


def test_lake_duckdb_shard_macro_matches_the_spec_and_prunes_to_one_shard(
        lake: Lake, source_db: SourceDb):
    odd = ["o'brien \"probe\"", "capteur-é", "sensor-4"]
    fill(source_db)
    for sensor in odd:
        source_db.execute("insert into metrics (sensor_id, ts, value) values (%s, now(), 1)",
                          (sensor,))
    lake.run("dbt", "run")
    reader = duckdb.connect()
    reader.execute(f"attach '{lake.settings.state_dir / 'lake.duckdb'}' as lake (read_only)")
    for sensor in odd:
        assert reader.execute("select lake.metrics_shard(?)", [sensor]).fetchone() == \
            (shard_of(sensor, 8),)
    expected = len(source_db.execute("select 1 from metrics where sensor_id = 'sensor-4'"))
    query = ("select count(*) from lake.metrics where sensor_id = $s and "
             "shard = lake.metrics_shard($s)")
    assert reader.execute(query, {"s": "sensor-4"}).fetchone() == (expected,)
    plan = reader.execute("explain analyze " + query, {"s": "sensor-4"}).fetchall()[0][1]
    scanned = sum(int(n) for n in re.findall(r"Scanning Files: (\d+)/", plan))
    mine = [p for p in files_of(lake)
            if p.parent.name == f"shard={shard_of('sensor-4', 8):02d}"]
    assert 0 < scanned == len(mine) < len(files_of(lake))


def query_json(lake: Lake, *args: str) -> list[dict[str, object]]:
    return json.loads(lake.run("tslake", "query", "--format", "json", *args).stdout)


def test_query_buckets_equal_postgres_aggregates(lake: Lake, source_db: SourceDb):
    # Keep the pre-1970 rows hot: past the horizon, retention would rightly drop them.
    lake.configure(TSLAKE_HOT_RETENTION_DAYS="36500")
    fill(source_db)
    source_db.execute("""insert into metrics (sensor_id, ts, value)
                         select 'old', '1969-12-31 22:30:00+00'::timestamptz
                                       + make_interval(mins => i * 10), i
                         from generate_series(0, 20) as i""")
    source_db.execute("update metrics set inserted_at = now()")
    lake.run("dbt", "run")
    for sensor, start, end in (("sensor-2", "2000-01-01", "2100-01-01"),
                               ("old", "1969-12-31T00:00:00Z", "1970-01-02T00:00:00Z")):
        got = query_json(lake, "--sensor", sensor, "--start", start, "--end", end,
                         "--bucket", "1h", "--agg", "avg")
        expected = source_db.execute(
            "select date_bin('1 hour', ts, 'epoch'::timestamptz), avg(value), count(*) "
            "from metrics where sensor_id = %s group by 1 order by 1", (sensor,))
        assert [(parse_rfc3339(str(r["bucket_start"])), r["avg"], r["samples"]) for r in got] == \
            [(start_, pytest.approx(avg), n) for start_, avg, n in expected]


def test_query_returns_the_newest_version_where_a_shard_day_has_several_files(
        lake: Lake, source_db: SourceDb):
    source_db.execute("""insert into metrics (sensor_id, ts, value)
                         select 'twice', date_trunc('day', now(), 'UTC') - make_interval(days => d),
                                d from generate_series(1, 3) as d""")
    lake.run("dbt", "run")
    source_db.execute("update metrics set value = -value, inserted_at = now() "
                      "where value = 2")  # that day gets a second file
    lake.run("dbt", "run")
    files_per_day: dict[str, int] = {}
    for path in files_of(lake):
        files_per_day[path.parent.parent.name] = files_per_day.get(path.parent.parent.name, 0) + 1
    assert sorted(files_per_day.values()) == [1, 1, 2]
    rows = query_json(lake, "--sensor", "twice", "--start", "2000-01-01", "--end", "2100-01-01")
    assert [row["value"] for row in rows] == [3.0, -2.0, 1.0]


def test_query_opens_only_the_files_of_its_dates_and_shards(lake: Lake, source_db: SourceDb):
    fill(source_db)
    lake.run("dbt", "run")
    wanted = shard_of("sensor-4", 8)
    others = [p for p in files_of(lake) if p.parent.name != f"shard={wanted:02d}"]
    assert others
    for path in others:
        path.unlink()  # a query that opened them would fail
    rows = query_json(lake, "--sensor", "sensor-4", "--start", "2000-01-01", "--end", "2100-01-01")
    assert len(rows) == len(source_db.execute("select 1 from metrics where sensor_id = 'sensor-4'"))
    mine = next(p for p in files_of(lake) if p.exists())
    mine.unlink()
    failed = lake.run("tslake", "query", "--sensor", "sensor-4", "--start", "2000-01-01",
                      "--end", "2100-01-01", check=False)
    assert failed.returncode != 0


@pytest.mark.parametrize("args, words", [
    (["--bucket", "5 minutes"], "--bucket"),
    (["--start", "yesterday"], "--start"),
    (["--start", "2026-01-02T00:00:00"], "no time zone"),
    (["--end", "1999-01-01"], "is not after"),
])
def test_query_rejects_bad_arguments_in_one_line(lake: Lake, source_db: SourceDb,
                                                 args: list[str], words: str):
    lake.run("dbt", "run")
    base = {"--sensor": "x'; drop table metrics; --", "--start": "2000-01-01",
            "--end": "2100-01-01"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    result = lake.run("tslake", "query", *[item for pair in base.items() for item in pair],
                      check=False)
    assert result.returncode == 2
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_query_with_a_quoted_sensor_id_is_bound_not_pasted(lake: Lake, source_db: SourceDb):
    source_db.execute("insert into metrics (sensor_id, ts, value) "
                      "values ($$o'brien \"probe\"$$, now(), 1)")
    lake.run("dbt", "run")
    rows = query_json(lake, "--sensor", "o'brien \"probe\"", "--start", "2000-01-01",
                      "--end", "2100-01-01")
    assert [row["sensor_id"] for row in rows] == ["o'brien \"probe\""]


def test_views_stay_exact_while_compaction_and_retention_run_beside_a_reader(
        lake: Lake, source_db: SourceDb, tmp_path: Path):
    """A reader attaching `_state/lake.duckdb` again and again while the lake is compacted
    and old partitions move to the cold tier: every read returns exactly the same rows.
    Replaced files stay for a grace period, so a reader's file list outlives the commit."""
    cold = tmp_path / "cold"
    cold.mkdir()
    source_db.execute("""insert into metrics (sensor_id, ts, value)
                         select 'r-' || (i % 5), now() - make_interval(hours => i), i
                         from generate_series(1, 24 * 12) as i""")  # 12 days
    env = {"TSLAKE_COLD_PATH": str(cold), "TSLAKE_DELETE_GRACE_SECONDS": "60",
           "TSLAKE_HOT_RETENTION_DAYS": "30", "TSLAKE_COMPACT_MIN_FILES": "1000"}
    lake.run("tslake", "backfill", "--days", "14", env=env)
    for round_number in range(4):  # more files per shard-day, then compaction merges them
        source_db.execute("update metrics set value = value + 1, inserted_at = now() "
                          "where sensor_id = %s", (f"r-{round_number}",))
        lake.run("tslake", "tick", env=env)
    watermark = parse_rfc3339(state_of(lake).computed_through_ts or "")
    expected = source_rows(source_db, "inserted_at <= %s", (watermark,))
    views_file = lake.settings.state_dir / "lake.duckdb"

    results: list[object] = []
    stop = threading.Event()

    def read_repeatedly() -> None:
        while not stop.is_set():
            reader = duckdb.connect()
            try:
                reader.execute("set TimeZone = 'UTC'")
                reader.execute(f"attach '{views_file}' as lake (read_only)")
                results.append(canonical(
                    reader.execute(f"select {COLUMNS} from lake.metrics").fetchall()))
            except duckdb.Error as error:  # a failed read is a failure, never a retry
                results.append(error)
            finally:
                reader.close()

    thread = threading.Thread(target=read_repeatedly)
    thread.start()
    try:
        lake.run("tslake", "compact", env=env)
        lake.run("tslake", "retention", env={**env, "TSLAKE_HOT_RETENTION_DAYS": "3"})
    finally:
        stop.set()
        thread.join()
    assert len(results) >= 5
    assert all(result == expected for result in results), \
        next(r for r in results if r != expected)
    partitions = state_of(lake).partitions.values()
    assert {p.location for p in partitions} == {"hot", "cold"}
    last_compaction = state_of(lake).last_compaction
    assert last_compaction is not None and last_compaction.shard_days > 0
