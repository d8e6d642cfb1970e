"""`GET /` of `tslake run`, looked at in a real headless Chromium (Debian's `chromium`,
installed by `make test` from .ci/system-packages): a picture that is not blank, with the
lag chart drawn, no console error, no request to any address but the service's own, the
datasets and their watermark on the page; and tslake_compactions_total counting the
compactions the ticks ran."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_service import Writer, get, health, service, wait_for  # noqa: F401 (a fixture)

from conftest import Lake, SourceDb
from runner.dev import synthetic
from runner.service import charts

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium")


def look(url: str, out: Path, *, height: int = 2400) -> dict[str, Any]:
    """Load `url` in headless Chromium; its screenshot, console messages and the URLs the
    page itself requested (the browser's own background requests have no initiator and go
    to a dead proxy on loopback: nothing leaves this machine)."""
    assert CHROMIUM, "chromium is not installed: `make test` installs it (.ci/system-packages)"
    netlog, shot = out / "netlog.json", out / "page.png"
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size=1280,{height}", f"--user-data-dir={out / 'profile'}",
         f"--screenshot={shot}", "--virtual-time-budget=3000", "--enable-logging=stderr",
         "--v=0", f"--log-net-log={netlog}", "--no-first-run", "--disable-extensions",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--no-default-browser-check",
         "--proxy-server=http://127.0.0.1:9",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", url],
        capture_output=True, text=True, timeout=120)
    assert shot.exists(), result.stderr[-3000:]
    log = json.loads(netlog.read_text())
    kinds = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    requested = [event["params"]["url"] for event in log["events"]
                 if kinds.get(event["type"]) == "URL_REQUEST_START_JOB"
                 and event.get("params", {}).get("initiator", "not an origin") != "not an origin"]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return {"screenshot": shot, "requested": requested, "console": console}


def pixels(path: Path) -> tuple[int, int]:
    """(distinct colours, pixels of the charts' line colour) of a PNG."""
    from PIL import Image
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20) or []
    line = tuple(int(charts.LINE_COLOR[i:i + 2], 16) for i in (1, 3, 5))
    return len(colours), sum(count for count, colour in colours if colour == line)


def test_the_harness_sees_console_errors_and_outside_requests(tmp_path: Path):
    """The checks below can fail: a page with both faults is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><h1>bad</h1><script>console.error("boom")</script>'
                   '<img src="http://assets.example.invalid/logo.png"></body></html>')
    seen = look(bad.as_uri(), tmp_path, height=400)
    assert any('"boom"' in line for line in seen["console"])
    assert "http://assets.example.invalid/logo.png" in seen["requested"]


def test_status_page_in_a_real_browser(lake: Lake, source_db: SourceDb, service: Any,  # noqa: F811
                                       tmp_path: Path):
    with source_db.connect() as conn:
        synthetic.fill_uniform(conn, sensors=6, days=3, cadence_seconds=600)
    lake.run("tslake", "backfill", "--days", "3")
    with Writer(source_db):
        # Every tick compacts the shard-day it added a file to (more than one file).
        process, port = service(interval=1, TSLAKE_COMPACT_MIN_FILES="1")
        wait_for(lambda: health(port)["ticks"] >= 3, 240, "three ticks")
        wait_for(lambda: lake.dataset().get("last_compaction"), 60, "a compaction by a tick")
        wait_for(lambda: "tslake_compactions_total " in (m := get(port, "/metrics")[1])
                 and _counter(m, "tslake_compactions_total") > 0, 30, "the counter to move")
        status, html = get(port, "/")
        seen = look(f"http://127.0.0.1:{port}/", tmp_path)
        _, metrics = get(port, "/metrics")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0

    assert status == 200
    watermark_on_page = re.search(r'class="watermark">([^<]+)<', html)
    assert watermark_on_page and watermark_on_page.group(1).startswith(
        lake.dataset()["computed_through_ts"][:10])
    assert 'data-dataset="metrics/v1"' in html and "Last ticks" in html
    assert 'http-equiv="refresh"' in html
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)  # no outside asset
    polyline = re.search(r'<polyline class="series"[^>]* points="([^"]+)"', html)
    assert polyline and len(polyline.group(1).split()) >= 2  # a lag line with a point a tick
    assert html.count('class="cell"') >= 3 * 4  # the date x shard map: days x shards

    assert seen["console"] == []
    assert seen["requested"] == []  # the page asked for nothing: all of it came inline
    colours, line_pixels = pixels(seen["screenshot"])
    assert colours > 20  # not blank: text, badges, bars, cells
    assert line_pixels > 50  # the lag line is drawn, not only its frame

    # Counted from the manifest: at least the shard-days of the last compaction run.
    last = lake.dataset()["last_compaction"]
    assert _counter(metrics, "tslake_compactions_total") >= last["shard_days"] >= 1


def _counter(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0
