"""The `tslake` command line. The only place that maps errors to exit codes."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from runner import __version__, cli_boundary
from runner.cli_params import (
    DATE,
    MAX_SAMPLE,
    TIME,
    OptionError,
    WholeNumber,
    parse_sensor_ids,
    parse_window,
)
from runner.config import Settings
from runner.core import datasets, publish
from runner.core.manifest import load as load_manifest
from runner.dbt_bridge.invoke import run_dbt
from runner.errors import ConfigError, ManifestError, ParityMismatchError, TslakeError
from runner.ops import parity_report, progress
from runner.ops.backfill import MAX_BACKFILL_DAYS
from runner.ops.compaction import compact as compact_lake
from runner.ops.doctor import diagnose
from runner.ops.doctor import restore as run_doctor_restore
from runner.ops.parity import run_parity
from runner.ops.repair import run_repair
from runner.ops.retention import run_retention
from runner.postgres.connection import known_passwords, redact
from runner.readers.inspect import inspect_lake
from runner.readers.output import OUTPUT_FORMATS, output_format_for, write_result
from runner.readers.query import AGGREGATES, series
from runner.readers.status import lake_status
from runner.readers.status import render_table as render_status_table
from runner.readers.views import render_sql as render_views_sql
from runner.service import logs
from runner.service.launchd import (
    DEFAULT_DATA_ROOT,
    DEFAULT_HTTP_PORT,
    DEFAULT_USER,
    install,
    spec_from_options,
)
from runner.service.loop import ReplicationService
from runner.service.worker import DEFAULT_MAX_TICKS as DEFAULT_WORKER_TICKS

log = logging.getLogger("tslake")

DATASET_OPTION = click.option("--dataset", metavar="NAME", default=None,
                              help="Only this dataset (e.g. metrics/v1); default: every dataset.")


def _settings() -> Settings:
    return Settings.from_env()


def _print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=True))


def _covered(settings: Settings, dataset: str | None) -> list[str]:
    """The datasets a command covers (`--dataset`, or every enabled one); an unknown or
    disabled name is exit 2 naming the known ones, before anything runs."""
    return [spec.name for spec in datasets.select(settings.datasets, dataset)]


def _last_runs(settings: Settings, names: list[str]) -> dict[str, Any]:
    document = load_manifest(settings.manifest_path)
    entries = document.datasets if document else {}
    return {name: entries[name].last_run for name in names if name in entries}


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=True)
@click.version_option(__version__, prog_name="tslake")
@click.option("--debug", is_flag=True, expose_value=False,
              help="On a failure, print the traceback too (also anywhere after the command).")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail too.")
@click.option("--log-format", type=click.Choice(["json", "text"]), default=None,
              help="Log lines on stderr as JSON or text; default: JSON unless stderr is a "
                   "terminal.")
@click.pass_context
def cli(ctx: click.Context, quiet: bool, verbose: bool, log_format: str | None) -> None:
    """Keep a Parquet analysis lake in step with a Postgres time-series table.

    Settings come from the environment (TSLAKE_DATA_ROOT, TSLAKE_HOT_PATH, ...; libpq's PG*
    variables or TSLAKE_PG_DSN for Postgres). See README.md.
    """
    if ctx.invoked_subcommand is None:  # plain `tslake`: the help, on stdout, exit 0
        click.echo(ctx.get_help())
        ctx.exit(0)
    if quiet and verbose:
        raise ConfigError("--quiet and --verbose cannot be combined: choose one")
    logs.adjust(level=logging.WARNING if quiet else logging.DEBUG if verbose else None,
                json_lines=None if log_format is None else log_format == "json")


@cli.command()
@DATASET_OPTION
def tick(dataset: str | None) -> None:
    """Export rows inserted since the watermark and advance it (what `dbt run` does).

    Prints the tick's summary as JSON.
    """
    settings = _settings()
    names = _covered(settings, dataset)
    with publish.writing(settings, "tslake tick"):
        run_dbt(settings, ["run"], dataset=dataset)
    _print_json(_last_runs(settings, names))


@cli.command()
@click.option("--days", type=WholeNumber(min=1, max=MAX_BACKFILL_DAYS), required=True,
              metavar="N",
              help="Backfill whole UTC days from 00:00 UTC N days ago up to now.")
@click.option("--replace-existing", is_flag=True,
              help="Rewrite days already in the lake (atomically); default: skip them.")
@DATASET_OPTION
def backfill(days: int, replace_existing: bool, dataset: str | None) -> None:
    """Backfill the last N days, one committed UTC day at a time.

    Rows are capped at inserted_at <= the watermark, so ticks continue where it ends. A
    killed backfill, run again with the same options, resumes after its committed days.
    Shows progress on stderr (a live line on a terminal); prints a JSON summary.
    """
    settings = _settings()
    _covered(settings, dataset)
    display = progress.ProgressDisplay()
    with publish.writing(settings, "tslake backfill"), \
            display, progress.listening(display):
        run_dbt(settings, ["run"], dataset=dataset,
                variables={"backfill_days": days, "replace_existing": replace_existing})
    document = load_manifest(settings.manifest_path)
    records = {name: entry.backfill for name, entry in (document.datasets if document
                                                         else {}).items()}
    _print_json({name: {**{k: v for k, v in end.items() if k not in ("event", "dataset")},
                        "status": record.status if (record := records.get(name)) else None}
                 for name, end in display.ends.items()})


@cli.command()
@DATASET_OPTION
@click.option("--date", "day", type=DATE, default=None,
              help="Only this UTC date's shard-days; default: every hot date.")
def compact(dataset: str | None, day: str | None) -> None:
    """Compact now: every hot shard-day with more than one file becomes one sorted
    compact-<run_id>.parquet holding the newest version of each key.

    Each shard-day is committed on its own; its inputs leave the manifest in that commit
    and are deleted after it. (After a tick, `dbt run` compacts only shard-days with more
    than TSLAKE_COMPACT_MIN_FILES files.) Prints what was compacted as JSON.
    """
    with progress.condensed("compact") as condenser:
        report = compact_lake(_settings(), dataset=dataset, date=day)
    condenser.done(", ".join(f"{name} {item['shard_days']} shard-day(s), {item['files_in']} "
                             f"files into {item['shard_days']}" for name, item in report.items())
                   or "nothing to compact")
    _print_json(report)


@cli.command()
@click.option("--interval", type=click.FloatRange(min=0.1), default=None, metavar="SECONDS",
              help="Seconds between ticks; default TSLAKE_REPLICATION_INTERVAL_SECONDS (60).")
@click.option("--http-port", type=click.IntRange(0, 65535), default=DEFAULT_HTTP_PORT,
              show_default=True, help="Port for GET /healthz and GET /metrics; 0 turns HTTP off.")
@click.option("--http-host", default="127.0.0.1", show_default=True,
              help="Address to serve on (loopback by default).")
@click.option("--worker-ticks", type=click.IntRange(min=0), default=DEFAULT_WORKER_TICKS,
              show_default=True, metavar="N",
              help="Ticks run by one worker process (dbt parsed once) before it is replaced; "
                   "0 runs each tick as its own `tslake tick` process.")
def run(interval: float | None, http_port: int, http_host: str, worker_ticks: int) -> None:
    """Run the replication service: a tick every interval, with health and metrics.

    SIGTERM or SIGINT lets the tick in progress finish (or runs one final tick), then exits 0.
    """
    settings = _settings()
    service = ReplicationService(settings, interval_seconds=interval or settings.interval_seconds,
                                 http_host=http_host, http_port=http_port or None,
                                 worker_ticks=worker_ticks)
    try:
        code = service.run()
    except OSError as error:  # binding the port: name the address (the boundary says what to do)
        if error.filename is None:
            error.filename = f"{http_host}:{http_port}"
        raise
    sys.exit(code)


@cli.group()
def launchd() -> None:
    """Run tslake on a timer with launchd (macOS), or systemd units elsewhere."""


@launchd.command("install")
@click.option("--mode", type=click.Choice(["timer", "service"]), default="timer",
              show_default=True,
              help="timer: `tslake tick` every interval; service: `tslake run`, kept alive.")
@click.option("--user", default=None, metavar="NAME",
              help=f"Service user the job runs as (default {DEFAULT_USER}).")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help=f"Data root for the job (default {DEFAULT_DATA_ROOT}).")
@click.option("--dry-run", is_flag=True, help="Print the plist instead of writing it.")
def launchd_install(mode: str, user: str | None, data_root: Path | None, dry_run: bool) -> None:
    """Write (and on macOS load) the launchd plist for this machine.

    The Postgres password is never written: the job reads it from
    <data root>/secrets/pgpass (PGPASSFILE).
    """
    settings = _settings()
    spec = spec_from_options(mode, user, data_root, settings.interval_seconds, DEFAULT_HTTP_PORT)
    for line in install(spec, dry_run=dry_run):
        click.echo(line)


@cli.command()
@DATASET_OPTION
@click.option("--date", "day", type=DATE, default=None,
              help="Only this UTC date's partition; default: every date.")
def inspect(dataset: str | None, day: str | None) -> None:
    """Print the lake as JSON: paths, watermarks, per-date files, bytes and rows."""
    settings = _settings()
    names = _covered(settings, dataset) if dataset is not None else None
    report = inspect_lake(settings, date=day)
    if names is not None:
        report["datasets"] = {name: stats for name, stats in report["datasets"].items()
                              if name in names}
    _print_json(report)
    for stats in report["datasets"].values():  # exit 0: the report itself is complete
        if stats.get("cold_unreachable"):
            click.echo(f"warning: {stats['cold_unreachable']['reason']}", err=True)


# --- tslake status (issue 14) -------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON instead.")
def status(as_json: bool) -> None:
    """Is the lake fresh? Per dataset the watermark, lag, days, files and rows, the last
    tick the service recorded, and the current problems in words; no service needed.

    Exit 0 when fresh, 4 when degraded (the last tick failed), 5 when stale (a watermark
    older than 2 x interval + lag + 60 s, or nothing committed): a health check for cron,
    launchd and humans.
    """
    report = lake_status(_settings())
    if as_json:
        _print_json(report.to_json())
    else:
        click.echo(render_status_table(report))
    sys.exit(report.exit_code)
# --- end tslake status ----------------------------------------------------------------------


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write the SQL to this file instead of stdout.")
@click.option("--no-fresh", is_flag=True,
              help="Leave out the *_fresh views (which need Postgres attached as `pg`).")
@click.option("--no-attach", is_flag=True,
              help="Do not install the postgres extension nor attach Postgres as `pg` in the "
                   "file: the session does it itself.")
def views(out: Path | None, no_fresh: bool, no_attach: bool) -> None:
    """Print DuckDB views over exactly the committed files: `metrics` (newest version per
    key, hot and cold) and `metrics_fresh` (plus Postgres rows past the watermark).

    The same `metrics` view is kept, per commit, in <hot>/_state/lake.duckdb.
    """
    settings = _settings()
    _covered(settings, None)
    document = load_manifest(settings.manifest_path)
    if document is None:
        raise ConfigError(f"no lake at {settings.hot_path}: run `tslake tick` first")
    sql = render_views_sql(settings, document, fresh=not no_fresh, attach=not no_attach)
    if out is None:
        click.echo(sql)
    else:
        out.write_text(sql)
        click.echo(f"wrote {out}", err=True)


@cli.command()
@click.option("--sensor", "--sensor-ids", "sensors", required=True, metavar="ID[,ID...]",
              help="Series id(s) of the dataset's series column (sensor_id for metrics/v1, "
                   "series_id for forecast_points/v1), comma-separated.")
@click.option("--start", type=TIME, required=True,
              help="Start, inclusive (RFC 3339 or YYYY-MM-DD).")
@click.option("--end", type=TIME, required=True, help="End, exclusive (RFC 3339 or YYYY-MM-DD).")
@click.option("--bucket", default=None, metavar="DURATION",
              help="Downsample into buckets like 30s, 5m, 1h, 1d.")
@click.option("--agg", default=None, type=click.Choice(sorted(AGGREGATES)),
              help="Aggregate per bucket (needs --bucket; default avg).")
@click.option("--format", "output_format", default=None,
              type=click.Choice(OUTPUT_FORMATS),
              help="Output format; default: --out's extension (.csv, .json, .parquet), else "
                   "table.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write to this file (required for parquet).")
@click.option("--dataset", default="metrics/v1", show_default=True, help="Dataset to read.")
def query(sensors: str, start: datetime, end: datetime, bucket: str | None, agg: str | None,
          output_format: str | None, out: Path | None, dataset: str) -> None:
    """A (downsampled) series from the lake; only the files of those dates and shards are
    opened."""
    if agg is not None and bucket is None:
        raise ConfigError(f"--agg {agg} needs --bucket (e.g. --bucket 5m): without it the "
                          "rows are printed as they are")
    output_format = output_format_for(output_format, out)
    if output_format == "parquet" and out is None:
        raise ConfigError("--format parquet needs --out FILE.parquet")
    settings = _settings()
    _covered(settings, dataset)
    relation = series(settings, dataset=dataset, sensors=sensors.split(","),
                      start=start, end=end, bucket=bucket, agg=agg or "avg")
    try:
        write_result(relation, output_format, out)
        sys.stdout.flush()
    except BrokenPipeError:  # `tslake query ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@cli.command()
@DATASET_OPTION
def retention(dataset: str | None) -> None:
    """Move partitions older than TSLAKE_HOT_RETENTION_DAYS to TSLAKE_COLD_PATH (delete them
    when no cold path is set). Every `dbt run` / `tslake tick` does this too.

    Prints what moved as JSON.
    """
    with progress.condensed("retention") as condenser:
        report = run_retention(_settings(), dataset)
    condenser.done(f"{len(report)} dataset(s) checked")
    _print_json(report)


@cli.command()
@click.option("--start", type=TIME, required=True,
              help="First day to re-export: a date (2026-01-22) or RFC 3339 time, UTC.")
@click.option("--end", type=TIME, required=True,
              help="End of the window, exclusive: --start D --end D+1 repairs day D.")
@DATASET_OPTION
def repair(start: datetime, end: datetime, dataset: str | None) -> None:
    """Re-export the UTC days of [start, end) from Postgres, each day's files replaced in one
    atomic commit, so rows deleted or rewritten in Postgres reach the lake.

    Prints the repaired days as JSON.
    """
    lo, hi = parse_window(start, end)
    with progress.condensed("repair") as condenser:
        report = run_repair(_settings(), lo, hi, dataset)
    condenser.done(f"days of [{lo}, {hi}) re-exported")
    _print_json(report)


@cli.command()
@click.option("--start", type=TIME, default=None,
              help="Window start (RFC 3339 or a date = 00:00 UTC); before the lake's horizon "
                   "it is clipped with a warning.")
@click.option("--end", type=TIME, default=None,
              help="Window end, exclusive; past the watermark it is clipped with a warning.")
@click.option("--all", "whole", is_flag=True,
              help="The whole lake horizon, hot and cold, per day and shard.")
@click.option("--sample", type=WholeNumber(min=1, max=MAX_SAMPLE), metavar="N", default=None,
              help="Compare N series (sensors) drawn at random from those in the window.")
@click.option("--seed", type=WholeNumber(min=0), metavar="S", default=None,
              help="Seed for --sample, to repeat a draw (the report names the one used).")
@click.option("--sensor-ids", "--sensor", "sensor_ids", metavar="A,B", multiple=True,
              help="Compare only these series ids (sensors for metrics/v1; comma-separated; "
                   "repeatable).")
@click.option("--report", "--out", "report_path", metavar="FILE.md",
              type=click.Path(path_type=Path),
              default=None, help="Write a Markdown report there and FILE.json beside it.")
@click.option("--fail-on-mismatch", is_flag=True,
              help="Exit 3 when anything differs (default: report it and exit 0).")
@click.option("--dataset", default="metrics/v1", show_default=True, metavar="NAME",
              help="The dataset to compare.")
def parity(start: datetime | None, end: datetime | None, whole: bool, sample: int | None,
           seed: int | None, sensor_ids: tuple[str, ...], report_path: Path | None,
           fail_on_mismatch: bool, dataset: str) -> None:
    """Compare Postgres and the lake exactly: per group the row count, min/max time and a
    checksum of the rows (the key but the series, then the values) of the newest version
    per key, Postgres rows capped at the watermark. Differences are drilled down to
    series, hours and rows.

    Prints the comparison as JSON; --report writes it as Markdown and JSON.
    """
    if whole == (start is not None or end is not None) or (not whole and None in (start, end)):
        raise ConfigError("give either --all, or both --start and --end")
    if sample is not None and sensor_ids:
        raise ConfigError("--sample and --sensor-ids cannot be combined: choose one")
    lo, hi = parse_window(start, end) if start is not None and end is not None else (None, None)
    sensors = parse_sensor_ids(sensor_ids) if sensor_ids else None
    settings = _settings()
    _covered(settings, dataset)
    with progress.condensed("parity") as condenser:
        report = run_parity(settings, dataset, start=lo, end=hi, sensors=sensors,
                            sample=sample, seed=seed)
    condenser.done(f"{report['verdict']}: {report['totals']['differing_groups']} of "
                   f"{report['totals']['groups']} groups differ")
    for warning in report["warnings"]:
        log.warning("%s", warning)
    parity_report.remember(settings, report)
    output = parity_report.summary(report)
    if report_path is not None:
        written = parity_report.write_report(report, report_path)
        output["report"] = {"markdown": str(written[0]), "json": str(written[1])}
    _print_json(output)
    if fail_on_mismatch and report["verdict"] != "match":
        days = sorted({d["date"] for d in report["differences"]})
        raise ParityMismatchError(
            f"parity: {report['totals']['differing_groups']} group(s) of {dataset} differ"
            + (f" (days {', '.join(days[:5])}{' ...' if len(days) > 5 else ''})" if days else "")
            + f" and {len(report['missing_files'])} committed file(s) are missing: see the "
            f"report, then run `{parity_report.repair_hint(report)}`")


@cli.command()
@click.option("--restore", is_flag=True,
              help="Put back the newest kept manifest generation (in _state/manifests/) whose "
                   "files all exist with their recorded sizes.")
def doctor(restore: bool) -> None:
    """Check the lake against its manifest: committed files missing or of another size,
    files the manifest does not list, the cold tier's reachability, the lock's holder and
    a stale watermark. Prints the findings as JSON; exit 65 when a committed file is
    missing or wrong (readers would fail), else 0.
    """
    settings = _settings()
    if restore:
        _print_json(run_doctor_restore(settings))
        return
    report = diagnose(settings)
    _print_json(report)
    for warning in report["warnings"]:
        log.warning("%s", warning)
    if report["errors"]:
        raise ManifestError(report["errors"][0] + (f" (and {len(report['errors']) - 1} more "
                                                   "finding(s): see the JSON)"
                                                   if len(report["errors"]) > 1 else ""))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run a command; every failure becomes one line on stderr and a documented
    exit code (README, "Exit codes"): typed errors their own, an OS or DuckDB I/O error 74
    naming the path, anything unforeseen 70 with a pointer to `--debug`."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [arg for arg in args if arg != "--debug"] if debug else args
    logs.configure(secrets=known_passwords())  # the source's and a standby's primary's
    try:
        _run(args)
    except SystemExit:
        raise
    except BaseException as error:  # the error boundary: nothing below prints a traceback
        if debug:
            traceback.print_exc()
        failure = cli_boundary.classify(error)
        click.echo(f"tslake: error: {_redacted(failure.message)}", err=True)
        sys.exit(failure.exit_code)


def _run(args: list[str]) -> None:
    try:
        cli.main(args=args, prog_name="tslake", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except OptionError as error:  # its message names the option and the value already
        click.echo(f"tslake: error: {error.message}", err=True)
        sys.exit(ConfigError.exit_code)
    except click.UsageError as error:
        where = f"; see `{error.ctx.command_path} --help`" if error.ctx else ""
        click.echo(f"tslake: error: {error.format_message()}{where}", err=True)
        sys.exit(ConfigError.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(ConfigError.exit_code)
    except TslakeError as error:
        click.echo(f"tslake: error: {_redacted(str(error))}", err=True)
        sys.exit(error.exit_code)


def _redacted(text: str) -> str:
    return redact(text)


if __name__ == "__main__":
    main()
