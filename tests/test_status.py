"""`tslake status` (table, --json, exit 0 fresh / 4 degraded / 5 stale), `inspect --date`,
the tick history it reads, and the service parts behind the page: child output relayed as
JSON, a numeric next_tick_in_seconds, compactions counted from the manifest."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import BIN, Lake, SourceDb
from runner.config import Settings
from runner.core import manifest
from runner.dev import synthetic
from runner.readers.status import lake_status
from runner.service import history as tick_history
from runner.service import logs
from runner.service.health import ServiceHealth, ServiceMetrics


def failed_tick(error: str) -> tick_history.TickRecord:
    return tick_history.TickRecord(started_at=manifest.rfc3339(manifest.utc_now()),
                                   duration_seconds=1.5, result="error", error=error)


@pytest.mark.integration
def test_status_table_json_exit_codes_inspect_date_and_views(lake: Lake, source_db: SourceDb,
                                                             tmp_path: Path):
    empty = lake.run("tslake", "status", check=False)
    assert empty.returncode == 5 and "no lake at" in empty.stdout

    with source_db.connect() as conn:
        synthetic.fill_uniform(conn, sensors=4, days=2, cadence_seconds=900)
    lake.run("tslake", "backfill", "--days", "2")
    watermark = lake.dataset()["computed_through_ts"]

    fresh = lake.run("tslake", "status")
    assert fresh.stdout.startswith("status: ok")
    assert "metrics/v1" in fresh.stdout and watermark in fresh.stdout
    facts = json.loads(lake.run("tslake", "status", "--json").stdout)
    assert facts["status"] == "ok" and facts["problems"] == []
    dataset = facts["datasets"]["metrics/v1"]
    assert dataset["watermark"] == watermark and dataset["rows"] == 4 * 2 * 96
    assert dataset["hot_days"] == len(lake.dataset()["partitions"])

    # A failed tick recorded by the service (the file survives its restarts): degraded.
    history = tick_history.load(lake.settings)
    history.append(failed_tick("tslake: error: cannot connect to Postgres at db:5432"))
    tick_history.save(lake.settings, history)
    degraded = lake.run("tslake", "status", check=False)
    assert degraded.returncode == 4 and "status: degraded" in degraded.stdout
    assert "the last tick failed (1 in a row" in degraded.stdout
    assert "cannot connect to Postgres" in degraded.stdout

    # An hour on, the same lake is stale, and says by how much.
    later = lake_status(lake.settings, now=manifest.utc_now() + timedelta(hours=1))
    assert later.status == "stale" and later.exit_code == 5
    assert any("metrics/v1: stale: the watermark" in p and "min old" in p
               for p in later.problems)

    days = sorted(lake.dataset()["partitions"])
    inspected = json.loads(lake.run("tslake", "inspect", "--date", days[0]).stdout)
    assert list(inspected["datasets"]["metrics/v1"]["partitions"]) == [days[0]]
    bad = lake.run("tslake", "inspect", "--date", "2026-02-30", check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr

    # The views file runs as is in a brand-new DuckDB with an empty extension directory:
    # it installs the extension from the wheel and attaches Postgres from PG* variables.
    views = tmp_path / "views.sql"
    lake.run("tslake", "views", "--out", str(views))
    fresh_shell = ("import duckdb, sys; conn = duckdb.connect(config={'extension_directory': "
                   "sys.argv[2]}); conn.execute(open(sys.argv[1]).read()); "
                   "print(conn.execute('select count(*) from metrics_fresh').fetchone()[0])")
    (tmp_path / "no-extensions").mkdir()
    shell = subprocess.run([sys.executable, "-c", fresh_shell, str(views),
                            str(tmp_path / "no-extensions")], env=lake.env,
                           capture_output=True, text=True, timeout=120)
    assert shell.returncode == 0, shell.stderr
    assert int(shell.stdout.split()[-1]) == len(source_db.execute("select 1 from metrics"))
    bare = lake.run("tslake", "views", "--no-attach").stdout
    assert "ATTACH IF NOT EXISTS" not in bare and "INSTALL" not in bare

    # query: buckets start at --start, a closed pipe is no error.
    start = f"{days[-1]}T06:30:00Z"
    buckets = json.loads(lake.run("tslake", "query", "--sensor-ids", "s0000", "--start", start,
                                  "--end", f"{days[-1]}T23:00:00Z", "--bucket", "1d",
                                  "--format", "json").stdout)
    assert buckets and buckets[0]["bucket_start"].startswith(f"{days[-1]}T06:30:00")
    piped = subprocess.run(["bash", "-c", 'set -o pipefail; "$@" | head -n 1', "_",
                            str(BIN / "tslake"), "query", "--sensor", "s0000", "--start",
                            days[0], "--end", days[-1]], env=lake.env, capture_output=True,
                           text=True, timeout=120)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr

    # One summary line per command off a terminal, in the format asked for.
    compact = lake.run("tslake", "--log-format", "json", "compact", "--date", days[0])
    (line,) = compact.stderr.splitlines()
    assert json.loads(line)["msg"].startswith("compact: metrics/v1 0 shard-day(s)")
    text = lake.run("tslake", "--log-format", "text", "compact").stderr.splitlines()
    assert len(text) == 1 and " tslake: compact: " in text[0]


@pytest.mark.unit
def test_history_is_bounded_and_an_unreadable_file_is_empty(tmp_path: Path):
    settings = Settings.from_env({"TSLAKE_DATA_ROOT": str(tmp_path)})
    settings.state_dir.mkdir(parents=True)
    history = tick_history.TickHistory()
    for number in range(tick_history.MAX_TICKS + 5):
        history.append(failed_tick(f"error {number}"))
    tick_history.save(settings, history)
    loaded = tick_history.load(settings)
    assert len(loaded.ticks) == tick_history.MAX_TICKS
    assert loaded.ticks[-1].error == f"error {tick_history.MAX_TICKS + 4}"
    tick_history.history_path(settings).write_text("{not json")
    assert tick_history.load(settings).ticks == []


@pytest.mark.unit
def test_child_output_is_relayed_as_json_lines_and_its_error_line_dropped(
        monkeypatch: pytest.MonkeyPatch):
    captured = io.StringIO()
    monkeypatch.setattr("sys.stderr", captured)
    logs.configure(json_lines=True)
    child = "\n".join([
        json.dumps({"ts": "2026-01-01T00:00:00.000Z", "level": "info", "msg": "from child"}),
        "Traceback-free warning from a library",
        "",
        "tslake: error: cannot connect to Postgres at db:5432 (password=hunter2)",
    ])
    logs.relay_child_output(child)
    logging.getLogger().handlers[:] = []
    lines = captured.getvalue().splitlines()
    events = [json.loads(line) for line in lines]  # every line is JSON
    assert [e["msg"] for e in events] == ["from child", "Traceback-free warning from a library"]
    assert events[1]["logger"] == "tslake.tick" and events[1]["level"] == "warning"
    assert "hunter2" not in captured.getvalue()


@pytest.mark.unit
def test_next_tick_is_a_number_while_a_tick_runs(tmp_path: Path):
    settings = Settings.from_env({"TSLAKE_DATA_ROOT": str(tmp_path)})
    health = ServiceHealth(settings, 60, 180)
    health.next_tick_at = None  # as during a tick or before the first
    _, body = health.report()
    assert body["next_tick_in_seconds"] == 0.0


def _with_compaction(run_id: str, shard_days: int) -> manifest.Manifest:
    document = manifest.Manifest(version=2, generation=1,
                                 updated_at="2026-01-01T00:00:00Z")
    document.dataset("metrics/v1", 8).last_compaction = manifest.LastCompaction(
        run_id=run_id, finished_at="2026-01-01T00:00:00Z", shard_days=shard_days)
    return document


@pytest.mark.unit
def test_compactions_total_counts_new_shard_days_only(tmp_path: Path):
    settings = Settings.from_env({"TSLAKE_DATA_ROOT": str(tmp_path)})
    metrics = ServiceMetrics(ServiceHealth(settings, 60, 180))

    def total() -> float:
        value = metrics.registry.get_sample_value("tslake_compactions_total")
        return 0.0 if value is None else value

    metrics.refresh_partitions(_with_compaction("run-a", 3))  # before the service: not its
    assert total() == 0
    metrics.refresh_partitions(_with_compaction("run-a", 5))  # the same run went on
    assert total() == 2
    metrics.refresh_partitions(_with_compaction("run-b", 4))  # a new run
    assert total() == 6
    metrics.refresh_partitions(_with_compaction("run-b", 4))  # nothing new
    assert total() == 6


@pytest.mark.unit
def test_a_long_command_logs_one_summary_line_and_one_prefix(monkeypatch: pytest.MonkeyPatch):
    captured = io.StringIO()
    monkeypatch.setattr("sys.stderr", captured)
    logs.configure(json_lines=True)
    from runner.ops import progress
    with progress.condensed("compact", live=False) as condenser:
        for number in range(1450):
            logging.getLogger("tslake.compaction").info("tslake: shard-day %d compacted", number)
        logging.getLogger("tslake.compaction").warning("tslake: one thing to know")
    condenser.done("1450 shard-day(s)")
    logging.getLogger().handlers[:] = []
    events = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert [e["msg"] for e in events][0] == "one thing to know"  # one prefix: the logger's
    assert len(events) == 2 and events[1]["msg"].startswith("compact: 1450 shard-day(s) (")
    assert condenser.steps == 1450


@pytest.mark.unit
@pytest.mark.parametrize("args, words", [
    (["--agg", "max"], "--agg max needs --bucket"),
    (["--format", "csv", "--out", "series.parquet"], "--format csv contradicts --out"),
    (["--quiet", "--verbose"], "cannot be combined"),
])
def test_contradicting_options_are_one_line_errors(args: list[str], words: str):
    query = ["query", "--sensor", "a", "--start", "2026-01-01", "--end", "2026-01-02"]
    argv = args if args[0] == "--quiet" else [*query, *args]
    result = subprocess.run([str(BIN / "tslake"), *argv, *(query if args[0] == "--quiet" else [])],
                            capture_output=True, text=True, timeout=60,
                            env={"TSLAKE_DATA_ROOT": "/nonexistent", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1



@pytest.mark.unit
def test_tslake_alone_prints_its_help_on_stdout_and_exits_0():
    result = subprocess.run([str(BIN / "tslake")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("Usage: tslake") and "status" in result.stdout
