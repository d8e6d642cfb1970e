"""Parity against a real Postgres and real lake files: exact on awkward values, quiet about
in-flight rows, and it catches (with the right sensor and day) a deleted file, a changed
value, a deleted Postgres row and an extra lake row, in `tslake parity` and `dbt test`;
`tslake repair` clears each."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from conftest import Lake, SourceDb
from runner.core import datasets, publish
from runner.core.manifest import parse_rfc3339
from runner.dev import synthetic

pytestmark = pytest.mark.integration

INJECTION = "x'); DROP TABLE metrics; --"


def parity(lake: Lake, *args: str, fail: bool = True) -> tuple[int, dict[str, Any], str]:
    result = lake.run("tslake", "parity", *args, *(["--fail-on-mismatch"] if fail else []),
                      check=False)
    assert result.returncode in (0, 3), result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


def differing(summary: dict[str, Any]) -> set[tuple[str, str]]:
    return {(d["date"], d["sensor_id"]) for d in summary["differences"]}


@pytest.fixture
def filled(lake: Lake, source_db: SourceDb) -> Lake:
    """8 sensors x 4 days, backfilled; nothing leaves the hot tier during these tests."""
    lake.env["TSLAKE_HOT_RETENTION_DAYS"] = "40000"  # awkward rows date back to 1950
    with source_db.connect() as conn:
        synthetic.fill_uniform(conn, sensors=8, days=4, cadence_seconds=1800)
    lake.run("dbt", "run", "--vars", "{backfill_days: 4}")
    return lake


def test_parity_is_exact_on_awkward_values_and_ignores_in_flight_rows(filled: Lake,
                                                                      source_db: SourceDb):
    with source_db.connect() as conn:  # NaN, +-inf, -0.0, NULLs, subnormals, 1950, quotes
        synthetic.insert_awkward_rows(conn)
    filled.run("tslake", "tick")
    code, summary, _ = parity(filled, "--all")
    assert code == 0 and summary["verdict"] == "match", summary["differences"]
    assert summary["window"]["from"] == "1950-06-15T00:00:00Z"
    assert summary["totals"]["source_rows"] == source_db.execute(
        "select count(*) from metrics")[0][0]
    filled.run("dbt", "test")

    # Rows written after the watermark, and a row updated since, are in flight: no alarm.
    source_db.execute("insert into metrics (sensor_id, ts, value) values ('new', now(), 1)")
    source_db.execute("update metrics set value = -1, inserted_at = now() "
                      "where sensor_id = 's0001' and ts = (select max(ts) from metrics "
                      "where sensor_id = 's0001')")
    code, summary, _ = parity(filled, "--all")
    assert code == 0 and summary["in_flight_keys"] == 2
    filled.run("dbt", "test")

    # Sensor ids are bound, whatever they contain; a window past the watermark is clipped.
    now = datetime.now().astimezone()
    code, summary, stderr = parity(
        filled, "--start", (now - timedelta(days=3)).date().isoformat(),
        "--end", (now + timedelta(days=1)).isoformat(), "--sensor-ids", f"s0002,{INJECTION}",
        "--sensor-ids", 'quote"double/air-temp-01', "--report",
        str(filled.settings.data_root / "sensors.md"))
    assert code == 0 and summary["sensors"] == ["s0002", INJECTION, 'quote"double/air-temp-01']
    assert summary["window"]["to"] == filled.dataset()["computed_through_ts"]
    assert "past the watermark" in stderr
    table = json.loads((filled.settings.data_root / "sensors.json").read_text())["sensor_table"]
    assert {row["sensor_id"]: row["source_rows"] > 0 for row in table} == {
        "s0002": True, INJECTION: True, 'quote"double/air-temp-01': True}
    assert source_db.execute("select to_regclass('public.metrics') is not null") == [(True,)]

    code, summary, _ = parity(filled, "--start", (now - timedelta(days=3)).date().isoformat(),
                              "--end", now.date().isoformat(), "--sample", "3", "--seed", "7")
    assert code == 0 and len(summary["sensors"]) == 3 and summary["sample_seed"] == 7


def delete_a_file(lake: Lake, db: SourceDb, day: str) -> tuple[str, set[str], bool]:
    partition = lake.dataset()["partitions"][day]
    file = partition["files"][0]
    path = lake.settings.hot_path / "metrics/v1" / file["path"]
    sensors = {row[0] for row in duckdb.connect().execute(
        "select distinct sensor_id from read_parquet(?)", [str(path)]).fetchall()}
    path.unlink()
    return "missing_in_lake", sensors, True


def change_a_value(lake: Lake, db: SourceDb, day: str) -> tuple[str, set[str], bool]:
    db.execute("update metrics set value = value + 0.001 where sensor_id = 's0003' "
               "and ts = %s::date + interval '10 hours'", (day,))  # inserted_at unchanged
    return "differs", {"s0003"}, True


def delete_a_row(lake: Lake, db: SourceDb, day: str) -> tuple[str, set[str], bool]:
    db.execute("delete from metrics where sensor_id = 's0005' "
               "and ts = %s::date + interval '10 hours'", (day,))
    return "differs", {"s0005"}, False


def add_a_lake_row(lake: Lake, db: SourceDb, day: str) -> tuple[str, set[str], bool]:
    """An extra row committed through the real publish path, as a buggy writer would."""
    settings = lake.settings
    document = publish.open_write(settings, datasets.declared()["metrics/v1"],
                                  "test: extra lake row")
    found = duckdb.connect().execute("select (('0x' || left(md5('s0006'), 8))::ubigint % 8)"
                                     "::integer").fetchone()
    assert found is not None
    shard = found[0]
    run_id = "20260101T000000Z-0badf00d"
    root = publish.dataset_root(settings, "metrics/v1")
    publish.prepare_partitions(settings, "metrics/v1", [(day, shard)])
    tmp = publish.staged_path(root, day, shard, "part", run_id)
    watermark = lake.dataset()["computed_through_ts"]
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    conn.execute(f"""copy (select 's0006' as sensor_id, ?::timestamptz as ts, 1.25::double as value,
                          0::smallint as quality, ?::timestamptz - interval 1 second as inserted_at)
                     to '{tmp}' (format parquet)""", [f"{day}T10:15:00Z", watermark])
    publish.publish_segments(settings, document, "metrics/v1", run_id=run_id, kind="part",
                             watermark=None, files=[publish.StagedFile(
                                 date=day, shard=shard, rows=1, path=str(tmp))])
    from runner.core import lock
    lock.release(settings.lock_path)
    return "differs", {"s0006"}, False


@pytest.mark.parametrize("corrupt", [delete_a_file, change_a_value, delete_a_row,
                                     add_a_lake_row])
def test_parity_names_the_sensor_and_day_and_repair_clears_it(filled: Lake, source_db: SourceDb,
                                                              corrupt: Any):
    lake = filled
    day = (parse_rfc3339(lake.dataset()["computed_through_ts"]).date()
           - timedelta(days=2)).isoformat()
    status, sensors, run_dbt_test = corrupt(lake, source_db, day)

    report = lake.settings.data_root / "report.md"
    code, summary, stderr = parity(lake, "--all", "--report", str(report))
    assert code == 3 and summary["verdict"] == "mismatch"
    assert differing(summary) == {(day, sensor) for sensor in sensors}
    assert {d["status"] for d in summary["differences"]} == {status}
    assert summary["repair"] == f"tslake repair --start {day} --end {next_day(day)}"
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("tslake: error: parity:") and summary["repair"] in last
    text = report.read_text()
    assert "**Verdict: MISMATCH**" in text and all(f"`{s}` on {day}" in text for s in sensors)
    if corrupt is delete_a_file:
        assert [f["date"] for f in summary["missing_files"]] == [day]
    if corrupt in (change_a_value, delete_a_row, add_a_lake_row):
        (difference,) = summary["differences"]
        assert difference["time_ranges"][0]["from"] == f"{day}T10:00:00Z"
        examples = json.loads(report.with_suffix(".json").read_text())["differences"][0]
        assert examples["examples"][0]["ts"].startswith(f"{day}T10:")
        example = examples["examples"][0]
        if corrupt is change_a_value:  # both rows shown, the lake's value 0.001 behind
            assert example["postgres"].startswith("value=") and "quality=" in example["lake"]
            assert example["postgres"] != example["lake"]
            assert "Postgres: `value=" in text and ", lake: `value=" in text
        if corrupt is delete_a_row:
            assert example["postgres"] is None and example["lake"].startswith("value=")
    if run_dbt_test:
        result = lake.run("dbt", "test", check=False)
        assert result.returncode != 0 and "FAIL" in result.stdout

    lake.run("tslake", "repair", "--start", day, "--end", next_day(day))
    code, summary, _ = parity(lake, "--all")
    assert code == 0 and summary["verdict"] == "match"
    if run_dbt_test:
        lake.run("dbt", "test")


def test_repair_refuses_days_retention_would_delete_again(filled: Lake):
    old = (date.today() - timedelta(days=30)).isoformat()
    result = filled.run("tslake", "repair", "--start", old, "--end", next_day(old), check=False,
                        TSLAKE_HOT_RETENTION_DAYS="7")
    assert result.returncode == 2
    assert "retention would delete it again" in result.stderr.strip().splitlines()[-1]


def next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def test_report_paths_are_written_beside_each_other(filled: Lake, tmp_path: Path):
    code, summary, _ = parity(filled, "--all", "--report", str(tmp_path / "out" / "parity"))
    assert code == 0
    assert summary["report"] == {"markdown": str(tmp_path / "out/parity.md"),
                                 "json": str(tmp_path / "out/parity.json")}
    assert json.loads((tmp_path / "out/parity.json").read_text())["verdict"] == "match"
