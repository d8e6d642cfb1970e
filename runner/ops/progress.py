"""Backfill progress: days done / total, rows, rows/s and ETA, and how they are shown.

The executor (runner/ops/backfill.py) emits one event per step: `begin`, `day`, `end`.
`tslake backfill` listens with a `ProgressDisplay`: a live status line on a terminal,
plain log lines otherwise, and the `end` events feed its JSON summary. Under a plain
`dbt run` nobody listens, and each event becomes one line of dbt's own log (a `Note`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

Event = dict[str, Any]
Listener = Callable[[Event], None]

log = logging.getLogger("tslake.backfill")
_listeners: list[Listener] = []


class BackfillTracker:
    """Counts a backfill's days and rows and derives its rate and ETA."""

    def __init__(self, *, dataset: str, run_id: str, days_total: int, todo: int, skipped: int,
                 done_before: int, resumed: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.dataset, self.run_id, self.clock = dataset, run_id, clock
        self.days_total, self.todo, self.skipped, self.done_before = \
            days_total, todo, skipped, done_before
        self.resumed = resumed
        self.started = clock()
        self.cpu_started = time.process_time()  # every thread of this process
        self.days_processed = self.rows = self.files = 0

    def _base(self, event: str) -> Event:
        return {"event": event, "dataset": self.dataset, "run_id": self.run_id}

    def begin_event(self, **details: Any) -> Event:
        return {**self._base("begin"), **details, "days_total": self.days_total,
                "days_todo": self.todo, "days_skipped": self.skipped,
                "days_done_before": self.done_before, "resumed": self.resumed}

    def day_event(self, *, date: str, rows: int, files: int, seconds: float) -> Event:
        self.days_processed += 1
        self.rows += rows
        self.files += files
        return {**self._base("day"), "date": date, "rows": rows, "files": files,
                "seconds": round(seconds, 3), **self._totals()}

    def end_event(self, **details: Any) -> Event:
        return {**self._base("end"), **details, **self.summary()}

    def summary(self) -> dict[str, Any]:
        return {"days_total": self.days_total, "days_processed": self.days_processed,
                "days_skipped": self.skipped, "days_done_before": self.done_before,
                "resumed": self.resumed, "rows": self.rows, "files": self.files,
                "seconds": round(self.elapsed(), 3), "rows_per_second": self.rate(),
                "cpu_seconds": round(time.process_time() - self.cpu_started, 3)}

    def elapsed(self) -> float:
        return max(self.clock() - self.started, 1e-9)

    def rate(self) -> int:
        return round(self.rows / self.elapsed())

    def _totals(self) -> dict[str, Any]:
        remaining = self.todo - self.days_processed
        eta = self.elapsed() / self.days_processed * remaining if self.days_processed else None
        return {"days_done": self.days_processed + self.skipped + self.done_before,
                "days_total": self.days_total, "rows_total": self.rows,
                "rows_per_second": self.rate(),
                "eta_seconds": None if eta is None else round(eta, 1)}


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send events to `listener` (instead of dbt's log) inside the block."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def emit(event: Event) -> None:
    if _listeners:
        for listener in list(_listeners):
            listener(event)
        return
    _dbt_note(f"tslake: {describe(event)}")


def describe(event: Event) -> str:
    """One human line for an event."""
    name = f"{event['dataset']}: backfill"
    if event["event"] == "begin":
        resumed = f", resuming ({event['days_done_before']} days done before)" \
            if event["resumed"] else ""
        return (f"{name} {event['run_id']}: {event['days_todo']} of {event['days_total']} days "
                f"to write ({event['first_date']} .. {event['last_date']}), "
                f"{event['days_skipped']} already in the lake{resumed}; rows capped at "
                f"inserted_at <= {event['cap']}")
    if event["event"] == "day":
        return (f"{name} {event['date']}: {event['rows']:,} rows in {event['files']} files; "
                f"{status(event)}")
    return (f"{name} {event['run_id']} done: {event['rows']:,} rows in {event['files']} files "
            f"over {event['days_processed']} days in {event['seconds']:.1f} s "
            f"({event['rows_per_second']:,} rows/s); watermark {event['computed_through_ts']}")


def status(event: Event) -> str:
    """days done/total, rows, rows/s and ETA of a `day` event."""
    eta = event.get("eta_seconds")
    return (f"{event['days_done']}/{event['days_total']} days, {event['rows_total']:,} rows, "
            f"{event['rows_per_second']:,} rows/s, ETA {_duration(eta)}")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes \
        else f"{secs}s"


def _dbt_note(message: str) -> None:
    from dbt_common.events.functions import fire_event
    from dbt_common.events.types import Note

    fire_event(Note(msg=message))


class ProgressDisplay:
    """What `tslake backfill` shows: on a terminal one live status line (log records are
    printed above it), otherwise one plain log line per event. Keeps each dataset's `end`
    event for the JSON summary."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.ends: dict[str, Event] = {}
        self._line = ""
        self._wrapped: list[logging.Handler] = []

    def __call__(self, event: Event) -> None:
        if event["event"] == "end":
            self.ends[event["dataset"]] = event
        if not self.live:
            log.info("%s", describe(event))
            return
        if event["event"] == "day":
            self._show(f"{event['dataset']} backfill {event['date']}: {status(event)}")
        else:
            self._show("")
            log.info("%s", describe(event))

    def __enter__(self) -> ProgressDisplay:
        if self.live:  # route log records through the display so they never tear the line
            root = logging.getLogger()
            self._wrapped = root.handlers[:]
            root.handlers = [_AboveTheLine(handler, self) for handler in self._wrapped]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self._show("")
            logging.getLogger().handlers = self._wrapped

    def _show(self, line: str) -> None:
        self._line = line
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()

    def clear(self) -> None:
        if self._line:
            self.stream.write("\r\x1b[K")

    def redraw(self) -> None:
        if self._line:
            self.stream.write(self._line)
            self.stream.flush()


class _AboveTheLine(logging.Handler):
    def __init__(self, inner: logging.Handler, display: ProgressDisplay) -> None:
        super().__init__(inner.level)
        self.inner, self.display = inner, display

    def emit(self, record: logging.LogRecord) -> None:
        self.display.clear()
        self.inner.handle(record)
        self.display.redraw()


# --- one line per command: compact, parity, retention, repair ------------------------------


class Condensed(logging.Filter):
    """While a long command runs, its per-step INFO lines (e.g. one per shard-day) become
    one live line on a terminal and are counted, not printed, elsewhere; the command then
    logs one summary line. Warnings, errors and --verbose output pass as they are."""

    def __init__(self, command: str, stream: TextIO | None = None, *,
                 live: bool | None = None) -> None:
        super().__init__()
        self.command = command
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.steps = 0
        self.started = time.monotonic()
        self._shown = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not record.name.startswith("tslake") \
                or logging.getLogger().level <= logging.DEBUG:
            return True
        self.steps += 1
        if self.live:
            line = f"{self.command}: {record.getMessage()}"[:200]
            self.stream.write("\r\x1b[K" + line)
            self.stream.flush()
            self._shown = True
        return False

    def done(self, summary: str) -> None:
        """Clear the live line and log the command's one summary line."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        seconds = time.monotonic() - self.started
        logging.getLogger("tslake").info("%s: %s (%.1f s)", self.command, summary, seconds,
                                         extra={"seconds": round(seconds, 3)})


@contextmanager
def condensed(command: str, *, live: bool | None = None) -> Iterator[Condensed]:
    """Install a `Condensed` filter on every root handler for the block."""
    condenser = Condensed(command, live=live)
    handlers = logging.getLogger().handlers[:]
    for handler in handlers:
        handler.addFilter(condenser)
    try:
        yield condenser
    finally:
        for handler in handlers:
            handler.removeFilter(condenser)
