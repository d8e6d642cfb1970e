"""BENCHMARKS.md: what `make bench` measured, on which machine, with which versions."""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil

from bench.dataset import Table
from bench.measure import Backfill, Copy, Tick, median
from bench.profile import Stage
from runner.config import PROJECT_ROOT


@dataclass
class SizeResult:
    table: Table
    copies: list[Copy]
    backfills: list[Backfill]
    ticks: list[Tick]

    @property
    def copy_rate(self) -> float:
        return self.table.rows / median([copy.seconds for copy in self.copies])

    def best(self) -> Backfill:
        return max(self.backfills, key=lambda run: run.rate)

    def copy_cpu(self) -> float:
        return median([copy.postgres_cpu for copy in self.copies])

    def bounds(self, cores: int) -> tuple[float, float]:
        """Rows/s the CPU seconds allow: the COPY's one backend on one core, and the fastest
        backfill (its threads plus Postgres) on `cores`."""
        return self.table.rows / self.copy_cpu(), self.table.rows / (self.best().cpu / cores)


@dataclass
class Alternative:
    name: str
    what: str
    rows: int
    seconds: float  # its own timing of the load
    peak_rss: int
    command_seconds: float = 0.0  # the whole process, start-up included


@dataclass
class Production:
    """The production-shaped table on one PostgreSQL: COPY vs backfill, and alternatives."""

    pg_version: int
    size: SizeResult
    alternatives: list[Alternative]


@dataclass
class Report:
    settings: dict[str, Any]
    sizes: list[SizeResult]
    alternatives: list[Alternative] = field(default_factory=list)
    plans: dict[str, str] = field(default_factory=dict)
    postgres: dict[int, str] = field(default_factory=dict)
    production: list[Production] = field(default_factory=list)
    old_plans: dict[int, dict[str, str]] = field(default_factory=dict)
    task_stages: list[Stage] = field(default_factory=list)
    startup_stages: list[Stage] = field(default_factory=list)
    load: dict[str, str] = field(default_factory=dict)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def _rate(rows: float, seconds: float) -> str:
    return f"{rows / seconds / 1e6:.2f}M rows/s"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _size_rows(result: SizeResult) -> list[str]:
    best, table = result.best(), result.table
    copy = result.copy_rate
    rates = ", ".join(f"{run.rate / 1e6:.2f}M" for run in result.backfills)
    return [
        f"| {table.rows:,} | {copy / 1e6:.2f}M rows/s ({len(result.copies)} runs: "
        f"{', '.join(f'{c.seconds:.2f} s' for c in result.copies)}) | "
        f"{best.rate / 1e6:.2f}M rows/s "
        f"(runs: {rates}) | **{best.rate / copy:.2f}x** | {best.command_rate / 1e6:.2f}M rows/s "
        f"({best.command_rate / copy:.2f}x) | {_mib(max(r.peak_rss for r in result.backfills))} "
        f"| {best.summary['files']} files, {best.summary['days_total']} days |"]


def _cpu_rows(result: SizeResult, cores: int) -> list[str]:
    best, rows = result.best(), result.table.rows
    copy_bound, bound = result.bounds(cores)
    return [f"| {rows:,} | {result.copy_cpu():.2f} s | {copy_bound / 1e6:.2f}M rows/s | "
            f"{best.summary['cpu_seconds']:.2f} s | {best.postgres_cpu:.2f} s | "
            f"{best.cpu / best.summary['seconds']:.2f} | {bound / 1e6:.2f}M rows/s | "
            f"{bound / copy_bound:.2f}x |"]


def _tick_rows(result: SizeResult) -> list[str]:
    ticks = result.ticks
    return [f"| {result.table.rows:,} | {median([t.rows for t in ticks]):,.0f} | "
            f"{median([t.model_seconds for t in ticks]):.3f} s | "
            f"{median([t.command_seconds for t in ticks]):.2f} s | "
            f"{sum(t.seq_scans for t in ticks)} | {sum(t.index_scans for t in ticks)} |"]


