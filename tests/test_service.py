"""`tslake run` as a real process: ticks, /healthz, /metrics, Postgres going away and
coming back, SIGTERM; and the launchd/systemd units it installs."""

from __future__ import annotations

import json
import plistlib
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import BIN, Lake, SourceDb, source_rows
from runner.config import PROJECT_ROOT
from runner.dev import devdb, synthetic
from runner.service import launchd

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def health(port: int) -> dict[str, Any]:
    status, body = get(port, "/healthz")
    return {"http_status": status, **(json.loads(body) if body else {})}


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Writer:
    """Inserts one reading per second in a thread, like sensors would."""

    def __init__(self, db: SourceDb) -> None:
        self.db, self.stop, self.errors = db, threading.Event(), 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(1.0):
            try:
                self.db.execute("insert into metrics (sensor_id, ts, value) "
                                "values ('live', clock_timestamp(), random())")
            except Exception:
                self.errors += 1  # Postgres may be down on purpose

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


@pytest.fixture
def service(lake: Lake) -> Iterator[Any]:
    processes: list[subprocess.Popen[str]] = []

    def start(interval: float = 2, **env: str) -> tuple[subprocess.Popen[str], int]:
        port = free_port()
        process = subprocess.Popen(
            [str(BIN / "tslake"), "run", "--interval", str(interval), "--http-port", str(port)],
            cwd=PROJECT_ROOT, env={**lake.env, **env}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        processes.append(process)
        wait_for(lambda: get(port, "/healthz")[0] in (200, 503), 30, "the HTTP endpoint")
        return process, port

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_service_ticks_serves_health_and_metrics_and_stops_on_sigterm(
        lake: Lake, source_db: SourceDb, service: Any):
    with Writer(source_db):
        process, port = service(interval=2)
        first = wait_for(lambda: (h := health(port))["ticks"] >= 1 and h, 60, "a first tick")
        mark = first["watermarks"]["metrics/v1"]
        wait_for(lambda: health(port)["watermarks"]["metrics/v1"] > mark, 60,
                 "the watermark to advance")
        report = health(port)
        assert report["http_status"] == 200 and report["status"] == "ok"
        assert report["last_tick"]["result"] == "ok" and report["lag_seconds"] < 30
        assert 0 <= report["next_tick_in_seconds"] <= 2
        status, metrics = get(port, "/metrics")
        assert status == 200
        for name in ("tslake_ticks_total{result=\"ok\"}", "tslake_rows_exported_total",
                     "tslake_files_published_total", "tslake_tick_duration_seconds_bucket",
                     "tslake_lag_seconds", "tslake_partition_files{", "tslake_compactions_total"):
            assert name in metrics, name
        assert get(port, "/nope")[0] == 404
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert process.wait(timeout=60) == 0
        assert time.monotonic() - started < 20  # at most the tick in progress or one final tick
    _, stderr = process.communicate()
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert events and all("ts" in e and "msg" in e for e in events)  # JSON lines off a TTY
    assert any(e["msg"] == "service stopped" for e in events)
    watermark = lake.dataset()["computed_through_ts"]
    assert lake.rows(newest=True) == source_rows(source_db, "inserted_at <= %s", (watermark,))


def test_service_survives_postgres_going_away(tmp_path: Path, service: Any, lake: Lake):
    """Its own server, so stopping it disturbs no other test."""
    pgdata = tmp_path / "own-pg"
    env = devdb.start(pgdata, database="survivor")
    db = SourceDb(env, "survivor")
    with db.connect() as conn:
        synthetic.create_metrics_table(conn)
    with Writer(db) as writer:
        process, port = service(interval=1, **env)
        wait_for(lambda: health(port)["ticks"] >= 2, 60, "ticks against the own server")
        devdb.stop(pgdata)
        degraded = wait_for(lambda: (h := health(port))["consecutive_failures"] >= 2 and h, 60,
                            "failed ticks while Postgres is down")
        assert degraded["status"] in ("degraded", "stale")
        assert "cannot connect to Postgres" in degraded["last_tick"]["error"]
        assert isinstance(degraded["next_tick_in_seconds"], float)  # numeric in backoff
        held = lake.dataset()["computed_through_ts"]
        devdb.start(pgdata, database="survivor")
        wait_for(lambda: health(port)["status"] == "ok", 120, "recovery after the restart")
        assert process.poll() is None
        assert lake.dataset()["computed_through_ts"] > held
    assert writer.errors > 0  # the writer really saw Postgres down
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    _, stderr = process.communicate()
    events = [json.loads(line) for line in stderr.splitlines()]  # every line, errors too
    failed = [e for e in events if e["msg"].startswith("tick failed")]
    assert failed and not any(e["msg"].startswith("tslake: error") for e in events)
    watermark = lake.dataset()["computed_through_ts"]
    assert lake.rows(newest=True) == source_rows(db, "inserted_at <= %s", (watermark,))
    devdb.stop(pgdata)


def test_lag_stays_within_interval_plus_guard(lake: Lake, source_db: SourceDb, service: Any):
    interval, guard = 2, 2
    with Writer(source_db):
        process, port = service(interval=interval, TSLAKE_REPLICATION_LAG_SECONDS=str(guard))
        wait_for(lambda: health(port)["ticks"] >= 2, 60, "steady state")
        worst = 0.0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            worst = max(worst, health(port)["lag_seconds"])
            time.sleep(0.5)
    assert worst <= interval + guard + 10, worst
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


def spec(mode: str, root: Path, **env: str) -> launchd.JobSpec:
    return launchd.spec_from_options(mode, "_farmdashboard", root, 60, 9187, env=env)


@pytest.mark.parametrize("mode", ["timer", "service"])
def test_plists_parse_and_carry_interval_user_environment_and_throttling(tmp_path: Path,
                                                                         mode: str):
    job = plistlib.loads(launchd.render_plist(spec(
        mode, tmp_path, PGHOST="db.farm", PGPASSWORD="hunter2",
        TSLAKE_PG_DSN="host=db.farm user=tslake password=hunter2")))
    assert job["UserName"] == "_farmdashboard"
    assert job["EnvironmentVariables"]["TSLAKE_DATA_ROOT"] == str(tmp_path)
    assert job["EnvironmentVariables"]["PGHOST"] == "db.farm"
    assert job["EnvironmentVariables"]["PGPASSFILE"] == str(tmp_path / "secrets/pgpass")
    assert (job["Nice"], job["LowPriorityIO"], job["ProcessType"]) == (10, True, "Background")
    assert job["StandardErrorPath"].startswith(str(tmp_path / "logs"))
    assert "hunter2" not in plistlib.dumps(job).decode()
    if mode == "timer":
        assert job["StartInterval"] == 60 and job["ProgramArguments"][1:] == ["tick"]
    else:
        assert job["KeepAlive"] is True and job["ProgramArguments"][1] == "run"


def test_launchd_install_dry_run_prints_and_install_writes_units(lake: Lake, tmp_path: Path):
    dry = lake.run("tslake", "launchd", "install", "--dry-run", "--mode", "timer",
                   "--data-root", str(tmp_path))
    assert plistlib.loads(dry.stdout.encode())["Label"] == "com.tslake.tick"
    assert not (tmp_path / "launchd").exists()
    written = lake.run("tslake", "launchd", "install", "--data-root", str(tmp_path))
    assert "systemctl" in written.stdout
    assert "does not exist: create it" in written.stdout  # no _farmdashboard user here
    service_mode = lake.run("tslake", "launchd", "install", "--mode", "service", "--user", "root",
                            "--data-root", str(tmp_path / "svc")).stdout
    copied = re.search(r"sudo cp (.+?) /etc/systemd/system/", service_mode)
    assert copied and all(Path(unit).is_file() for unit in copied.group(1).split())
    assert "enable --now tslake.service" in service_mode and "warning" not in service_mode
    assert plistlib.loads((tmp_path / "launchd/com.tslake.tick.plist").read_bytes())
    timer = (tmp_path / "launchd/tslake-tick.timer").read_text()
    assert "OnUnitActiveSec=60" in timer


def test_committed_reference_units_match_the_renderer(tmp_path: Path):
    written = launchd.write_examples(tmp_path)
    for path in written:
        committed = PROJECT_ROOT / "launchd" / path.name
        assert committed.read_bytes() == path.read_bytes(), (
            f"launchd/{path.name} is stale: run .venv/bin/python -m runner.service.launchd")
