"""Unit tests: the backfill's progress tracker and display, failpoint counting, settings."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.config import Settings
from runner.ops import progress

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tracker(clock: Clock) -> progress.BackfillTracker:
    return progress.BackfillTracker(dataset="metrics/v1", run_id="r1", days_total=10, todo=6,
                                    skipped=3, done_before=1, resumed=True, clock=clock)


def test_tracker_counts_days_rows_rate_and_eta():
    clock = Clock()
    track = tracker(clock)
    clock.now += 2.0
    first = track.day_event(date="2026-01-01", rows=1000, files=8, seconds=2.0)
    assert (first["days_done"], first["days_total"], first["rows_total"]) == (5, 10, 1000)
    assert first["rows_per_second"] == 500 and first["eta_seconds"] == 10.0  # 5 days x 2 s
    clock.now += 2.0
    track.day_event(date="2026-01-02", rows=3000, files=8, seconds=2.0)
    summary = track.summary()
    assert summary["rows"] == 4000 and summary["files"] == 16 and summary["days_processed"] == 2
    assert summary["rows_per_second"] == 1000 and summary["resumed"]


def test_events_describe_themselves_in_one_line():
    clock = Clock()
    track = tracker(clock)
    begin = track.begin_event(cap="2026-01-02T00:00:00Z", replace_existing=False,
                              first_date="2026-01-01", last_date="2026-01-10")
    assert "6 of 10 days to write" in progress.describe(begin)
    assert "resuming (1 days done before)" in progress.describe(begin)
    clock.now += 1
    line = progress.describe(track.day_event(date="2026-01-01", rows=1234567, files=8,
                                             seconds=1))
    assert "1,234,567 rows in 8 files" in line and "5/10 days" in line and "ETA 5s" in line
    end = progress.describe(track.end_event(computed_through_ts="2026-01-02T00:00:00Z"))
    assert "done: 1,234,567 rows" in end and "\n" not in end


def test_listeners_get_the_events_instead_of_dbt():
    seen: list[progress.Event] = []
    with progress.listening(seen.append):
        progress.emit({"event": "day", "dataset": "d"})
    assert seen == [{"event": "day", "dataset": "d"}]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_display_is_a_live_line_on_a_terminal_and_log_lines_otherwise(
        caplog: pytest.LogCaptureFixture):
    clock = Clock()
    track = tracker(clock)
    clock.now += 1
    day = track.day_event(date="2026-01-01", rows=10, files=1, seconds=1)
    end = track.end_event(computed_through_ts="2026-01-02T00:00:00Z")

    terminal = Terminal()
    with progress.ProgressDisplay(terminal) as display:
        display(day)
        display(end)
    assert "\r\x1b[Kmetrics/v1 backfill 2026-01-01: 5/10 days" in terminal.getvalue()
    assert display.ends["metrics/v1"]["rows"] == 10

    plain = io.StringIO()
    with caplog.at_level(logging.INFO, logger="tslake.backfill"), \
            progress.ProgressDisplay(plain) as display:
        display(day)
    assert plain.getvalue() == ""
    assert any("5/10 days" in record.getMessage() for record in caplog.records)


def test_failpoint_can_wait_for_its_nth_hit(tmp_path: Path):
    script = ("from runner.core.failpoints import failpoint\n"
              "for i in range(5):\n    print(i, flush=True)\n    failpoint('step')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "TSLAKE_FAILPOINT": "step#3"})
    assert result.returncode == -9 and result.stdout.split() == ["0", "1", "2"]


def test_backfill_workers_default_to_one_more_than_the_cores():
    assert Settings.from_env({}).backfill_workers == (os.cpu_count() or 1) + 1
    assert Settings.from_env({"TSLAKE_BACKFILL_WORKERS": "2"}).backfill_workers == 2
