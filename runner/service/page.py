"""`GET /` of `tslake run`: one self-contained HTML page an operator reads at a glance.

Everything is rendered here, server-side: inline CSS, inline SVG charts
(runner/service/charts.py), no script, no font, no image, no request to any other
address (a Content-Security-Policy says so to the browser too). It refreshes itself with
a meta refresh every interval.
"""

from __future__ import annotations

from html import escape
from typing import Any

from runner.core import manifest
from runner.readers.status import DatasetStatus, LakeStatus, duration_text
from runner.service import charts

RECENT_TICKS = 20
STATUS_COLORS = {"ok": "#15803d", "starting": "#2563eb", "degraded": "#b45309",
                 "stale": "#b91c1c"}
CSS = """
body{font:14px/1.4 -apple-system,system-ui,sans-serif;margin:1.5em;color:#111827;
background:#f9fafb}
h1{font-size:20px;margin:0 0 .4em} h2{font-size:16px;margin:1.2em 0 .3em}
.badge{display:inline-block;padding:.15em .6em;border-radius:4px;color:#fff;font-weight:600}
.facts span{margin-right:1.4em} .problem{color:#991b1b}
.charts{display:flex;flex-wrap:wrap;gap:.5em 1.5em}
section{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:.8em 1em;
margin:1em 0} table{border-collapse:collapse;font-size:13px}
td,th{padding:.2em .7em;border-bottom:1px solid #e5e7eb;text-align:left}
.error{color:#991b1b} .chart{display:block;margin:.3em 0;max-width:100%;height:auto}
.muted{color:#6b7280}
"""
# Cell colours of the date x shard map.
EMPTY, ONE_FILE, FEW_FILES, MANY_FILES, COLD = (
    "#f3f4f6", "#86efac", "#fde047", "#fb923c", "#93c5fd")


def render(report: LakeStatus, *, live: dict[str, Any] | None = None,
           refresh_seconds: float = 30) -> str:
    """The page for `report` (the manifest's and the tick history's facts) plus `live`:
    what only the running service knows (next tick, uptime), from /healthz's report."""
    color = STATUS_COLORS.get(report.status, "#374151")
    refresh = int(min(max(refresh_seconds, 5), 300))
    facts = [f"stale after {duration_text(report.stale_after_seconds)}"]
    if live:
        facts += [f"next tick in {duration_text(live.get('next_tick_in_seconds') or 0)}",
                  f"{live.get('ticks', 0)} ticks, {live.get('failures', 0)} failed since start",
                  f"up {duration_text(live.get('uptime_seconds') or 0)}"]
    problems = ("".join(f'<li class="problem">{escape(p)}</li>' for p in report.problems)
                or '<li class="muted">none</li>')
    parts = [
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; img-src data:\">",
        f'<meta http-equiv="refresh" content="{refresh}">',
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>tslake: {escape(report.status)}</title><style>{CSS}</style></head><body>",
        f'<h1>tslake <span class="badge" id="status" style="background:{color}">'
        f"{escape(report.status)}</span></h1>",
        '<p class="facts">' + "".join(f"<span>{escape(f)}</span>" for f in facts) + "</p>",
        f'<h2>Problems</h2><ul class="problems">{problems}</ul>',
    ]
    parts += [_dataset_section(item, report) for item in report.datasets]
    parts.append(_ticks_table(report))
    parts.append(f'<p class="muted">rendered {escape(manifest.rfc3339(manifest.utc_now()))}'
                 f"; refreshes every {refresh} s; JSON: <a href=\"/healthz\">/healthz</a>, "
                 '<a href="/metrics">/metrics</a></p></body></html>')
    return "".join(parts)


