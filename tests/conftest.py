"""Fixtures: a real Postgres (embedded, or yours via PG*/TSLAKE_PG_DSN), throwaway source
databases, lake directories, and helpers that run the real `dbt` and `tslake` commands."""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from runner.config import PROJECT_ROOT, Settings
from runner.core import manifest
from runner.dev import devdb, synthetic

BIN = Path(sys.executable).parent
_database_numbers = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[dict[str, str]]:
    """libpq variables of a server where tests may create databases.

    With TSLAKE_PG_DSN or PGHOST set, that server is used (the role must be allowed to
    CREATE DATABASE); otherwise an embedded PostgreSQL 18 starts for the session."""
    if os.environ.get("TSLAKE_PG_DSN") or os.environ.get("PGHOST"):
        params = conninfo_to_dict(os.environ.get("TSLAKE_PG_DSN", ""))
        env = {f"PG{key.upper()}": str(value) for key, value in params.items()
               if key in ("host", "port", "user", "password")}
        yield {key: value for key, value in {**os.environ, **env}.items()
               if key.startswith("PG") and key != "PGDATABASE"}
        return
    # Not under pytest's basetemp: a concurrent pytest session prunes old basetemps, and a
    # running server's data directory must not vanish under it.
    scratch = Path(tempfile.mkdtemp(prefix="tslake-test-pg-"))
    pgdata = scratch / "data"
    env = devdb.start(pgdata, database="postgres")
    # Two-phase commit is off by default; the prepared-transaction test needs it.
    SourceDb(env, "postgres").execute("alter system set max_prepared_transactions = 4")
    devdb.stop(pgdata)
    env = devdb.start(pgdata, database="postgres")
    env.pop("PGDATABASE", None)
    yield env
    devdb.stop(pgdata)
    shutil.rmtree(scratch, ignore_errors=True)


class SourceDb:
    """A throwaway database on the test server, with the seed's `metrics` table."""

    def __init__(self, server: dict[str, str], name: str) -> None:
        self.name = name
        self.env = {**server, "PGDATABASE": name}

    def connect(self, *, autocommit: bool = True, **params: Any) -> psycopg.Connection:
        names = {"PGHOST": "host", "PGPORT": "port", "PGUSER": "user", "PGDATABASE": "dbname",
                 "PGPASSWORD": "password"}
        conninfo = make_conninfo(**{names[k]: v for k, v in self.env.items() if k in names},
                                 **params)
        return psycopg.connect(conninfo, autocommit=autocommit)

    def execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def now(self) -> Any:
        return self.execute("select now()")[0][0]


@pytest.fixture
def source_db(pg_server: dict[str, str]) -> Iterator[SourceDb]:
    name = f"tslake_test_{os.getpid()}_{next(_database_numbers)}"
    admin = SourceDb(pg_server, "postgres")
    admin.execute(f'create database "{name}"')
    db = SourceDb(pg_server, name)
    with db.connect() as conn:
        synthetic.create_metrics_table(conn)
    yield db
    admin.execute(f'drop database "{name}" with (force)')


NO_TRIGGER = {"TSLAKE_COMPACT_MIN_FILES": "1000"}  # ticks that never compact


class Lake:
    """A lake directory plus the environment that points tslake and dbt at it."""

    def __init__(self, root: Path, source: SourceDb) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items()
               if not k.startswith(("PG", "TSLAKE_", "CORE_ANALYSIS_"))},
            **source.env,
            "TSLAKE_DATA_ROOT": str(root),
            "TSLAKE_REPLICATION_LAG_SECONDS": "0",
            "TSLAKE_LOCK_TIMEOUT_SECONDS": "2",
            "DO_NOT_TRACK": "1",
            "DBT_TARGET_PATH": str(root / "dbt-target"),
            "DBT_LOG_PATH": str(root / "dbt-logs"),
        }
        self.settings = Settings.from_env(self.env)

    def configure(self, **env: str) -> None:
        """Set environment variables for every later run, and the settings they make."""
        self.env.update(env)
        self.settings = Settings.from_env(self.env)

    def run(self, *args: str, check: bool = True, timeout: float = 300,
            env: Mapping[str, str] | None = None,
            **extra_env: str) -> subprocess.CompletedProcess[str]:
        """Run `dbt ...` or `tslake ...` from the repository root, as a user would, with
        the lake's environment plus `env` and `extra_env`."""
        command = [str(BIN / args[0]), *args[1:]]
        result = subprocess.run(command, cwd=PROJECT_ROOT,
                                env={**self.env, **(env or {}), **extra_env},
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {result.returncode}\n"
                                 f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}")
        return result

    def manifest(self) -> dict[str, Any]:
        """The committed manifest as its JSON (what other programs read), validated."""
        assert manifest.load(self.settings.manifest_path) is not None, "no manifest committed"
        document: dict[str, Any] = json.loads(self.settings.manifest_path.read_bytes())
        return document

    def dataset(self, name: str = "metrics/v1") -> dict[str, Any]:
        return self.manifest()["datasets"][name]

    def committed_files(self, name: str = "metrics/v1") -> list[Path]:
        """Every file the manifest lists, in the hot or the cold root as it says."""
        entry = self.dataset(name)
        roots = {"hot": self.settings.hot_path / name,
                 "cold": (self.settings.cold_path or self.settings.hot_path) / name}
        return sorted(roots[partition["location"]] / file["path"]
                      for partition in entry["partitions"].values()
                      for file in partition["files"])

    def rows(self, name: str = "metrics/v1", *, newest: bool = False) -> list[tuple[Any, ...]]:
        """Every row version in the committed files (or the newest per key), sorted."""
        files = self.committed_files(name)
        if not files:
            return []
        conn = duckdb.connect()
        conn.execute("set TimeZone = 'UTC'")
        relation = f"read_parquet({[str(f) for f in files]!r})"
        if newest:
            relation = (f"(select * from {relation} qualify row_number() over "
                        "(partition by sensor_id, ts order by inserted_at desc) = 1)")
        return canonical(conn.execute(
            f"select sensor_id, ts, value, quality, inserted_at from {relation}").fetchall())

    def files_on_disk(self, name: str = "metrics/v1") -> list[Path]:
        root = self.settings.hot_path / name
        return sorted(p for p in root.rglob("*") if p.is_file()
                      and not p.is_relative_to(root / "metadata"))  # Iceberg's, not data


