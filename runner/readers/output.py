"""Writing a query result as an aligned table, CSV, JSON or Parquet (for `tslake query`)."""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import duckdb

from runner.errors import ConfigError

OUTPUT_FORMATS = ["table", "csv", "json", "parquet"]
_BY_EXTENSION = {".csv": "csv", ".json": "json", ".parquet": "parquet"}


def output_format_for(given: str | None, out: Path | None) -> str:
    """--format, or the one --out's extension names (table otherwise); a --format that
    contradicts the extension is refused rather than writing CSV into FILE.parquet."""
    implied = _BY_EXTENSION.get(out.suffix.lower()) if out is not None else None
    if given is not None and implied is not None and given != implied:
        raise ConfigError(f"--format {given} contradicts --out {out} (a {implied} file name): "
                          "change one of them")
    return given or implied or "table"


def write_result(relation: duckdb.DuckDBPyRelation | None, output_format: str,
                 out: Path | None) -> None:
    if output_format == "parquet":
        assert out is not None
        if relation is None:
            _write_empty_parquet(out)
            return
        relation.write_parquet(str(out), compression="zstd")
        return
    columns = relation.columns if relation is not None else []
    rows = relation.fetchall() if relation is not None else []
    if out is None:
        _write_text(sys.stdout, output_format, columns, rows)
        return
    with open(out, "w", newline="") as stream:
        _write_text(stream, output_format, columns, rows)


def _write_text(stream: TextIO, output_format: str, columns: list[str],
                rows: list[tuple[Any, ...]]) -> None:
    if output_format == "csv":
        writer = csv.writer(stream)
        writer.writerow(columns)
        writer.writerows([[_text(v) for v in row] for row in rows])
    elif output_format == "json":
        json.dump([dict(zip(columns, [_json(v) for v in row], strict=True)) for row in rows],
                  stream, indent=1)
        stream.write("\n")
    else:
        _table(stream, columns, rows)


def _write_empty_parquet(out: Path) -> None:
    """An empty result still writes a valid (empty) Parquet file with the raw columns."""
    duckdb.sql("select null::varchar as sensor_id, null::timestamptz as ts, null::double as "
               "value, null::smallint as quality where false").write_parquet(str(out))


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return "" if value is None else str(value)


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _table(stream: TextIO, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    cells = [columns] + [[_text(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))] if columns else []
    for index, row in enumerate(cells):
        stream.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                        strict=True)).rstrip()
                     + "\n")
        if index == 0:
            stream.write("  ".join("-" * width for width in widths) + "\n")
    if len(cells) == 1:
        stream.write("(no rows)\n")
