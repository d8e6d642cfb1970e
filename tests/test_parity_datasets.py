"""Parity over any declared dataset: the row checksum per lake type (byte for byte the
same in DuckDB, Postgres and a Python definition), the committed file list from the typed
manifest, the dataset option, and forecast_points/v1 end to end (backfill, `tslake parity
--all` exact, a deleted file caught with its series and day, `dbt test`)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from runner.config import PROJECT_ROOT, Settings
from runner.core import datasets, manifest
from runner.dbt_bridge import sqlmacros
from runner.errors import ColdTierUnavailableError, ConfigError, ManifestError
from runner.ops import parity, parity_session

EPOCH_2000 = datetime(2000, 1, 1, tzinfo=UTC)

# Every lake type, in and out of the key (the hashed columns: key minus series, then the
# value columns, in declared order).
KITCHEN_SINK = {
    "key": ["sid", "day", "n", "ts"], "series": "sid", "time": "ts", "version": "v",
    "columns": [["sid", "varchar"], ["day", "date"], ["n", "integer"], ["ts", "timestamptz"],
                ["label", "varchar"], ["flag", "boolean"], ["seen", "timestamptz"],
                ["total", "bigint"], ["small", "smallint"], ["ratio", "double"],
                ["v", "timestamptz"]],
}
SINK_ROWS = [
    ("a", date(2026, 1, 22), 1, datetime(2026, 1, 22, 10, 15, tzinfo=UTC), "plain", True,
     datetime(1950, 6, 15, 0, 0, 0, 123, tzinfo=UTC), 2**62, -3, 1.5),
    ("a", date(1999, 12, 31), -7, datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
     "", False, None, None, None, math.nan),
    ("b", date(2000, 1, 1), 0, datetime(2000, 1, 1, tzinfo=UTC), None, None,
     datetime(2030, 1, 1, tzinfo=UTC), -1, 32767, None),
    ("b", date(2026, 2, 1), 2**31 - 1, datetime(2026, 2, 1, 1, tzinfo=UTC),
     "ünï'cødé \"q\" 🚀", True, None, 0, 0, -0.0),
    ("c", date(2026, 2, 2), 3, datetime(2026, 2, 2, tzinfo=UTC), "x" * 300, None, None,
     None, None, math.inf),
]


def reference_hash(declaration: dict[str, Any], row: dict[str, Any]) -> int:
    """The checksum's definition, independently of SQL: md5 of the big-endian bytes."""
    types = dict(map(tuple, declaration["columns"]))
    hashed = [(name, True) for name in declaration["key"] if name != declaration["series"]]
    hashed += [(name, False) for name, _ in declaration["columns"]
               if name not in declaration["key"] and name != declaration["version"]]
    payload = b""
    for name, in_key in hashed:
        lake_type, value = types[name], row[name]
        if lake_type == "double":
            if value is None:
                payload += struct.pack(">Q", 0x7FF8000000000001)
            elif math.isnan(value):
                payload += struct.pack(">Q", 0x7FF8000000000000)
            else:
                payload += struct.pack(">d", 0.0 if value == 0 else value)
            continue
        if lake_type == "varchar":
            data = b"" if value is None else value.encode()
            payload += struct.pack(">q", -1 if value is None else len(data)) + data
            continue
        if value is None:
            number = 0
        elif lake_type == "timestamptz":
            number = (value - EPOCH_2000) // timedelta(microseconds=1)
        elif lake_type == "date":
            number = (value - date(2000, 1, 1)).days
        else:
            number = int(value)
        payload += struct.pack(">q", number) + (b"" if in_key else bytes([value is None]))
    return int(hashlib.md5(payload).hexdigest()[:15], 16)


