"""The `tslake` command line. The only place that maps errors to exit codes."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from runner import __version__, progress
from runner.config import Settings
from runner.connection import SourceConninfo
from runner.dbt_runner import run_dbt
from runner.errors import ConfigError, TslakeError
from runner.inspect import inspect_lake
from runner.lock import lake_lock
from runner.manifest import load as load_manifest

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

    Rows are capped at inserted_at <= the watermark, so ticks continue where it ends. A
    killed backfill, run again with the same options, resumes after its committed days.
    Shows progress on stderr (a live line on a terminal); prints a JSON summary.
    """
    settings = _settings()
    display = progress.ProgressDisplay()
    with lake_lock(settings.lock_path, settings.lock_timeout_seconds, "tslake backfill"), \
            display, progress.listening(display):
        run_dbt(settings, ["run"], dataset=dataset,
                variables={"backfill_days": days, "replace_existing": replace_existing})
    document = load_manifest(settings.manifest_path) or {"datasets": {}}
    _print_json({name: {**{k: v for k, v in end.items() if k not in ("event", "dataset")},
                        "status": document["datasets"][name]["backfill"]["status"]}
                 for name, end in display.ends.items()})


@cli.command()
def inspect() -> None:
    """Print the lake as JSON: paths, watermarks, per-date files, bytes and rows."""
    _print_json(inspect_lake(_settings()))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run a command; a TslakeError becomes one line on stderr and its exit code."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S")
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
