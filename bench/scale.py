"""`make bench`, scale (issue 16 item 4): a tick on a 365-day lake against a 30-day one.

    python -m bench.scale [--sensors 2000] [--days 365] [--small-days 30] [--cadence 86400]
                          [--rounds 5] [--profiled 2] [--compare-with REF]

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
replication.json, retention, compaction, the export itself): CPU seconds of the process,
which a busy machine inflates much less than wall time.

`--compare-with REF` runs the same on two more lakes with the code of commit REF (`git
archive`, on this checkout's virtualenv), every round alternating over all four: a
before/after of a change, side by side. Writes the `<!-- scale -->` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import dataset, measure, report
from runner.config import Settings

DATASET = "metrics/v1"
GOAL_RATIO = 1.2

# (module, attribute, phase): timed wherever the attribute is looked up at call time (a
# class attribute when the module path's last part is capitalised; missing ones, in an
# older commit, are skipped). Phases nest: an indented row is inside the row above.
PHASES = [
    ("runner.cli", "run_dbt", "dbt run (whole)"),
    ("runner.dbt_bridge.plugin.Plugin", "_check_sources", "source check + manifest load"),
    ("runner.core.manifest", "load", "  manifest loads (parse, validate, containment)"),
    ("runner.cli", "load_manifest", "  manifest loads (parse, validate, containment)"),
    ("runner.core.manifest", "check_hot_paths", "    of which: path containment"),
    ("runner.core.publish", "open_write", "open_write (lock, checks, catch-ups)"),
    ("runner.core.publish", "remove_leftovers", "  leftover sweep"),
    ("runner.core.leftovers", "before_write", "  leftover sweep"),
    ("runner.readers.views", "refresh_if_stale", "  views staleness check"),
    ("runner.ops.export", "stable_watermark", "Postgres watermark"),
    ("runner.ops.export", "write_window", "export: read window, write Parquet"),
    ("runner.core.publish", "publish_segments", "publish (commit and follow-ups)"),
    ("runner.core.manifest.Manifest", "model_copy", "  manifest copy"),
    ("runner.core.manifest", "draft", "  manifest copy"),
    ("runner.core.manifest", "add_files", "  add files"),
    ("runner.core.manifest", "save", "  manifest save (serialise, write, generations)"),
    ("runner.core.manifest.Manifest", "to_json", "    serialise"),
    ("runner.core.manifest", "serialise", "    serialise"),
    ("runner.core.manifest", "write_json_atomic", "    write + fsync"),
    ("runner.core.manifest", "write_bytes_atomic", "    write + fsync"),
    ("runner.core.generations", "keep", "    keep generation"),
    ("runner.core.iceberg", "refresh", "  Iceberg refresh (and open_write's check)"),
    ("runner.core.publish", "write_json_atomic", "  replication.json"),
    ("runner.readers.views", "refresh", "  views refresh (lake.duckdb)"),
    ("runner.ops.compaction", "compact_dataset", "compaction check"),
    ("runner.ops.retention", "apply_retention", "retention check"),
    ("runner.cli", "_last_runs", "the CLI's summary (loads the manifest again)"),
]
TOTALS = ["process CPU (after imports)", "wall (after imports)"]

# Run by `python -c` in a tick's process, so that it times whichever code the process
# imports (this checkout's, or REF's with --compare-with): argv = [out path, phases JSON].
PHASE_TIMER = '''
import functools, importlib, json, sys, threading, time
from collections import defaultdict
if sys.path and sys.path[0] in ("", "."):
    del sys.path[0]  # `python -c` puts the working directory first: PYTHONPATH decides
totals = defaultdict(float)
active = threading.local()  # the phases running in this thread (nested calls count once)
def timed(name, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        names = active.__dict__.setdefault("names", set())
        if name in names:
            return function(*args, **kwargs)
        names.add(name)
        started = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            totals[name] += time.process_time() - started
            names.discard(name)
    return wrapper
for module_name, attribute, phase in json.loads(sys.argv[2]):
    path, _, last = module_name.rpartition(".")
    try:
        holder = (getattr(importlib.import_module(path), last) if last[:1].isupper()
                  else importlib.import_module(module_name))
        original = (holder.__dict__.get(attribute) if isinstance(holder, type) else None) \\
            or getattr(holder, attribute)
    except (ImportError, AttributeError):
        continue
    setattr(holder, attribute, timed(phase, original))
from runner import cli
cpu, wall = time.process_time(), time.perf_counter()
try:
    cli.main(["tick"])
except SystemExit as error:
    if error.code not in (None, 0):
        raise
finally:
    totals["process CPU (after imports)"] = time.process_time() - cpu
    totals["wall (after imports)"] = time.perf_counter() - wall
    open(sys.argv[1], "w").write(json.dumps(totals))
'''


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
    days: int
    code: str  # "this checkout" or the commit compared with
    env: dict[str, str]
    backfill: Run | None = None
    backfill_summary: dict[str, Any] = field(default_factory=dict)
    ticks: list[dict[str, Any]] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)
    file_count: int = 0  # committed files after the last tick

    @property
    def label(self) -> str:
        return f"{self.days} days, {self.code}"

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def manifest_bytes(self) -> int:
        return self.settings.manifest_path.stat().st_size

    def count_files(self) -> int:
        document = json.loads(self.settings.manifest_path.read_bytes())
        return sum(p["file_count"] for p in document["datasets"][DATASET]["partitions"].values())

    def median(self, key: str) -> float:
        return statistics.median(float(tick[key]) for tick in self.ticks)

    def phase(self, name: str) -> float:
        return statistics.median(p.get(name, 0.0) for p in self.phases) if self.phases else 0.0


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
    out = work / "phases.json"
    run(["python", "-c", PHASE_TIMER, str(out), json.dumps(PHASES)], lake.env)
    phases: dict[str, float] = json.loads(out.read_text())
    phases["model"] = model_seconds(lake.settings)
    return phases


def build(server: dataset.Server, table: dataset.Table, root: Path, days: int,
          retention_days: int, code: Path | None, ref: str) -> Lake:
    env = measure.lake_env(server, table.database, root,
                           TSLAKE_HOT_RETENTION_DAYS=str(retention_days))
    if code is not None:
        env["PYTHONPATH"] = str(code)
    lake = Lake(days, ref if code is not None else "this checkout", env)
    lake.backfill = run(["tslake", "backfill", "--days", str(days)], lake.env)
    (lake.backfill_summary,) = json.loads(lake.backfill.stdout).values()
    log(f"{lake.label}: backfill {lake.backfill_summary['rows']:,} rows in {lake.count_files():,} "
        f"files, {lake.backfill.seconds:.0f} s, {lake.backfill.cpu_seconds:.0f} CPU-s, peak "
        f"RSS {lake.backfill.peak_rss / 2**20:.0f} MiB, manifest {lake.manifest_bytes():,} B")
    return lake


def measure_lakes(args: argparse.Namespace, work: Path) -> tuple[dataset.Table, list[Lake]]:
    server = dataset.start(work / "pg18", 18)
    try:
        table = dataset.create_table(server, "scale", sensors=args.sensors,
                                     days=args.days + 1, cadence_seconds=args.cadence)
        log(f"table: {table.rows:,} rows ({args.sensors} sensors, one per {args.cadence} s, "
            f"{args.days + 1} days) in {table.load_seconds:.0f} s")
        codes: list[Path | None] = [None]
        if args.compare_with:
            codes.append(measure.archived(args.compare_with, work / "compared"))
        lakes = [build(server, table, work / f"lake-{days}-{number}", days, args.days + 30,
                       code, args.compare_with or "")
                 for number, code in enumerate(codes) for days in (args.small_days, args.days)]
        for number in range(args.rounds + args.profiled):
            dataset.insert_new_rows(server, table.database, args.sensors, 1)
            shift = number % len(lakes)  # every lake ticks first, second, ... in turn
            for lake in lakes[shift:] + lakes[:shift]:
                if number < args.rounds:
                    lake.ticks.append(tick(lake))
                    last = lake.ticks[-1]
                    log(f"{lake.label}: tick of {last['rows']} rows: model "
                        f"{last['model_seconds']:.3f} s, command {last['command_seconds']:.2f}"
                        f" s, CPU {last['cpu_seconds']:.2f} s, manifest "
                        f"{last['manifest_bytes']:,} B")
                else:
                    lake.phases.append(profiled_tick(lake, work))
                    log(f"{lake.label}: profiled tick, CPU by phase: "
                        f"{json.dumps({k: round(v, 3) for k, v in lake.phases[-1].items()})}")
        for lake in lakes:
            lake.file_count = lake.count_files()
    finally:
        dataset.stop(server)
    return table, lakes


def _ratio_line(small: Lake, large: Lake) -> str:
    ratio = {key: large.median(key) / small.median(key)
             for key in ("model_seconds", "command_seconds", "cpu_seconds")}
    assert small.backfill is not None and large.backfill is not None
    kib = [lake.median("manifest_bytes") / 1024 for lake in (small, large)]
    rss = [small.backfill.peak_rss / 2**20, large.backfill.peak_rss / 2**20]
    return (f"- {large.code}: a tick on the {large.days}-day lake is "
            f"**{ratio['model_seconds']:.2f}x** the {small.days}-day one in model time "
            f"({ratio['model_seconds'] / GOAL_RATIO:.2f}x the goal's {GOAL_RATIO}x), "
            f"{ratio['command_seconds']:.2f}x in command time, {ratio['cpu_seconds']:.2f}x in "
            f"CPU; manifest {kib[0]:,.0f} -> {kib[1]:,.0f} KiB; backfill peak RSS "
            f"{rss[0]:,.0f} -> {rss[1]:,.0f} MiB.")


def render(table: dataset.Table, lakes: list[Lake], args: argparse.Namespace,
           load: list[str]) -> list[str]:
    lines = [
        "## Scale: a tick on a 365-day lake against a 30-day one",
        "",
        f"`python -m bench.scale{f' --compare-with {args.compare_with}' * bool(args.compare_with)}`"
        f", {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average (1/5/15 min) at start "
        f"{load[0]}, at end {load[1]} on {os.cpu_count()} shared cores; duckdb "
        f"{version('duckdb')}, dbt-core {version('dbt-core')}, pydantic {version('pydantic')}, "
        f"pyiceberg {version('pyiceberg')}, PostgreSQL 18.",
        "",
        f"Table: {table.rows:,} rows, {table.sensors:,} sensors, one reading per sensor every "
        f"{table.cadence_seconds:,} s over {table.days:g} days. A tick's cost follows the "
        "lake's files and manifest, not the rows per file, so the history is deliberately "
        f"thin (~{table.rows / (table.days * 8):,.0f} rows per shard-day, not the issue's "
        "100M rows); each lake is the real `tslake backfill` of it (hot retention past its "
        f"days). Then {args.rounds} rounds of {table.sensors:,} new rows and one `tslake "
        "tick` per lake, the order rotating; medians. CPU is the tick's whole process tree.",
        "",
        "| lake | code | files | manifest | backfill | backfill CPU | backfill peak RSS | "
        "tick model | tick command | tick CPU |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for lake in lakes:
        assert lake.backfill is not None
        lines.append(
            f"| {lake.days} days x 8 shards | {lake.code} | {lake.file_count:,} | "
            f"{lake.median('manifest_bytes') / 1024:,.0f} KiB | "
            f"{lake.backfill.seconds:.0f} s ({lake.backfill_summary['rows']:,} rows) | "
            f"{lake.backfill.cpu_seconds:.0f} s | {lake.backfill.peak_rss / 2**20:,.0f} MiB | "
            f"{lake.median('model_seconds'):.3f} s | {lake.median('command_seconds'):.2f} s | "
            f"{lake.median('cpu_seconds'):.2f} s |")
    lines += ["", f"Goal (issue 16): a tick on the {args.days}-day lake <= {GOAL_RATIO}x the "
              f"{args.small_days}-day one; backfill RSS flat with days.", ""]
    lines += [_ratio_line(lakes[n], lakes[n + 1]) for n in range(0, len(lakes), 2)]
    lines += ["", f"Where a tick's CPU goes (in-process timers, process CPU seconds, median of "
              f"{args.profiled} profiled ticks per lake; an indented row is inside the row "
              "above, except the manifest loads (the run's and the CLI summary's); a row an "
              "older commit does not have is 0):", "",
              "| phase | " + " | ".join(lake.label for lake in lakes) + " |",
              "| --- |" + " ---: |" * len(lakes)]
    names = list(dict.fromkeys(phase for _, _, phase in PHASES)) + TOTALS + ["model"]
    for name in names:
        label = name.replace("  ", "&nbsp;&nbsp;") + (" (wall, dbt)" if name == "model" else "")
        lines.append(f"| {label} | " + " | ".join(f"{lake.phase(name):.3f}" for lake in lakes)
                     + " |")
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
    parser.add_argument("--compare-with", metavar="REF", default=None,
                        help="also run the code of this commit, on lakes of its own, same run")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tslake-bench-scale-"))
    load = [measure.load_average()]
    began = time.monotonic()
    try:
        table, lakes = measure_lakes(args, work)
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    load.append(measure.load_average())
    lines = render(table, lakes, args, load)
    report.write_marked_section("scale", lines)
    print("\n".join(lines))
    log(f"done in {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
