"""The embedded dev server (runner.dev.devdb) and the synthetic data (runner.dev.synthetic),
end to end."""

from __future__ import annotations

import itertools
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from runner.dev import devdb, synthetic

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
DATABASE = "tslake_test"
END = datetime(2026, 1, 20, 12, 0, 0, 250000, UTC)  # a fixed "now" in the past
_names = itertools.count()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """One real server for the whole session, stopped at the end."""
    pgdata = tmp_path_factory.mktemp("devdb") / "pgdata"
    env = devdb.start(pgdata, database=DATABASE)
    try:
        yield pgdata, env
    finally:
        devdb.stop(pgdata)


def _connect(env: dict[str, str], database: str | None = None) -> psycopg.Connection[Any]:
    return psycopg.connect(host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"],
                           dbname=database or env["PGDATABASE"])


@pytest.fixture
def db(server: tuple[Path, dict[str, str]]) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """A connection and a fresh schema of its own, so tests cannot see each other's tables."""
    schema = f"t{next(_names)}"
    with _connect(server[1]) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.commit()
        yield conn, schema


def _count(conn: psycopg.Connection[Any], query: str, *params: Any) -> int:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return int(row[0])


def _cli(module: str, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, check=True,
                            capture_output=True, text=True, env={**os.environ, **(env or {})})
    return result.stdout


def test_start_is_idempotent_and_returns_a_working_env(server: tuple[Path, dict]) -> None:
    pgdata, env = server
    began = time.monotonic()
    assert devdb.start(pgdata, database=DATABASE) == env
    assert time.monotonic() - began < 2
    assert devdb.is_running(pgdata)
    assert devdb.environment(pgdata, DATABASE) == env
    assert set(env) == {"PGHOST", "PGPORT", "PGUSER", "PGDATABASE"}
    assert (Path(env["PGHOST"]) / f".s.PGSQL.{env['PGPORT']}").is_socket()
    with _connect(env) as conn:
        assert _count(conn, "SELECT 1") == 1
        assert conn.execute("SELECT current_database()").fetchone() == (DATABASE,)
    other = devdb.start(pgdata, database="another_db")  # a second database on the same server
    with _connect(other) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("another_db",)


def test_cli_in_a_fresh_process_prints_only_eval_able_exports(server: tuple[Path, dict]) -> None:
    pgdata, env = server
    out = _cli("runner.dev.devdb", "start", "--dir", str(pgdata), "--database", DATABASE)
    assert all(line.startswith("export PG") for line in out.splitlines()), out
    shown = subprocess.run(["bash", "-c", 'eval "$1" && echo "$PGHOST|$PGPORT|$PGDATABASE"', "_",
                            out], check=True, capture_output=True, text=True).stdout.strip()
    assert shown == f"{env['PGHOST']}|{env['PGPORT']}|{DATABASE}"
    assert _cli("runner.dev.devdb", "env", "--dir", str(pgdata), "--database", DATABASE) == out
    assert _cli("runner.dev.devdb", "env", "--dir", str(pgdata)) == out  # the started database


def test_stop_then_start_keeps_the_data(server: tuple[Path, dict]) -> None:
    pgdata, env = server
    with _connect(env) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS survivor (x int)")
        conn.execute("INSERT INTO survivor VALUES (1)")
    devdb.stop(pgdata)
    assert not devdb.is_running(pgdata)
    devdb.stop(pgdata)  # stopping a stopped server is fine
    with pytest.raises(psycopg.OperationalError):
        _connect(env)
    assert devdb.start(pgdata, database=DATABASE) == env
    with _connect(env) as conn:
        assert _count(conn, "SELECT count(*) FROM survivor") >= 1


def test_a_long_data_dir_gets_a_short_socket_dir(tmp_path: Path) -> None:
    pgdata = tmp_path / ("deep-" * 20) / "pgdata"  # too long for a unix socket path
    try:
        env = devdb.start(pgdata)
        assert Path(env["PGHOST"]) != pgdata
        assert (Path(env["PGHOST"]) / ".s.PGSQL.5432").is_socket()
        with _connect(env) as conn:
            assert _count(conn, "SELECT 1") == 1
    finally:
        devdb.stop(pgdata)
    assert not devdb.is_running(pgdata)
    assert not Path(env["PGHOST"]).exists()  # stop() removes the empty fallback socket dir


def _index_columns(conn: psycopg.Connection[Any], schema: str, rel: str) -> set[tuple[bool, str]]:
    """(is primary key, indexed columns) for each index of schema.rel."""
    rows = conn.execute(
        "SELECT i.indisprimary, string_agg(a.attname, ',' ORDER BY k.ord) FROM pg_index i "
        "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(att, ord) "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.att "
        "WHERE i.indrelid = %s::regclass GROUP BY i.indexrelid, i.indisprimary",
        (sql.Identifier(schema, rel).as_string(conn),)).fetchall()
    return set(rows)


