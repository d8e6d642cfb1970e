"""The lake's health in a few facts, from the manifest and the service's tick history:
what `tslake status` prints and what the status page (`GET /`) leads with.

One verdict for the whole lake: `ok` (every dataset's watermark is fresh and the last
recorded tick succeeded), `degraded` (fresh, but the last tick failed or held a
watermark), `stale` (a
watermark older than the stale bound, or nothing committed yet). Each problem is a
sentence an operator can act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runner.config import Settings
from runner.core import manifest
from runner.core.manifest import DatasetState
from runner.ops import parity_report
from runner.service import history as tick_history
from runner.service.history import TickHistory, TickRecord

# `tslake status` exit codes (documented in the README): cron and launchd test these.
EXIT_CODES = {"ok": 0, "starting": 0, "degraded": 4, "stale": 5}


def stale_after_seconds(settings: Settings, interval_seconds: float | None = None) -> float:
    """How old a watermark may get before the lake is stale: two missed ticks, plus the
    replication lag the ticks keep on purpose, plus a minute of slack."""
    interval = settings.interval_seconds if interval_seconds is None else interval_seconds
    return 2 * interval + settings.lag_seconds + 60


@dataclass
class DatasetStatus:
    name: str
    watermark: str | None
    lag_seconds: float | None
    hot_days: int
    cold_days: int
    files: int
    rows: int
    bytes: int
    last_compaction_at: str | None
    state: DatasetState | None = None  # the manifest's section, for the page's charts
    last_parity: dict[str, Any] | None = None  # the latest `tslake parity` verdict


@dataclass
class LakeStatus:
    status: str
    problems: list[str]
    stale_after_seconds: float
    datasets: list[DatasetStatus] = field(default_factory=list)
    ticks: list[TickRecord] = field(default_factory=list)
    consecutive_failures: int = 0

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def to_json(self) -> dict[str, Any]:
        last = self.ticks[-1] if self.ticks else None
        return {
            "status": self.status, "problems": self.problems,
            "stale_after_seconds": self.stale_after_seconds,
            "consecutive_failures": self.consecutive_failures,
            "last_tick": last.model_dump(mode="json") if last else None,
            "datasets": {d.name: {
                "watermark": d.watermark,
                "lag_seconds": None if d.lag_seconds is None else round(d.lag_seconds, 3),
                "hot_days": d.hot_days, "cold_days": d.cold_days, "files": d.files,
                "rows": d.rows, "bytes": d.bytes, "last_compaction_at": d.last_compaction_at,
                "last_parity": d.last_parity,
            } for d in self.datasets},
        }


def lake_status(settings: Settings, *, history: TickHistory | None = None,
                stale_after: float | None = None, now: datetime | None = None) -> LakeStatus:
    """The verdict and problems of every enabled dataset (and any other in the manifest)."""
    now = now or manifest.utc_now()
    history = tick_history.load(settings) if history is None else history
    bound = stale_after_seconds(settings) if stale_after is None else stale_after
    document = manifest.load(settings.manifest_path)
    report = LakeStatus(status="ok", problems=[], stale_after_seconds=bound,
                        ticks=list(history.ticks))
    failures = 0
    for record in reversed(history.ticks):
        if record.result == "ok":
            break
        failures += 1
    report.consecutive_failures = failures
    stale = degraded = False
    if document is None:
        report.problems.append(f"no lake at {settings.hot_path} yet: run `tslake backfill "
                               "--days N` (or `tslake tick`)")
        stale = True
    entries = document.datasets if document else {}
    names = sorted(set(settings.datasets) | set(entries))
    parities = parity_report.last_results(settings)
    for name in names:
        entry = entries.get(name)
        item = _dataset_status(name, entry, now)
        item.last_parity = parities.get(name)
        report.datasets.append(item)
        if document is None:
            continue
        if item.lag_seconds is None:
            report.problems.append(f"{name}: nothing committed yet (no watermark): run "
                                   "`tslake tick` or `tslake backfill --days N`")
            stale = True
        elif item.lag_seconds > bound:
            stale = True
            report.problems.append(
                f"{name}: stale: the watermark {item.watermark} is "
                f"{duration_text(item.lag_seconds)} old (stale after {duration_text(bound)})"
                + _held_reason(entry))
        held = (entry.last_run or {}).get("held") if entry else None
        if isinstance(held, dict):  # a standby behind, a clock behind, a prepared xact
            degraded = True
            report.problems.append(f"{name}: the last tick held the watermark "
                                   f"({held.get('reason')}): {held.get('message')}")
    if failures:
        degraded = True
        last = history.ticks[-1]
        report.problems.append(f"the last tick failed ({failures} in a row, the watermark "
                               f"holds until one succeeds): {last.error or 'no error text'}")
    report.status = "stale" if stale else "degraded" if degraded else "ok"
    return report


def _dataset_status(name: str, entry: DatasetState | None, now: datetime) -> DatasetStatus:
    if entry is None:
        return DatasetStatus(name, None, None, 0, 0, 0, 0, 0, None)
    mark = entry.computed_through_ts
    lag = (now - manifest.parse_rfc3339(mark)).total_seconds() if mark else None
    parts = entry.partitions.values()
    compaction = entry.last_compaction.finished_at if entry.last_compaction else None
    return DatasetStatus(
        name=name, watermark=mark, lag_seconds=None if lag is None else max(0.0, lag),
        hot_days=sum(1 for p in parts if p.location == "hot"),
        cold_days=sum(1 for p in parts if p.location != "hot"),
        files=sum(p.file_count for p in parts), rows=sum(p.rows for p in parts),
        bytes=sum(p.bytes for p in parts), last_compaction_at=compaction, state=entry)


def _held_reason(entry: DatasetState | None) -> str:
    """Why the watermark may be held: an open Postgres transaction older than it."""
    run = (entry.last_run or {}) if entry else {}
    since, pid = run.get("oldest_open_xact_start"), run.get("oldest_open_xact_pid")
    if since and entry and entry.computed_through_ts and since <= entry.computed_through_ts:
        return (f"; held by an open Postgres transaction (pid {pid}, open since {since}): "
                "end it, or wait for it to commit")
    return ""


def duration_text(seconds: float) -> str:
    """A duration as people say it: 45 s, 12 min, 3.5 h, 2.0 days."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def render_table(report: LakeStatus) -> str:
    """The compact terminal form of `tslake status`."""
    rows = [("DATASET", "WATERMARK", "LAG", "HOT", "COLD", "FILES", "ROWS", "COMPACTED")]
    for d in report.datasets:
        rows.append((d.name, d.watermark or "-",
                     "-" if d.lag_seconds is None else duration_text(d.lag_seconds),
                     str(d.hot_days), str(d.cold_days), str(d.files), f"{d.rows:,}",
                     d.last_compaction_at or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             .rstrip() for row in rows]
    last = report.ticks[-1] if report.ticks else None
    head = f"status: {report.status}"
    if last is not None:
        head += (f"  (last tick {last.started_at}: {last.result}, "
                 f"{last.duration_seconds:.1f} s)")
    return "\n".join([head, *lines, *(f"problem: {p}" for p in report.problems)])
