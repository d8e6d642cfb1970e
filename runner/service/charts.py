"""Small server-side SVG charts: a line over time, bars per label, a date x shard heatmap.

Drawn as text so the status page and the parity report need no JavaScript, no fonts and
no external asset (the farm's Mac mini may be offline). Every chart has a <title> per
mark, which a browser shows on hover.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

WIDTH, HEIGHT, PAD = 640, 160, 36
LINE_COLOR, BAR_COLOR, AXIS_COLOR = "#2563eb", "#0f766e", "#9ca3af"


def _frame(width: int, height: int, body: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'aria-label="{escape(label)}"><title>{escape(label)}</title>'
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>' + "".join(body)
            + "</svg>")


def _axes(width: int, height: int, top_label: str, left: str, right: str) -> list[str]:
    bottom = height - PAD + 8
    return [
        f'<line x1="{PAD}" y1="{height - PAD + 8}" x2="{width - 8}" y2="{height - PAD + 8}" '
        f'stroke="{AXIS_COLOR}"/>',
        f'<line x1="{PAD}" y1="8" x2="{PAD}" y2="{bottom}" stroke="{AXIS_COLOR}"/>',
        f'<text x="{PAD + 4}" y="18" font-size="11" fill="#374151">{escape(top_label)}</text>',
        f'<text x="{PAD}" y="{height - 6}" font-size="10" fill="#6b7280">{escape(left)}</text>',
        f'<text x="{width - 8}" y="{height - 6}" font-size="10" fill="#6b7280" '
        f'text-anchor="end">{escape(right)}</text>',
    ]


def line_chart(points: Sequence[tuple[float, float]], *, label: str, unit: str,
               left: str = "", right: str = "") -> str:
    """A line through (x, y) points, x ascending (e.g. epoch seconds), y from 0."""
    width, height = WIDTH, HEIGHT
    if not points:
        return _frame(width, height, [f'<text x="{width // 2}" y="{height // 2}" '
                                      'text-anchor="middle" font-size="12" fill="#6b7280">'
                                      'no ticks recorded yet</text>'], label)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    top = max(ys) * 1.1 or 1.0
    plot_w, plot_h = width - PAD - 12, height - PAD - 12

    def where(x: float, y: float) -> str:
        return (f"{PAD + 2 + (x - x0) / (x1 - x0) * plot_w:.1f},"
                f"{height - PAD + 8 - y / top * plot_h:.1f}")

    coords = " ".join(where(x, y) for x, y in points)
    body = _axes(width, height, f"max {max(ys):.1f} {unit}", left, right)
    body.append(f'<polyline class="series" fill="none" stroke="{LINE_COLOR}" '
                f'stroke-width="2" points="{coords}"/>')
    last_x, last_y = points[-1]
    x_text, y_text = where(last_x, last_y).split(",")
    body.append(f'<circle cx="{x_text}" cy="{y_text}" r="3" fill="{LINE_COLOR}">'
                f'<title>{last_y:.1f} {escape(unit)}</title></circle>')
    return _frame(width, height, body, label)


def bar_chart(bars: Sequence[tuple[str, float]], *, label: str, unit: str) -> str:
    """One bar per (label, value), in the order given (e.g. dates ascending)."""
    width, height = WIDTH, HEIGHT
    if not bars:
        return _frame(width, height, [f'<text x="{width // 2}" y="{height // 2}" '
                                      'text-anchor="middle" font-size="12" fill="#6b7280">'
                                      'nothing committed yet</text>'], label)
    top = max(value for _, value in bars) or 1.0
    plot_w, plot_h = width - PAD - 12, height - PAD - 12
    step = plot_w / len(bars)
    body = _axes(width, height, f"max {top:,.0f} {unit}", bars[0][0], bars[-1][0])
    for i, (name, value) in enumerate(bars):
        bar_h = value / top * plot_h
        body.append(f'<rect class="bar" x="{PAD + 2 + i * step:.1f}" '
                    f'y="{height - PAD + 8 - bar_h:.1f}" width="{max(step - 1, 1):.1f}" '
                    f'height="{bar_h:.1f}" fill="{BAR_COLOR}"><title>{escape(name)}: '
                    f'{value:,.0f} {escape(unit)}</title></rect>')
    return _frame(width, height, body, label)


# A cell: (fill colour, hover text).
Cell = tuple[str, str]


def heatmap(rows: Sequence[str], columns: Sequence[str], cell: Callable[[str, str], Cell], *,
            label: str, legend: Sequence[tuple[str, str]] = ()) -> str:
    """A grid: one row per `rows` item (e.g. shards), one column per `columns` item (dates),
    every cell coloured by `cell(row, column)`. Wide grids get thin columns, not a cut."""
    left, top_pad = 44, 22
    cell_w = max(2.0, min(24.0, (1200 - left) / max(len(columns), 1)))
    cell_h = 12.0 if len(rows) <= 32 else 6.0
    width = int(left + cell_w * len(columns) + 8)
    height = int(top_pad + cell_h * len(rows) + 40)
    body = []
    for r, row in enumerate(rows):
        y = top_pad + r * cell_h
        if len(rows) <= 32 or r % 8 == 0:
            body.append(f'<text x="{left - 4}" y="{y + cell_h - 2:.1f}" font-size="9" '
                        f'text-anchor="end" fill="#374151">{escape(row)}</text>')
        for c, column in enumerate(columns):
            fill, text = cell(row, column)
            body.append(f'<rect class="cell" x="{left + c * cell_w:.1f}" y="{y:.1f}" '
                        f'width="{max(cell_w - 1, 1):.1f}" height="{cell_h - 1:.1f}" '
                        f'fill="{fill}"><title>{escape(column)} {escape(row)}: '
                        f'{escape(text)}</title></rect>')
    bottom = top_pad + cell_h * len(rows) + 12
    if columns:
        body.append(f'<text x="{left}" y="{bottom:.1f}" font-size="10" fill="#6b7280">'
                    f'{escape(columns[0])}</text>')
    if len(columns) > 1 and cell_w * len(columns) > 150:
        body.append(f'<text x="{width - 8}" y="{bottom:.1f}" font-size="10" fill="#6b7280" '
                    f'text-anchor="end">{escape(columns[-1])}</text>')
    x = float(left)
    for fill, name in legend:
        body.append(f'<rect x="{x:.1f}" y="{bottom + 10:.1f}" width="10" height="10" '
                    f'fill="{fill}"/><text x="{x + 14:.1f}" y="{bottom + 19:.1f}" '
                    f'font-size="10" fill="#374151">{escape(name)}</text>')
        x += 14 + 7 * len(name) + 12
    body.insert(0, f'<text x="{left}" y="14" font-size="11" fill="#374151">'
                   f'{escape(label)}</text>')
    return _frame(max(width, int(x) + 8), height, body, label)
