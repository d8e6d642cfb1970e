"""`make bench`, scale (issue 16 item 4): a tick on a 365-day lake against a 30-day one.

    python -m bench.scale [--sensors 2000] [--days 365] [--small-days 30] [--cadence 86400]
                          [--rounds 5] [--profiled 2]

One table in a throwaway PostgreSQL 18: `--sensors` sensors, one reading per `--cadence`
seconds over `--days` + 1 days. A tick's cost depends on the lake's files and manifest
(8 shards x its days), not on how many rows each file holds, so the history is cheap: the
default is one reading per sensor per day (~250 rows per shard-day), which the output says.
Two lakes are backfilled from it by the real `tslake backfill` (`--small-days` and `--days`
days, hot retention past both, so nothing leaves either lake), each backfill's peak RSS
measured. Then `--rounds` times: 2,000 new rows (one per sensor, inserted_at = now()), and
a `tslake tick` on each lake, the order alternating, each timed: dbt's model time, the
command's wall time, the CPU seconds of its process tree, the manifest's bytes after it.
`--profiled` more rounds run the tick in-process with timers on its phases (manifest
parse/validate, copy, serialise, write, generations, leftover sweep, views, Iceberg,
replication.json, retention, compaction, the export itself) for the breakdown.
Writes the `<!-- scale -->` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import dataset, measure, report
from runner.config import Settings

DATASET = "metrics/v1"
GOAL_RATIO = 1.2


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Run:
    """One command: wall seconds, CPU seconds of its process tree, peak RSS, stdout."""

    seconds: float
    cpu_seconds: float
    peak_rss: int
    stdout: str


def run(args: list[str], env: dict[str, str]) -> Run:
    """measure.run_measured plus the CPU its (waited-for) process tree used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    timed = measure.run_measured(args, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(timed.seconds, cpu, timed.peak_rss, timed.stdout)


@dataclass
class Lake:
    label: str
    days: int
    env: dict[str, str]
    backfill: Run | None = None
    backfill_summary: dict[str, Any] = field(default_factory=dict)
    ticks: list[dict[str, Any]] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def manifest_bytes(self) -> int:
        return self.settings.manifest_path.stat().st_size

    def files(self) -> int:
        document = json.loads(self.settings.manifest_path.read_bytes())
        return sum(p["file_count"] for p in document["datasets"][DATASET]["partitions"].values())

    def median(self, key: str) -> float:
        return statistics.median(float(tick[key]) for tick in self.ticks)


def model_seconds(settings: Settings) -> float:
    """dbt's execution time of the metrics lake model in the last run."""
    results = settings.tmp_path / "dbt" / "target" / "run_results.json"
    (node,) = [result for result in json.loads(results.read_text())["results"]
               if result["unique_id"].endswith(".metrics_v1")]
    return float(node["execution_time"])


def tick(lake: Lake) -> dict[str, Any]:
    timed = run(["tslake", "tick"], lake.env)
    (last_run,) = json.loads(timed.stdout).values()
    return {"rows": int(last_run["rows"]), "model_seconds": model_seconds(lake.settings),
            "command_seconds": timed.seconds, "cpu_seconds": timed.cpu_seconds,
            "manifest_bytes": lake.manifest_bytes()}


def profiled_tick(lake: Lake, work: Path) -> dict[str, float]:
    out = work / f"phases-{lake.label}.json"
    run(["python", "-m", "bench.scale", "--tick-phases", str(out)], lake.env)
    phases: dict[str, float] = json.loads(out.read_text())
    phases["model"] = model_seconds(lake.settings)
    return phases


# -- the phase timers (run inside a tick process: `--tick-phases OUT`) ----------------------

# (module, attribute, phase): timed wherever the attribute is looked up at call time. Phases
# nest (a commit's `manifest write` is inside `publish`); the table says which.
PHASES = [
    ("runner.cli", "run_dbt", "dbt run (whole)"),
    ("runner.dbt_bridge.plugin.Plugin", "_check_sources", "source check + first manifest load"),
    ("runner.core.manifest", "load", "manifest load (read, parse, validate)"),
    ("runner.core.manifest", "check_hot_paths", "  of which: path containment"),
    ("runner.core.publish", "open_write", "open_write (lock, checks, catch-ups)"),
    ("runner.core.leftovers", "before_write", "  leftover sweep"),
    ("runner.readers.views", "refresh_if_stale", "  views staleness check"),
    ("runner.ops.export", "stable_watermark", "Postgres watermark"),
    ("runner.ops.export", "write_window", "export: read window, write Parquet"),
    ("runner.core.publish", "publish_segments", "publish (commit and follow-ups)"),
    ("runner.core.manifest.Manifest", "model_copy", "  manifest copy"),
    ("runner.core.manifest", "save", "  manifest save (serialise, write, generations)"),
    ("runner.core.manifest.Manifest", "to_json", "    serialise"),
    ("runner.core.manifest", "write_json_atomic", "    write + fsync"),
    ("runner.core.generations", "keep", "    keep generation"),
    ("runner.core.iceberg", "refresh", "  Iceberg refresh (incl. open_write's check)"),
    ("runner.core.publish", "write_json_atomic", "  replication.json"),
    ("runner.readers.views", "refresh", "  views refresh (lake.duckdb)"),
    ("runner.ops.compaction", "compact_dataset", "compaction check"),
    ("runner.ops.retention", "apply_retention", "retention check"),
]


def _timed(name: str, totals: dict[str, float],
           function: Callable[..., Any]) -> Callable[..., Any]:
    local = threading.local()

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(local, "inside", False):  # recursion: count the outer call only
            return function(*args, **kwargs)
        local.inside = True
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - started
            local.inside = False
    return wrapper


def tick_phases(out: Path) -> int:
    import importlib

    from runner import cli

    totals: dict[str, float] = defaultdict(float)
    for module_name, attribute, phase in PHASES:
        module_path, _, owner = module_name.rpartition(".")
        holder: Any
        if owner[:1].isupper():  # a class attribute
            holder = getattr(importlib.import_module(module_path), owner)
        else:
            holder = importlib.import_module(module_name)
        original = getattr(holder, attribute)
        if isinstance(holder, type):
            original = holder.__dict__.get(attribute, original)
        setattr(holder, attribute, _timed(phase, totals, original))
    cpu = time.process_time()
    started = time.perf_counter()
    try:
        cli.main(["tick"])
    except SystemExit as error:
        if error.code not in (None, 0):
            raise
    finally:
        totals["process CPU (after imports)"] = time.process_time() - cpu
        totals["wall (after imports)"] = time.perf_counter() - started
        out.write_text(json.dumps(totals))
    return 0


# -- the bench -------------------------------------------------------------------------------

def build(server: dataset.Server, table: dataset.Table, work: Path, label: str, days: int,
          retention_days: int) -> Lake:
    lake = Lake(label, days, measure.lake_env(
        server, table.database, work / f"lake-{label}",
        TSLAKE_HOT_RETENTION_DAYS=str(retention_days)))
    lake.backfill = run(["tslake", "backfill", "--days", str(days)], lake.env)
    (lake.backfill_summary,) = json.loads(lake.backfill.stdout).values()
    log(f"{label} lake: backfill of {days} days, {lake.backfill_summary['rows']:,} rows in "
        f"{lake.files():,} files, {lake.backfill.seconds:.0f} s, peak RSS "
        f"{lake.backfill.peak_rss / 2**20:.0f} MiB, manifest {lake.manifest_bytes():,} bytes")
    return lake


def measure_lakes(args: argparse.Namespace, work: Path) -> tuple[dataset.Table, list[Lake]]:
    server = dataset.start(work / "pg18", 18)
    try:
        table = dataset.create_table(server, "scale", sensors=args.sensors,
                                     days=args.days + 1, cadence_seconds=args.cadence)
        log(f"table: {table.rows:,} rows ({args.sensors} sensors, one per {args.cadence} s, "
            f"{args.days + 1} days) in {table.load_seconds:.0f} s")
        retention = args.days + 30
        lakes = [build(server, table, work, "small", args.small_days, retention),
                 build(server, table, work, "large", args.days, retention)]
        for number in range(args.rounds + args.profiled):
            dataset.insert_new_rows(server, table.database, args.sensors, 1)
            for lake in lakes if number % 2 == 0 else lakes[::-1]:
                if number < args.rounds:
                    lake.ticks.append(tick(lake))
                    last = lake.ticks[-1]
                    log(f"{lake.label}: tick of {last['rows']} rows: model "
                        f"{last['model_seconds']:.3f} s, command {last['command_seconds']:.2f}"
                        f" s, CPU {last['cpu_seconds']:.2f} s, manifest "
                        f"{last['manifest_bytes']:,} bytes")
                else:
                    lake.phases.append(profiled_tick(lake, work))
                    log(f"{lake.label}: profiled tick: "
                        f"{json.dumps({k: round(v, 3) for k, v in lake.phases[-1].items()})}")
    finally:
        dataset.stop(server)
    return table, lakes


def render(table: dataset.Table, lakes: list[Lake], args: argparse.Namespace,
           load: list[str]) -> list[str]:
    small, large = lakes
    ratio = {key: large.median(key) / small.median(key)
             for key in ("model_seconds", "command_seconds", "cpu_seconds")}
    lines = [
        "## Scale: a tick on a 365-day lake against a 30-day one",
        "",
        f"`python -m bench.scale`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average "
        f"(1/5/15 min) at start {load[0]}, at end {load[1]} on {os.cpu_count()} shared cores; "
        f"duckdb {version('duckdb')}, dbt-core {version('dbt-core')}, pydantic "
        f"{version('pydantic')}, pyiceberg {version('pyiceberg')}, PostgreSQL 18.",
        "",
        f"Table: {table.rows:,} rows, {table.sensors:,} sensors, one reading per sensor every "
        f"{table.cadence_seconds:,} s over {table.days:g} days. A tick's cost follows the "
        "lake's files and manifest, not the rows per file, so the history is deliberately "
        f"thin (~{table.rows / (table.days * 8):,.0f} rows per shard-day); each lake is the "
        "real `tslake backfill` of it, hot retention past its days. Then "
        f"{args.rounds} rounds of {table.sensors:,} new rows and one `tslake tick` per "
        "lake, the order alternating; medians.",
        "",
        "| lake | files | manifest | backfill | backfill peak RSS | tick model | "
        "tick command | tick CPU (process tree) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for lake in lakes:
        assert lake.backfill is not None
        lines.append(
            f"| {lake.days} days x 8 shards | {lake.files():,} | "
            f"{lake.median('manifest_bytes') / 1024:,.0f} KiB | "
            f"{lake.backfill.seconds:.0f} s ({lake.backfill_summary['rows']:,} rows) | "
            f"{lake.backfill.peak_rss / 2**20:,.0f} MiB | {lake.median('model_seconds'):.3f} s | "
            f"{lake.median('command_seconds'):.2f} s | {lake.median('cpu_seconds'):.2f} s |")
    lines += [
        "",
        f"Goal (issue 16): a tick on the {large.days}-day lake <= {GOAL_RATIO}x the "
        f"{small.days}-day one: model time **{ratio['model_seconds']:.2f}x**, command "
        f"{ratio['command_seconds']:.2f}x, CPU {ratio['cpu_seconds']:.2f}x "
        f"({ratio['model_seconds'] / GOAL_RATIO:.2f}x the goal on model time). Backfill "
        f"peak RSS, {small.days} -> {large.days} days: "
        f"{small.backfill.peak_rss / 2**20:,.0f} -> "  # type: ignore[union-attr]
        f"{large.backfill.peak_rss / 2**20:,.0f} MiB "  # type: ignore[union-attr]
        "(flat when the days do not show in it).",
        "",
        f"Where a tick's time goes (in-process timers, median of {args.profiled} profiled "
        "ticks per lake; indented rows are inside the row above; seconds):",
        "",
        f"| phase | {small.days} days | {large.days} days |",
        "| --- | ---: | ---: |"]
    names = [phase for _, _, phase in PHASES] + ["process CPU (after imports)",
                                                "wall (after imports)", "model"]
    for name in names:
        values = [statistics.median(p.get(name, 0.0) for p in lake.phases) if lake.phases
                  else 0.0 for lake in lakes]
        lines.append(f"| {name.replace('  ', '&nbsp;&nbsp;')} | {values[0]:.3f} | "
                     f"{values[1]:.3f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sensors", type=int, default=2000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--small-days", type=int, default=30)
    parser.add_argument("--cadence", type=int, default=86400, help="seconds between readings")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profiled", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--tick-phases", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tick_phases is not None:
        return tick_phases(args.tick_phases)
    work = Path(tempfile.mkdtemp(prefix="tslake-bench-scale-"))
    load = [measure.load_average()]
    began = time.monotonic()
    try:
        table, lakes = measure_lakes(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")
    load.append(measure.load_average())
    lines = render(table, lakes, args, load)
    report.write_marked_section("scale", lines)
    print("\n".join(lines))
    log(f"done in {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
