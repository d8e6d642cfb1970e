"""The edges an operator hits, black-box: each bad input or failing environment is one line
on stderr (never a traceback), a documented exit code (README, "Exit codes"), and a lake
left byte-identical. One lake for the module; every test puts back what it changes."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from conftest import Lake, SourceDb
from runner.dev import synthetic

DOCUMENTED_EXIT_CODES = {0, 1, 2, 3, 65, 69, 70, 74, 75, 130}
SENSOR = "greenhouse-1/air-temp-01"


@pytest.fixture(scope="module")
def edge_lake(pg_server: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
              ) -> Iterator[Lake]:
    name = f"tslake_edges_{os.getpid()}"
    admin = SourceDb(pg_server, "postgres")
    admin.execute(f'create database "{name}"')
    db = SourceDb(pg_server, name)
    with db.connect() as conn:
        synthetic.create_metrics_table(conn)
        synthetic.fill_history(conn, days=3, sensors=4, end=db.now())
    lake = Lake(tmp_path_factory.mktemp("edges") / "data", db)
    lake.run("tslake", "backfill", "--days", "3")
    yield lake
    admin.execute(f'drop database "{name}" with (force)')


def snapshot(lake: Lake) -> dict[str, bytes]:
    """Every file of the lake (hot tier, manifest, views, kept generations) by path."""
    root = lake.settings.hot_path
    return {path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file() and path.name != "lock"}


def refused(lake: Lake, *args: str, code: int, **env: str) -> str:
    """Run a command that must fail cleanly with `code`: its one stderr line."""
    result = lake.run(*args, check=False, env=env)
    assert result.returncode == code, (args, result.returncode, result.stderr[-3000:])
    assert code in DOCUMENTED_EXIT_CODES
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("tslake: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def a_day(lake: Lake) -> str:
    return sorted(lake.dataset()["partitions"])[-1]


# --- 1. bounds -------------------------------------------------------------------------

@pytest.mark.parametrize("days", ["100000000", "99999999999999999999", "0"])
def test_backfill_days_out_of_bounds_is_exit_2_fast_and_small(edge_lake: Lake, days: str):
    before = snapshot(edge_lake)
    started = time.monotonic()
    line = refused(edge_lake, "tslake", "backfill", "--days", days, code=2)
    assert time.monotonic() - started < 20
    # every child so far (this test's included) stayed far below the 23.8 GB of the issue
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 1_500_000  # KiB
    assert "--days" in line and "1 to 3650" in line
    assert snapshot(edge_lake) == before


def test_dbt_backfill_days_out_of_bounds_is_refused_before_anything_runs(edge_lake: Lake):
    before = snapshot(edge_lake)
    result = edge_lake.run("dbt", "run", "--vars", "{backfill_days: 100000000}", check=False)
    assert result.returncode != 0
    assert "backfill_days 100000000 is not a whole number from 1 to 3650" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert snapshot(edge_lake) == before


@pytest.mark.parametrize("args, named", [
    (["query", "--sensor", SENSOR, "--start", "2026-01-01", "--end", "2026-01-02",
      "--bucket", "32d"], "--bucket '32d' is longer than 31 days"),
    (["query", "--sensor", SENSOR, "--start", "2026-01-01", "--end", "2026-01-02",
      "--bucket", "0s"], "--bucket '0s' is not a duration"),
    (["parity", "--all", "--sample", "99999999999999999999"], "--sample"),
    (["parity", "--start", "1000-01-01", "--end", "9000-01-01"], "longer than 3700 days"),
])
def test_counts_and_durations_out_of_bounds_are_exit_2(edge_lake: Lake, args: list[str],
                                                       named: str):
    assert named in refused(edge_lake, "tslake", *args, code=2)


@pytest.mark.parametrize("variable", ["TSLAKE_BACKFILL_WORKERS", "TSLAKE_THREADS"])
def test_worker_counts_out_of_bounds_are_exit_2(edge_lake: Lake, variable: str):
    line = refused(edge_lake, "tslake", "inspect", code=2, **{variable: "100000"})
    assert f"{variable}='100000' is above the maximum 256" in line


# --- 2. the error boundary ---------------------------------------------------------------

def test_views_out_into_a_missing_directory_is_exit_74_naming_it(edge_lake: Lake,
                                                                 tmp_path: Path):
    target = tmp_path / "no-such-dir" / "views.sql"
    line = refused(edge_lake, "tslake", "views", "--out", str(target), code=74)
    assert str(target) in line and "No such file or directory" in line


def test_run_on_a_port_in_use_is_exit_74_naming_the_address(edge_lake: Lake):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = refused(edge_lake, "tslake", "run", "--http-port", str(port), code=74)
    assert f"127.0.0.1:{port}" in line and "Address already in use" in line
    assert "--http-port" in line


def test_a_missing_committed_file_in_query_is_exit_74_naming_it(edge_lake: Lake):
    day = a_day(edge_lake)
    files = [path for path in edge_lake.committed_files() if f"date={day}" in str(path)]
    moved = {path: path.read_bytes() for path in files}
    for path in files:
        path.unlink()
    try:
        line = refused(edge_lake, "tslake", "query", "--sensor", SENSOR, "--start", day,
                       "--end", (datetime.fromisoformat(day) + timedelta(days=1)).date()
                       .isoformat(), code=74)
        assert f"date={day}" in line
    finally:
        for path, data in moved.items():
            path.write_bytes(data)


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """The directory tree cannot be written: chmod for a user, the immutable flag for root
    (which permissions do not stop)."""
    if os.geteuid() == 0:
        assert shutil.which("chattr"), "chattr (e2fsprogs) is in .ci/system-packages"
        subprocess.run(["chattr", "-R", "+i", str(directory)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-R", "-i", str(directory)], check=True)
        return
    modes = {path: path.stat().st_mode for path in [directory, *directory.rglob("*")]
             if path.is_dir()}
    for path in modes:
        path.chmod(0o555)
    try:
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def test_a_read_only_lake_is_exit_74_and_unchanged(edge_lake: Lake):
    db = SourceDb({k: v for k, v in edge_lake.env.items() if k.startswith("PG")},
                  edge_lake.env["PGDATABASE"])
    db.execute("insert into metrics (sensor_id, ts, value, quality) "
               f"values ('{SENSOR}', now() - interval '1 minute', 1, 0)")
    before = snapshot(edge_lake)
    with read_only(edge_lake.settings.hot_path):
        for command in (["tick"], ["compact"], ["backfill", "--days", "1",
                                                "--replace-existing"]):
            line = refused(edge_lake, "tslake", *command, code=74)
            assert str(edge_lake.settings.hot_path) in line, line
    assert snapshot(edge_lake) == before
    edge_lake.run("tslake", "tick")  # writable again: the row arrives


def test_an_unforeseen_error_is_exit_70_one_line_and_debug_shows_the_traceback(
        edge_lake: Lake, tmp_path: Path):
    # A sitecustomize that breaks one library function: what an unforeseen bug looks like.
    (tmp_path / "sitecustomize.py").write_text(
        "import runner.readers.inspect as m\n"
        "def broken(*a, **k):\n    raise KeyError('boom')\n"
        "m.inspect_lake = broken\n"
        "import runner.cli\nrunner.cli.inspect_lake = broken\n")
    env = {"PYTHONPATH": str(tmp_path)}
    line = refused(edge_lake, "tslake", "inspect", code=70, **env)
    assert "internal error (KeyError: 'boom')" in line and "--debug" in line
    debug = edge_lake.run("tslake", "--debug", "inspect", check=False, env=env)
    assert debug.returncode == 70 and "Traceback" in debug.stderr


# --- 3. names that do not exist ----------------------------------------------------------

def test_unknown_sensor_ids_are_exit_2_naming_them(edge_lake: Lake):
    day = a_day(edge_lake)
    end = (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
    line = refused(edge_lake, "tslake", "parity", "--start", day, "--end", end,
                   "--sensor-ids", f"no-such-sensor,{SENSOR}", "--fail-on-mismatch", code=2)
    assert "'no-such-sensor'" in line
    line = refused(edge_lake, "tslake", "query", "--sensor", f"{SENSOR},no-such-sensor",
                   "--start", day, "--end", end, code=2)
    assert "'no-such-sensor'" in line and SENSOR not in line
    # a known sensor with no row in the window is not unknown: no rows, exit 0
    empty = edge_lake.run("tslake", "query", "--sensor", SENSOR, "--start", "2001-01-01",
                          "--end", "2001-01-02", "--format", "json")
    assert json.loads(empty.stdout or "[]") == []


# --- 7. manifest entries pointing outside the lake ---------------------------------------

@pytest.fixture
def outside(tmp_path: Path) -> Path:
    victim = tmp_path / "outside" / "precious.parquet"
    victim.parent.mkdir()
    victim.write_bytes(b"not the lake's: must be neither read nor deleted")
    return victim


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlinked file", "symlinked dir"])
def test_a_manifest_entry_leading_outside_the_lake_is_exit_65_and_touches_nothing(
        edge_lake: Lake, outside: Path, how: str):
    settings = edge_lake.settings
    original = settings.manifest_path.read_bytes()
    document = json.loads(original)
    entry = document["datasets"]["metrics/v1"]
    day = sorted(entry["partitions"])[0]
    record = entry["partitions"][day]["files"][0]
    root = settings.hot_path / "metrics/v1"
    made: list[Path] = []
    if how == "dotdot":
        record["path"] = os.path.relpath(outside, root)
    elif how == "absolute":
        record["path"] = str(outside)
    elif how == "symlinked file":
        link = (root / record["path"]).parent / "part-link.parquet"
        link.symlink_to(outside)
        made.append(link)
        record["path"] = link.relative_to(root).as_posix()
    else:
        link = root / "date=2001-01-01"
        link.symlink_to(outside.parent, target_is_directory=True)
        made.append(link)
        record["path"] = f"date=2001-01-01/{outside.name}"
    settings.manifest_path.write_text(json.dumps(document))
    try:
        # The model refuses `..` and absolute paths when the manifest is parsed, the same
        # for every command; a symlink is refused when the manifest is loaded, for each.
        commands: list[list[str]] = [["retention"], ["compact"]]
        if how.startswith("symlinked"):
            commands += [["query", "--sensor", SENSOR, "--start", day, "--end",
                          (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()],
                         ["parity", "--all"]]
        for command in commands:
            line = refused(edge_lake, "tslake", *command, code=65,
                           TSLAKE_HOT_RETENTION_DAYS="1")
            assert "outside" in line or "inside the dataset's root" in line, line
            assert outside.read_bytes().startswith(b"not the lake's"), command
    finally:
        for link in made:
            link.unlink()
        settings.manifest_path.write_bytes(original)
