"""The dbt-duckdb plugin: what `profiles.yml` loads so that a plain `dbt run` is a tick.

- `configure_connection`: installs the postgres extension from its wheel, bounds memory,
  attaches Postgres read-only (password only in a DuckDB secret);
- `configure_cursor`: UTC and the settings SQL reads as DuckDB variables;
- `store`: the one call the materialization makes (dbt-duckdb passes the model's request
  through `adapter.store_relation(...)`; `config["action"]` names the step):
  `run` hands the lake model's compiled SQL to the runner, which runs the whole tick,
  backfill or repair of that dataset and then its compaction (runner/ops/); `compact`
  is `dbt run-operation lake_compact`; `retention` (the lake models' post-hook) is best
  effort: a failure is a warning, since the run before it has committed.
A dataset not in TSLAKE_DATASETS is skipped (its model is in the project, not enabled).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import duckdb
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import TargetConfig
from dbt_common.exceptions import DbtBaseException
from duckdb import DuckDBPyConnection

from runner.config import Settings
from runner.core import datasets, manifest, publish
from runner.core.manifest import Manifest
from runner.errors import (
    ConfigError,
    PublishError,
    TslakeError,
    describe_os_error,
    disk_full_message,
)
from runner.ops import backfill, compaction, derived, export, retention
from runner.postgres import standby
from runner.postgres.connection import SourceConninfo, configure_database, configure_session
from runner.postgres.schema import source_columns

log = logging.getLogger("tslake.dbt")

# The last typed error a step raised in this process: `dbt run-operation` swallows the
# exception, so runner.dbt_bridge.invoke reads it here to keep the CLI's exit code.
last_error: TslakeError | None = None


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.settings = Settings.from_env()
        self._conn: DuckDBPyConnection | None = None
        self._start_run_state()

    def _start_run_state(self) -> None:
        """What one run keeps on the plugin; a new run starts from none of it."""
        self._cursors: list[DuckDBPyConnection] = []
        # The manifest as this run last read or committed it: the lock is held from the
        # first step to the end of the process, so the next step (another dataset, the
        # retention post-hook) need not parse it again; a commit still refuses if the file
        # changed under it (publish checks its stamp).
        self._document: Manifest | None = None
        # The enabled datasets' source columns, read once per run (before its first write).
        self._source_columns: dict[str, dict[str, str]] | None = None
        # derived/v1's definitions, validated with the sources, before the run's first write.
        self._derived_definitions: list[derived.Definition] | None = None

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        try:
            configure_database(conn, self.settings, SourceConninfo())
        except TslakeError as error:
            _remember(error)
            # A dbt exception, not ours: dbt prints its text as one line ("Encountered an
            # error:") where for any other exception it adds a 90-line traceback.
            raise DbtBaseException(f"tslake: {error}") from error
        configure_session(conn, self.settings)
        self._conn = conn

    def start_run(self) -> None:
        """Make a DuckDB database kept open from one run to the next (the service's tick
        worker) what a fresh process's first run sees: the plugin's per-run state dropped;
        the tables and views a run left in memory dropped (temporary ones live on cursors,
        which dbt and the runner close after each run); every attached catalog detached, so
        a Postgres connection (its snapshot, its catalog cache) lives one run and a
        restarted server is simply reconnected; every variable reset; and the database set
        up again: the settings tslake sets (such as the `threads` a backfill lowers), the
        secrets, a fresh attachment of the source.
        Raises TslakeError (e.g. SourceError: Postgres unreachable) as a first run would."""
        self._start_run_state()
        conn = self._connection()
        for (name,) in conn.execute("select database_name from duckdb_databases() "
                                    "where not internal and database_name <> 'memory'"
                                    ).fetchall():
            conn.execute(f'DETACH "{name}"')
        # (after the detach: duckdb_tables() would list every Postgres table too)
        left = conn.execute(
            "select 'table', database_name, schema_name, table_name from duckdb_tables() "
            "where not internal and database_name in ('memory', 'temp') union all "
            "select 'view', database_name, schema_name, view_name from duckdb_views() "
            "where not internal and database_name in ('memory', 'temp')").fetchall()
        for kind, *name in left:
            conn.execute(f"DROP {kind} IF EXISTS " + ".".join(f'"{part}"' for part in name))
        for (name,) in conn.execute("select name from duckdb_variables()").fetchall():
            conn.execute(f'RESET VARIABLE "{name}"')
        configure_database(conn, self.settings, SourceConninfo())
        configure_session(conn, self.settings)

    def configure_cursor(self, cursor: DuckDBPyConnection) -> None:
        configure_session(cursor, self.settings)
        self._cursors.append(cursor)

    def store(self, target_config: TargetConfig) -> None:
        request = dict(target_config.config)
        action = request.pop("action", None)
        steps: dict[str, Callable[..., None]] = {
            "run": self._run, "compact": self._compact, "retention": self._retention,
            "derived_parity": self._derived_parity}
        if action not in steps:
            raise PublishError(f"unknown lake action {action!r}; expected one of {sorted(steps)}")
        try:
            try:
                steps[action](**request)
            except OSError as error:  # a read-only directory, a full disk: exit 74, its path
                raise PublishError(describe_os_error(error)) from error
            except duckdb.IOException as error:
                text = " ".join(str(error).split())
                raise PublishError(disk_full_message("dbt run", text) or f"I/O error: {text}: "
                                   "check that path and run again") from error
        except TslakeError as error:
            _remember(error)
            # dbt prints the exception text; keep it the same one line the CLI prints.
            raise RuntimeError(f"tslake: {error}") from error

    def _run(self, dataset: str, mode: str, model_sql: str, run_id: str,
             backfill_days: int | None = None, replace_existing: bool = False,
             repair_dates: list[str] | None = None) -> None:
        spec = datasets.declared()[dataset]
        if dataset not in self.settings.datasets:
            log.info("tslake: %s: skipped (not in TSLAKE_DATASETS)", dataset)
            return
        if mode == "backfill" and (backfill_days is None
                                   or not 1 <= backfill_days <= backfill.MAX_BACKFILL_DAYS):
            raise ConfigError(f"backfill_days {backfill_days!r} is not a whole number from 1 "
                              f"to {backfill.MAX_BACKFILL_DAYS}: give the days to backfill, "
                              "like --vars '{backfill_days: 90}'")
        conn = self._connection().cursor()
        try:
            configure_session(conn, self.settings)
            if self._source_columns is None:
                self._document = self._check_sources(conn)
            assert self._source_columns is not None
            if spec.lake_source is not None:
                self._run_derived(conn, spec, mode, run_id, backfill_days, repair_dates)
                return
            columns = self._source_columns[dataset]
            document = publish.open_write(self.settings, spec, f"dbt run {run_id}", columns,
                                          document=self._document)
            self._document = document
            if mode == "backfill":
                assert backfill_days is not None
                backfill.run_backfill(self.settings, conn, document, spec, model_sql, run_id,
                                      days=backfill_days, replace_existing=replace_existing,
                                      stable=export.backfill_watermark(self.settings, conn))
            elif mode == "repair":
                export.repair(self.settings, conn, document, spec, model_sql, run_id,
                              list(repair_dates or []))
            else:
                export.tick(self.settings, conn, document, spec, model_sql, run_id)
            # Compaction keeps up in the same run: shard-days past TSLAKE_COMPACT_MIN_FILES.
            compaction.compact_dataset(self.settings, conn, document, spec, run_id,
                                       min_files=self.settings.compact_min_files)
        finally:
            conn.close()
        self._report_generation(document)

    def _run_derived(self, conn: DuckDBPyConnection, spec: datasets.DatasetSpec, mode: str,
                     run_id: str, backfill_days: int | None,
                     repair_dates: list[str] | None) -> None:
        """derived/v1: computed from the lake's metrics/v1 (committed by the metrics model,
        upstream in the same run), not from Postgres (runner/ops/derived.py)."""
        metrics = derived.input_state(self._document)
        document = publish.open_write(self.settings, spec, f"dbt run {run_id}",
                                      metrics.source_columns, document=self._document)
        self._document = document
        definitions = self._derived_definitions or []
        if mode == "backfill":
            derived.rebuild(self.settings, conn, document, spec, run_id, definitions,
                            first_date=derived.backfill_first_date(int(backfill_days or 0)),
                            end_date=None, mode="backfill")
        elif mode == "repair":
            for day in sorted(repair_dates or []):
                following = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
                derived.rebuild(self.settings, conn, document, spec, run_id, definitions,
                                first_date=day, end_date=following, mode="repair")
        else:
            derived.tick(self.settings, conn, document, spec, run_id, definitions)
        compaction.compact_dataset(self.settings, conn, document, spec, run_id,
                                   min_files=self.settings.compact_min_files)
        self._report_generation(document)

    def _check_sources(self, conn: DuckDBPyConnection) -> Manifest | None:
        """Every enabled dataset's source against its declaration and what its lake was
        read from, before the run's first write: one that is missing or drifted stops the
        run with nothing written. Returns the manifest it read, for the first write."""
        # A hot standby without its primary (TSLAKE_PRIMARY_DSN) is refused here, first.
        standby.require_primary_for_standby(self.settings, conn)
        document = manifest.load(self.settings.manifest_path)
        found = {}
        for spec in datasets.enabled(self.settings.datasets):
            if spec.lake_source is not None:  # derived/v1: definitions checked, no source
                if spec.lake_source not in self.settings.datasets:
                    raise ConfigError(f"{spec.name} is computed from {spec.lake_source}, which "
                                      "is not enabled: add it to TSLAKE_DATASETS")
                self._derived_definitions = derived.load_definitions(self.settings)
                continue
            entry = document.datasets.get(spec.name) if document else None
            found[spec.name] = source_columns(conn, spec)
            spec.check_source(found[spec.name], entry.source_columns if entry else None)
        self._source_columns = found
        return document

    def _compact(self, dataset: str | None = None, date: str | None = None,
                 min_files: object = None) -> None:
        compaction.compact(self.settings, dataset=dataset, date=date,
                           min_files=self.settings.compact_min_files if min_files is None
                           else min_files)

    def _derived_parity(self, dataset: str) -> None:
        """`dbt test`'s lake_derived_parity: the differing (date, sensor) groups of derived
        parity over the whole horizon, as table tslake_derived_parity_failures."""
        from runner.derived.parity import run_derived_parity  # only `dbt test` needs it

        spec = datasets.declared()[dataset]
        groups: list[dict[str, Any]] = []
        if dataset in self.settings.datasets:
            report = run_derived_parity(self.settings, spec, start=None, end=None,
                                        sensors=None)
            groups = [g for g in report["groups"] if g["status"] != "match"]
        conn = self._connection()
        conn.execute("create or replace table tslake_derived_parity_failures (date varchar, "
                     "sensor_id varchar, status varchar, source_rows bigint, "
                     "lake_rows bigint, differing_buckets bigint)")
        if groups:
            conn.executemany("insert into tslake_derived_parity_failures values (?, ?, ?, ?, ?, ?)",
                             [[g["date"], g["sensor_id"], g["status"], g["source_rows"],
                               g["lake_rows"], g["differing_buckets"]] for g in groups])

    def _retention(self, dataset: str) -> None:
        if dataset not in self.settings.datasets:
            return
        try:
            summary = retention.apply_retention(self.settings, dataset, self._document)
        except TslakeError as error:
            log.warning("tslake: retention of %s skipped: %s", dataset, error)
            return
        log.debug("retention %s", summary)

    def _connection(self) -> DuckDBPyConnection:
        if self._conn is None:
            raise PublishError("the lake step ran before DuckDB was configured: run it from "
                               "the lake_dataset materialization")
        return self._conn

    def _report_generation(self, document: Manifest) -> None:
        """The committed generation, for the materialization's 'main' statement."""
        for cursor in self._cursors:
            try:
                cursor.execute(f"set variable tslake_generation = {int(document.generation)}")
            except Exception:  # a cursor dbt has closed since
                continue


def _remember(error: TslakeError) -> None:
    global last_error
    last_error = error
