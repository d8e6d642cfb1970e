"""`tslake run`: the replication service loop.

Every interval it runs one tick (the tick, and whatever the tick triggers) in a child
process, records the outcome for /healthz and /metrics, and backs off after
failures. The watermark only moves when a tick commits, so a failed tick loses nothing.
SIGTERM/SIGINT: the tick in progress finishes (or, if idle, one final tick runs), then the
service exits 0.

The child is a long-lived tick worker (runner/service/worker.py: dbt's project parsed
once, DuckDB set up once), killed and replaced when a tick passes its deadline, after a
failed tick, and every `worker_ticks` ticks; so a wedged DuckDB or Postgres connection
still cannot outlive its tick. With `worker_ticks=0` every tick is its own `tslake tick`
process instead. Either child runs in its own session so a terminal's Ctrl-C cannot cut a
publish short, and its stderr passes through `_child_output`.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

from runner.config import Settings
from runner.core import manifest
from runner.readers.status import stale_after_seconds
from runner.service import logs
from runner.service.health import (
    ServiceHealth,
    ServiceMetrics,
    TickOutcome,
    held_watermarks,
    serve,
)
from runner.service.worker import DEFAULT_MAX_TICKS, TickReply, TickWorker

log = logging.getLogger("tslake.service")

MAX_BACKOFF_SECONDS = 300.0


class ReplicationService:
    def __init__(self, settings: Settings, *, interval_seconds: float, http_host: str,
                 http_port: int | None, worker_ticks: int = DEFAULT_MAX_TICKS) -> None:
        self.settings = settings
        self.interval = interval_seconds
        self.http = (http_host, http_port) if http_port is not None else None
        self.health = ServiceHealth(settings, interval_seconds,
                                    stale_after_seconds(settings, interval_seconds))
        self.metrics = ServiceMetrics(self.health)
        self.stopping = threading.Event()
        # A tick is worth at most this long; past it the child is killed (crash-safe).
        self.tick_timeout = max(300.0, 10 * interval_seconds)
        self.worker_ticks = worker_ticks
        self.worker: TickWorker | None = None
        self.child_env: dict[str, str] | None = None  # the children's environment (tests)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._request_stop)
        server = serve(self.health, self.metrics, *self.http) if self.http else None
        if server is not None:
            log.info("serving /healthz and /metrics on http://%s:%d", *server.server_address[:2])
        self._read_watermarks()
        log.info("service started: a tick every %g s", self.interval)
        try:
            while True:
                outcome = self.tick()
                if self.stopping.is_set():  # the signal came during that tick: it finished
                    break
                self._start_worker()  # a replacement starts up while the service waits
                delay = self.interval if outcome.ok else self._backoff()
                self.health.next_tick_at = time.time() + delay
                if self.stopping.wait(delay):
                    log.info("stop requested while idle: one final tick")
                    self.tick()
                    break
        finally:
            if self.worker is not None:
                self.worker.close()
            if server is not None:
                server.shutdown()
        log.info("service stopped")
        return 0

    def tick(self) -> TickOutcome:
        started = time.time()
        self.health.next_tick_at = None
        reply = self._tick_in_worker() if self.worker_ticks > 0 else self._tick_in_process()
        outcome = TickOutcome(started_at=started, finished_at=time.time(), ok=reply.ok)
        if reply.ok:
            summaries = reply.summary.values()
            outcome.rows = sum(int(s.get("rows", 0)) for s in summaries if s)
            outcome.files = sum(int(s.get("files", 0)) for s in summaries if s)
        else:
            outcome.error = reply.error
        self._record(outcome)
        return outcome

    def _tick_in_worker(self) -> TickReply:
        self._start_worker()
        assert self.worker is not None
        reply = self.worker.tick(self.tick_timeout)
        if not reply.ok or self.worker.ticks >= self.worker_ticks or not self.worker.alive():
            # After a failure nothing the worker holds is trusted (a connection to a
            # restarted Postgres, a half-set-up DuckDB): the next tick gets a new one.
            self.worker.close()
            self.worker = None
        return reply

    def _start_worker(self) -> None:
        if self.worker_ticks > 0 and self.worker is None:
            self.worker = TickWorker(self._child_output, env=self.child_env)

    def _tick_in_process(self) -> TickReply:
        command = [sys.executable, "-m", "runner.cli", "tick"]
        try:
            child = subprocess.run(command, capture_output=True, text=True,
                                   timeout=self.tick_timeout, start_new_session=True,
                                   env=self.child_env)
        except subprocess.TimeoutExpired:
            return TickReply(False, error=f"tick killed after {self.tick_timeout:g} s")
        for line in child.stderr.splitlines(keepends=True):
            self._child_output(line)
        if child.returncode == 0:
            return TickReply(True, json.loads(child.stdout or "{}"))
        return TickReply(False, error=_last_line(child.stderr)
                         or f"tick exited {child.returncode}")

    def _child_output(self, line: str) -> None:
        """Every line a tick's child writes on stderr, relayed as one JSON event per line
        off a TTY (runner/service/logs.py)."""
        logs.relay_child_output(line)

    def _record(self, outcome: TickOutcome) -> None:
        # The watermarks first: /healthz never counts a tick whose commit it does not show.
        self._read_watermarks()
        with self.health.lock:
            self.health.last = outcome
            self.health.ticks += 1
            if outcome.ok:
                self.health.consecutive_failures = 0
            else:
                self.health.failures += 1
                self.health.consecutive_failures += 1
        self.metrics.record(outcome)
        self.health.remember(outcome)
        duration = outcome.finished_at - outcome.started_at
        if outcome.ok:
            log.info("tick ok: %d rows in %d files (%.1f s)", outcome.rows, outcome.files,
                     duration, extra={"rows": outcome.rows, "files": outcome.files,
                                      "duration_seconds": round(duration, 3)})
        else:
            log.warning("tick failed (%d in a row): %s", self.health.consecutive_failures,
                        outcome.error, extra={"duration_seconds": round(duration, 3)})

    def _read_watermarks(self) -> None:
        try:
            document = manifest.load(self.settings.manifest_path)
        except Exception as error:  # a broken manifest is reported by the tick itself
            log.warning("cannot read the manifest: %s", error)
            return
        if document is None:
            return
        with self.health.lock:
            self.health.watermarks = {name: entry.computed_through_ts
                                      for name, entry in document.datasets.items()}
            self.health.held = held_watermarks(document)
        self.metrics.refresh_partitions(document)
        self.metrics.refresh_holds(self.health.held)

    def _backoff(self) -> float:
        failures = self.health.consecutive_failures
        return min(self.interval * 2 ** (failures - 1), max(self.interval, MAX_BACKOFF_SECONDS))

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping.is_set():
            log.info("%s received: finishing", signal.Signals(signum).name)
        self.stopping.set()


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
