"""Measurements: the raw COPY drain rate, `tslake` runs with the peak RSS of their process
tree, and the cost of a tick."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.dataset import Server
from runner.config import PROJECT_ROOT, Settings

BIN = PROJECT_ROOT / ".venv" / "bin"


@dataclass(frozen=True)
class Timed:
    seconds: float
    peak_rss: int  # bytes, the largest sum over the process tree seen while it ran
    stdout: str
    cpu_seconds: float = 0.0  # user + system of the process tree


def postgres_cpu(server: Server) -> float:
    """CPU seconds used so far by the server: postmaster, its live children, the exited ones."""
    pid = int((server.pgdata / "postmaster.pid").read_text().split()[0])
    postmaster = psutil.Process(pid)
    times = postmaster.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in postmaster.children():
        with contextlib.suppress(psutil.Error):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return total


@dataclass(frozen=True)
class Copy:
    seconds: float
    postgres_cpu: float


def copy_drain(server: Server, database: str) -> Copy:
    """One backend draining `COPY metrics TO STDOUT (FORMAT binary)` into psql, whose output
    goes to /dev/null: the physical limit of reading the table."""
    command = [server.bin("psql"), "-X", "-q", "-h", server.env["PGHOST"], "-p",
               server.env["PGPORT"], "-U", server.env["PGUSER"], "-d", database,
               "-c", "copy metrics to stdout (format binary)"]
    cpu = postgres_cpu(server)
    began = time.monotonic()
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
    seconds = time.monotonic() - began
    time.sleep(0.3)  # let the postmaster reap the backend, so its CPU is counted
    return Copy(seconds, postgres_cpu(server) - cpu)


def run_measured(args: list[str], env: dict[str, str], *, interval: float = 0.02) -> Timed:
    """Run a .venv/bin command from the repository root, sampling its tree's RSS."""
    began = time.monotonic()
    process = subprocess.Popen([str(BIN / args[0]), *args[1:]], cwd=PROJECT_ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            root = psutil.Process(process.pid)
            while not done.is_set():
                total = 0
                for proc in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += proc.memory_info().rss
                peak = max(peak, total)
                time.sleep(interval)
        except psutil.Error:
            return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    seconds = time.monotonic() - began
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args)} exited {process.returncode}:\n{stderr[-3000:]}")
    return Timed(seconds, peak, stdout)


def lake_env(server: Server, database: str, data_root: Path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("PG", "TSLAKE_", "CORE_ANALYSIS_"))}
    return {**keep, **server.env, "PGDATABASE": database, "TSLAKE_DATA_ROOT": str(data_root),
            "TSLAKE_REPLICATION_LAG_SECONDS": "0", "DO_NOT_TRACK": "1", **extra}


@dataclass(frozen=True)
class Backfill:
    command_seconds: float
    peak_rss: int
    summary: dict[str, Any]
    postgres_cpu: float  # seconds, the whole command

    @property
    def cpu(self) -> float:
        """CPU seconds of the backfill: tslake's threads (start-up excluded) + Postgres."""
        return float(self.summary["cpu_seconds"]) + self.postgres_cpu

    @property
    def rows(self) -> int:
        return int(self.summary["rows"])

    @property
    def rate(self) -> float:
        """Rows per second of the backfill itself (first day to last commit)."""
        return self.rows / float(self.summary["seconds"])

    @property
    def command_rate(self) -> float:
        """Rows per second of the whole command, interpreter and dbt start-up included."""
        return self.rows / self.command_seconds


def backfill(server: Server, env: dict[str, str], days: int) -> Backfill:
    cpu = postgres_cpu(server)
    timed = run_measured(["tslake", "backfill", "--days", str(days), "--replace-existing"], env)
    time.sleep(0.3)
    (summary,) = json.loads(timed.stdout).values()
    return Backfill(timed.seconds, timed.peak_rss, summary, postgres_cpu(server) - cpu)


@dataclass(frozen=True)
class Tick:
    rows: int
    model_seconds: float  # the tick itself, as dbt times the model
    command_seconds: float
    seq_scans: int
    index_scans: int


def tick(server: Server, database: str, env: dict[str, str]) -> Tick:
    before = _scans(server, database)
    timed = run_measured(["tslake", "tick"], env)
    after = _scans(server, database)
    (last_run,) = json.loads(timed.stdout).values()
    results = Settings.from_env(env).tmp_path / "dbt" / "target" / "run_results.json"
    # The metrics lake model's node (the run lists every lake model, enabled or skipped).
    (node,) = [result for result in json.loads(results.read_text())["results"]
               if result["unique_id"].endswith(".metrics_v1")]
    return Tick(int(last_run["rows"]), float(node["execution_time"]), timed.seconds,
                after[0] - before[0], after[1] - before[1])


def _scans(server: Server, database: str) -> tuple[int, int]:
    time.sleep(1.1)  # backends flush their scan counters at most once a second
    with server.connect(database) as conn:
        row = conn.execute("select coalesce(sum(seq_scan), 0), coalesce(sum(idx_scan), 0) "
                           "from pg_stat_user_tables where relname like 'metrics%'").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def median(values: list[float]) -> float:
    return statistics.median(values)


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def archived(ref: str, into: Path) -> Path:
    """The source tree of commit `ref` (git archive), for `--compare-with`."""
    archive = subprocess.run(["git", "-C", str(PROJECT_ROOT), "archive", ref],
                             capture_output=True, check=True).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into
