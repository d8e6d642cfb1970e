"""Schema drift on metrics/v1 (README, "Datasets"), with the real ALTER TABLEs an operator
runs: a dropped or renamed column, or a changed type, is refused naming the column, exit 2,
by `tslake tick` and by plain `dbt run`, with the lake byte-identical. (Drift of
forecast_points/v1 is tests/test_datasets.py's.)"""

from __future__ import annotations

import pytest

from conftest import Lake, SourceDb


@pytest.mark.parametrize("change, column", [
    ("alter table metrics rename column value to reading", "value"),
    ("alter table metrics alter column ts type timestamp without time zone", "ts"),
])
def test_metrics_schema_drift_is_refused_naming_the_column(lake: Lake, source_db: SourceDb,
                                                           change: str, column: str):
    source_db.execute("insert into metrics (sensor_id, ts, value, quality) "
                      "values ('a', now() - interval '1 minute', 1, 0)")
    lake.run("tslake", "tick")
    before = {path: path.read_bytes() for path in lake.settings.hot_path.rglob("*")
              if path.is_file() and path.name != "lock"}
    source_db.execute(change)
    source_db.execute("insert into metrics (sensor_id, ts) values ('b', now())")
    tick = lake.run("tslake", "tick", check=False)
    assert tick.returncode == 2, tick.stderr
    assert "Traceback" not in tick.stderr
    assert f"column {column}" in tick.stderr or f"metrics.{column}" in tick.stderr, tick.stderr
    dbt = lake.run("dbt", "run", check=False)
    assert dbt.returncode != 0
    assert f"column {column}" in dbt.stdout or f"metrics.{column}" in dbt.stdout, dbt.stdout
    after = {path: path.read_bytes() for path in lake.settings.hot_path.rglob("*")
             if path.is_file() and path.name != "lock"}
    assert after == before, "the lake is unchanged"
