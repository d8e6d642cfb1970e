"""The parity report: Markdown for people (`--report FILE.md`), JSON beside it (`FILE.json`)
for programs, a date x shard heatmap (`FILE.heatmap.svg`, linked from the Markdown), and
the short summary `tslake parity` prints on stdout.

The Markdown leads with the verdict and the picture, then lists the groups that differ in
full; matching groups are counted, not listed (the JSON has every group). Nothing is cut
silently: past MAX_TABLE_ROWS a table ends with how many more rows the JSON holds."""

from __future__ import annotations

import contextlib
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from runner.config import Settings
from runner.core.durable import write_json_atomic
from runner.core.manifest import parse_rfc3339
from runner.service import charts

MAX_TABLE_ROWS = 500  # rows of a Markdown table; the rest are counted, and in the JSON
MATCH, DIFFERS, ABSENT = "#86efac", "#ef4444", "#f3f4f6"  # heatmap cells


def sensor_table(report: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Per-series totals over the window (when series ids were named or sampled); the id
    is `sensor_id` whatever the dataset's series column is called."""
    if report.get("sensors") is None:
        return None
    def blank(sensor: str) -> dict[str, Any]:
        return {"sensor_id": sensor, "source_rows": 0, "lake_rows": 0, "source_min_ts": None,
                "lake_min_ts": None, "source_max_ts": None, "lake_max_ts": None,
                "differing_days": [], "status": "match"}

    table = {sensor: blank(sensor) for sensor in report["sensors"]}
    for group in report.get("groups", []):
        row = table.setdefault(group["sensor_id"], blank(group["sensor_id"]))
        for side in ("source", "lake"):
            row[f"{side}_rows"] += group[f"{side}_rows"] or 0
            row[f"{side}_min_ts"] = _least(row[f"{side}_min_ts"], group[f"{side}_min_ts"])
            row[f"{side}_max_ts"] = _most(row[f"{side}_max_ts"], group[f"{side}_max_ts"])
        if group["status"] != "match":
            row["differing_days"].append(group["date"])
            row["status"] = "differs"
    return sorted(table.values(), key=lambda r: (r["status"] == "match", r["sensor_id"]))


def repair_hint(report: dict[str, Any]) -> str | None:
    """The `tslake repair` command covering every day that differs."""
    days = sorted({d["date"] for d in report["differences"]}
                  | {g["date"] for g in report.get("groups", []) if g["status"] != "match"}
                  | {f["date"] for f in report.get("missing_files", [])})
    if not days:
        return None
    after = (date.fromisoformat(days[-1]) + timedelta(days=1)).isoformat()
    return f"tslake repair --start {days[0]} --end {after}"


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """What stdout gets: the report without its long per-group tables."""
    short = {key: value for key, value in report.items() if key not in ("groups",)}
    short["differences"] = [{key: d.get(key) for key in
                             ("date", "shard", "sensor_id", "status", "source_rows",
                              "lake_rows", "time_ranges")} for d in report["differences"]]
    short["repair"] = repair_hint(report)
    return short


LAST_RESULTS_FILE = "parity-last.json"


def remember(settings: Settings, report: dict[str, Any]) -> None:
    """Keep each dataset's latest verdict in `_state/parity-last.json` for the status page
    and `tslake status` (a convenience: a failure to write it is ignored)."""
    path = settings.state_dir / LAST_RESULTS_FILE
    results = last_results(settings)
    results[report["dataset"]] = {
        "verdict": report["verdict"], "generated_at": report["generated_at"],
        "mode": report["mode"], "groups": report["totals"]["groups"],
        "differing_groups": report["totals"]["differing_groups"],
        "differing_days": sorted({g["date"] for g in report.get("groups", [])
                                  if g["status"] != "match"})}
    if settings.state_dir.is_dir():
        with contextlib.suppress(OSError):
            write_json_atomic(path, results)


def last_results(settings: Settings) -> dict[str, Any]:
    try:
        results = json.loads((settings.state_dir / LAST_RESULTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return results if isinstance(results, dict) else {}


def write_report(report: dict[str, Any], path: Path) -> tuple[Path, Path]:
    """Write FILE.md, FILE.json and FILE.heatmap.svg (each replaced atomically); returns
    the Markdown's and the JSON's paths."""
    document = {**report, "sensor_table": sensor_table(report), "repair": repair_hint(report)}
    markdown = path if path.suffix == ".md" else path.with_name(path.name + ".md")
    beside = markdown.with_suffix(".json")
    picture = markdown.with_suffix(".heatmap.svg")
    markdown.parent.mkdir(parents=True, exist_ok=True)
    svg = render_heatmap(document)
    if svg is not None:
        _write_text_atomic(picture, svg)
    document["heatmap"] = picture.name if svg is not None else None
    _write_text_atomic(markdown, render_markdown(document))
    write_json_atomic(beside, document)
    return markdown, beside


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def render_heatmap(report: dict[str, Any]) -> str | None:
    """Dates x shards, each cell coloured by its group's verdict (None without groups
    per shard, e.g. a comparison by series)."""
    groups = [g for g in report.get("groups", []) if g.get("shard") is not None]
    if not groups:
        return None
    status = {(g["date"], g["shard"]): g for g in groups}
    dates = sorted({g["date"] for g in groups})
    shards = sorted({g["shard"] for g in groups})

    def cell(shard: str, day: str) -> charts.Cell:
        group = status.get((day, int(shard)))
        if group is None:
            return ABSENT, "not compared"
        text = (f"{group['status']}: Postgres {group['source_rows'] or 0} rows, lake "
                f"{group['lake_rows'] or 0} rows")
        return (MATCH if group["status"] == "match" else DIFFERS), text

    differing = sum(1 for g in groups if g["status"] != "match")
    return charts.heatmap([f"{shard:02d}" for shard in shards], dates, cell,
                          label=f"parity of {report['dataset']}: {differing} of {len(groups)} "
                                "day-shard groups differ (rows: shards)",
                          legend=[(MATCH, "match"), (DIFFERS, "differs"),
                                  (ABSENT, "not compared")])


def render_markdown(report: dict[str, Any]) -> str:
    totals, window = report["totals"], report["window"]
    verdict = report["verdict"].upper()
    lines = [f"# tslake parity: {report['dataset']}", "",
             f"**Verdict: {verdict}** — {totals['differing_groups']} of {totals['groups']} "
             f"groups differ; {len(report['missing_files'])} committed file(s) missing; "
             f"{totals['source_rows']:,} Postgres rows, {totals['lake_rows']:,} lake rows.", "",
             "| | |", "|---|---|",
             f"| dataset | `{report['dataset']}` (Postgres `{report['source_table']}`) |",
             f"| window | [{window['from']}, {window['to'] or 'end of the lake'}) |",
             f"| watermark (computed_through_ts) | {report['watermark']} |",
             f"| lake horizon starts | {report['horizon_start']} |",
             f"| mode | {report['mode']}"
             + (f" (seed {report['sample_seed']})" if "sample_seed" in report else "") + " |",
             f"| in-flight keys left out | {report.get('in_flight_keys', 0)} |",
             f"| generated | {report['generated_at']} in {report['seconds']} s |", ""]
    lines += [f"> warning: {warning}" for warning in report["warnings"]]
    if report.get("heatmap"):
        lines += ["", f"![date x shard parity: red cells differ]({report['heatmap']})"]
    table = report.get("sensor_table")
    series = report.get("series_column", "sensor_id")
    label = "sensor" if series == "sensor_id" else series
    if table is not None:
        lines += ["", f"## Per {label}", "",
                  f"| {label} | Postgres rows | lake rows | Postgres min ts | lake min ts "
                  "| Postgres max ts | lake max ts | status |",
                  "|---|---:|---:|---|---|---|---|---|"]
        lines += [f"| {_cell(r['sensor_id'])} | {r['source_rows']} | {r['lake_rows']} | "
                  f"{r['source_min_ts']} | {r['lake_min_ts']} | {r['source_max_ts']} | "
                  f"{r['lake_max_ts']} | {r['status']} |" for r in table[:MAX_TABLE_ROWS]]
        lines += _more(len(table), f"{label}s")
    else:
        every = report.get("groups", [])
        groups = sorted((g for g in every if g["status"] != "match"),
                        key=lambda g: (g["date"], g["shard"]))
        matching = len(every) - len(groups)
        lines += ["", "## Day-shard groups that differ", "",
                  f"{len(groups)} differ; the other {matching} match (every group, with its "
                  "row counts and checksums, is in the JSON beside this file).", "",
                  "| date | shard | Postgres rows | lake rows | checksums | status |",
                  "|---|---:|---:|---:|---|---|"]
        lines += [f"| {g['date']} | {g['shard']:02d} | {g['source_rows'] or 0} | "
                  f"{g['lake_rows'] or 0} | "
                  f"{'equal' if g['source_checksum'] == g['lake_checksum'] else 'differ'} | "
                  f"{g['status']} |" for g in groups[:MAX_TABLE_ROWS]]
        lines += _more(len(groups), "differing groups")
    lines += ["", "## Differences", ""]
    if not report["differences"]:
        lines.append("None." if report["verdict"] == "match" else
                     "No differing rows (see the missing files below).")
    for difference in report["differences"]:
        lines += _difference(difference)
    if report["truncated"]:
        lines.append("*(drill-down stopped at its limits; the JSON lists every group)*")
    if report["missing_files"]:
        lines += ["", "## Committed files missing on disk", "", "| date | shard | location | "
                  "path |", "|---|---:|---|---|"]
        lines += [f"| {f['date']} | {f['shard']:02d} | {f['location']} | `{f['path']}` |"
                  for f in report["missing_files"]]
    hint = report.get("repair")
    if hint:
        lines += ["", "## Next step", "", f"Re-export the days that differ: `{hint}`, then run "
                  "the parity check again."]
    return "\n".join(lines) + "\n"


def _more(count: int, what: str) -> list[str]:
    """The line that ends a table cut at MAX_TABLE_ROWS: never a silent cut."""
    if count <= MAX_TABLE_ROWS:
        return []
    return ["", f"*... and {count - MAX_TABLE_ROWS} more {what}: the JSON beside this file "
                "lists them all.*"]


def _difference(d: dict[str, Any]) -> list[str]:
    lines = [f"### {_cell(d['sensor_id'])} on {d['date']} (shard {d['shard']:02d}): "
             f"{d['status']}", "",
             f"- Postgres {d['source_rows'] or 0} rows ({d['source_min_ts']} .. "
             f"{d['source_max_ts']}), lake {d['lake_rows'] or 0} rows ({d['lake_min_ts']} .. "
             f"{d['lake_max_ts']})"]
    for span in d.get("time_ranges", []):
        lines.append(f"- differs in [{span['from']}, {span['to']}): Postgres "
                     f"{span['source_rows']} rows, lake {span['lake_rows']} rows")
    for example in d.get("examples", []):
        key = "".join(f", {name} {value}" for name, value in example.get("key", {}).items())
        lines.append(f"  - row at {example['ts']}{key}: {example['status']}")
    return [*lines, ""]


def _cell(value: Any) -> str:
    """A series id in a Markdown table cell: control characters escaped, pipes too."""
    text = json.dumps(value, ensure_ascii=False)[1:-1] if isinstance(value, str) else str(value)
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def _least(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else min(a, b, key=parse_rfc3339)


def _most(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else max(a, b, key=parse_rfc3339)
