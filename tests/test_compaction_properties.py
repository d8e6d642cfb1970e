"""Property-based: random sequences of inserts, updates, late rows, long transactions,
ticks, compactions and SIGKILLs, against a real Postgres and the real `dbt`/`tslake`
processes. After every step the lake's newest-version view equals Postgres (rows with
inserted_at <= watermark), no version is listed twice, and after every command that
finished the disk holds exactly the committed files and file counts are bounded.

Bounded to a few minutes (each dbt process costs ~3 s) and derandomized, so CI runs the
same histories every time; `TSLAKE_HYPOTHESIS_EXAMPLES=50` explores that many new random
histories instead."""

from __future__ import annotations

import itertools
import os
import signal
import tempfile
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from conftest import (
    Lake,
    SourceDb,
    assert_clean_disk,
    assert_newest_view_matches_source,
    max_files_per_shard_day,
)
from runner.core.failpoints import COMPACT_FAILPOINTS, PUBLISH_FAILPOINTS
from runner.dev import synthetic

pytestmark = pytest.mark.integration

MIN_FILES = 2  # a low trigger, so that ticks compact often
_numbers = itertools.count()


class LakeMachine(RuleBasedStateMachine):
    server: dict[str, str]
    scratch: Path

    @initialize()
    def fresh_lake(self) -> None:
        number = next(_numbers)
        name = f"tslake_prop_{os.getpid()}_{number}"
        SourceDb(self.server, "postgres").execute(f'create database "{name}"')
        self.db = SourceDb(self.server, name)
        with self.db.connect() as conn:
            synthetic.create_metrics_table(conn)
        self.lake = Lake(Path(tempfile.mkdtemp(dir=self.scratch)), self.db)
        self.lake.env["TSLAKE_COMPACT_MIN_FILES"] = str(MIN_FILES)
        self.lake.env["DBT_TARGET_PATH"] = str(self.scratch / "dbt-target")  # parse once
        self.batches = itertools.count()
        self.open_transaction: psycopg.Connection | None = None
        self._insert(self.db, 3, 5, 0)  # every history starts from a live lake
        self.lake.run("dbt", "run")

    def _insert(self, conn_or_db: psycopg.Connection | SourceDb, sensors: int, rows: int,
                days_ago: int) -> None:
        batch = next(self.batches)
        sql = """insert into metrics (sensor_id, ts, value, quality)
                 select 's' || %s || '-' || s, now() - make_interval(days => %s, secs => i),
                        i, (i %% 3)::smallint
                 from generate_series(1, %s) as s, generate_series(1, %s) as i"""
        conn_or_db.execute(sql, (batch, days_ago, sensors, rows))

    @rule(sensors=st.integers(1, 6), rows=st.integers(1, 20))
    def insert(self, sensors: int, rows: int) -> None:
        self._insert(self.db, sensors, rows, 0)

    @rule(sensors=st.integers(1, 4), rows=st.integers(1, 10), days_ago=st.integers(1, 3))
    def late_rows(self, sensors: int, rows: int, days_ago: int) -> None:
        self._insert(self.db, sensors, rows, days_ago)

    @rule(modulo=st.integers(1, 5))
    def update(self, modulo: int) -> None:
        self.db.execute("update metrics set value = value + 0.5, inserted_at = now() "
                        "where extract(epoch from ts)::bigint %% %s = 0", (modulo,))

    @precondition(lambda self: self.open_transaction is None)
    @rule(rows=st.integers(1, 10))
    def begin_long_transaction(self, rows: int) -> None:
        self.open_transaction = self.db.connect(autocommit=False)
        self._insert(self.open_transaction, 1, rows, 0)

    @precondition(lambda self: self.open_transaction is not None)
    @rule()
    def commit_long_transaction(self) -> None:
        assert self.open_transaction is not None
        self.open_transaction.commit()
        self.open_transaction.close()
        self.open_transaction = None

    @rule()
    def tick(self) -> None:
        self.lake.run("dbt", "run")
        assert_clean_disk(self.lake)
        assert max_files_per_shard_day(self.lake) <= MIN_FILES

    @rule()
    def compact(self) -> None:
        self.lake.run("tslake", "compact")
        assert_clean_disk(self.lake)
        assert max_files_per_shard_day(self.lake) <= 1

    @rule(point=st.sampled_from(PUBLISH_FAILPOINTS + COMPACT_FAILPOINTS))
    def tick_killed(self, point: str) -> None:
        result = self.lake.run("dbt", "run", check=False, TSLAKE_FAILPOINT=point)
        # A compaction failpoint is reached only when the tick triggered a compaction.
        assert result.returncode == -signal.SIGKILL or point in COMPACT_FAILPOINTS, \
            result.stdout[-3000:]
        assert result.returncode in (0, -signal.SIGKILL), result.stdout[-3000:]

    @precondition(lambda self: max_files_per_shard_day(self.lake) > 1)
    @rule(point=st.sampled_from(COMPACT_FAILPOINTS))
    def compaction_killed(self, point: str) -> None:
        result = self.lake.run("tslake", "compact", check=False, TSLAKE_FAILPOINT=point)
        assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]

    @invariant()
    def newest_view_equals_postgres(self) -> None:
        if hasattr(self, "lake"):
            assert_newest_view_matches_source(self.lake, self.db)

    def teardown(self) -> None:
        if not hasattr(self, "db"):
            return
        if self.open_transaction is not None:
            self.open_transaction.rollback()
            self.open_transaction.close()
        SourceDb(self.server, "postgres").execute(
            f'drop database "{self.db.name}" with (force)')


def test_random_histories_keep_the_lake_equal_to_postgres(pg_server: dict[str, str],
                                                          tmp_path: Path):
    LakeMachine.server = pg_server
    LakeMachine.scratch = tmp_path
    explore = os.environ.get("TSLAKE_HYPOTHESIS_EXAMPLES")  # set: new random histories
    run_state_machine_as_test(LakeMachine, settings=settings(
        max_examples=int(explore or 6), stateful_step_count=10, deadline=None,
        database=None, derandomize=not explore, suppress_health_check=list(HealthCheck)))