def _dataset_section(item: DatasetStatus, report: LakeStatus) -> str:
    lag = "-" if item.lag_seconds is None else duration_text(item.lag_seconds)
    head = (f'<section class="dataset" data-dataset="{escape(item.name)}">'
            f"<h2>{escape(item.name)}</h2><p class=\"facts\">"
            f'<span>watermark <b class="watermark">{escape(item.watermark or "none yet")}'
            f"</b></span><span>lag <b>{escape(lag)}</b></span>"
            f"<span>{item.hot_days} hot / {item.cold_days} cold days</span>"
            f"<span>{item.files:,} files, {item.rows:,} rows, {_bytes(item.bytes)}</span>"
            f"<span>last compaction {escape(item.last_compaction_at or 'never')}</span>"
            f"<span>last parity {escape(_parity_text(item.last_parity))}</span></p>")
    points = [(manifest.parse_rfc3339(t.started_at).timestamp() + t.duration_seconds,
               lag_value) for t in report.ticks
              if (lag_value := t.lag_seconds.get(item.name)) is not None]
    span = (report.ticks[0].started_at, report.ticks[-1].started_at) if report.ticks else ("", "")
    charts_html = [charts.line_chart(points, label=f"{item.name}: lag after each tick",
                                     unit="s", left=span[0], right=span[1])]
    partitions = sorted(item.state.partitions.items()) if item.state else []
    charts_html.append(charts.bar_chart([(day, float(p.rows)) for day, p in partitions],
                                        label=f"{item.name}: rows per day", unit="rows"))
    charts_html.append(charts.bar_chart([(day, float(p.file_count)) for day, p in partitions],
                                        label=f"{item.name}: files per day", unit="files"))
    if item.state is not None and partitions:
        charts_html.append(_shard_map(item))
    return head + '<div class="charts">' + "".join(charts_html) + "</div></section>"


def _parity_text(result: dict[str, Any] | None) -> str:
    if not result:
        return "never run"
    text = f"{result['verdict']} at {result['generated_at']} ({result['mode']}"
    if result.get("differing_groups"):
        days = result.get("differing_days") or []
        text += f", {result['differing_groups']} of {result['groups']} groups differ"
        text += f" on {', '.join(days[:3])}{' ...' if len(days) > 3 else ''}" if days else ""
    return text + ")"


def _shard_map(item: DatasetStatus) -> str:
    assert item.state is not None
    partitions = dict(sorted(item.state.partitions.items()))
    counts: dict[tuple[str, int], int] = {}
    for day, partition in partitions.items():
        for file in partition.files:
            counts[(day, file.shard)] = counts.get((day, file.shard), 0) + 1
    shards = [f"{shard:02d}" for shard in range(item.state.shards)]

    def cell(shard: str, day: str) -> charts.Cell:
        partition = partitions[day]
        files = counts.get((day, int(shard)), 0)
        compacted = f", compacted {partition.last_compacted_at}" \
            if partition.last_compacted_at else ""
        text = f"{files} file(s), {partition.location}{compacted}"
        if files == 0:
            return EMPTY, text
        if partition.location != "hot":
            return COLD, text
        return (ONE_FILE if files == 1 else FEW_FILES if files <= 3 else MANY_FILES), text

    return charts.heatmap(shards, list(partitions), cell,
                          label=f"{item.name}: files per shard-day (rows: shards)",
                          legend=[(ONE_FILE, "1 file"), (FEW_FILES, "2-3 files"),
                                  (MANY_FILES, "4+ files"), (COLD, "cold"),
                                  (EMPTY, "empty")])


def _ticks_table(report: LakeStatus) -> str:
    rows = []
    for tick in reversed(report.ticks[-RECENT_TICKS:]):
        css = "" if tick.result == "ok" else ' class="error"'
        rows.append(f"<tr{css}><td>{escape(tick.started_at)}</td><td>{escape(tick.result)}"
                    f"</td><td>{tick.duration_seconds:.1f} s</td><td>{tick.rows:,}</td>"
                    f"<td>{tick.files:,}</td><td>{escape(tick.error or '')}</td></tr>")
    body = "".join(rows) or '<tr><td colspan="6" class="muted">no ticks yet</td></tr>'
    return ('<section><h2>Last ticks</h2><table id="ticks"><tr><th>started</th><th>result</th>'
            f"<th>duration</th><th>rows</th><th>files</th><th>error</th></tr>{body}</table>"
            "</section>")



def _bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
