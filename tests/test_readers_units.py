"""Readers over the typed manifest, without Postgres or dbt: a lake of hand-written Parquet
files and a Manifest listing them, read through the views, the shard macro and `tslake
query`, for metrics/v1 and forecast_points/v1 (generic over the declaration)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from runner.cli_params import parse_instant
from runner.config import Settings
from runner.core import manifest
from runner.core.manifest import DatasetState, Declaration, LakeFile, Manifest, Partition
from runner.errors import ConfigError, ManifestError
from runner.readers import inspect, query, views
from runner.readers.query import shard_of

pytestmark = pytest.mark.unit

BOTH = "metrics/v1,forecast_points/v1"
DAY = "2026-01-22"
STAMP = "2026-01-22T12:00:00Z"
FORECAST_COLUMNS = ("series_id", "issued_at", "ts", "value", "inserted_at")
METRIC_COLUMNS = ("sensor_id", "ts", "value", "quality", "inserted_at")


def settings_for(root: Path, datasets: str = BOTH) -> Settings:
    return Settings.from_env({"TSLAKE_DATA_ROOT": str(root), "TSLAKE_DATASETS": datasets})


def t(hour: int, minute: int = 0, day: int = 22) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


def write_file(settings: Settings, dataset: str, entry: DatasetState, name: str,
               columns: tuple[str, ...], types: tuple[str, ...],
               rows: list[tuple[Any, ...]], *, date: str = DAY) -> None:
    """One committed file of a shard-day: written with DuckDB, listed in the entry."""
    series = rows[0][0]
    shard = shard_of(series, entry.shards)
    assert all(shard_of(row[0], entry.shards) == shard for row in rows)
    relative = f"date={date}/shard={shard:02d}/{name}.parquet"
    path = settings.hot_path / dataset / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    select = ", ".join(f"${i + 1}::{kind} as {column}"
                       for i, (column, kind) in enumerate(zip(columns, types, strict=True)))
    conn.execute(f"create table t as select {select} where false", list(rows[0]))
    conn.executemany(f"insert into t values ({', '.join('?' * len(columns))})", rows)
    conn.execute(f"copy (select * from t order by all) to '{path}' (format parquet)")
    partition = entry.partitions.setdefault(date, Partition(location="hot", updated_at=STAMP))
    partition.files.append(LakeFile(path=relative, shard=shard, rows=len(rows), bytes=1,
                                    kind=name.split("-")[0], run_id=name))  # type: ignore[arg-type]
    partition.refresh_totals()


def forecast_rows(series: str, issued: datetime, value: float, inserted: datetime
                  ) -> list[tuple[Any, ...]]:
    return [(series, issued, t(hour), value + hour, inserted) for hour in (13, 14, 15)]


def make_lake(root: Path) -> tuple[Settings, Manifest]:
    """metrics/v1: one sensor, one file. forecast_points/v1: a series with two issues whose
    shard-day has two files, the second re-publishing one issue (newer inserted_at), and a
    second series in a shard-day of one file."""
    settings = settings_for(root)
    document = manifest.empty()
    document.generation = 3
    metrics = document.dataset("metrics/v1", 8)
    metrics.computed_through_ts = STAMP
    metrics.source_columns = {"quality": "smallint"}
    write_file(settings, "metrics/v1", metrics, "part-a", METRIC_COLUMNS,
               ("varchar", "timestamptz", "double", "smallint", "timestamptz"),
               [("s-1", t(10), 1.0, 0, t(10, 1)), ("s-1", t(11), 2.0, None, t(11, 1))])
    forecasts = document.dataset("forecast_points/v1", 8)
    forecasts.computed_through_ts = STAMP
    types = ("varchar", "timestamptz", "timestamptz", "double", "timestamptz")
    write_file(settings, "forecast_points/v1", forecasts, "backfill-a", FORECAST_COLUMNS, types,
               forecast_rows("gh/air-temp-forecast", t(6), 0.0, t(6, 10))
               + forecast_rows("gh/air-temp-forecast", t(12), 100.0, t(12, 10)))
    write_file(settings, "forecast_points/v1", forecasts, "part-b", FORECAST_COLUMNS, types,
               forecast_rows("gh/air-temp-forecast", t(12), 200.0, t(12, 30)))
    other = next(f"field/{i}" for i in range(100)
                 if shard_of(f"field/{i}", 8) != shard_of("gh/air-temp-forecast", 8))
    write_file(settings, "forecast_points/v1", forecasts, "part-c", FORECAST_COLUMNS, types,
               forecast_rows(other, t(6), 50.0, t(6, 10)))
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    manifest.save(settings.manifest_path, document)
    loaded = manifest.load(settings.manifest_path)
    assert loaded is not None
    return settings, loaded


def session(settings: Settings, document: Manifest) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    conn.execute(views.render_sql(settings, document, fresh=False))
    return conn


def test_newest_per_key_follows_the_declared_key_and_version() -> None:
    assert views.newest_per_key(("series_id", "issued_at", "ts"), "inserted_at") == (
        "qualify row_number() over (partition by series_id, issued_at, ts "
        "order by inserted_at desc) = 1")
    with pytest.raises(ManifestError, match="not a lowercase identifier"):
        views.newest_per_key(("ts; drop table x",), "inserted_at")


def test_a_view_per_dataset_with_the_newest_version_per_declared_key(tmp_path: Path) -> None:
    settings, document = make_lake(tmp_path)
    conn = session(settings, document)
    metrics = conn.execute("select sensor_id, value, quality from metrics order by ts").fetchall()
    assert metrics == [("s-1", 1.0, 0), ("s-1", 2.0, None)]
    rows = conn.execute("select series_id, issued_at, ts, value from forecast_points "
                        "where series_id = 'gh/air-temp-forecast' order by all").fetchall()
    # Issue 06:00 once; issue 12:00 in its re-published version (200 + hour), not the first.
    assert [(row[1].hour, row[2].hour, row[3]) for row in rows] == [
        (6, 13, 13.0), (6, 14, 14.0), (6, 15, 15.0),
        (12, 13, 213.0), (12, 14, 214.0), (12, 15, 215.0)]
    assert conn.execute("select count(*) from forecast_points").fetchone() == (9,)
    described = [row[0] for row in conn.execute("describe forecast_points").fetchall()]
    assert sorted(described) == sorted([*FORECAST_COLUMNS, "date", "shard"])
    assert conn.execute("select distinct date, shard from forecast_points "
                        "where series_id = 'gh/air-temp-forecast'").fetchall() == [
        (datetime(2026, 1, 22).date(), shard_of("gh/air-temp-forecast", 8))]


def test_only_shard_days_with_several_files_pay_for_dedupe(tmp_path: Path) -> None:
    settings, document = make_lake(tmp_path)
    sql = views.lake_view_sql(settings, "forecast_points/v1",
                              document.datasets["forecast_points/v1"])
    single, multi = sql.split("union all by name")
    assert "qualify" not in single and "part-c" in single
    assert "partition by series_id, issued_at, ts order by inserted_at desc" in multi
    assert "backfill-a" in multi and "part-b" in multi


@pytest.mark.parametrize("series", ["gh/air-temp-forecast", "o'brien \"probe\"", "capteur-é"])
def test_shard_macro_is_named_after_the_view_and_matches_the_spec(tmp_path: Path,
                                                                  series: str) -> None:
    settings, document = make_lake(tmp_path)
    conn = session(settings, document)
    assert conn.execute("select forecast_points_shard(?)", [series]).fetchone() == \
        (shard_of(series, 8),)
    assert conn.execute("select metrics_shard(?)", [series]).fetchone() == (shard_of(series, 8),)
    assert "macro forecast_points_shard(series_id)" in views.shard_macro_sql(
        "forecast_points/v1", document.datasets["forecast_points/v1"])


def test_an_empty_dataset_still_has_a_typed_view(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    document = manifest.empty()
    document.dataset("forecast_points/v1", 8)
    document.dataset("metrics/v1", 8).source_columns = {"quality": "integer"}
    conn = session(settings, document)
    assert conn.execute("select count(*) from forecast_points").fetchone() == (0,)
    types = dict(conn.execute("select column_name, data_type from information_schema.columns "
                              "where table_name = 'forecast_points'").fetchall())
    assert types == {"series_id": "VARCHAR", "issued_at": "TIMESTAMP WITH TIME ZONE",
                     "ts": "TIMESTAMP WITH TIME ZONE", "value": "DOUBLE",
                     "inserted_at": "TIMESTAMP WITH TIME ZONE", "date": "DATE",
                     "shard": "INTEGER"}
    quality = conn.execute("select data_type from information_schema.columns where "
                           "table_name = 'metrics' and column_name = 'quality'").fetchone()
    assert quality == ("INTEGER",)  # the source's integer type, as recorded


def test_fresh_view_reads_the_declared_source_table_and_columns(tmp_path: Path) -> None:
    settings, document = make_lake(tmp_path)
    sql = views.fresh_view_sql(settings, "forecast_points/v1",
                               document.datasets["forecast_points/v1"])
    assert sql.startswith("create or replace view forecast_points_fresh as")
    assert ("'select series_id, issued_at, ts, value, inserted_at from "
            "\"public\".\"forecast_points\" where inserted_at > "
            "''2026-01-22T12:00:00Z''::timestamptz'") in sql
    assert "anti join tail using (series_id, issued_at, ts)" in sql
    assert "(ts at time zone 'UTC')::date as date" in sql
    assert "md5(series_id)" in sql
    metrics = views.fresh_view_sql(settings, "metrics/v1", document.datasets["metrics/v1"])
    assert "anti join tail using (sensor_id, ts)" in metrics and "md5(sensor_id)" in metrics


def test_a_dataset_the_project_no_longer_declares_uses_the_recorded_declaration(
        tmp_path: Path) -> None:
    settings, document = make_lake(tmp_path)
    old = document.datasets.pop("forecast_points/v1")
    old.declaration = Declaration(source="public.forecast_points",
                                  columns=dict.fromkeys(FORECAST_COLUMNS, "varchar")
                                  | {"issued_at": "timestamptz", "ts": "timestamptz",
                                     "value": "double", "inserted_at": "timestamptz"},
                                  key=["series_id", "issued_at", "ts"], series="series_id",
                                  time="ts", version="inserted_at")
    for _, _, file in old.files_of():  # same files, under another (undeclared) name
        source = settings.hot_path / "forecast_points/v1" / file.path
        target = settings.hot_path / "old_forecasts/v1" / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        source.rename(target)
    document.datasets["old_forecasts/v1"] = old
    conn = session(settings, document)
    assert conn.execute("select count(*) from old_forecasts").fetchone() == (9,)
    assert conn.execute("select old_forecasts_shard('x')").fetchone() == (shard_of("x", 8),)
    old.declaration = None
    with pytest.raises(ManifestError, match="old_forecasts/v1"):
        views.render_sql(settings, document, fresh=False)


def test_refresh_writes_lake_duckdb_with_every_view_and_refresh_if_stale_rewrites_it(
        tmp_path: Path) -> None:
    settings, document = make_lake(tmp_path)
    views.refresh(settings, document)
    target = settings.state_dir / views.VIEWS_FILE

    def read() -> tuple[Any, ...]:
        conn = duckdb.connect()
        conn.execute(f"attach '{target}' as lake (read_only)")
        return (conn.execute("select manifest_generation from lake.tslake_state").fetchone(),
                conn.execute("select count(*) from lake.forecast_points").fetchone(),
                conn.execute("select count(*) from lake.metrics").fetchone())

    assert read() == ((document.generation,), (9,), (2,))
    document.generation += 1
    views.refresh_if_stale(settings, document)
    assert read()[0] == (document.generation,)


def run_query(settings: Settings, dataset: str, sensors: list[str], *,
              bucket: str | None = None, agg: str = "avg") -> tuple[list[str], list[Any]]:
    relation = query.series(settings, dataset=dataset, sensors=sensors,
                            start=parse_instant("2026-01-22", "--start"),
                            end=parse_instant("2026-01-23", "--end"), bucket=bucket, agg=agg)
    return relation.columns, relation.fetchall()


def test_query_reads_the_series_column_and_leaves_out_the_version(tmp_path: Path) -> None:
    settings, _ = make_lake(tmp_path)
    columns, rows = run_query(settings, "forecast_points/v1", ["gh/air-temp-forecast"])
    assert columns == ["series_id", "issued_at", "ts", "value"]
    assert [(row[1].hour, row[2].hour, row[3]) for row in rows] == [
        (6, 13, 13.0), (6, 14, 14.0), (6, 15, 15.0),
        (12, 13, 213.0), (12, 14, 214.0), (12, 15, 215.0)]
    columns, rows = run_query(settings, "metrics/v1", ["s-1"])
    assert columns == ["sensor_id", "ts", "value", "quality"]
    assert [row[2] for row in rows] == [1.0, 2.0]


def test_query_buckets_aggregate_value_over_the_time_column(tmp_path: Path) -> None:
    settings, _ = make_lake(tmp_path)
    columns, rows = run_query(settings, "forecast_points/v1", ["gh/air-temp-forecast"],
                              bucket="1h", agg="max")
    assert columns == ["series_id", "bucket_start", "max", "samples"]
    assert [(row[1].hour, row[2], row[3]) for row in rows] == [
        (13, 213.0, 2), (14, 214.0, 2), (15, 215.0, 2)]
    _, rows = run_query(settings, "forecast_points/v1", ["gh/air-temp-forecast"],
                        bucket="1d", agg="first")
    assert [(row[2], row[3]) for row in rows] in ([(13.0, 6)], [(213.0, 6)])  # ts ties


def test_query_with_no_file_to_read_is_empty_with_the_same_columns(tmp_path: Path) -> None:
    settings, _ = make_lake(tmp_path)
    for bucket, columns in ((None, ["series_id", "issued_at", "ts", "value"]),
                            ("1h", ["series_id", "bucket_start", "avg", "samples"])):
        relation = query.series(settings, dataset="forecast_points/v1",
                                sensors=["gh/air-temp-forecast"],
                                start=parse_instant("2001-01-01", "--start"),
                                end=parse_instant("2001-01-02", "--end"), bucket=bucket,
                                agg="avg")
        assert (relation.columns, relation.fetchall()) == (columns, [])


def test_query_of_an_id_the_lake_holds_nowhere_is_a_config_error_naming_it(
        tmp_path: Path) -> None:
    settings, _ = make_lake(tmp_path)
    with pytest.raises(ConfigError, match="no series_id 'no-such-series' on any date"):
        run_query(settings, "forecast_points/v1", ["gh/air-temp-forecast", "no-such-series"])


def test_query_refuses_a_disabled_or_unknown_dataset(tmp_path: Path) -> None:
    settings, _ = make_lake(tmp_path)
    only_metrics = settings_for(tmp_path, "metrics/v1")
    with pytest.raises(ConfigError, match="declared but not enabled"):
        run_query(only_metrics, "forecast_points/v1", ["gh/air-temp-forecast"])
    with pytest.raises(ConfigError, match="not a dataset"):
        run_query(settings, "nope/v1", ["x"])


def test_inspect_covers_every_dataset_of_the_typed_manifest(tmp_path: Path) -> None:
    settings, document = make_lake(tmp_path)
    report = inspect.inspect_lake(settings)
    assert report["manifest"]["generation"] == document.generation
    assert sorted(report["datasets"]) == ["forecast_points/v1", "metrics/v1"]
    forecasts = report["datasets"]["forecast_points/v1"]
    assert forecasts["totals"]["files"] == 3 and forecasts["totals"]["rows"] == 12
    assert forecasts["partitions"][DAY]["max_files_per_shard"] == 2
    assert forecasts["uncommitted_files_on_disk"] == 0
    (settings.hot_path / "forecast_points/v1" / f"date={DAY}" / "shard=00").mkdir(
        parents=True, exist_ok=True)
    (settings.hot_path / "forecast_points/v1" / f"date={DAY}" / "shard=00" / "x.tmp").touch()
    assert inspect.inspect_lake(settings)["datasets"]["forecast_points/v1"][
        "uncommitted_files_on_disk"] == 1


def test_scan_buckets_floor_to_epoch_boundaries_before_1970_and_from_an_unaligned_start(
        tmp_path: Path) -> None:
    """scan_sql counts buckets from the boundary at or before `start` with one integer
    division: the buckets must still be epoch-aligned floors, on both sides of 1970, and
    `ordered=False` must give the same rows."""
    from datetime import timedelta

    from runner.readers.scan import scan_sql

    settings = settings_for(tmp_path, "metrics/v1")
    document = manifest.empty()
    document.generation = 1
    entry = document.dataset("metrics/v1", 8)
    entry.computed_through_ts = STAMP
    entry.source_columns = {"quality": "smallint"}
    types = ("varchar", "timestamptz", "double", "smallint", "timestamptz")
    midnight = datetime(1970, 1, 1, tzinfo=UTC)
    times = [midnight + timedelta(minutes=minute) for minute in range(-13, 14, 2)]
    for day in ("1969-12-31", "1970-01-01"):
        rows = [("s-1", moment, float(i), 0, moment) for i, moment in enumerate(times)
                if moment.date().isoformat() == day]
        write_file(settings, "metrics/v1", entry, f"part-{day}", METRIC_COLUMNS, types, rows,
                   date=day)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    manifest.save(settings.manifest_path, document)
    start, end = midnight - timedelta(minutes=11, seconds=30), midnight + timedelta(minutes=12)

    width = 300  # 5 minutes
    expected: dict[datetime, list[float]] = {}
    for i, moment in enumerate(times):
        if start <= moment < end:
            seconds = int((moment - midnight).total_seconds())
            expected.setdefault(midnight + timedelta(seconds=seconds // width * width),
                                []).append(float(i))
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    sql, params = scan_sql(settings, start=start, end=end, bucket="5m")
    got = conn.execute(sql, params).fetchall()
    assert [(row[1], row[2], row[3]) for row in got] == [
        (bucket, sum(values) / len(values), len(values))
        for bucket, values in sorted(expected.items())]
    assert got[0][1] < midnight < got[-1][1]  # buckets on both sides of 1970
    unsorted, params = scan_sql(settings, start=start, end=end, bucket="5m", ordered=False)
    assert "order by" not in unsorted
    assert sorted(conn.execute(unsorted, params).fetchall()) == got
