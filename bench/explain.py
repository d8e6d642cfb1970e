"""The Postgres plans of a backfill day, from the model exactly as dbt compiles it.

`dbt compile` renders the lake model in backfill mode; its `postgres_query(..., format(...))`
is evaluated in DuckDB with the window variables set, which gives the very SQL text a
backfill sends; EXPLAIN (ANALYZE, BUFFERS) shows how Postgres reads it."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import duckdb

from bench.dataset import Server
from bench.measure import BIN
from runner.config import PROJECT_ROOT


def compiled_model(env: dict[str, str], target: Path) -> str:
    subprocess.run([str(BIN / "dbt"), "compile", "--select", "metrics_v1", "--vars",
                    "{backfill_days: 1}", "--target-path", str(target), "--log-path",
                    str(target / "logs"), "--quiet"], cwd=PROJECT_ROOT, env=env, check=True,
                   capture_output=True)
    return (target / "compiled/tslake/models/lake/metrics_v1.sql").read_text()


def format_expression(model_sql: str) -> str:
    """The `format(...)` argument of the model's postgres_query, quotes respected."""
    start = model_sql.index("format(", model_sql.index("postgres_query("))
    depth, quoted = 0, False
    for position in range(start, len(model_sql)):
        char = model_sql[position]
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth == 0:
                return model_sql[start:position + 1]
    raise ValueError("no complete format(...) in the compiled model")


def day_queries(model_sql: str, day: str, next_day: str, series: list[str]) -> dict[str, str]:
    """The discovery query and one shard's data query for `day`, as Postgres receives them."""
    expression = format_expression(model_sql)
    conn = duckdb.connect()
    literal = "E'{" + ",".join(f'"{name}"' for name in series) + "}'"
    queries = {}
    for shape, value in (("discovery", None), ("shard", literal)):
        conn.execute(f"set variable tslake_window_ts_from = '{day}'::timestamptz")
        conn.execute(f"set variable tslake_window_ts_to = '{next_day}'::timestamptz")
        conn.execute("set variable tslake_window_hi = 'infinity'::timestamptz")
        conn.execute("set variable tslake_window_series = "
                     + ("null::varchar" if value is None else "'" + value.replace("'", "''") + "'"))
        row = conn.execute(f"select {expression}").fetchone()
        assert row is not None
        queries[shape] = str(row[0])
    return queries


def shard_zero(sensors: int, shards: int = 8) -> list[str]:
    names = [f"s{i:04d}" for i in range(sensors)]
    return [n for n in names if int(hashlib.md5(n.encode()).hexdigest()[:8], 16) % shards == 0]


def explain(server: Server, database: str, query: str) -> str:
    with server.connect(database) as conn:
        rows = conn.execute(f"explain (analyze, buffers, costs off) {query}").fetchall()
    lines = [row[0] for row in rows]
    return "\n".join(line for line in lines if not line.lstrip().startswith(("Buffers:",
                                                                              "Planning")))