def sink_table(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("set TimeZone = 'UTC'")
    conn.execute("create table t (sid varchar, day date, n integer, ts timestamptz, "
                 "label varchar, flag boolean, seen timestamptz, total bigint, "
                 "small smallint, ratio double)")
    conn.executemany("insert into t values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", SINK_ROWS)


def sink_dicts() -> list[dict[str, Any]]:
    names = [name for name, _ in KITCHEN_SINK["columns"] if name != "v"]
    return [dict(zip(names, row, strict=True)) for row in SINK_ROWS]


@pytest.mark.unit
def test_duckdb_row_hash_follows_the_declaration_for_every_lake_type():
    conn = duckdb.connect()
    sink_table(conn)
    expression = sqlmacros.render("parity_row_hash_duckdb", declaration=KITCHEN_SINK)
    got = [row[0] for row in
           conn.execute(f"select {expression} from t order by sid, ts").fetchall()]
    want = [reference_hash(KITCHEN_SINK, row) for row in
            sorted(sink_dicts(), key=lambda r: (r["sid"], r["ts"]))]
    assert got == want


@pytest.mark.unit
def test_forecast_rows_hash_issued_at_ts_and_value():
    forecasts = parity_session.declaration(datasets.declared()["forecast_points/v1"])
    expression = sqlmacros.render("parity_row_hash_duckdb", declaration=forecasts)
    assert [name for name in ("issued_at", "ts", "value", "series_id", "inserted_at")
            if f'"{name}"' in expression] == ["issued_at", "ts", "value"]
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    issued, ts = datetime(2026, 1, 22, 6, tzinfo=UTC), datetime(2026, 1, 23, 12, tzinfo=UTC)
    for value in (1.25, None, math.nan, -0.0):
        got = conn.execute(f"select {expression} from (select 'f1' as series_id, "
                           "?::timestamptz as issued_at, ?::timestamptz as ts, "
                           "?::double as value)", [issued, ts, value]).fetchone()[0]
        assert got == reference_hash(forecasts, {"issued_at": issued, "ts": ts, "value": value})
    # Swapping issued_at and ts is a different row.
    swapped = conn.execute(f"select {expression} from (select ?::timestamptz as issued_at, "
                           "?::timestamptz as ts, 1.25::double as value)", [ts, issued])
    assert swapped.fetchone()[0] != reference_hash(
        forecasts, {"issued_at": issued, "ts": ts, "value": 1.25})


@pytest.mark.unit
@pytest.mark.parametrize("change, words", [
    ({"series": "nope"}, "'nope' is not one of the declared columns"),
    ({"key": ["ts"]}, "must hold the series and time columns"),
    ({"key": ["sid", "ts", "v"]}, "must hold the series and time columns and not the version"),
    ({"columns": [["sid", "varchar"], ["ts", "timestamptz"], ["v", "timestamptz"],
                  ["x; drop", "double"]]}, "'x; drop' must be a lowercase identifier"),
    ({"columns": [["sid", "varchar"], ["ts", "timestamptz"], ["v", "money"]]},
     "lake type 'money', not one of bigint, boolean"),
    ({"time": None}, "has no 'time'"),
])
def test_parity_macros_validate_the_declaration(change: dict[str, Any], words: str):
    base = {"key": ["sid", "ts"], "series": "sid", "time": "ts", "version": "v",
            "columns": [["sid", "varchar"], ["ts", "timestamptz"], ["v", "timestamptz"]]}
    for macro, extra in (("parity_row_hash_duckdb", {}),
                         ("parity_lake_aggregates", {"grain": "day_shard", "single_files": None,
                                                     "multi_files": None, "ts_from": "a",
                                                     "ts_to": "b", "shards": 8}),
                         ("parity_source_inflight", {"schema": "public", "table": "t",
                                                     "ts_from": "a", "ts_to": "b",
                                                     "watermark": "c"})):
        with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
            sqlmacros.render(macro, declaration={**base, **change}, **extra)
    with pytest.raises(ConfigError, match="key column 'a-b' must be a lowercase identifier"):
        sqlmacros.render("parity_compare", lake="l", source="s", key_columns=["a-b"])


@pytest.mark.unit
def test_row_level_groups_carry_the_other_key_columns():
    forecasts = parity_session.declaration(datasets.declared()["forecast_points/v1"])
    arguments = {"declaration": forecasts, "ts_from": "a", "ts_to": "b", "shards": 8}
    lake_rows = sqlmacros.render("parity_lake_aggregates", grain="row_sensor", single_files="x",
                                 multi_files=None, **arguments)
    assert '"issued_at" as "key_issued_at"' in lake_rows
    assert "key_issued_at" not in sqlmacros.render(
        "parity_lake_aggregates", grain="hour_sensor", single_files="x", multi_files=None,
        **arguments)
    source = sqlmacros.render("parity_source_aggregates", schema="public",
                              table="forecast_points", grain="row_sensor", watermark="w",
                              **arguments)
    assert '"issued_at" as key_issued_at' in source and '"inserted_at" <= ' in source


def lake_manifest(tmp_path: Path) -> tuple[Settings, manifest.DatasetState]:
    settings = Settings.from_env({"TSLAKE_DATA_ROOT": str(tmp_path),
                                  "TSLAKE_COLD_PATH": str(tmp_path / "cold")})
    document = manifest.empty()
    entry = document.dataset("forecast_points/v1", 8)
    files = [{"date": day, "shard": shard, "path": f"date={day}/shard={shard:02d}/{name}",
              "rows": 3, "bytes": 100, "kind": "backfill", "run_id": "r"}
             for day, shard, name in (("2026-01-01", 1, "a.parquet"),
                                      ("2026-01-01", 1, "b.parquet"),
                                      ("2026-01-02", 1, "c.parquet"),
                                      ("2026-01-02", 2, "d.parquet"))]
    manifest.add_files(entry, files, now=datetime(2026, 1, 3, tzinfo=UTC))
    entry.partitions["2026-01-01"].location = "cold"
    return settings, entry


@pytest.mark.unit
def test_committed_files_come_from_the_typed_manifest(tmp_path: Path):
    settings, entry = lake_manifest(tmp_path)
    cold = settings.cold_path / "forecast_points/v1"  # type: ignore[operator]
    hot = settings.hot_path / "forecast_points/v1"
    for path in (cold / "date=2026-01-01/shard=01/a.parquet",
                 hot / "date=2026-01-02/shard=02/d.parquet"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    files = parity_session.committed_files(settings, "forecast_points/v1", entry)
    assert [(f.date, f.shard, f.location, f.path, f.files_in_shard_day, f.on_disk)
            for f in files] == [
        ("2026-01-01", 1, "cold", str(cold / "date=2026-01-01/shard=01/a.parquet"), 2, True),
        ("2026-01-01", 1, "cold", str(cold / "date=2026-01-01/shard=01/b.parquet"), 2, False),
        ("2026-01-02", 1, "hot", str(hot / "date=2026-01-02/shard=01/c.parquet"), 1, False),
        ("2026-01-02", 2, "hot", str(hot / "date=2026-01-02/shard=02/d.parquet"), 1, True)]

    without_cold = Settings.from_env({"TSLAKE_DATA_ROOT": str(tmp_path)})
    with pytest.raises(ColdTierUnavailableError,
                       match="forecast_points/v1 has partitions in the cold tier but "
                             "TSLAKE_COLD_PATH is not set"):
        parity_session.committed_files(without_cold, "forecast_points/v1", entry)

    outside = tmp_path / "elsewhere.parquet"
    outside.write_bytes(b"x")
    (hot / "date=2026-01-02/shard=01").mkdir(parents=True)
    (hot / "date=2026-01-02/shard=01/c.parquet").symlink_to(outside)
    with pytest.raises(ManifestError, match="leads outside"):
        parity_session.committed_files(settings, "forecast_points/v1", entry)


@pytest.mark.unit
@pytest.mark.parametrize("env, words", [
    ({}, "--dataset forecast_points/v1 is declared but not enabled"),
    ({"TSLAKE_DATASETS": "metrics/v1,forecast_points/v1"}, ""),
])
def test_an_unknown_or_disabled_dataset_is_exit_2_before_anything_runs(
        tmp_path: Path, env: dict[str, str], words: str):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "TSLAKE_"))}
    dataset = "forecast_points/v1" if words else "nope/v1"
    words = words or "--dataset 'nope/v1' is not a dataset"
    result = subprocess.run([sys.executable, "-m", "runner.cli", "parity", "--all",
                             "--dataset", dataset], cwd=PROJECT_ROOT,
                            env={**base, **env, "TSLAKE_DATA_ROOT": str(tmp_path)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tslake: error: ") and words in lines[0]
    assert not (tmp_path / "storage").exists()


# --- against a real Postgres --------------------------------------------------------------

@pytest.mark.integration
def test_postgres_row_hash_is_byte_identical_for_every_lake_type(source_db: Any):
    source_db.execute("create table t (sid text, day date, n integer, ts timestamptz, "
                      "label text, flag boolean, seen timestamptz, total bigint, "
                      "small smallint, ratio double precision)")
    with source_db.connect() as conn, conn.cursor() as cur:
        cur.executemany("insert into t values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        SINK_ROWS)
    expression = sqlmacros.render("parity_row_hash_postgres", declaration=KITCHEN_SINK)
    got = [row[0] for row in source_db.execute(f"select {expression} from t order by sid, ts")]
    conn = duckdb.connect()
    sink_table(conn)
    duck = sqlmacros.render("parity_row_hash_duckdb", declaration=KITCHEN_SINK)
    assert got == [row[0] for row in
                   conn.execute(f"select {duck} from t order by sid, ts").fetchall()]


def create_forecast_table(db: Any) -> None:
    """public.forecast_points as README "Datasets" declares it."""
    db.execute("""create table public.forecast_points (
                      series_id text, issued_at timestamptz, ts timestamptz,
                      value double precision, inserted_at timestamptz not null default now(),
                      primary key (series_id, issued_at, ts))""")
    db.execute("create index on public.forecast_points (inserted_at)")


def fill_forecasts(db: Any, *, series: int = 5, days: int = 3, ahead: bool = False) -> None:
    """Per series, one forecast issued every 6 hours over the last `days` days, each for
    the next 24 hours hourly, awkward values included; with `ahead`, points past today
    (dates ahead of today) too."""
    db.execute("""
        insert into public.forecast_points (series_id, issued_at, ts, value, inserted_at)
        select 'f' || lpad(s::text, 3, '0'), issued, issued + h * interval '1 hour',
               case when h = 3 then 'NaN'::float8 when h = 4 then null when h = 5 then -0.0
                    else s * 100 + h + extract(epoch from issued) / 1e9 end,
               now() - interval '10 minutes'
        from generate_series(1, %s) as s,
             generate_series(date_trunc('day', now()) - (%s - 1) * interval '1 day',
                             now() - interval '1 hour', interval '6 hours') as issued,
             generate_series(1, 24) as h
        where %s or issued + h * interval '1 hour'
                    < date_trunc('day', now() at time zone 'UTC') at time zone 'UTC'
                      + interval '1 day'""", (series, days, ahead))


def forecast_parity(lake: Any, *args: str) -> tuple[int, dict[str, Any], str]:
    result = lake.run("tslake", "parity", "--dataset", "forecast_points/v1", *args,
                      "--fail-on-mismatch", check=False)
    assert result.returncode in (0, 3), result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


@pytest.mark.integration
def test_forecast_parity_is_exact_and_catches_a_deleted_file(lake: Any, source_db: Any):
    create_forecast_table(source_db)
    fill_forecasts(source_db)
    lake.configure(TSLAKE_DATASETS="metrics/v1,forecast_points/v1")
    lake.run("tslake", "backfill", "--days", "3")

    code, summary, _ = forecast_parity(lake, "--all")
    assert code == 0 and summary["verdict"] == "match", summary["differences"]
    assert summary["series_column"] == "series_id"
    assert summary["totals"]["source_rows"] == summary["totals"]["lake_rows"] == \
        source_db.execute("select count(*) from forecast_points")[0][0]
    lake.run("dbt", "test")

    # In flight (a version newer than the watermark): a new key, and an updated one whose
    # older version the lake holds; left out on both sides, whatever issued_at is.
    source_db.execute("insert into forecast_points (series_id, issued_at, ts, value) values "
                      "('f001', now(), now() - interval '1 hour', 1)")
    source_db.execute("update forecast_points set value = -1, inserted_at = now() where "
                      "(series_id, issued_at, ts) = (select series_id, issued_at, ts from "
                      "forecast_points where series_id = 'f003' order by issued_at, ts limit 1)")
    code, summary, _ = forecast_parity(lake, "--all")
    assert code == 0 and summary["in_flight_keys"] == 2, summary["differences"]
    lake.run("dbt", "test")

    # A changed value of one key (issued_at unchanged, inserted_at unchanged) is found per key.
    issued, ts = source_db.execute(
        "update forecast_points set value = value + 1 where series_id = 'f002' and "
        "(issued_at, ts) = (select issued_at, ts from forecast_points where series_id = 'f002' "
        "and value <> 'NaN'::float8 order by issued_at, ts limit 1) returning issued_at, ts")[0]
    code, summary, _ = forecast_parity(lake, "--all")
    assert code == 3
    (difference,) = summary["differences"]
    assert difference["sensor_id"] == "f002" and difference["date"] == ts.date().isoformat()
    report = lake.run("tslake", "parity", "--dataset", "forecast_points/v1", "--all",
                      "--report", str(lake.settings.data_root / "f.md"))
    assert report.returncode == 0
    examples = json.loads((lake.settings.data_root / "f.json").read_text())["differences"][0]
    assert examples["examples"] == [{"ts": manifest.rfc3339(ts), "status": "differs",
                                     "key": {"issued_at": manifest.rfc3339(issued)}}]
    source_db.execute("update forecast_points set value = value - 1 where series_id = 'f002' "
                      "and issued_at = %s and ts = %s", (issued, ts))

    # A committed file deleted on disk: exit 3, naming its day and series; dbt test fails.
    document = manifest.load(lake.settings.manifest_path)
    assert document is not None
    day, _, file = document.datasets["forecast_points/v1"].files_of()[0]
    path = lake.settings.hot_path / "forecast_points/v1" / file.path
    series = {row[0] for row in duckdb.connect().execute(
        "select distinct series_id from read_parquet(?)", [str(path)]).fetchall()}
    path.unlink()
    code, summary, stderr = forecast_parity(lake, "--all")
    assert code == 3 and summary["verdict"] == "mismatch"
    assert [f["date"] for f in summary["missing_files"]] == [day]
    assert {(d["date"], d["sensor_id"]) for d in summary["differences"]} == \
        {(day, name) for name in series}
    assert stderr.strip().splitlines()[-1].startswith("tslake: error: parity:")
    result = lake.run("dbt", "test", check=False)
    assert result.returncode != 0 and "FAIL" in result.stdout

    # Series ids are the series column's; one no dataset holds is exit 2.
    result = lake.run("tslake", "parity", "--dataset", "forecast_points/v1", "--all",
                      "--sensor-ids", "f001,nope", check=False)
    assert result.returncode == 2 and "has no series_id 'nope'" in result.stderr


@pytest.mark.unit
def test_a_window_is_clipped_at_the_watermark_or_past_it_when_times_run_ahead():
    horizon = datetime(2026, 1, 1, tzinfo=UTC)
    watermark = datetime(2026, 1, 10, 12, tzinfo=UTC)
    end = datetime(2026, 2, 1, tzinfo=UTC)
    lo, hi, warnings = parity._clip(horizon, end, horizon, watermark)
    assert hi == watermark and "past the watermark" in warnings[0]
    newest_end = datetime(2026, 1, 13, tzinfo=UTC)  # forecasts: partitions up to 2026-01-12
    lo, hi, warnings = parity._clip(horizon, end, horizon, newest_end, ahead=True)
    assert hi == newest_end and "past the lake's newest partition" in warnings[0]
    assert parity._clip(horizon, datetime(2026, 1, 12, tzinfo=UTC), horizon, newest_end,
                        ahead=True)[2] == []


@pytest.mark.integration
def test_forecasts_ahead_of_today_are_backfilled_and_match(lake: Any, source_db: Any):
    create_forecast_table(source_db)
    fill_forecasts(source_db, days=2, ahead=True)
    lake.configure(TSLAKE_DATASETS="metrics/v1,forecast_points/v1")
    lake.run("tslake", "backfill", "--days", "2")
    code, summary, _ = forecast_parity(lake, "--all")
    assert code == 0, summary["differences"]
