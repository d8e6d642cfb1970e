"""The backfill (README, "How a backfill works"): whole UTC days, shard tasks run concurrently, days
are committed in order.

`run_backfill` plans the days from the manifest (every UTC date from `today - days` to
today, Postgres's clock; days already in the lake are skipped without replace_existing),
discovers each day's series through the lake model (postgres_window's discovery shape),
and renders one task per shard (macros/export/lake_backfill_task.sql): `set variable`
statements that select the window, then one streaming
`COPY (... postgres_query ... ORDER BY <key>) TO '<path>.tmp'`. Each task runs on
a DuckDB connection of its own (window variables are per connection), so while one task
waits for Postgres another sorts and writes, and Postgres and DuckDB work at once.

Days form a pipeline: `run_day` queues a day's tasks and returns while at most
IN_FLIGHT_DAYS are unfinished, so the workers move on to the next day while a day's last
shard runs and while a single committer thread fsyncs and commits finished days, in
order. Each day is committed on its own, together with the backfill's progress record in
the manifest (`datasets.<name>.backfill`, see docs/ARCHITECTURE.md): a killed backfill, run
again with the same days and replace_existing, skips the days the record lists.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date as Date
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb

from runner.config import Settings
from runner.core import manifest, publish
from runner.core.datasets import DatasetSpec
from runner.core.durable import fsync_path
from runner.core.manifest import BackfillRecord, DatasetState, Manifest
from runner.dbt_bridge import sqlmacros
from runner.errors import PublishError, SourceError, TslakeError
from runner.ops import progress
from runner.ops.export import StableWatermark, select_window
from runner.postgres.connection import (
    SOURCE_CATALOG,
    SourceConninfo,
    configure_session,
    sql_literal,
)

log = logging.getLogger("tslake.backfill")

IN_FLIGHT_DAYS = 2  # days queued or being written at once: bounds memory and temp files
MAX_BACKFILL_DAYS = 3650  # ten years: a larger `--days` / backfill_days is a typo
MAX_FUTURE_DAYS = 3660  # days after today a backfill plans for rows with a future time


@dataclass(frozen=True)
class Task:
    """One shard of one day: SQL text whose last statement returns the row count."""

    shard: int
    path: str
    series: int
    sql: str


@dataclass(frozen=True)
class PlannedDay:
    date: str
    next_date: str
    in_lake: bool  # the date has committed files
    done: bool     # committed by the unfinished backfill this run resumes


def backfill_window(days: int, today: str, last_date: str | None = None) -> tuple[str, str]:
    """The first and last UTC date of a backfill: `today - days` to today (or to
    `last_date`, the date of the latest row, when that is later: forecasts)."""
    first = Date.fromisoformat(today[:10]) - timedelta(days=days)
    last = max(Date.fromisoformat(today[:10]), Date.fromisoformat(last_date or today[:10]))
    return first.isoformat(), last.isoformat()


def plan_days(entry: DatasetState, days: int, replace_existing: bool, today: str,
              last_date: str | None = None, first_row_date: str | None = None,
              ) -> tuple[list[PlannedDay], bool, int]:
    """The dates of the window (`backfill_window`) that hold data, with what the manifest
    says of each; whether an unfinished backfill with the same days and replace_existing
    resumes; and how many leading dates were left out because they hold nothing.

    The plan is bounded by the data, not by `days`: dates before `first_row_date` (the
    source's first row in the window; None: no row at all) are planned only when the lake
    has files there (a replacing backfill must empty them)."""
    record = entry.backfill
    resume = (record is not None and record.status == "running" and record.days == days
              and record.replace_existing == replace_existing)
    done = set(record.committed_dates) if resume and record is not None else set()
    first, last = backfill_window(days, today, last_date)
    known = set(entry.partitions) | done
    start = last if first_row_date is None else min(max(first, first_row_date), last)
    dates = sorted(date for date in known
                   if first <= date < start or (first_row_date is None and date == last))
    if first_row_date is not None:
        day, end = Date.fromisoformat(start), Date.fromisoformat(last)
        dates += [(day + timedelta(days=n)).isoformat() for n in range((end - day).days + 1)]
    plan = [PlannedDay(date, (Date.fromisoformat(date) + timedelta(days=1)).isoformat(),
                       date in entry.partitions, date in done) for date in dates]
    empty = (Date.fromisoformat(last) - Date.fromisoformat(first)).days + 1 - len(plan)
    return plan, resume, empty


def run_backfill(settings: Settings, conn: duckdb.DuckDBPyConnection, document: Manifest,
                 spec: DatasetSpec, model_sql: str, run_id: str, *, days: int,
                 replace_existing: bool, stable: StableWatermark) -> dict[str, Any]:
    """Backfill the last `days` UTC days of `spec`: rows capped at the committed watermark
    (a fresh stable one on an empty lake), each day committed on its own with the
    backfill's progress record. A run that finds an unfinished backfill with the same days
    and replace_existing resumes it: the days it committed are not done again."""
    entry = document.dataset(spec.name, settings.shards)
    if not entry.computed_through_ts and stable.prepared_xacts > 0:
        raise SourceError(f"{spec.name}: the lake is empty and {stable.prepared_xacts} prepared "
                          "transaction(s) are in pg_prepared_xacts; their rows' inserted_at is "
                          "unknown, so no first watermark is safe: COMMIT PREPARED or ROLLBACK "
                          "PREPARED them, then run the backfill again")
    cap = entry.computed_through_ts or stable.stable_hi
    last_date = _last_date(conn, spec, cap, stable.postgres_now)
    first, last = backfill_window(days, stable.postgres_now, last_date)
    # Discovery over the whole window finds each series' first row in it: days before the
    # earliest of them hold nothing to read (a table younger than the horizon), and are not
    # planned: the plan and its memory grow with the days that hold data, not with `days`.
    select_window(conn, hi=cap, ts_from=f"{first}T00:00:00Z",
                  ts_to=f"{(Date.fromisoformat(last) + timedelta(days=1)).isoformat()}T00:00:00Z")
    row = conn.execute(f"select strftime(min({spec.time}), '%Y-%m-%d') from ({model_sql}) "
                       "as first_rows").fetchone()
    first_row_date = row[0] if row else None
    plan, resume, empty = plan_days(entry, days, replace_existing, stable.postgres_now,
                                    last_date, first_row_date)
    todo = [day for day in plan if not day.done and (replace_existing or not day.in_lake)]
    skipped = [] if replace_existing else [d.date for d in plan if d.in_lake and not d.done]
    run = BackfillRun(settings, conn, document, dataset=spec.name, run_id=run_id, cap=cap,
                      days=days, replace_existing=replace_existing, resume=resume,
                      first_date=first, last_date=last,
                      todo=[day.date for day in todo], skipped=skipped,
                      done=[day.date for day in plan if day.done], empty=empty)
    try:
        root = publish.dataset_root(settings, spec.name)
        for day in todo:
            tasks = []
            ts_from, ts_to = f"{day.date}T00:00:00Z", f"{day.next_date}T00:00:00Z"
            if first_row_date is not None and day.date >= first_row_date:
                select_window(conn, hi=cap, ts_from=ts_from, ts_to=ts_to)
                series = conn.execute(sqlmacros.render(
                    "lake_backfill_series", model_sql=model_sql,
                    series_column=spec.series)).fetchall()
                for shard, ids, count in series:
                    path = str(publish.staged_path(root, day.date, int(shard), "backfill",
                                                   run_id))
                    tasks.append(Task(shard=int(shard), path=path, series=int(count),
                                      sql=sqlmacros.render(
                                          "lake_backfill_task", model_sql=model_sql, cap=cap,
                                          ts_from=ts_from, ts_to=ts_to, series=ids, path=path,
                                          key=list(spec.key))))
            run.run_day(day.date, tasks, day.in_lake)
        return run.finish()
    except BaseException:
        run.close()
        raise


@dataclass
class _Day:
    date: str
    tasks: list[Task]
    in_lake: bool
    started: float
    futures: list[Future[int]] = field(default_factory=list)
    committed: Future[None] | None = None


def _last_date(conn: duckdb.DuckDBPyConnection, spec: DatasetSpec, cap: str,
               today: str) -> str | None:
    """The UTC date of the source's latest row (version <= cap), at most MAX_FUTURE_DAYS
    after today."""
    query = sqlmacros.render("postgres_last_time", schema=spec.source_schema,
                             table=spec.source_table, series_column=spec.series,
                             time_column=spec.time, version_column=spec.version)
    row = conn.execute(f"select strftime(last_time::timestamptz, '%Y-%m-%d') from "
                       f"postgres_query({sql_literal(SOURCE_CATALOG)}, "
                       f"format({sql_literal(query)}, {sql_literal(cap)}))").fetchone()
    if not row or row[0] is None:
        return None
    limit = (Date.fromisoformat(today[:10]) + timedelta(days=MAX_FUTURE_DAYS)).isoformat()
    if row[0] > limit:
        log.warning("%s: rows up to %s have a time more than %d days ahead; the backfill "
                    "stops at %s (ticks still export them)", spec.name, row[0],
                    MAX_FUTURE_DAYS, limit)
        return limit
    return str(row[0])


class BackfillRun:
    """One backfill of one dataset (see `run_backfill`): its days, workers and committer."""

    def __init__(self, settings: Settings, conn: duckdb.DuckDBPyConnection, document: Manifest,
                 *, dataset: str, run_id: str, cap: str, days: int, replace_existing: bool,
                 resume: bool, first_date: str, last_date: str, todo: list[str],
                 skipped: list[str], done: list[str], empty: int = 0) -> None:
        self.settings, self.dataset, self.run_id = settings, dataset, run_id
        self.document, self.cap, self.replace = document, cap, bool(replace_existing)
        self._closed = False
        self._conn = conn
        self._idle: queue.Queue[duckdb.DuckDBPyConnection] = queue.Queue()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._workers = ThreadPoolExecutor(settings.backfill_workers, "tslake-backfill")
        self._committer = ThreadPoolExecutor(1, "tslake-commit")
        self._days: deque[_Day] = deque()
        self._events: queue.Queue[progress.Event] = queue.Queue()
        self._failure: TslakeError | None = None
        # The workers are the parallelism: one DuckDB thread per statement measured faster
        # than letting each small sort/write fan out (BENCHMARKS.md).
        threads = conn.execute("select current_setting('threads')").fetchone()
        self._threads = int(threads[0]) if threads else settings.threads
        conn.execute("set threads = 1")
        self.record = self._start_record(days, resume, first_date, last_date)
        self.tracker = progress.BackfillTracker(
            dataset=dataset, run_id=run_id,
            days_total=len(todo) + len(skipped) + len(done) + empty,
            todo=len(todo), skipped=len(skipped) + empty, done_before=len(done),
            resumed=resume)  # skipped: in the lake already, or before the first row
        progress.emit(self.tracker.begin_event(cap=cap, replace_existing=self.replace,
                                               first_date=first_date, last_date=last_date))

    def _start_record(self, days: int, resume: bool, first_date: str,
                      last_date: str) -> BackfillRecord:
        previous = self.document.datasets[self.dataset].backfill
        now = manifest.rfc3339(manifest.utc_now())
        if resume and previous:
            log.info("%s: resuming the unfinished backfill started %s (%d days committed)",
                     self.dataset, previous.started_at, len(previous.committed_dates))
            return previous.model_copy(update={"cap": self.cap, "updated_at": now,
                                               "run_ids": [*previous.run_ids, self.run_id]})
        return BackfillRecord(status="running", days=int(days), replace_existing=self.replace,
                              first_date=first_date, last_date=last_date, cap=self.cap,
                              run_ids=[self.run_id], started_at=now, updated_at=now)

    def run_day(self, date: str, tasks: list[Task], in_lake: bool) -> None:
        """Queue a day: its shards are written concurrently, then it is committed (in order).
        Returns once at most IN_FLIGHT_DAYS days are unfinished; raises a failed day's error."""
        self._check()
        if tasks:
            publish.prepare_partitions(self.settings, self.dataset,
                                       [(date, task.shard) for task in tasks])
            self._open_cursors(min(self.settings.backfill_workers, len(tasks)))
        # Biggest shards first, so a day does not end on a long task.
        day = _Day(date, sorted(tasks, key=lambda task: -task.series), in_lake, time.monotonic())
        day.futures = [self._workers.submit(self._run_task, task) for task in day.tasks]
        day.committed = self._committer.submit(self._commit, day)
        self._days.append(day)
        while len(self._days) > IN_FLIGHT_DAYS:
            self._settle(self._days.popleft())
        self._emit_events()

    def finish(self) -> dict[str, Any]:
        """Wait for every day, then mark the backfill complete (and, on an empty lake,
        commit its first watermark)."""
        while self._days:
            self._settle(self._days.popleft())
        now = manifest.rfc3339(manifest.utc_now())
        self.record = self.record.model_copy(update={"status": "complete", "updated_at": now,
                                                     "finished_at": now})
        summary = self.tracker.summary()
        self._publish([], run_info={"mode": "backfill", "status": "complete", **summary})
        self.close()
        self._emit_events()
        progress.emit(self.tracker.end_event(computed_through_ts=self.cap))
        return summary

    def close(self) -> None:
        """Stop: cancel queued tasks, interrupt running ones, release the connections."""
        if self._closed:
            return
        self._closed = True
        for day in self._days:
            for future in day.futures:
                future.cancel()
        for cursor in self._cursors:
            cursor.interrupt()
        self._workers.shutdown(wait=True, cancel_futures=True)
        self._committer.shutdown(wait=True, cancel_futures=True)
        for cursor in self._cursors:
            cursor.close()
        self._cursors.clear()
        self._conn.execute(f"set threads = {self._threads}")

    # -- worker threads -------------------------------------------------------------------

    def _run_task(self, task: Task) -> int:
        cursor = self._idle.get()
        try:
            row = cursor.execute(task.sql).fetchone()
        finally:
            self._idle.put(cursor)
        rows = int(row[0]) if row else 0
        if rows:
            fsync_path(Path(task.path))  # here, not in the committer: overlaps with other tasks
        return rows

    # -- the committer thread -------------------------------------------------------------

    def _commit(self, day: _Day) -> None:
        """Wait for a day's tasks, then commit its files and the progress record at once."""
        try:
            for future in day.futures:
                # Not concurrent.futures.wait(): a future that close() cancels before it ran
                # never wakes wait() (its waiters are only told when a worker picks it up),
                # so the committer, and close() joining it, hung after a failed day.
                future.exception()
        except CancelledError:
            return  # the run is closing
        if self._failure is not None:
            return
        try:
            self._commit_day(day)
        except TslakeError as error:
            self._failure = error
        except Exception as error:  # an OSError deleting an empty file, say
            self._failure = PublishError(f"committing {self.dataset} day {day.date} failed: "
                                         f"{error}; that day was not committed: fix the cause "
                                         "and run the backfill again")

    def _commit_day(self, day: _Day) -> None:
        staged = []
        for task, future in zip(day.tasks, day.futures, strict=True):
            error = future.exception()
            if error is not None:
                raise _task_error(self.dataset, day.date, task, error) from error
            rows = future.result()
            if rows == 0:  # series whose only rows are past the cap: no empty files
                Path(task.path).unlink(missing_ok=True)
                continue
            staged.append(publish.StagedFile(date=day.date, shard=task.shard, rows=rows,
                                             path=task.path, flushed=True))
        rows = sum(file.rows for file in staged)
        if staged or (self.replace and day.in_lake):
            self.record = self.record.model_copy(update={
                "committed_dates": sorted({*self.record.committed_dates, day.date}),
                "rows": self.record.rows + rows, "files": self.record.files + len(staged),
                "updated_at": manifest.rfc3339(manifest.utc_now())})
            # The views follow at the end (finish) or whenever a commit deletes files:
            # rewriting lake.duckdb for each day cost ~30 ms of CPU a day.
            self._publish(staged, run_info={"mode": "backfill", "date": day.date,
                                            "days": self.record.days},
                          replace_dates=frozenset({day.date}) if self.replace else frozenset(),
                          refresh_views=False)
        self._events.put(self.tracker.day_event(date=day.date, rows=rows, files=len(staged),
                                                seconds=time.monotonic() - day.started))

    def _publish(self, files: list[publish.StagedFile], *, run_info: dict[str, Any],
                 replace_dates: frozenset[str] = frozenset(), refresh_views: bool = True) -> None:
        publish.publish_segments(self.settings, self.document, self.dataset, run_id=self.run_id,
                                 kind="backfill", files=files, watermark=self.cap,
                                 replace_dates=replace_dates, run_info=run_info,
                                 backfill=self.record, refresh_views=refresh_views)

    # -- the dbt thread -------------------------------------------------------------------

    def _settle(self, day: _Day) -> None:
        assert day.committed is not None
        day.committed.result()
        self._check()

    def _check(self) -> None:
        if self._failure is not None:
            failure = self._failure
            self.close()
            raise failure

    def _emit_events(self) -> None:
        while not self._events.empty():
            progress.emit(self._events.get())

    def _open_cursors(self, wanted: int) -> None:
        while len(self._cursors) < wanted:
            cursor = self._conn.cursor()
            configure_session(cursor, self.settings)
            self._cursors.append(cursor)
            self._idle.put(cursor)


def _task_error(dataset: str, date: str, task: Task, error: BaseException) -> TslakeError:
    text = " ".join(SourceConninfo().redact(str(error)).split())
    where = f"backfill of {dataset} day {date} shard {task.shard:02d} failed"
    after = "; that day was not committed: fix the cause and run the backfill again " \
            "(it resumes after the days already committed)"
    if isinstance(error, duckdb.IOException | OSError):
        return PublishError(f"{where} writing {task.path}: {text}{after}")
    return SourceError(f"{where}: {text}{after}")