EXPECTED_INDEXES = {(True, "sensor_id,ts"), (False, "inserted_at")}


def test_plain_table_has_the_key_and_the_inserted_at_index(db: tuple) -> None:
    conn, schema = db
    synthetic.create_metrics_table(conn, schema=schema)
    synthetic.create_metrics_table(conn, schema=schema)  # idempotent
    assert _index_columns(conn, schema, "metrics") == EXPECTED_INDEXES
    synthetic.create_metrics_table(conn, schema=schema, table="bare", with_indexes=False)
    assert _index_columns(conn, schema, "bare") == set()
    synthetic.create_metrics_table(conn, schema=schema, table="bare")  # adds them afterwards
    assert _index_columns(conn, schema, "bare") == EXPECTED_INDEXES


def test_hypertable_like_parent_stays_empty_and_chunks_are_indexed(db: tuple) -> None:
    conn, schema = db
    where = {"schema": schema, "table": "metrics"}
    synthetic.create_metrics_table(conn, hypertable_like=True, **where)
    chunks = synthetic.create_week_chunks(conn, END - timedelta(days=9), END, **where)
    assert [name for name, _, _ in chunks] == [
        "metrics_chunk_2026w02", "metrics_chunk_2026w03", "metrics_chunk_2026w04"]
    assert chunks[1][1] == datetime(2026, 1, 12, tzinfo=UTC)
    history = synthetic.fill_history(conn, days=10, sensors=6, end=END, **where)
    synthetic.insert_live(conn, sensors=6, **where)  # through the routing trigger
    synthetic.insert_awkward_rows(conn, end=END, **where)
    parent = sql.Identifier(schema, "metrics").as_string(conn)
    assert _count(conn, f"SELECT count(*) FROM ONLY {parent}") == 0
    total = _count(conn, f"SELECT count(*) FROM {parent}")
    assert total == history + 6 + len(synthetic.awkward_rows(END))
    # every row sits in the chunk named after the ISO week of its ts
    misplaced = _count(conn, f"SELECT count(*) FROM {parent} WHERE tableoid::regclass::text "
                       "NOT LIKE '%metrics_chunk_' || to_char(ts AT TIME ZONE 'UTC', "
                       "'IYYY\"w\"IW')")
    assert misplaced == 0
    children = [row[0] for row in conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass", (parent,))]
    assert "metrics_chunk_1970w01" in children  # 1969-12-31 belongs to ISO week 1970-W01
    for child in children:
        assert re.fullmatch(r"metrics_chunk_\d{4}w\d{2}", child)
        assert _index_columns(conn, schema, child) == EXPECTED_INDEXES, child


def test_fill_history_is_realistic_and_never_in_the_future(db: tuple) -> None:
    conn, schema = db
    synthetic.create_metrics_table(conn, schema=schema)
    rows = synthetic.fill_history(conn, days=14, sensors=48, end=END, schema=schema)
    t = sql.Identifier(schema, "metrics").as_string(conn)
    stats = conn.execute(
        f"SELECT count(*), count(DISTINCT sensor_id), max(inserted_at), min(ts), max(ts), "
        f"count(*) FILTER (WHERE inserted_at > ts + interval '1 hour'), "
        f"count(*) FILTER (WHERE quality = 0), count(*) FILTER (WHERE quality = 4), "
        f"count(*) FILTER (WHERE inserted_at < ts) FROM {t}").fetchone()
    assert stats is not None
    count, sensors, newest, oldest_ts, newest_ts, late, good, corrected, before_ts = stats
    assert count == rows and sensors == 48
    assert newest <= END and newest_ts < END and oldest_ts >= END - timedelta(days=14)
    assert before_ts == 0
    assert 0 < late < 0.05 * count  # a small fraction of late arrivals
    assert good > 0.95 * count and corrected > 0
    # each sensor has offline gaps of hours
    gapped = _count(conn, f"SELECT count(*) FROM (SELECT sensor_id, max(gap) AS g FROM (SELECT "
                    f"sensor_id, ts - lag(ts) OVER (PARTITION BY sensor_id ORDER BY ts) AS gap "
                    f"FROM {t}) x GROUP BY 1) y WHERE g >= interval '1 hour'")
    assert gapped == 48
    assert _count(conn, f"SELECT count(*) FROM {t} WHERE sensor_id = "
                  "'greenhouse-1/air-temp-01'") > 10_000
    # the same seed and end give the same rows
    synthetic.create_metrics_table(conn, schema=schema, table="again")
    synthetic.fill_history(conn, days=14, sensors=48, end=END, schema=schema, table="again")
    again = sql.Identifier(schema, "again").as_string(conn)
    assert _count(conn, f"SELECT count(*) FROM (SELECT * FROM {t} EXCEPT ALL "
                  f"SELECT * FROM {again}) d") == 0


def test_default_history_size_is_one_to_three_million_rows() -> None:
    per_sensor = [90 * 86400 / synthetic.TEMPLATES[i % len(synthetic.TEMPLATES)][2]
                  for i in range(48)]
    assert 1_000_000 < sum(per_sensor) < 3_000_000


@pytest.mark.parametrize("hypertable_like", [False, True])
def test_fill_uniform_row_count_is_exact(db: tuple, hypertable_like: bool) -> None:
    conn, schema = db
    synthetic.create_metrics_table(conn, schema=schema, hypertable_like=hypertable_like)
    end = datetime(2026, 1, 6, 0, 0, 30, 500000, UTC)  # spans a week boundary (Mon Jan 5)
    rows = synthetic.fill_uniform(conn, sensors=7, days=2.5, cadence_seconds=60, end=end,
                                  schema=schema)
    t = sql.Identifier(schema, "metrics").as_string(conn)
    assert rows == 7 * 3600 == _count(conn, f"SELECT count(*) FROM {t}")
    stats = conn.execute(f"SELECT count(DISTINCT sensor_id), min(sensor_id), max(inserted_at), "
                         f"bool_and(inserted_at = ts + interval '1 second') FROM {t}").fetchone()
    assert stats is not None
    assert stats[:2] == (7, "s0000") and stats[2] <= end and stats[3]


@pytest.mark.parametrize("hypertable_like", [False, True])
def test_awkward_rows_round_trip_exactly(db: tuple, hypertable_like: bool) -> None:
    conn, schema = db
    synthetic.create_metrics_table(conn, schema=schema, hypertable_like=hypertable_like)
    expected = synthetic.awkward_rows(END)
    assert synthetic.insert_awkward_rows(conn, schema=schema, end=END) == len(expected)
    assert synthetic.insert_awkward_rows(conn, schema=schema, end=END) == len(expected)  # upsert
    t = sql.Identifier(schema, "metrics").as_string(conn)
    stored = {(r[0], r[1]): r[2:] for r in conn.execute(
        f"SELECT sensor_id, ts, value, quality, inserted_at FROM {t}")}
    assert len(stored) == len(expected)
    for sensor_id, ts, value, quality in expected:
        got_value, got_quality, inserted_at = stored[(sensor_id, ts)]
        assert got_quality == quality and inserted_at == END
        if value is None or math.isnan(value):
            assert got_value is None if value is None else math.isnan(got_value)
        else:
            assert got_value == value and math.copysign(1, got_value) == math.copysign(1, value)
    assert any(ts.year < 1970 for _, ts, _, _ in expected)


@pytest.mark.parametrize("hypertable_like", [False, True])
def test_insert_live_upserts_with_the_database_clock(db: tuple, hypertable_like: bool) -> None:
    conn, schema = db
    synthetic.create_metrics_table(conn, schema=schema, hypertable_like=hypertable_like)
    at = datetime.now(UTC)
    assert synthetic.insert_live(conn, schema=schema, at=at) == 48
    first = conn.execute("SELECT now()").fetchone()
    conn.commit()
    assert synthetic.insert_live(conn, schema=schema, at=at) == 48  # same ts: updates
    t = sql.Identifier(schema, "metrics").as_string(conn)
    stats = conn.execute(f"SELECT count(*), min(inserted_at), max(inserted_at), now() "
                         f"FROM {t}").fetchone()
    assert stats is not None and first is not None
    assert stats[0] == 48 and first[0] < stats[1] <= stats[2] <= stats[3]


def test_synthetic_cli(server: tuple[Path, dict]) -> None:
    _, env = server
    table = f"cli{next(_names)}"
    out = _cli("runner.dev.synthetic", "--table", table, "create", "--hypertable-like", env=env)
    assert out.startswith("created hypertable-like table public.") and out.count("\n") == 1
    out = _cli("runner.dev.synthetic", "--table", table, "live", "--sensors", "5", env=env)
    assert re.fullmatch(rf"wrote 5 live rows to public\.{table} in [\d.]+ s\n", out)
    forecasts = f"fc{next(_names)}"
    out = _cli("runner.dev.synthetic", "--table", table, "--forecast-table", forecasts,
               "history", "--days", "1", "--sensors", "2", env=env)
    assert re.fullmatch(rf"wrote [\d,]+ history rows to public\.{table} and [\d,]+ forecast rows "
                        rf"to public\.{forecasts} in [\d.]+ s\n", out)
    out = _cli("runner.dev.synthetic", "--forecast-table", forecasts, "forecasts", "--days", "2",
               env=env)
    assert re.fullmatch(rf"wrote [\d,]+ forecast rows to public\.{forecasts} in [\d.]+ s\n", out)


def test_forecast_table_is_the_spec_ddl_with_the_inserted_at_index(db: tuple) -> None:
    conn, schema = db
    synthetic.create_forecast_points_table(conn, schema=schema)
    synthetic.create_forecast_points_table(conn, schema=schema)  # idempotent
    columns = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid) "
        "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid "
        "AND d.adnum = a.attnum WHERE a.attrelid = %s::regclass AND a.attnum > 0 "
        "AND NOT a.attisdropped ORDER BY a.attnum",
        (sql.Identifier(schema, "forecast_points").as_string(conn),)).fetchall()
    assert columns == [("series_id", "text", None), ("issued_at", "timestamp with time zone", None),
                       ("ts", "timestamp with time zone", None),
                       ("value", "double precision", None),
                       ("inserted_at", "timestamp with time zone", "now()")]
    assert _index_columns(conn, schema, "forecast_points") == {
        (True, "series_id,issued_at,ts"), (False, "inserted_at")}


