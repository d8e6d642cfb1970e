"""The dbt-duckdb plugin: what `profiles.yml` loads so that a plain `dbt run` is a tick.

- `configure_connection`: installs the postgres extension from its wheel, bounds memory,
  attaches Postgres read-only (password only in a DuckDB secret) unless the run is inside
  `without_source()` (`tslake compact`: compaction reads no Postgres rows, so it works while
  Postgres is down);
- `configure_cursor`: UTC and the settings SQL reads as DuckDB variables;
- `store`: the materialization's way to call the runner. dbt-duckdb passes the model's
  request through `adapter.store_relation(...)`; `config["action"]` names the step.
  `retention` (the lake models' post-hook) is best effort: a failure is a warning, since
  the tick before it has committed; `tslake retention` reports it as an error.
  The backfill steps hand a day's shard tasks to runner/ops/backfill.py, which runs them on
  connections of its own to this DuckDB database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import TargetConfig
from duckdb import DuckDBPyConnection

from runner.config import Settings
from runner.core import publish
from runner.errors import PublishError, TslakeError
from runner.ops import retention
from runner.ops.backfill import BackfillRun, Task
from runner.postgres.connection import SourceConninfo, configure_database, configure_session

log = logging.getLogger("tslake.dbt")

# The last typed error a step raised in this process: `dbt run-operation` swallows the
# exception, so runner.dbt_bridge.invoke reads it here to keep the CLI's exit code.
last_error: TslakeError | None = None
_attach_source = True


@contextmanager
def without_source() -> Iterator[None]:
    """dbt runs in this block (in this process) leave Postgres unattached."""
    global _attach_source
    _attach_source = False
    try:
        yield
    finally:
        _attach_source = True


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.settings = Settings.from_env()
        self._conn: DuckDBPyConnection | None = None
        self._backfills: dict[str, BackfillRun] = {}

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        try:
            configure_database(conn, self.settings,
                               SourceConninfo() if _attach_source else None)
        except TslakeError as error:
            _remember(error)
            raise
        configure_session(conn, self.settings)
        self._conn = conn

    def configure_cursor(self, cursor: DuckDBPyConnection) -> None:
        configure_session(cursor, self.settings)

    def store(self, target_config: TargetConfig) -> None:
        request = dict(target_config.config)
        action = request.pop("action", None)
        steps: dict[str, Callable[..., None]] = {
            "open": self._open, "prepare": self._prepare, "publish": self._publish,
            "retention": self._retention, "backfill_begin": self._backfill_begin,
            "backfill_day": self._backfill_day, "backfill_end": self._backfill_end}
        if action not in steps:
            raise PublishError(f"unknown lake action {action!r}; expected one of {sorted(steps)}")
        try:
            steps[action](**request)
        except TslakeError as error:
            _remember(error)
            self._abandon_backfills()
            # dbt prints the exception text; keep it the same one line the CLI prints.
            raise RuntimeError(f"tslake: {error}") from error

    def _open(self, dataset: str, run_id: str, source: dict[str, str] | None = None) -> None:
        publish.open_write(self.settings, dataset, purpose=f"dbt run {run_id}", source=source)

    def _prepare(self, dataset: str, partitions: list[dict[str, Any]]) -> None:
        publish.prepare_partitions(self.settings, dataset, partitions)

    def _publish(self, dataset: str, run_id: str, generation: int, kind: str,
                 files: list[dict[str, Any]], watermark: str | None,
                 replace_dates: list[str] | None = None,
                 replace_files: list[str] | None = None,
                 run_info: dict[str, Any] | None = None) -> None:
        staged = [publish.StagedFile(date=str(f["date"]), shard=int(f["shard"]),
                                     rows=int(f["rows"]), path=str(f["path"])) for f in files]
        summary = publish.publish_segments(
            self.settings, dataset, run_id=run_id, generation=int(generation), kind=kind,
            files=staged, watermark=watermark, replace_dates=frozenset(replace_dates or ()),
            replace_paths=frozenset(replace_files or ()), run_info=run_info)
        log.debug("published %s", summary)

    def _backfill_begin(self, dataset: str, run_id: str, **plan: Any) -> None:
        if self._conn is None:
            raise PublishError("backfill_begin before DuckDB was configured: run it from the "
                               "lake_dataset materialization")
        self._abandon_backfills()
        self._backfills[dataset] = BackfillRun(self.settings, self._conn, dataset=dataset,
                                               run_id=run_id, **plan)

    def _backfill_day(self, dataset: str, run_id: str, date: str, tasks: list[dict[str, Any]],
                      in_lake: bool) -> None:
        self._backfill(dataset, run_id).run_day(str(date), [Task.from_request(t) for t in tasks],
                                                bool(in_lake))

    def _backfill_end(self, dataset: str, run_id: str) -> None:
        self._backfill(dataset, run_id).finish()
        del self._backfills[dataset]

    def _backfill(self, dataset: str, run_id: str) -> BackfillRun:
        run = self._backfills.get(dataset)
        if run is None or run.run_id != run_id:
            raise PublishError(f"no backfill {run_id} of {dataset} is open: backfill_begin "
                               "must come first (a materialization bug)")
        return run

    def _abandon_backfills(self) -> None:
        for run in self._backfills.values():
            run.close()
        self._backfills.clear()

    def _retention(self, dataset: str) -> None:
        try:
            summary = retention.apply_retention(self.settings, dataset)
        except TslakeError as error:
            log.warning("tslake: retention of %s skipped: %s", dataset, error)
            return
        log.debug("retention %s", summary)


def _remember(error: TslakeError) -> None:
    global last_error
    last_error = error
