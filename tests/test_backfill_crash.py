"""A backfill SIGKILLed at an exact step or at random moments, then run again, resumes after
the days it committed and ends in exact parity with Postgres."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time

import pytest
from test_backfill import exact, expected_window

from conftest import BIN, Lake, SourceDb, source_rows
from runner.config import PROJECT_ROOT
from runner.core.manifest import parse_rfc3339
from runner.dev import synthetic

pytestmark = pytest.mark.integration


def days_by_run(lake: Lake) -> dict[str, set[str]]:
    """run_id -> the dates whose committed files it wrote."""
    runs: dict[str, set[str]] = {}
    for day, partition in lake.dataset()["partitions"].items():
        for file in partition["files"]:
            runs.setdefault(file["run_id"], set()).add(day)
    return runs


def test_killed_backfill_resumes_without_redoing_committed_days(lake: Lake, source_db: SourceDb):
    with source_db.connect() as conn:
        synthetic.fill_history(conn, days=6, sensors=8, end=source_db.now())
    killed = lake.run("dbt", "run", "--vars", "{backfill_days: 4, replace_existing: true}",
                      check=False, TSLAKE_FAILPOINT="after_manifest_replace#2")
    assert killed.returncode == -signal.SIGKILL
    record = lake.dataset()["backfill"]
    assert record["status"] == "running" and len(record["committed_dates"]) == 2
    (first_run,) = record["run_ids"]
    assert days_by_run(lake) == {first_run: set(record["committed_dates"])}

    lake.run("tslake", "tick")  # a tick may run in between: same lock, same watermark
    result = lake.run("tslake", "backfill", "--days", "4", "--replace-existing")

    summary = json.loads(result.stdout)["metrics/v1"]
    record = lake.dataset()["backfill"]
    assert summary["resumed"] and summary["days_done_before"] == 2
    assert record["status"] == "complete" and record["run_ids"] == [first_run, summary["run_id"]]
    assert len(record["committed_dates"]) == 5
    runs = days_by_run(lake)
    assert runs[first_run] == set(record["committed_dates"][:2])  # not done again
    assert runs[summary["run_id"]] == set(record["committed_dates"][2:])
    assert lake.files_on_disk() == lake.committed_files()
    assert exact(lake.rows()) == exact(expected_window(source_db, lake, 4))


def test_other_options_start_a_new_backfill_instead_of_resuming(lake: Lake, source_db: SourceDb):
    with source_db.connect() as conn:
        synthetic.fill_history(conn, days=4, sensors=4, end=source_db.now())
    lake.run("dbt", "run", "--vars", "{backfill_days: 3}", check=False,
             TSLAKE_FAILPOINT="after_manifest_replace#1")
    (first_run,) = lake.dataset()["backfill"]["run_ids"]
    summary = json.loads(lake.run("tslake", "backfill", "--days", "2").stdout)["metrics/v1"]
    record = lake.dataset()["backfill"]
    assert not summary["resumed"] and record["run_ids"] == [summary["run_id"]]
    assert record["days"] == 2 and record["status"] == "complete"
    assert first_run in days_by_run(lake)  # its committed day stays: it was in the lake


def test_backfill_killed_at_random_moments_ends_in_exact_parity(lake: Lake, source_db: SourceDb):
    rng = random.Random(20261122)
    with source_db.connect() as conn:
        # Many small days: the backfill spends seconds committing day after day.
        synthetic.fill_uniform(conn, sensors=20, days=60, cadence_seconds=900,
                               end=source_db.now())
        synthetic.insert_awkward_rows(conn)
    command = [str(BIN / "tslake"), "backfill", "--days", "60", "--replace-existing"]
    kills = 0
    for _ in range(6):
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=lake.env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 6.0))  # tslake starts in ~2.5 s; the backfill takes more
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        if lake.settings.manifest_path.exists() and lake.dataset()["partitions"]:
            assert_committed_days_are_complete(lake, source_db)
    lake.run("tslake", *command[1:])
    assert kills >= 3, "the kills must land while the backfill runs"
    assert lake.dataset()["backfill"]["status"] == "complete"
    assert lake.files_on_disk() == lake.committed_files()
    assert exact(lake.rows()) == exact(expected_window(source_db, lake, 60))


def assert_committed_days_are_complete(lake: Lake, db: SourceDb) -> None:
    """Right after a kill: the days the manifest lists hold exactly those days' source rows
    up to the watermark, whatever debris is on disk."""
    watermark = parse_rfc3339(lake.dataset()["computed_through_ts"])
    days = sorted(lake.dataset()["partitions"])
    expected = source_rows(db, "(ts at time zone 'UTC')::date::text = any(%s) and "
                           "inserted_at <= %s", (days, watermark))
    assert exact(lake.rows()) == exact(expected)
