"""A definition's SQL: the parsed expression rendered into macros/derived/ (DuckDB for the
lake, Postgres for parity), so the two sides compute the same thing from one description."""

from __future__ import annotations

from runner.dbt_bridge import sqlmacros
from runner.derived import expression
from runner.derived.definitions import Definition
from runner.derived.expression import Dialect


def sensor_rows(definition: Definition, relation: str, dialect: Dialect,
                bucket_filter: str | None = None) -> str:
    """SELECT of `definition`'s rows (sensor_id, ts, value, quality, inserted_at) from
    `relation` (input rows, newest versions); `bucket_filter`: a condition on `bucket`."""
    aggs = dict(definition.aggs)
    return sqlmacros.render(
        "derived_sensor_rows",
        definition={"id": definition.id, "seconds": definition.bucket_seconds,
                    "inputs": [[alias, sensor, aggs[alias]]
                               for alias, sensor in definition.inputs]},
        relation=relation, dialect=dialect, bucket_filter=bucket_filter,
        expression_sql=expression.render(definition.tree, dialect,
                                         lambda alias: f"agg_{alias}"))


def bucket_start(ts: str, definition: Definition, dialect: Dialect = "duckdb") -> str:
    return sqlmacros.render("derived_bucket_start", ts=ts, seconds=definition.bucket_seconds,
                            dialect=dialect)


def literal(value: str) -> str:
    return sqlmacros.render("lake_literal", value=value)
