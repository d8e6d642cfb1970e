"""Other engines read the same lake (SPEC section 9): pyiceberg's StaticTable and DuckDB's
iceberg_scan over the Iceberg metadata `tslake inspect` reports, and pyarrow.dataset,
Polars, DuckDB and Spark (local mode) over the manifest's file list with Hive
partitioning; each returns exactly Postgres's newest versions inside the watermark, after
a backfill, a tick with late and updated rows, a compaction, a retention move to a local
cold tier and late rows for a cold date. One lake for the module; the newest-version
dedupe on (sensor_id, ts) by inserted_at is each reader's own query."""

from __future__ import annotations

import importlib
import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars
import pyarrow
import pyarrow.dataset
import pytest
from pyiceberg.table import StaticTable

from conftest import NO_TRIGGER, Lake, SourceDb, canonical, source_rows
from runner.core import manifest
from runner.dev import synthetic

pytestmark = pytest.mark.integration

COLUMNS = ("sensor_id", "ts", "value", "quality", "inserted_at")


def late_rows(db: SourceDb, day: date, sensors: list[str], count: int = 4) -> None:
    """Rows with an old `ts` on `day` and inserted_at now() (late data)."""
    db.execute("""insert into metrics (sensor_id, ts, value, quality)
                  select sensor, %s::date + time '13:00' + make_interval(secs => i), i, 1
                  from unnest(%s::text[]) as sensor, generate_series(1, %s) as i
                  on conflict do nothing""", (day, sensors, count))


@pytest.fixture(scope="module")
def engine_lake(pg_server: dict[str, str],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lake, SourceDb]]:
    name = f"tslake_engines_{os.getpid()}_{tmp_path_factory.getbasetemp().name}"
    admin = SourceDb(pg_server, "postgres")
    admin.execute(f'drop database if exists "{name}" with (force)')
    admin.execute(f'create database "{name}"')
    db = SourceDb(pg_server, name)
    root = tmp_path_factory.mktemp("engines")
    try:
        with db.connect() as conn:
            synthetic.create_metrics_table(conn)
            synthetic.fill_uniform(conn, sensors=6, days=8, cadence_seconds=3600)
        lake = Lake(root / "data", db)
        lake.run("dbt", "run", "--vars", "{backfill_days: 8}", env=NO_TRIGGER)
        today = date.fromisoformat(lake.dataset()["computed_through_ts"][:10])
        late_rows(db, today - timedelta(days=5), ["s0001", "s0002", "late-a"])
        db.execute("""update metrics set value = value + 1000, inserted_at = now()
                      where extract(epoch from ts)::bigint % 7 = 0""")
        lake.run("dbt", "run", env=NO_TRIGGER)                          # tick: late + updated
        lake.run("tslake", "compact")                                    # compaction
        cold = root / "nas"
        cold.mkdir()
        lake.configure(TSLAKE_COLD_PATH=str(cold), TSLAKE_HOT_RETENTION_DAYS="3")
        lake.run("tslake", "retention")                                  # retention move
        late_rows(db, today - timedelta(days=6), ["s0003", "late-b"])    # a cold date
        lake.run("dbt", "run", env=NO_TRIGGER)
        assert any(p["location"] == "cold" for p in lake.dataset()["partitions"].values())
        yield lake, db
    finally:
        admin.execute(f'drop database if exists "{name}" with (force)')


def expected_rows(lake: Lake, db: SourceDb) -> list[tuple[Any, ...]]:
    """Postgres's rows (its newest versions) inside the lake's watermark."""
    watermark = manifest.parse_rfc3339(lake.dataset()["computed_through_ts"])
    rows = source_rows(db, "inserted_at <= %s", (watermark,))
    assert len(rows) == len(source_rows(db)), "the scenario left rows past the watermark"
    return rows


