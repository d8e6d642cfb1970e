"""Readers: views over exactly the committed files (hot and cold), the fresh Postgres tail,
and `tslake query` with pruning and exact buckets."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from conftest import Lake, SourceDb, canonical, source_rows
from runner.connection import connect
from runner.manifest import parse_rfc3339
from runner.query import shard_of

pytestmark = pytest.mark.integration

COLUMNS = "sensor_id, ts, value, quality, inserted_at"


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
    assert lake.dataset()["source"] == {"schema": "public", "table": "metrics"}
    watermark = parse_rfc3339(lake.dataset()["computed_through_ts"])
    expected = source_rows(source_db, "inserted_at <= %s", (watermark,))
    assert len(lake.rows()) > len(expected)  # the lake holds both versions

    reader = duckdb.connect()
    reader.execute("set TimeZone = 'UTC'")
    reader.execute(f"attach '{lake.settings.state_dir / 'lake.duckdb'}' as lake (read_only)")
    assert canonical(reader.execute(f"select {COLUMNS} from lake.metrics").fetchall()) == expected
    generation = reader.execute("select manifest_generation from lake.tslake_state").fetchone()
    assert generation == (lake.manifest()["generation"],)

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


def query_json(lake: Lake, *args: str) -> list[dict[str, object]]:
    return json.loads(lake.run("tslake", "query", "--format", "json", *args).stdout)


def test_query_buckets_equal_postgres_aggregates(lake: Lake, source_db: SourceDb):
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
        assert [(parse_rfc3339(r["bucket_start"]), r["avg"], r["samples"]) for r in got] == \
            [(start_, pytest.approx(avg), n) for start_, avg, n in expected]


def test_query_opens_only_the_files_of_its_dates_and_shards(lake: Lake, source_db: SourceDb):
    fill(source_db)
    lake.run("dbt", "run")
    wanted = shard_of("sensor-4", 8)
    others = [p for p in lake.committed_files() if p.parent.name != f"shard={wanted:02d}"]
    assert others
    for path in others:
        path.unlink()  # a query that opened them would fail
    rows = query_json(lake, "--sensor", "sensor-4", "--start", "2000-01-01", "--end", "2100-01-01")
    assert len(rows) == len(source_db.execute("select 1 from metrics where sensor_id = 'sensor-4'"))
    mine = next(p for p in lake.committed_files() if p.exists())
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
