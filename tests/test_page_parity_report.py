"""The parity report people read: verdict and a date x shard heatmap first, only the
differing groups in full, and never a silent cut (a table past its limit says how many
more the JSON holds)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from runner.config import Settings
from runner.ops import parity_report
from runner.readers.status import lake_status
from runner.service import page

pytestmark = pytest.mark.unit


def report_of(days: int, shards: int, differing: set[tuple[str, int]]) -> dict[str, Any]:
    first = date(2026, 1, 1)
    groups = []
    for number in range(days):
        day = (first + timedelta(days=number)).isoformat()
        for shard in range(shards):
            bad = (day, shard) in differing
            groups.append({"date": day, "shard": shard, "source_rows": 10,
                           "lake_rows": 9 if bad else 10, "source_checksum": "a",
                           "lake_checksum": "b" if bad else "a",
                           "status": "differs" if bad else "match"})
    return {"dataset": "metrics/v1", "source_table": "public.metrics", "mode": "all",
            "generated_at": "2026-03-01T00:00:00Z", "seconds": 1.0,
            "window": {"from": "2026-01-01T00:00:00Z", "to": None}, "watermark": "w",
            "horizon_start": "h", "warnings": [], "sensors": None, "groups": groups,
            "differences": [], "missing_files": [], "truncated": False,
            "verdict": "mismatch" if differing else "match",
            "totals": {"groups": len(groups), "differing_groups": len(differing),
                       "source_rows": 10 * len(groups), "lake_rows": 10 * len(groups)}}


def test_a_big_report_leads_with_the_heatmap_and_lists_only_what_differs(tmp_path: Path):
    report = report_of(91, 8, {("2026-03-31", 5)})  # 728 groups, one differs
    markdown, beside = parity_report.write_report(report, tmp_path / "parity.md")
    text = markdown.read_text()
    picture = tmp_path / "parity.heatmap.svg"
    assert text.index("![date x shard parity") < text.index("## Day-shard groups that differ")
    assert "(parity.heatmap.svg)" in text
    assert "1 differ; the other 727 match" in text
    assert "| 2026-03-31 | 05 | 10 | 9 | differ | differs |" in text
    assert text.count("| match |") == 0  # matching groups are counted, not listed
    svg = picture.read_text()
    assert svg.count('class="cell"') == 728
    assert svg.count(f'fill="{parity_report.DIFFERS}"><title>2026-03-31 05:') == 1
    assert len(json.loads(beside.read_text())["groups"]) == 728  # the JSON has every group


def test_past_the_table_limit_the_report_says_how_many_more(tmp_path: Path):
    bad = {((date(2026, 1, 1) + timedelta(days=d)).isoformat(), s)
           for d in range(70) for s in range(8)}  # 560 differing groups
    markdown, _ = parity_report.write_report(report_of(70, 8, bad), tmp_path / "parity.md")
    text = markdown.read_text()
    assert text.count("| differs |") == parity_report.MAX_TABLE_ROWS
    assert f"... and {560 - parity_report.MAX_TABLE_ROWS} more differing groups" in text


def test_the_last_verdict_is_kept_for_the_status_page_and_tslake_status(tmp_path: Path):
    settings = Settings.from_env({"TSLAKE_DATA_ROOT": str(tmp_path)})
    settings.state_dir.mkdir(parents=True)
    parity_report.remember(settings, report_of(3, 2, {("2026-01-02", 1)}))
    report = lake_status(settings)
    (item,) = report.datasets
    assert item.last_parity is not None and item.last_parity["differing_days"] == ["2026-01-02"]
    assert report.to_json()["datasets"]["metrics/v1"]["last_parity"]["verdict"] == "mismatch"
    html = page.render(report)
    assert "last parity mismatch at 2026-03-01T00:00:00Z (all, 1 of 6 groups differ on " \
           "2026-01-02)" in html