def newest(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The newest version per key (sensor_id, ts) by inserted_at, in canonical form."""
    best: dict[tuple[Any, Any], dict[str, Any]] = {}
    for row in rows:
        key = (row["sensor_id"], row["ts"])
        if key not in best or row["inserted_at"] > best[key]["inserted_at"]:
            best[key] = row
    return canonical([tuple(row[column] for column in COLUMNS) for row in best.values()])


def files_by_root(lake: Lake) -> dict[Path, list[str]]:
    """The manifest's committed files, grouped by the dataset root of their tier."""
    entry = lake.dataset()
    roots = {"hot": lake.settings.hot_path / "metrics/v1",
             "cold": (lake.settings.cold_path or lake.settings.hot_path) / "metrics/v1"}
    grouped: dict[Path, list[str]] = {}
    for partition in entry["partitions"].values():
        root = roots[partition["location"]]
        grouped.setdefault(root, []).extend(str(root / file["path"])
                                            for file in partition["files"])
    return grouped


def metadata_location(lake: Lake) -> str:
    report = json.loads(lake.run("tslake", "inspect").stdout)
    location: str = report["datasets"]["metrics/v1"]["iceberg_metadata"]
    assert location and Path(location).is_file()
    return location


def test_pyiceberg_static_table_reads_the_newest_versions(engine_lake: tuple[Lake, SourceDb]):
    lake, db = engine_lake
    table = StaticTable.from_metadata(metadata_location(lake))
    assert newest(table.scan().to_arrow().to_pylist()) == expected_rows(lake, db)
    # The current snapshot names exactly the manifest's files, hot and cold.
    named = sorted(task.file.file_path for task in table.scan().plan_files())
    assert named == sorted(str(path) for path in lake.committed_files())


def test_duckdb_iceberg_scan_reads_the_newest_versions(engine_lake: tuple[Lake, SourceDb]):
    lake, db = engine_lake
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    for extension in (avro_extension(), iceberg_extension()):
        conn.execute(f"INSTALL '{extension}'")
    conn.execute("LOAD avro; LOAD iceberg")
    rows = conn.execute(f"""select {', '.join(COLUMNS)} from iceberg_scan(?)
                            qualify row_number() over (partition by sensor_id, ts
                                                       order by inserted_at desc) = 1""",
                        [metadata_location(lake)]).fetchall()
    assert canonical(rows) == expected_rows(lake, db)


def test_pyarrow_dataset_over_the_manifest_files(engine_lake: tuple[Lake, SourceDb]):
    lake, db = engine_lake
    # Partition values as strings: inferred, `shard=07` would become the integer 7.
    hive = pyarrow.dataset.partitioning(
        pyarrow.schema([("date", pyarrow.string()), ("shard", pyarrow.string())]),
        flavor="hive")
    dataset = pyarrow.dataset.dataset([
        pyarrow.dataset.dataset(files, format="parquet", partitioning=hive,
                                partition_base_dir=str(root))
        for root, files in files_by_root(lake).items()])
    rows = dataset.to_table().to_pylist()
    assert newest(rows) == expected_rows(lake, db)
    assert {row["shard"] for row in rows} <= {f"{n:02d}" for n in range(8)}
    assert all(row["date"] == row["ts"].astimezone(UTC).date().isoformat() for row in rows)


def test_polars_over_the_manifest_files(engine_lake: tuple[Lake, SourceDb]):
    lake, db = engine_lake
    files = [file for group in files_by_root(lake).values() for file in group]
    frame = (polars.scan_parquet(files, hive_partitioning=True,
                                 hive_schema={"date": polars.String, "shard": polars.String})
             .sort("inserted_at").unique(subset=["sensor_id", "ts"], keep="last")
             .collect())
    rows = frame.select(COLUMNS).rows()
    assert canonical(rows) == expected_rows(lake, db)
    assert set(frame["shard"].unique()) <= {f"{n:02d}" for n in range(8)}


def test_duckdb_over_the_manifest_files(engine_lake: tuple[Lake, SourceDb]):
    lake, db = engine_lake
    files = [file for group in files_by_root(lake).values() for file in group]
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'UTC'")
    rows = conn.execute(f"""select {', '.join(COLUMNS)}, shard from read_parquet(?,
                                hive_partitioning = true,
                                hive_types = {{'date': date, 'shard': varchar}})
                            qualify row_number() over (partition by sensor_id, ts
                                                       order by inserted_at desc) = 1""",
                        [files]).fetchall()
    assert canonical([row[:5] for row in rows]) == expected_rows(lake, db)
    assert {row[5] for row in rows} <= {f"{n:02d}" for n in range(8)}


def test_spark_local_over_the_manifest_files(engine_lake: tuple[Lake, SourceDb]):
    if shutil.which("java") is None:
        pytest.skip("no Java runtime (make test installs default-jre-headless as root)")
    pyspark_sql = pytest.importorskip("pyspark.sql")
    lake, db = engine_lake
    spark = (pyspark_sql.SparkSession.builder.master("local[1]").appName("tslake-test")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.ui.enabled", "false").getOrCreate())
    try:
        frames = [spark.read.option("basePath", str(root)).parquet(*files)
                  for root, files in files_by_root(lake).items()]
        frame = frames[0]
        for other in frames[1:]:
            frame = frame.unionByName(other)
        frame.createOrReplaceTempView("metrics")
        rows = spark.sql(f"""select {', '.join(COLUMNS)} from (
                                 select *, row_number() over (partition by sensor_id, ts
                                                              order by inserted_at desc) as n
                                 from metrics) where n = 1""").collect()
    finally:
        spark.stop()
    # Spark's timestamps are naive, in its session time zone (UTC).
    found = [tuple(value.replace(tzinfo=UTC) if isinstance(value, datetime) else value
                   for value in row) for row in rows]
    assert canonical(found) == expected_rows(lake, db)


def extension_file(package: str, name: str) -> str:
    module = importlib.import_module(package)
    found = sorted(Path(module.__file__ or "").parent.glob(
        f"extensions/v{duckdb.__version__}/{name}.duckdb_extension"))
    assert found, f"no {name} extension in {package}"
    return str(found[0])


def avro_extension() -> str:
    return extension_file("duckdb_extension_avro", "avro")


def iceberg_extension() -> str:
    return extension_file("duckdb_extension_iceberg", "iceberg")
