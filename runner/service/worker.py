"""The service's tick worker: a child process that keeps dbt's project parsed (and Python,
dbt, DuckDB imported) from one tick to the next.

A `tslake tick` process spends ~2 s starting Python, importing dbt and parsing the project
for ~0.2 s of work; at a 60 s interval that start-up is most of the service's CPU. The
worker pays it once, then runs each tick as `tslake tick` does (the lake's lock, the same
`dbt run`, the same commit), with dbt handed the parsed manifest (fresh copies of its nodes
per run: dbt's compile mutates the nodes it runs) and `--no-write-json` (rewriting
manifest.json and run_results.json was a third of a tick's CPU; `tslake tick` and `dbt run`
still write them). The in-memory DuckDB, with the postgres extension loaded, is kept from
one run to the next (set up afresh it was ~40% of a tick's CPU); the tslake plugin resets it
before each run (`Plugin.start_run`: Postgres attached afresh, no variable, catalog, table
or setting of the last run), so nothing of one tick's database state (a Postgres snapshot,
a connection to a server since restarted) reaches the next.

It stays a child process so that the service can still kill a wedged tick at its deadline:
`TickWorker` (the service's side) kills the worker's whole session on timeout and retires
it after a failed tick and every `max_ticks` ticks, so a leak or a stale connection lives
at most that long. A killed worker leaves what any killed tick leaves: the last commit.

Protocol: the service writes `tick` lines on the worker's stdin; the worker answers one
JSON line per request on its stdout (`{"ready": pid}` once parsed, then per tick
`{"ok": true, "summary": {...}}` or `{"ok": false, "error": "..."}`); its log lines go to
stderr, which the service forwards. EOF on stdin ends the worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

log = logging.getLogger("tslake.service")

DEFAULT_MAX_TICKS = 100  # ticks per worker before the service replaces it
CLOSE_GRACE_SECONDS = 10.0


# -- the worker (child) ------------------------------------------------------------------

def main() -> int:
    # The protocol gets its own copy of stdout; fd 1 becomes stderr, so nothing a library
    # prints can corrupt an answer.
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service decides when a tick stops

    from runner.cli import _last_runs, _redacted
    from runner.config import Settings
    from runner.core import datasets, publish
    from runner.dbt_bridge.invoke import run_dbt
    from runner.errors import TslakeError
    from runner.postgres.connection import SourceConninfo
    from runner.service import logs

    try:
        secret = SourceConninfo().password
    except TslakeError:
        secret = None
    logs.configure(secrets=(secret,) if secret else ())

    def answer(message: dict[str, Any]) -> None:
        answers.write(json.dumps(message) + "\n")

    try:
        settings = Settings.from_env()
        names = [spec.name for spec in datasets.enabled(settings.datasets)]
        parsed = run_dbt(settings, ["parse", "--no-write-json"])
    except TslakeError as error:
        answer({"ok": False, "error": f"tslake: error: {_redacted(str(error))}"})
        return error.exit_code
    answer({"ready": os.getpid()})
    pristine = _PristineNodes(parsed)
    for line in sys.stdin:
        if line.strip() != "tick":
            continue
        try:
            _start_run()
            with publish.writing(settings, "tslake tick"):
                run_dbt(settings, ["run", "--no-write-json"], manifest=parsed)
            answer({"ok": True, "summary": json.loads(json.dumps(
                _last_runs(settings, names), default=str))})
        except TslakeError as error:
            message = f"tslake: error: {_redacted(str(error))}"
            print(message, file=sys.stderr, flush=True)
            answer({"ok": False, "error": message})
            _close_duckdb()  # the service replaces this worker; nothing of the run is kept
        pristine.restore(parsed)  # while idle
    return 0


class _PristineNodes:
    """The parsed project's nodes as parsing left them. dbt's compile mutates the nodes it
    runs (an ephemeral model's CTE is injected once and marked so: compiled again, the
    model would lose it), so each run gets copies of the nodes; the rest of the manifest
    (macros, sources, files: most of its size) compile only reads, and is shared. A copy of
    the nodes alone costs a few milliseconds where `Manifest.deepcopy()` cost ~0.2 CPU-s."""

    def __init__(self, parsed: Any) -> None:
        from dbt.contracts.graph.manifest import _deepcopy

        self._copy = _deepcopy
        self._nodes = {uid: _deepcopy(node) for uid, node in parsed.nodes.items()}

    def restore(self, manifest: Any) -> None:
        manifest.nodes = {uid: self._copy(node) for uid, node in self._nodes.items()}


def _start_run() -> None:
    """The next run reuses the DuckDB database dbt-duckdb keeps for the life of the
    process (the postgres extension loaded, the session configured: setting it up again
    was ~40% of a tick's CPU). The tslake plugin resets it first (`Plugin.start_run`: a
    fresh Postgres attachment, no variable, catalog, table or setting a run left); if
    that fails, the database is dropped and the run opens a new one, failing as a first
    run would (e.g. Postgres unreachable) with the error dbt reports."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    environment = DuckDBConnectionManager._ENV
    plugin = getattr(environment, "_plugins", {}).get("tslake")
    if plugin is None:
        return
    try:
        plugin.start_run()
    except Exception as error:  # a run on a new database reports it as a first run would
        log.info("tslake: reopening DuckDB for this run: %s", error)
        _close_duckdb()


