"""Run dbt in-process for the CLI: the same `dbt run` a user types, with tslake's lock held,
dbt's chatter routed to tslake's log, and failures turned into one-line typed errors."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from runner.config import PROJECT_ROOT, Settings
from runner.errors import PublishError, TslakeError, disk_full_message

log = logging.getLogger("tslake.dbt")

# dbt events worth an operator's line: our own `log(..., info=True)` messages, and errors.
_FORWARDED_EVENTS = {"JinjaLogInfo", "RunResultError", "RunResultFailure"}
_OPERATION_ERROR = "Encountered an error while running operation: "


class DbtRunError(TslakeError):
    """A dbt command failed; the message is the first line of dbt's own error."""


def dataset_selector(dataset: str | None) -> str:
    if dataset is None:
        return "config.materialized:lake_dataset"
    return f"config.meta.dataset:{dataset}"


def run_dbt(settings: Settings, command: list[str], *, variables: dict[str, Any] | None = None,
            dataset: str | None = None, macro_args: dict[str, Any] | None = None,
            manifest: Any = None) -> Any:
    """Invoke `dbt <command>` on the repository's project and raise DbtRunError on failure;
    returns dbt's result object (for `parse`, the parsed manifest).

    `macro_args` are the `--args` of `dbt run-operation <macro>`. `manifest` is a project
    dbt parsed before in this process (the service's worker): dbt then skips parsing."""
    from dbt.cli.main import dbtRunner  # imported here: dbt's import costs about a second

    os.environ.setdefault("DO_NOT_TRACK", "1")
    work = settings.tmp_path / "dbt"
    _seed_partial_parse(work / "target")
    args = [*command, "--project-dir", str(PROJECT_ROOT), "--profiles-dir", str(PROJECT_ROOT),
            "--target-path", str(work / "target"), "--log-path", str(work / "logs"),
            "--log-level", "none", "--log-level-file", "debug", "--no-use-colors"]
    if command[0] in ("run", "test", "build"):
        args += ["--select", dataset_selector(dataset)]
    if variables:
        args += ["--vars", yaml.safe_dump(variables, default_flow_style=True).strip()]
        if manifest is None and command[0] == "run":
            # Changed --vars make dbt parse the whole project again (~5 s, and the next tick
            # once more): parse without them, partially as a tick does, and run that
            # project; the vars apply when the models compile, at run time.
            manifest = run_dbt(settings, ["parse", "--no-write-json"])
    if macro_args:
        args += ["--args", yaml.safe_dump(macro_args, default_flow_style=True).strip()]

    operation_errors: list[str] = []

    def forward(event: Any) -> None:
        if event.info.name in _FORWARDED_EVENTS:
            log.info("%s", event.info.msg)
        elif event.info.name == "RunningOperationCaughtError":  # run-operation's only trace
            operation_errors.append(str(event.info.msg).removeprefix(_OPERATION_ERROR))

    # dbt's console output is off (its log file keeps everything): tslake's stdout is for
    # JSON and its stderr for one line per event, the forwarded ones above.
    from runner.dbt_bridge import plugin as dbt_plugin

    dbt_plugin.last_error = None
    result = dbtRunner(manifest=manifest, callbacks=[forward]).invoke(args)
    if result.success:
        _share_partial_parse(work / "target")
        return result.result
    # run-operation swallows the plugin's exception; the plugin keeps the typed error.
    cause = _tslake_cause(result.exception) or dbt_plugin.last_error
    if cause is not None:
        raise cause
    message = _one_line(operation_errors[0]) if operation_errors else _first_error(result)
    disk_full = disk_full_message(f"dbt {command[0]}", message)
    if disk_full is not None:
        raise PublishError(disk_full)
    raise DbtRunError(f"dbt {command[0]} failed: {message}")


# dbt's partial-parse cache, shared by every lake of this checkout: a new lake (a fresh
# backfill) then skips dbt's full parse of the project, ~5 CPU-s. dbt checks the cache
# against the project's files, vars and profile itself and parses again when it is stale.
_PARSE_CACHE = "partial_parse.msgpack"
SHARED_PARSE_CACHE = PROJECT_ROOT / "target" / _PARSE_CACHE


def _seed_partial_parse(target: Path) -> None:
    if (target / _PARSE_CACHE).exists() or not SHARED_PARSE_CACHE.exists():
        return
    with contextlib.suppress(OSError):  # only a cache: dbt parses in full without it
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHARED_PARSE_CACHE, target / _PARSE_CACHE)


def _share_partial_parse(target: Path) -> None:
    cache = target / _PARSE_CACHE
    with contextlib.suppress(OSError):
        shared = SHARED_PARSE_CACHE.stat().st_mtime if SHARED_PARSE_CACHE.exists() else 0.0
        if shared >= cache.stat().st_mtime:
            return
        SHARED_PARSE_CACHE.parent.mkdir(parents=True, exist_ok=True)
        staged = SHARED_PARSE_CACHE.with_name(f"{_PARSE_CACHE}.{os.getpid()}.tmp")
        shutil.copyfile(cache, staged)
        os.replace(staged, SHARED_PARSE_CACHE)  # readers never see a torn copy


def _tslake_cause(error: BaseException | None) -> TslakeError | None:
    """The typed error behind a dbt failure (e.g. SourceError from the plugin), if any."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, TslakeError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _first_error(result: Any) -> str:
    if result.exception is not None:
        return _one_line(str(result.exception))
    for node in getattr(result.result, "results", None) or []:
        if str(node.status) in ("error", "fail"):
            return _one_line(node.message or f"{node.unique_id} failed")
    return "see the log under TSLAKE_TMP_PATH/dbt/logs"


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # dbt prefixes runtime errors with a header line; the cause is the line after it.
    headers = ("Runtime Error", "Compilation Error", "Database Error")
    meaningful = [line for line in lines if not line.startswith(headers)]
    return (meaningful or lines or ["unknown error"])[0]
