"""The source table's columns as Postgres has them now, to check against the declaration
(runner/core/datasets.DatasetSpec.check_source) before any row is read."""

from __future__ import annotations

import duckdb

from runner.core.datasets import DatasetSpec
from runner.errors import SourceError
from runner.postgres.connection import SOURCE_CATALOG, SourceConninfo, sql_literal


def source_columns(conn: duckdb.DuckDBPyConnection, spec: DatasetSpec) -> dict[str, str]:
    """{column: format_type} of the dataset's source table; {} when the table is missing."""
    relation = f"{_quote(spec.source_schema)}.{_quote(spec.source_table)}"
    query = ("select attname::text as name, format_type(atttypid, atttypmod) as type "
             "from pg_attribute where attrelid = to_regclass(" + _pg_literal(relation) + ") "
             "and attnum > 0 and not attisdropped")
    try:
        rows = conn.execute(f"select name, type from postgres_query("
                            f"{sql_literal(SOURCE_CATALOG)}, {sql_literal(query)})").fetchall()
    except duckdb.Error as error:
        reason = " ".join(SourceConninfo().redact(str(error)).split())
        raise SourceError(f"cannot read the columns of {spec.source_schema}."
                          f"{spec.source_table} for {spec.name}: {reason}; check that Postgres "
                          "is up and the role can read it") from None
    return {str(name): _base_type(str(type_)) for name, type_ in rows}


def _base_type(text: str) -> str:
    """`character varying(64)` -> `character varying`: a length is not a different type."""
    return text.split("(", 1)[0].strip()


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _pg_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