def test_fill_forecasts_issues_every_6_hours_48_hourly_points_ahead(db: tuple) -> None:
    conn, schema = db
    synthetic.create_forecast_points_table(conn, schema=schema)
    rows = synthetic.fill_forecasts(conn, days=3, end=END, schema=schema)
    t = sql.Identifier(schema, "forecast_points").as_string(conn)
    issues = conn.execute(f"SELECT series_id, issued_at, count(*), min(ts - issued_at), "
                          f"max(ts - issued_at), min(inserted_at - issued_at), "
                          f"max(inserted_at) FROM {t} GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
    series = sorted(synthetic.FORECAST_SERIES)
    assert sorted({issue[0] for issue in issues}) == series
    assert rows == len(issues) * 48 == len(series) * 12 * 48  # 3 days x 4 issues a day
    for _, issued_at, count, first, last, delay, newest in issues:
        assert issued_at.hour % 6 == 0 and (issued_at.minute, issued_at.second) == (0, 0)
        assert END - timedelta(days=3) <= issued_at <= END
        assert (count, first, last) == (48, timedelta(hours=1), timedelta(hours=48))
        assert newest <= END and (delay >= timedelta(minutes=5) or newest == END)
        assert delay <= timedelta(minutes=20)
    # The newest issue reaches two days past END; past issues overlap (several per ts).
    assert max(issue[1] for issue in issues) + timedelta(hours=48) > END + timedelta(days=1)
    assert _count(conn, f"SELECT max(n) FROM (SELECT count(*) AS n FROM {t} "
                  "GROUP BY series_id, ts) x") == 8
    # Plausible values: within the kind's bounds, error growing with the lead time.
    bounds = conn.execute(f"SELECT min(value), max(value) FROM {t} WHERE series_id = "
                          "'greenhouse-1/humidity-forecast'").fetchone()
    assert bounds is not None and 0 <= bounds[0] < bounds[1] <= 100
    night = _count(conn, f"SELECT count(*) FROM {t} WHERE series_id = "
                   "'weather-station/solar-radiation-forecast' AND extract(hour FROM ts "
                   "AT TIME ZONE 'UTC') IN (0, 1, 2, 3) AND value > 0")
    assert night == 0
    spread = conn.execute(
        f"SELECT stddev(value) FILTER (WHERE ts - issued_at <= interval '6 hours'), "
        f"stddev(value) FILTER (WHERE ts - issued_at >= interval '42 hours') FROM ("
        f"SELECT issued_at, ts, value - avg(value) OVER (PARTITION BY series_id, ts) AS value "
        f"FROM {t} WHERE series_id LIKE '%%air-temp%%') x").fetchone()
    assert spread is not None and spread[0] < spread[1]
    # Reproducible; an issue already there is kept.
    assert synthetic.fill_forecasts(conn, days=3, end=END, schema=schema) == 0


def test_issue_forecasts_uses_the_database_clock(db: tuple) -> None:
    conn, schema = db
    synthetic.create_forecast_points_table(conn, schema=schema)
    assert synthetic.issue_forecasts(conn, schema=schema) == 4 * 48
    t = sql.Identifier(schema, "forecast_points").as_string(conn)
    row = conn.execute(f"SELECT count(DISTINCT issued_at), min(issued_at), "
                       f"max(inserted_at) <= now(), min(ts) - min(issued_at) FROM {t}").fetchone()
    assert row is not None and row[0] == 1 and row[2] and row[3] == timedelta(hours=1)
    assert row[1].microsecond == 0