def _close_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps for the life of the process: the next
    run opens its own, as a run in a new process would."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        environment, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None
        if environment is not None:
            environment.close()


# -- the service's side -------------------------------------------------------------------

@dataclass
class TickReply:
    ok: bool
    summary: dict[str, Any] = field(default_factory=dict)
    error: str = ""


class TickWorker:
    """One worker process as the service sees it. `tick()` runs one tick with a deadline;
    `output` gets every stderr line the worker writes, as it writes it."""

    def __init__(self, output: Callable[[str], None], *,
                 env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runner.service.worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, env=env,
            start_new_session=True)  # its own session: a terminal's Ctrl-C cannot cut a publish
        self.ticks = 0
        self.started = time.monotonic()
        self._answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._output = output
        assert self.process.stdout is not None and self.process.stderr is not None
        threading.Thread(target=self._read_answers, args=(self.process.stdout,),
                         daemon=True, name="tslake-worker-answers").start()
        threading.Thread(target=self._read_log, args=(self.process.stderr,),
                         daemon=True, name="tslake-worker-log").start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def tick(self, timeout: float) -> TickReply:
        """Run one tick; on its deadline the worker is killed (the caller replaces it)."""
        deadline = time.monotonic() + timeout
        self.ticks += 1
        try:
            assert self.process.stdin is not None
            self.process.stdin.write("tick\n")
            self.process.stdin.flush()
        except OSError:
            return self._died()
        while True:
            try:
                message = self._answers.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                return TickReply(False, error=f"tick killed after {timeout:g} s")
            if message is None:
                return self._died()
            if "ready" in message:
                continue
            return TickReply(bool(message.get("ok")), message.get("summary") or {},
                             str(message.get("error") or ""))

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        """EOF on its stdin: the worker exits after the tick in progress (none, here)."""
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(CLOSE_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the worker's whole session (DuckDB threads, anything it started)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def _died(self) -> TickReply:
        code = self.process.wait()
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited {code}"
        return TickReply(False, error=f"tick worker {how} mid-tick (see the log lines before)")

    def _read_answers(self, stream: IO[str]) -> None:
        for line in stream:
            with contextlib.suppress(ValueError):
                self._answers.put(json.loads(line))
        self._answers.put(None)

    def _read_log(self, stream: IO[str]) -> None:
        for line in stream:
            self._output(line)


if __name__ == "__main__":
    sys.exit(main())
