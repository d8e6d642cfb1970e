"""BENCHMARKS.md: what `make bench` measured, on which machine, with which versions."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil

from bench.dataset import Table
from bench.measure import Backfill, Copy, Tick, median
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


@dataclass
class Alternative:
    name: str
    what: str
    rows: int
    seconds: float
    peak_rss: int


@dataclass
class Report:
    settings: dict[str, Any]
    sizes: list[SizeResult]
    alternatives: list[Alternative] = field(default_factory=list)
    plans: dict[str, str] = field(default_factory=dict)
    postgres: dict[int, str] = field(default_factory=dict)
    pg16: SizeResult | None = None
    pg16_plans: dict[str, str] = field(default_factory=dict)
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
    copy_cpu = median([copy.postgres_cpu for copy in result.copies])
    copy_bound = rows / copy_cpu  # one backend: one core's worth
    bound = rows / (best.cpu / cores)
    return [f"| {rows:,} | {copy_cpu:.2f} s | {copy_bound / 1e6:.2f}M rows/s | "
            f"{best.summary['cpu_seconds']:.2f} s | {best.postgres_cpu:.2f} s | "
            f"{best.cpu / best.summary['seconds']:.2f} | {bound / 1e6:.2f}M rows/s | "
            f"{bound / copy_bound:.2f}x |"]


def _tick_rows(result: SizeResult) -> list[str]:
    ticks = result.ticks
    return [f"| {result.table.rows:,} | {median([t.rows for t in ticks]):,.0f} | "
            f"{median([t.model_seconds for t in ticks]):.3f} s | "
            f"{median([t.command_seconds for t in ticks]):.2f} s | "
            f"{sum(t.seq_scans for t in ticks)} | {sum(t.index_scans for t in ticks)} |"]


def render(report: Report) -> str:
    s = report.settings
    memory = psutil.virtual_memory().total
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`python -m bench.run`) on {report.started:%Y-%m-%d %H:%M} UTC.",
        "Everything below was measured in that one run, on one throwaway embedded PostgreSQL",
        "server, one after another: the raw COPY drain and the backfill alternate, so both see",
        "the same machine state. Rerun it to refresh this file.",
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
        "Postgres with pgserver's defaults (shared_buffers 128MB)",
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
    if report.alternatives:
        big = report.sizes[-1]
        lines += ["", f"## Alternatives on the {big.table.rows:,}-row table", "",
                  "Same table, same run; ratio to its median raw COPY rate.", "",
                  "| how | rate | ratio | peak RSS | what |", "| --- | ---: | ---: | ---: | --- |"]
        lines += [f"| {a.name} | {_rate(a.rows, a.seconds)} | "
                  f"{a.rows / a.seconds / big.copy_rate:.2f}x | {_mib(a.peak_rss)} | {a.what} |"
                  for a in report.alternatives]
    if report.pg16 is not None:
        lines += ["", "## PostgreSQL 16 (no btree skip scan)", "",
                  "The same backfill against PostgreSQL 16, where a query with only ts bounds "
                  "would scan the whole table for every day (see the plan of a ts-only day "
                  "below): series discovery plus `sensor_id = any(...)` keeps it on the index.",
                  "",
                  "| rows | raw COPY | backfill | ratio | whole command (ratio) | peak RSS | "
                  "output |", "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
                  *_size_rows(report.pg16)]
        for name, plan in report.pg16_plans.items():
            lines += ["", f"PostgreSQL 16, {name}:", "", "```", plan, "```"]
    for name, plan in report.plans.items():
        lines += ["", f"## Plan: {name}", "", "```", plan, "```"]
    lines += ["", "Design notes and the measurements behind the choices: "
              "[docs/ARCHITECTURE.md](docs/ARCHITECTURE.md#backfill).", ""]
    return "\n".join(lines)


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
