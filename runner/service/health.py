"""What the service shows operators: / (an HTML status page, runner/service/page.py),
/healthz (JSON) and /metrics (Prometheus text), served on loopback by a small threaded
HTTP server."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from runner.config import Settings
from runner.core import manifest
from runner.readers.status import lake_status
from runner.service import history as tick_history
from runner.service import page


@dataclass
class TickOutcome:
    started_at: float
    finished_at: float
    ok: bool
    rows: int = 0
    files: int = 0
    error: str | None = None


@dataclass
class ServiceHealth:
    """The service's view of itself, updated after every tick, read by /healthz."""

    settings: Settings
    interval_seconds: float
    stale_after_seconds: float
    started_at: float = field(default_factory=time.time)
    last: TickOutcome | None = None
    next_tick_at: float | None = None
    ticks: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    watermarks: dict[str, str | None] = field(default_factory=dict)
    # Datasets whose last tick held the watermark: {name: {"reason", "message"}}.
    held: dict[str, dict[str, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # The last ticks, also in _state/ so the page's lag chart survives a restart.
    history: tick_history.TickHistory = field(default_factory=tick_history.TickHistory)

    def __post_init__(self) -> None:
        self.history = tick_history.load(self.settings)

    def remember(self, outcome: TickOutcome) -> None:
        """Append a finished tick (with each dataset's lag right after it) to the history."""
        now = time.time()
        with self.lock:
            lags = {name: None if not mark
                    else round(max(0.0, now - manifest.parse_rfc3339(mark).timestamp()), 3)
                    for name, mark in self.watermarks.items()}
            self.history.append(tick_history.TickRecord(
                started_at=_rfc3339(outcome.started_at),
                duration_seconds=round(outcome.finished_at - outcome.started_at, 3),
                result="ok" if outcome.ok else "error", rows=outcome.rows,
                files=outcome.files, error=outcome.error, lag_seconds=lags))
            snapshot = self.history.model_copy(deep=True)
        tick_history.save(self.settings, snapshot)

    def page(self) -> str:
        """The HTML status page: the manifest's and the history's facts, plus live ones."""
        _, live = self.report()
        with self.lock:
            snapshot = self.history.model_copy(deep=True)
        report = lake_status(self.settings, history=snapshot,
                             stale_after=self.stale_after_seconds)
        return page.render(report, live=live, refresh_seconds=self.interval_seconds)

    def lag_seconds(self) -> float | None:
        """Age of the oldest dataset watermark, by this host's clock."""
        marks = [manifest.parse_rfc3339(mark) for mark in self.watermarks.values() if mark]
        if not marks or len(marks) < len(self.watermarks):
            return None
        return max(0.0, time.time() - min(marks).timestamp())

    def report(self) -> tuple[int, dict[str, Any]]:
        with self.lock:
            lag = self.lag_seconds()
            now = time.time()
            if lag is None:
                stale = now - self.started_at > self.stale_after_seconds
            else:
                stale = lag > self.stale_after_seconds
            if stale:
                status = "stale"
            elif self.last is None:
                status = "starting"
            else:
                status = "ok" if self.last.ok else "degraded"
            body = {
                "status": status,
                "lag_seconds": None if lag is None else round(lag, 3),
                "stale_after_seconds": self.stale_after_seconds,
                "watermarks": dict(self.watermarks),
                "watermark_held": dict(self.held),
                "last_tick": None if self.last is None else {
                    "started_at": _rfc3339(self.last.started_at),
                    "finished_at": _rfc3339(self.last.finished_at),
                    "duration_seconds": round(self.last.finished_at - self.last.started_at, 3),
                    "result": "ok" if self.last.ok else "error",
                    "rows": self.last.rows, "files": self.last.files,
                    "error": self.last.error},
                # 0 while a tick runs (the next one starts as soon as it ends).
                "next_tick_in_seconds": 0.0 if self.next_tick_at is None
                else round(max(0.0, self.next_tick_at - now), 3),
                "ticks": self.ticks, "failures": self.failures,
                "consecutive_failures": self.consecutive_failures,
                "interval_seconds": self.interval_seconds,
                "uptime_seconds": round(now - self.started_at, 3),
            }
        return (503 if stale else 200), body


class ServiceMetrics:
    """Prometheus metrics of one service process (its own registry, no globals)."""

    def __init__(self, health: ServiceHealth) -> None:
        self.registry = CollectorRegistry()
        self.ticks = Counter("tslake_ticks_total", "Ticks run, by result.", ["result"],
                             registry=self.registry)
        self.rows = Counter("tslake_rows_exported_total", "Rows published by ticks.",
                            registry=self.registry)
        self.files = Counter("tslake_files_published_total", "Data files published by ticks.",
                             registry=self.registry)
        self.compactions = Counter("tslake_compactions_total", "Shard-days compacted.",
                                   registry=self.registry)
        # Per dataset, the (run_id, shard_days) of last_compaction already counted: the
        # manifest is where a tick's compactions are recorded (its JSON has none).
        self._compactions_seen: dict[str, tuple[str, int]] | None = None
        self.duration = Histogram("tslake_tick_duration_seconds", "Wall time of a tick.",
                                  buckets=(1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 300),
                                  registry=self.registry)
        lag = Gauge("tslake_lag_seconds", "Age of the oldest dataset watermark (computed_"
                    "through_ts); NaN before the first commit.", registry=self.registry)
        lag.set_function(lambda: _nan_if_none(health.lag_seconds()))
        self.partition_files = Gauge("tslake_partition_files", "Committed files per partition.",
                                     ["dataset", "date", "location"], registry=self.registry)
        self.last_success = Gauge("tslake_last_success_timestamp_seconds",
                                  "Unix time of the last successful tick.", registry=self.registry)

        self.watermark_held = Gauge(
            "tslake_watermark_held", "1 while a dataset's last tick held its watermark, by "
            "reason (clock_behind, standby_replay, prepared_transactions).",
            ["dataset", "reason"], registry=self.registry)

    def refresh_holds(self, held: dict[str, dict[str, str]]) -> None:
        self.watermark_held.clear()
        for name, hold in held.items():
            self.watermark_held.labels(name, hold["reason"]).set(1)

    def record(self, outcome: TickOutcome) -> None:
        self.ticks.labels(result="ok" if outcome.ok else "error").inc()
        self.duration.observe(outcome.finished_at - outcome.started_at)
        if outcome.ok:
            self.rows.inc(outcome.rows)
            self.files.inc(outcome.files)
            self.last_success.set(outcome.finished_at)

    def refresh_partitions(self, document: manifest.Manifest) -> None:
        self._count_compactions(document)
        self.partition_files.clear()
        for name, entry in document.datasets.items():
            for date, partition in entry.partitions.items():
                self.partition_files.labels(name, date, partition.location).set(
                    partition.file_count)


    def _count_compactions(self, document: manifest.Manifest) -> None:
        """Add the shard-days compacted since the last look (the first look only records
        where the manifest stands: compactions before the service started are not its)."""
        seen = self._compactions_seen
        now = {name: (entry.last_compaction.run_id, entry.last_compaction.shard_days)
               for name, entry in document.datasets.items() if entry.last_compaction}
        if seen is not None:
            for name, (run_id, shard_days) in now.items():
                before = seen.get(name)
                new = shard_days - before[1] if before and before[0] == run_id else shard_days
                if new > 0:
                    self.compactions.inc(new)
        self._compactions_seen = now


def held_watermarks(document: manifest.Manifest) -> dict[str, dict[str, str]]:
    """The datasets whose last tick held the watermark, and why (from the manifest)."""
    return {name: entry.last_run["held"] for name, entry in document.datasets.items()
            if entry.last_run and isinstance(entry.last_run.get("held"), dict)}


def serve(health: ServiceHealth, metrics: ServiceMetrics, host: str,
          port: int) -> ThreadingHTTPServer:
    """Start the HTTP endpoints in a daemon thread; returns the server (for .shutdown())."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] == "/":
                self._send(200, "text/html; charset=utf-8", health.page().encode())
            elif self.path.split("?")[0] == "/healthz":
                status, body = health.report()
                self._send(status, "application/json", json.dumps(body).encode())
            elif self.path.split("?")[0] == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
            else:
                self._send(404, "text/plain", b"not found: try /, /healthz or /metrics\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # scrapes are not events
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="tslake-http", daemon=True).start()
    return server


def _rfc3339(epoch: float) -> str:
    return manifest.rfc3339(datetime.fromtimestamp(epoch, UTC))


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value