def _production_lines(report: Report) -> list[str]:
    if not report.production:
        return []
    cores = psutil.cpu_count(logical=True) or 1
    lines = [
        "", "## Backfill on a production-shaped table (issue 16)", "",
        "`bench.dataset.fill_production`: the heap in time order (each minute's readings of "
        "every sensor, then the next minute), inserted_at = ts + 0.2-4.8 s and 0.1% of rows "
        "up to 2 h late, 3-decimal values; same sensors, cadence and days as the large table "
        "above. Each PostgreSQL in turn; on each, the raw COPY drain and the backfill "
        "alternate, then DuckDB's own scanner and dlt + connectorx read the same table. The "
        "whole command is what a user waits for: `tslake backfill` from its start to its exit "
        "(Python, dbt and DuckDB start-up included).",
        "",
        "| PostgreSQL | rows | raw COPY | backfill | ratio (goal >= 0.6x) | whole command "
        "| ratio | peak RSS | tslake CPU | Postgres CPU (COPY's) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for run in report.production:
        size, best = run.size, run.size.best()
        copy_seconds = median([copy.seconds for copy in size.copies])
        copy_cpu = size.copy_cpu()
        lines.append(
            f"| {run.pg_version} | {size.table.rows:,} | {copy_seconds:.2f} s | "
            f"{float(best.summary['seconds']):.2f} s | **{best.rate / size.copy_rate:.2f}x** | "
            f"{best.command_seconds:.2f} s | {best.command_rate / size.copy_rate:.2f}x | "
            f"{_mib(max(r.peak_rss for r in size.backfills))} | "
            f"{best.summary['cpu_seconds']:.2f} s | {best.postgres_cpu:.2f} s "
            f"({copy_cpu:.2f} s) |")
    lines += ["", "The same bound as above, from CPU seconds (what the machine to itself would "
              f"show, {cores} cores): the COPY's one backend vs the backfill's threads plus "
              "Postgres.", "",
              "| PostgreSQL | COPY bound | backfill bound | ratio of the bounds |",
              "| ---: | ---: | ---: | ---: |"]
    for run in report.production:
        copy_bound, bound = run.size.bounds(cores)
        lines.append(f"| {run.pg_version} | {copy_bound / 1e6:.2f}M rows/s | "
                     f"{bound / 1e6:.2f}M rows/s | {bound / copy_bound:.2f}x |")
    for run in report.production:
        if not run.alternatives:
            continue
        size, best = run.size, run.size.best()
        lines += ["", f"Alternatives on PostgreSQL {run.pg_version}'s production-shaped table "
                  "(ratio to its median raw COPY; *backfill faster by*: the alternative's whole "
                  "command over `tslake backfill`'s whole command, goal >= 2x for dlt + "
                  "connectorx):", "",
                  "| how | own time | ratio | whole command | backfill faster by | peak RSS | "
                  "what |", "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
        lines += [f"| {a.name} | {a.seconds:.2f} s | "
                  f"{a.rows / a.seconds / size.copy_rate:.2f}x | {a.command_seconds:.2f} s | "
                  f"**{a.command_seconds / best.command_seconds:.2f}x** | "
                  f"{_mib(a.peak_rss)} | {a.what} |" for a in run.alternatives]
    if report.task_stages:
        rows = report.production[0].size.table.rows
        lines += ["", f"Where the CPU goes (bench/profile.py, PostgreSQL "
                  f"{report.production[0].pg_version}'s production-shaped table): every shard "
                  "task's Postgres query, run for each shard of each day on one DuckDB thread, "
                  "in three passes that add one stage each; the differences are the stages' "
                  "costs, roughly: the first two passes end in a max() of every column (so "
                  "DuckDB decodes and carries all of them, as the task does), which they pay "
                  "for too. Then the fixed start-up of a command.", "",
                  "| pass | client CPU | Postgres CPU | wall | client CPU per 1M rows |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {st.name} | {st.client_cpu:.2f} s | {st.postgres_cpu:.2f} s | "
                  f"{st.wall:.2f} s | {st.client_cpu / rows * 1e6:.3f} s |"
                  for st in report.task_stages]
        lines += [f"| {st.name} | {st.client_cpu:.2f} s | - | {st.wall:.2f} s | - |"
                  for st in report.startup_stages]
    for pg_version, version_plans in report.old_plans.items():
        for name, plan in version_plans.items():
            lines += ["", f"PostgreSQL {pg_version}, {name}:", "", "```", plan, "```"]
    return lines


def render(report: Report) -> str:
    s = report.settings
    memory = psutil.virtual_memory().total
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`python -m bench.run`) on {report.started:%Y-%m-%d %H:%M} UTC.",
        "Everything down to the first marked section was measured in that one run, on",
        "throwaway PostgreSQL servers (the embedded 18, then the system's 15), one after another:",
        "the raw COPY drain and the backfill alternate, so both see the same machine state. The",
        "sections after it are written by the other benches of `make bench`, each with its own",
        "time and load. Rerun it to refresh this file.",
        "",
        "## Machine and versions",
        "",
        f"- {psutil.cpu_count(logical=True)} logical cores ({_cpu_model()}), "
        f"{memory / 2**30:.1f} GiB RAM, {platform.platform()}, Python {platform.python_version()}",
        f"- load average (1/5/15 min) at start {report.load.get('start', '?')}, at end "
        f"{report.load.get('end', '?')} (other work on the machine competes for the cores)",
        f"- duckdb {version('duckdb')}, duckdb-extension-postgres "
        f"{version('duckdb-extension-postgres')}, dbt-core {version('dbt-core')}, dbt-duckdb "
        f"{version('dbt-duckdb')}, psycopg {version('psycopg')}",
        *[f"- {text}" for text in report.postgres.values()],
        f"- tslake settings: TSLAKE_SHARDS=8, TSLAKE_MEMORY_LIMIT={s['memory_limit']}, "
        f"TSLAKE_THREADS={s['threads']}, TSLAKE_BACKFILL_WORKERS={s['backfill_workers']}; "
        "Postgres with its defaults (shared_buffers 128MB)",
        "",
        "## Tables",
        "",
        "`synthetic.fill_uniform`: sensors x one reading per cadence x days, ts on the cadence "
        "grid, inserted_at = ts + 1 s. Only the primary key (sensor_id, ts) and the "
        "inserted_at index.",
        "",
        "| rows | sensors x cadence x days | table | indexes | load + index |",
        "| ---: | --- | ---: | ---: | ---: |",
        *[f"| {r.table.rows:,} | {r.table.sensors} x {r.table.cadence_seconds} s x "
          f"{r.table.days:g} | {_mib(r.table.table_bytes)} | {_mib(r.table.index_bytes)} | "
          f"{r.table.load_seconds:.0f} s |" for r in report.sizes],
        "",
        f"## Backfill vs the raw COPY drain (PostgreSQL {s['pg_version']})",
        "",
        f"`COPY metrics TO STDOUT (FORMAT binary)` through `psql` into /dev/null (one backend; "
        f"median of the runs) against `tslake backfill --days {s['backfill_days']} "
        "--replace-existing` on an empty lake (sorted, date/shard-partitioned Snappy Parquet, "
        "each day committed). The backfill's rate is its own (first day to last commit, from "
        "its JSON summary); the command rate adds Python, dbt and DuckDB start-up (~3 s). "
        "Peak RSS is the sum over the `tslake` process tree, sampled every 20 ms.",
        "",
        "| rows | raw COPY | backfill | ratio | whole command (ratio) | peak RSS | output |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *[line for r in report.sizes for line in _size_rows(r)],
        "",
        "Where the CPU went (the fastest backfill of each size). On a shared machine (see the "
        "load average) wall-clock rates move with the neighbours: the single COPY backend needs "
        "one core, the backfill wants all of them. CPU seconds do not: the COPY's backend can "
        "drain at most rows / its CPU seconds on one core; the backfill (its own threads from "
        "the first day to the last commit, plus Postgres) at most rows / (CPU seconds / "
        f"{psutil.cpu_count(logical=True)} cores). Their ratio is what a machine to itself "
        "would show.",
        "",
        "| rows | COPY: Postgres CPU | COPY bound | backfill: tslake CPU | backfill: Postgres CPU "
        "| cores busy (avg) | backfill bound | ratio of the bounds |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *[line for r in report.sizes
          for line in _cpu_rows(r, psutil.cpu_count(logical=True) or 1)],
        "",
        "## Tick cost at two table sizes",
        "",
        f"{s['tick_rows']:,} new rows (inserted_at = now()) before each of 3 ticks, on the lake "
        "the backfill left. The model time is dbt's execution time of the tick (window read, "
        "Parquet, commit); the command adds start-up. Scans are Postgres's counters for "
        "`metrics` over the 3 ticks: the window is read through the inserted_at index, so the "
        "cost follows the new rows, not the table.",
        "",
        "| table rows | rows per tick | tick (model) | tick (command) | seq scans | index scans |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        *[line for r in report.sizes for line in _tick_rows(r)],
    ]
    lines += _production_lines(report)
    for name, plan in report.plans.items():
        lines += ["", f"## Plan: {name}", "", "```", plan, "```"]
    lines += ["", "Design notes and the measurements behind the choices: "
              "[docs/ARCHITECTURE.md](docs/ARCHITECTURE.md#backfill).", ""]
    return "\n".join(lines)


_MARKED = re.compile(r"<!-- ([a-z][a-z0-9-]*) -->\n.*?<!-- /\1 -->", re.DOTALL)


def write_report(path: Path, report: Report) -> None:
    """Write bench.run's part of BENCHMARKS.md, keeping the other benches' marked sections."""
    previous = path.read_text() if path.exists() else ""
    kept = [match.group(0) for match in _MARKED.finditer(previous)]
    path.write_text("\n\n".join([render(report).rstrip("\n"), *kept]) + "\n")


def write_marked_section(name: str, section_lines: list[str]) -> None:
    """Put `section_lines` into BENCHMARKS.md between `<!-- name -->` and `<!-- /name -->`
    (replacing what a previous run wrote there, else appended)."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    section = "\n".join([start, *section_lines, end])
    path = PROJECT_ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text:
        before, _, rest = text.partition(start)
        text = before + section + rest.partition(end)[2]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