@pytest.fixture
def lake(tmp_path: Path, source_db: SourceDb) -> Lake:
    return Lake(tmp_path / "data", source_db)


def source_rows(db: SourceDb, where: str = "true", params: Any = None) -> list[tuple[Any, ...]]:
    """The source's rows in the lake's column order, in canonical form."""
    return canonical(db.execute(
        f"select sensor_id, ts, value, quality, inserted_at from metrics where {where}", params))


def canonical(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows in a form that compares exactly across DuckDB and psycopg: timestamps as UTC
    ISO text (the two libraries use different tzinfo classes), NaN as the string 'NaN'
    (NaN never equals itself), sorted."""

    def value(item: Any) -> Any:
        if isinstance(item, datetime):
            return item.astimezone(UTC).isoformat()
        if isinstance(item, float) and math.isnan(item):
            return "NaN"
        return item

    converted = [tuple(value(item) for item in row) for row in rows]
    return sorted(converted, key=lambda row: tuple((type(v).__name__, str(v)) for v in row))


def assert_no_doubled_versions(lake: Lake, name: str = "metrics/v1") -> None:
    """A manifest reader sees each row version (sensor_id, ts, inserted_at) at most once."""
    counts = Counter((row[0], row[1], row[4]) for row in lake.rows(name))
    doubled = sorted(version for version, count in counts.items() if count > 1)
    assert not doubled, f"versions listed twice: {doubled[:5]}"


def assert_newest_view_matches_source(lake: Lake, db: SourceDb) -> None:
    """The lake's newest-version view is exactly the source's rows up to the watermark:
    no row lost, none doubled; a key updated after the watermark may show its older version."""
    entry = (lake.manifest()["datasets"].get("metrics/v1")
             if lake.settings.manifest_path.exists() else None)
    if entry is None or entry["computed_through_ts"] is None:
        assert not lake.files_on_disk() or not entry, "files committed without a watermark"
        return
    watermark = manifest.parse_rfc3339(entry["computed_through_ts"])
    assert_no_doubled_versions(lake)
    lake_newest = {(row[0], row[1]): row for row in lake.rows(newest=True)}
    source = {(row[0], row[1]): row for row in source_rows(db)}
    version = datetime.fromisoformat
    for key, row in source.items():
        if version(row[4]) <= watermark:
            assert lake_newest.get(key) == row, f"{key}: lake {lake_newest.get(key)} != {row}"
    for key, row in lake_newest.items():
        assert key in source, f"{key} is in the lake but not in the source"
        assert version(row[4]) <= watermark, f"{key}: version {row[4]} is past the watermark"
        if version(source[key][4]) > watermark:  # updated since: the lake has an older one
            assert version(row[4]) < version(source[key][4]), f"{key}: {row} vs {source[key]}"


def assert_clean_disk(lake: Lake) -> None:
    """After a command that finished: on disk exactly what the manifest lists, no *.tmp."""
    assert lake.files_on_disk() == lake.committed_files()
    assert not list(lake.settings.hot_path.rglob("*.tmp"))


def max_files_per_shard_day(lake: Lake, name: str = "metrics/v1") -> int:
    counts: dict[tuple[str, int], int] = {}
    for date, partition in lake.dataset(name)["partitions"].items():
        for file in partition["files"]:
            counts[date, file["shard"]] = counts.get((date, file["shard"]), 0) + 1
    return max(counts.values(), default=0)
