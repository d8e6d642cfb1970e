"""A lake with partitions in the cold tier whose TSLAKE_COLD_PATH was dropped, or whose NAS is
not mounted: `parity`, `query`, `views` and `inspect` name exactly that (the setting, the
mount), never "missing" files with a repair to run; the lake is left as it was.

Real Postgres, real `dbt run` / `tslake` processes, a real cold directory."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from conftest import Lake, SourceDb
from runner.dev import synthetic
from runner.errors import ColdTierUnavailableError

pytestmark = pytest.mark.integration


def test_an_unset_or_unmounted_cold_path_is_named_never_reported_as_missing_data(
        lake: Lake, source_db: SourceDb, tmp_path: Path):
    nas = tmp_path / "nas"
    nas.mkdir()
    lake.configure(TSLAKE_COLD_PATH=str(nas), TSLAKE_HOT_RETENTION_DAYS="3")
    with source_db.connect() as conn:
        synthetic.fill_uniform(conn, sensors=4, days=6, cadence_seconds=3600)
    lake.run("dbt", "run", "--vars", "{backfill_days: 6}")
    partitions = lake.dataset()["partitions"]
    cold_day = min(partitions)
    assert partitions[cold_day]["location"] == "cold"
    next_day = (date.fromisoformat(cold_day) + timedelta(days=1)).isoformat()
    sensor = source_db.execute("select min(sensor_id) from metrics")[0][0]
    manifest_before = lake.settings.manifest_path.read_bytes()

    unmounted = tmp_path / "nas-away"
    cases = {"unset": ({"TSLAKE_COLD_PATH": ""}, "TSLAKE_COLD_PATH is not set"),
             "unmounted": ({"TSLAKE_COLD_PATH": str(nas)}, "is not a directory (not mounted?)")}
    for case, (env, says) in cases.items():
        if case == "unmounted":
            nas.rename(unmounted)  # the mount point is gone
        commands = {
            "parity": ["tslake", "parity", "--all", "--fail-on-mismatch"],
            "query": ["tslake", "query", "--sensor", sensor, "--start", cold_day,
                      "--end", next_day],
            "views": ["tslake", "views"],
        }
        for name, command in commands.items():
            result = lake.run(*command, check=False, env=env)
            assert result.returncode == ColdTierUnavailableError.exit_code == 69, \
                (case, name, result.stderr)
            line = result.stderr.strip()
            assert len(line.splitlines()) == 1 and "Traceback" not in line, (case, name, line)
            assert says in line and "metrics/v1" in line, (case, name, line)
            assert "missing" not in line.replace("nothing is missing", ""), (case, name, line)
            assert "tslake repair" not in line, (case, name, line)
        # inspect still prints its whole report (exit 0), naming the cold tier's problem.
        result = lake.run("tslake", "inspect", env=env)
        report = json.loads(result.stdout)["datasets"]["metrics/v1"]
        unreachable = report["cold_unreachable"]
        assert unreachable["first"] == cold_day and says in unreachable["reason"], case
        assert says in result.stderr and "repair" not in result.stderr.replace("no repair", "")
        # A hot date still answers.
        today = date.fromisoformat(lake.dataset()["computed_through_ts"][:10])
        lake.run("tslake", "query", "--sensor", sensor, "--start", today.isoformat(),
                 "--end", (today + timedelta(days=1)).isoformat(), env=env)
    assert lake.settings.manifest_path.read_bytes() == manifest_before
    assert not nas.exists()  # nothing recreated the unmounted mount point
