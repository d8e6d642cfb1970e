"""The derived-sensor definitions and expression grammar, without Postgres: what is refused
(and how it is named), the tree's precedence, and the DuckDB rendering's values."""

from __future__ import annotations

import math

import duckdb
import pytest

from runner.derived import definitions, expression
from runner.errors import ConfigError


def evaluate(text: str, **values: float) -> float | None:
    tree = expression.parse(text, set(values))
    sql = expression.render(tree, "duckdb", lambda alias: f"cast('{values[alias]!r}' as double)")
    row = duckdb.execute(f"select {sql}").fetchone()
    assert row is not None
    return row[0]


@pytest.mark.parametrize("text, want", [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("2 ^ 3 ^ 2", 512), ("-2 ^ 2", -4),
    ("10 - 4 - 3", 3), ("8 / 4 / 2", 1), ("abs(-t)", 2.5), ("power(t, 2)", 6.25),
    ("least(t, 1, 3)", 1), ("greatest(t, 1, 3)", 3), ("round(t * 1.04, 1)", 2.6),
    ("log10(100)", 2), ("ln(exp(t))", 2.5), ("sqrt(t * t)", 2.5), ("1.5e2 + .5", 150.5),
])
def test_arithmetic_follows_the_grammar(text: str, want: float):
    assert evaluate(text, t=2.5) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("text", ["t / 0", "sqrt(-t)", "ln(0 * t)", "log10(-t)",
                                  "power(-t, 0.5)", "(0 * t) ^ -1"])
def test_domain_errors_are_null_not_an_error(text: str):
    assert evaluate(text, t=2.5) is None


def test_nan_propagates():
    assert math.isnan(evaluate("t * 2 + 1", t=math.nan) or 0.0)


@pytest.mark.parametrize("text, problem", [
    ("t + q", "unknown alias 'q'"), ("pg_sleep(1)", "function 'pg_sleep' is not allowed"),
    ("t; select 1", "';' is not allowed"), ("(select t)", "subqueries are not allowed"),
    ("t +", "ends where a value"), ("t t", "unexpected 't'"), ("power(t)", "takes 2"),
    ("t::text", "unexpected character ':'"), ("'x'", "unexpected character"),
    ("t -- comment", "unknown alias 'comment'"), ("", "empty"),
])
def test_anything_outside_the_grammar_is_refused(text: str, problem: str):
    with pytest.raises(expression.ExpressionError, match=problem.replace("(", r"\(")):
        expression.parse(text, {"t"})


def test_user_text_never_reaches_the_sql():
    tree = expression.parse("t + 1e0", {"t"})
    assert expression.render(tree, "postgres", lambda _: "agg_t") == \
        "(agg_t + cast(1.0 as double precision))"


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("5m", 300), ("1h", 3600),
                                           ("31d", 31 * 86400)])
def test_buckets(text: str, seconds: int):
    assert definitions.parse_bucket(text) == seconds


@pytest.mark.parametrize("text", ["0m", "32d", "5 minutes", "5", "", "1w", "-1m"])
def test_bad_buckets(text: str):
    with pytest.raises(ValueError):
        definitions.parse_bucket(text)


def one(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {"id": "gh/vpd", "bucket": "5m",
                               "inputs": {"t": "gh/t", "rh": "gh/rh"},
                               "expression": "t * (1 - rh / 100)"}
    return {**base, **changes}


@pytest.mark.parametrize("item, problem", [
    (one(bucket="0m"), "bucket '0m'"), (one(agg={"x": "avg"}), "alias 'x'"),
    (one(agg={"t": "median"}), "aggregate 'median'"), (one(inputs={}), "inputs must map"),
    (one(inputs={"t": "gh/t", "rh": "gh/rh", "co2": "gh/co2"}), "co2 is not used"),
    (one(inputs={"T": "gh/t"}, expression="T"), "lowercase"),
    (one(inputs={"exp": "gh/t"}, expression="exp"), "name of a function"),
    (one(id=""), "id must be"), (one(extra=1), "unknown key 'extra'"),
    (one(expression="pg_sleep(1)"), "pg_sleep"),
])
def test_definition_errors_name_the_sensor(item: dict[str, object], problem: str):
    with pytest.raises(ConfigError) as caught:
        definitions.parse_document({"derived_sensors": [item]}, "d.yml")
    assert problem in str(caught.value)
    assert ("gh/vpd" in str(caught.value)) or item["id"] == ""


def test_the_hash_follows_what_changes_the_rows():
    (base,) = definitions.parse_document({"derived_sensors": [one()]}, "d.yml")
    (spaced,) = definitions.parse_document(
        {"derived_sensors": [one(expression="t*(1-rh/100)", agg={"t": "avg"})]}, "d.yml")
    assert base.hash == spaced.hash  # same tree, same default aggregate
    for change in (one(bucket="1h"), one(agg={"t": "max"}), one(expression="t * (2 - rh)"),
                   one(inputs={"t": "gh/t2", "rh": "gh/rh"})):
        (other,) = definitions.parse_document({"derived_sensors": [change]}, "d.yml")
        assert other.hash != base.hash


def test_duplicates_and_missing_inputs():
    with pytest.raises(ConfigError, match="defined twice"):
        definitions.parse_document({"derived_sensors": [one(), one()]}, "d.yml")
    (base,) = definitions.parse_document({"derived_sensors": [one()]}, "d.yml")
    assert definitions.missing_inputs([base], {"gh/t"}) == [
        "derived sensor gh/vpd: input(s) gh/rh have no rows in metrics/v1 yet: it has no "
        "rows until they report"]


def test_the_shipped_example_file_is_valid():
    from runner.config import PROJECT_ROOT

    loaded = definitions.load(PROJECT_ROOT / "derived_sensors.yml")
    assert {d.id for d in loaded} == {"greenhouse-1/vpd-kpa", "greenhouse-2/dew-point-c",
                                      "barn/water-meter-total"}
