"""The `tslake` command line. The only place that maps errors to exit codes."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from runner import __version__, logs
from runner.config import Settings
from runner.connection import SourceConninfo
from runner.dbt_runner import run_dbt
from runner.errors import ConfigError, TslakeError
from runner.inspect import inspect_lake
from runner.launchd import (
    DEFAULT_DATA_ROOT,
    DEFAULT_HTTP_PORT,
    DEFAULT_USER,
    install,
    spec_from_options,
)
from runner.lock import lake_lock
from runner.manifest import load as load_manifest
from runner.service import ReplicationService

log = logging.getLogger("tslake")

DATASET_OPTION = click.option("--dataset", metavar="NAME", default=None,
                              help="Only this dataset (e.g. metrics/v1); default: every dataset.")


def _settings() -> Settings:
    return Settings.from_env()


def _print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=True))


def _last_runs(settings: Settings, dataset: str | None) -> dict[str, Any]:
    document = load_manifest(settings.manifest_path) or {"datasets": {}}
    return {name: entry.get("last_run") for name, entry in document["datasets"].items()
            if dataset in (None, name)}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tslake")
def cli() -> None:
    """Keep a Parquet analysis lake in step with a Postgres time-series table.

    Settings come from the environment (TSLAKE_DATA_ROOT, TSLAKE_HOT_PATH, ...; libpq's PG*
    variables or TSLAKE_PG_DSN for Postgres). See README.md.
    """


@cli.command()
@DATASET_OPTION
def tick(dataset: str | None) -> None:
    """Export rows inserted since the watermark and advance it (what `dbt run` does).

    Prints the tick's summary as JSON.
    """
    settings = _settings()
    with lake_lock(settings.lock_path, settings.lock_timeout_seconds, "tslake tick"):
        run_dbt(settings, ["run"], dataset=dataset)
    _print_json(_last_runs(settings, dataset))


@cli.command()
@click.option("--days", type=click.IntRange(min=1), required=True,
              help="Backfill whole UTC days from 00:00 UTC N days ago up to now.")
@click.option("--replace-existing", is_flag=True,
              help="Rewrite days already in the lake (atomically); default: skip them.")
@DATASET_OPTION
def backfill(days: int, replace_existing: bool, dataset: str | None) -> None:
    """Backfill the last N days, one committed UTC day at a time.

    Rows are capped at inserted_at <= the watermark, so ticks continue where it ends.
    """
    settings = _settings()
    with lake_lock(settings.lock_path, settings.lock_timeout_seconds, "tslake backfill"):
        run_dbt(settings, ["run"], dataset=dataset,
                variables={"backfill_days": days, "replace_existing": replace_existing})
    _print_json(_last_runs(settings, dataset))


@cli.command()
@click.option("--interval", type=click.FloatRange(min=0.1), default=None, metavar="SECONDS",
              help="Seconds between ticks; default TSLAKE_REPLICATION_INTERVAL_SECONDS (60).")
@click.option("--http-port", type=click.IntRange(0, 65535), default=DEFAULT_HTTP_PORT,
              show_default=True, help="Port for GET /healthz and GET /metrics; 0 turns HTTP off.")
@click.option("--http-host", default="127.0.0.1", show_default=True,
              help="Address to serve on (loopback by default).")
def run(interval: float | None, http_port: int, http_host: str) -> None:
    """Run the replication service: a tick every interval, with health and metrics.

    SIGTERM or SIGINT lets the tick in progress finish (or runs one final tick), then exits 0.
    """
    settings = _settings()
    service = ReplicationService(settings, interval_seconds=interval or settings.interval_seconds,
                                 http_host=http_host, http_port=http_port or None)
    sys.exit(service.run())


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
def inspect() -> None:
    """Print the lake as JSON: paths, watermarks, per-date files, bytes and rows."""
    _print_json(inspect_lake(_settings()))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run a command; a TslakeError becomes one line on stderr and its exit code."""
    try:
        secret = SourceConninfo().password
    except TslakeError:
        secret = None
    logs.configure(secrets=(secret,) if secret else ())
    try:
        cli.main(args=argv, prog_name="tslake", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(ConfigError.exit_code)
    except TslakeError as error:
        click.echo(f"tslake: error: {_redacted(str(error))}", err=True)
        sys.exit(error.exit_code)


def _redacted(text: str) -> str:
    try:
        return SourceConninfo().redact(text)
    except TslakeError:
        return text


if __name__ == "__main__":
    main()
