"""derived/v1 against a real Postgres and real dbt runs: every committed derived row equals
the same computation written by hand in Postgres SQL over the rows inside the watermark,
after a backfill and after ticks with new, late and updated inputs; late and updated
inputs change exactly their buckets; a changed definition rewrites history, a removed one
leaves; invalid definitions exit 2 with the lake unchanged; a SIGKILL mid-tick recovers."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import Lake, SourceDb, canonical

pytestmark = pytest.mark.integration

DERIVED = "derived/v1"
DATASETS = "metrics/v1,derived/v1"

DEFINITIONS = """
derived_sensors:
  - id: gh/vpd
    bucket: 5m
    inputs: {t: gh/t, rh: gh/rh}
    expression: "0.61078 * exp(17.27 * t / (t + 237.3)) * (1 - rh / 100)"
  - id: gh/spread
    bucket: 1h
    inputs: {hi: gh/t, lo: gh/t, last_rh: gh/rh, first_rh: gh/rh}
    agg: {hi: max, lo: min, last_rh: last, first_rh: first}
    expression: "(hi - lo) ^ 2 + sqrt(abs(last_rh)) - round(first_rh, 1) + greatest(lo, 0)"
  - id: barn/total
    bucket: 5m
    inputs: {a: m/1, b: m/2}
    agg: {a: sum, b: count}
    expression: "a + b"
"""

# The same three computations, written independently in Postgres SQL.
EXPECTED_SQL = """
with r as (
    select sensor_id, ts, value, quality, inserted_at from metrics
    where inserted_at <= %(wm)s
), b5 as (
    select *, to_timestamp(floor(extract(epoch from ts) / 300) * 300) as b from r
), b60 as (
    select *, date_trunc('hour', ts) as b from r
)
select 'gh/vpd', b, 0.61078 * exp(17.27 * t / (t + 237.3)) * (1 - rh / 100), q, ia from (
    select b, avg(value) filter (where sensor_id = 'gh/t') as t,
           avg(value) filter (where sensor_id = 'gh/rh') as rh,
           count(value) filter (where sensor_id = 'gh/t') as nt,
           count(value) filter (where sensor_id = 'gh/rh') as nrh,
           min(quality) as q, max(inserted_at) as ia
    from b5 where sensor_id in ('gh/t', 'gh/rh') group by b) x where nt > 0 and nrh > 0
union all
select 'gh/spread', b,
       power(hi - lo, 2) + sqrt(abs(last_rh)) - round(first_rh::numeric, 1)::float8
       + greatest(lo, 0), q, ia from (
    select b, max(value) filter (where sensor_id = 'gh/t') as hi,
           min(value) filter (where sensor_id = 'gh/t') as lo,
           (array_agg(value order by ts desc) filter (where sensor_id = 'gh/rh'
                                                      and value is not null))[1] as last_rh,
           (array_agg(value order by ts) filter (where sensor_id = 'gh/rh'
                                                 and value is not null))[1] as first_rh,
           count(value) filter (where sensor_id = 'gh/t') as nt,
           count(value) filter (where sensor_id = 'gh/rh') as nrh,
           min(quality) as q, max(inserted_at) as ia
    from b60 where sensor_id in ('gh/t', 'gh/rh') group by b) x where nt > 0 and nrh > 0
union all
select 'barn/total', b, a + n, q, ia from (
    select b, sum(value) filter (where sensor_id = 'm/1') as a,
           count(value) filter (where sensor_id = 'm/2') as n,
           count(value) filter (where sensor_id = 'm/1') as na,
           min(quality) as q, max(inserted_at) as ia
    from b5 where sensor_id in ('m/1', 'm/2') group by b) x where na > 0 and n > 0
"""


def history(db: SourceDb) -> None:
    """Two days of irregular inputs: gh/t every 50 s, gh/rh every 7 min with a 3-hour gap,
    meters every 4 and 6 min; some NULL and NaN values; inserted_at 30 s after ts."""
    for sensor, step, phase in (("gh/t", 50, 3), ("gh/rh", 420, 11), ("m/1", 240, 0),
                                ("m/2", 360, 17)):
        db.execute(f"""
            insert into metrics (sensor_id, ts, value, quality, inserted_at)
            select %(s)s, t, case when i %% 97 = 5 then null when i %% 211 = 7 then 'NaN'
                                  else 20 + 10 * sin(i / 40.0) + (i %% 13) end,
                   (i %% 5)::smallint, least(t + interval '30 seconds', now())
            from (select i, date_trunc('hour', now()) - interval '2 days'
                            + make_interval(secs => i * {step} + {phase}) as t
                  from generate_series(0, (2 * 86400) / {step}) as i) as g
            where t < now() - interval '1 minute'
              and not (%(s)s = 'gh/rh' and t >= now() - interval '20 hours'
                       and t < now() - interval '17 hours')
        """, {"s": sensor})


Rows = dict[tuple[str, str], tuple[Any, ...]]  # (sensor_id, ts) -> (value, quality, inserted_at)


def iso(moment: datetime) -> str:
    return str(canonical([(moment,)])[0][0])


def expected(db: SourceDb, watermark: str) -> Rows:
    rows = canonical(db.execute(EXPECTED_SQL, {"wm": watermark}))
    return {(sensor, ts): (value, quality, inserted_at)
            for sensor, ts, value, quality, inserted_at in rows}


def lake_derived(lake: Lake) -> Rows:
    return {(sensor, ts): (value, quality, inserted_at)
            for sensor, ts, value, quality, inserted_at in lake.rows(DERIVED, newest=True)}


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-300)
    return bool(a == b)


def assert_exact(lake: Lake, db: SourceDb) -> Rows:
    """Every committed derived row equals the Postgres computation at the watermark."""
    entry = lake.dataset(DERIVED)
    assert entry["computed_through_ts"] == lake.dataset()["computed_through_ts"]
    want, got = expected(db, entry["computed_through_ts"]), lake_derived(lake)
    assert set(got) == set(want), (sorted(set(got) ^ set(want))[:5])
    wrong = [key for key in want if not all(map(same, want[key], got[key]))]
    assert not wrong, [(key, want[key], got[key]) for key in wrong[:5]]
    versions = [(sensor, ts, inserted_at) for sensor, ts, _, _, inserted_at in lake.rows(DERIVED)]
    assert len(versions) == len(set(versions)), "a derived version is committed twice"
    return got


@pytest.fixture
def derived_lake(lake: Lake, tmp_path: Path) -> Lake:
    definitions = tmp_path / "derived.yml"
    definitions.write_text(DEFINITIONS)
    lake.configure(TSLAKE_DATASETS=DATASETS, TSLAKE_DERIVED_SENSORS=str(definitions),
                   TSLAKE_COMPACT_MIN_FILES="1000")
    return lake


def test_backfill_ticks_late_updates_and_definition_changes_are_exact(
        derived_lake: Lake, source_db: SourceDb, tmp_path: Path):
    lake = derived_lake
    history(source_db)
    lake.run("tslake", "backfill", "--days", "3")
    before = assert_exact(lake, source_db)
    assert {sensor for sensor, _ in before} == {"gh/vpd", "gh/spread", "barn/total"}
    assert any(v[0] == "NaN" for v in before.values())  # a NaN input gives NaN

    # New rows, a late row a day back, an update, and an update to NULL that empties the
    # only m/2 reading of a bucket (that barn/total bucket must disappear).
    late_ts = source_db.execute("select date_trunc('hour', now()) - interval '25 hours' "
                                "+ interval '2 minutes'")[0][0]
    source_db.execute("insert into metrics values ('gh/t', %s, 99.5, 0, now())", (late_ts,))
    source_db.execute("insert into metrics (sensor_id, ts, value, quality) "
                      "values ('gh/rh', now() - interval '20 seconds', 55, 1), "
                      "('gh/t', now() - interval '10 seconds', 21, 2)")
    updated = source_db.execute(
        "update metrics set value = value + 1, inserted_at = now() where sensor_id = 'gh/rh' "
        "and ts = (select min(ts) from metrics where sensor_id = 'gh/rh' and ts > now() - "
        "interval '30 hours') returning ts")[0][0]
    emptied = source_db.execute(
        "update metrics set value = null, inserted_at = now() where sensor_id = 'm/2' and "
        "ts = (select min(ts) from metrics where sensor_id = 'm/2' and value is not null "
        "and ts > now() - interval '10 hours') returning ts")[0][0]
    lake.run("dbt", "run")
    after = assert_exact(lake, source_db)

    def bucket(ts: datetime, seconds: int) -> str:
        return iso(datetime.fromtimestamp(ts.timestamp() // seconds * seconds, ts.tzinfo))

    changed = {key for key in set(before) | set(after) if before.get(key) != after.get(key)}
    recent = bucket(source_db.now() - timedelta(hours=2), 3600)
    old_changes = {key for key in changed if key[1] < recent}
    touched = {("gh/vpd", bucket(late_ts, 300)), ("gh/spread", bucket(late_ts, 3600)),
               ("gh/vpd", bucket(updated, 300)), ("gh/spread", bucket(updated, 3600)),
               ("barn/total", bucket(emptied, 300))}
    # Only the touched buckets changed (a touched gh/vpd bucket without a humidity reading
    # has no row before or after); the late maximum and the emptied bucket did.
    assert old_changes <= touched
    assert {("gh/spread", bucket(late_ts, 3600)), ("barn/total", bucket(emptied, 300))} \
        <= old_changes
    assert ("barn/total", bucket(emptied, 300)) not in after

    # A changed expression rewrites that sensor's history in one commit; a removed
    # definition's rows leave.
    definitions = Path(lake.env["TSLAKE_DERIVED_SENSORS"])
    text = DEFINITIONS.replace('"a + b"', '"a * 2 - b"')
    definitions.write_text(text[:text.index("  - id: gh/spread")] +
                           text[text.index("  - id: barn/total"):])
    generation = lake.manifest()["generation"]
    lake.run("dbt", "run")
    final = assert_exact_with(lake, source_db, drop="gh/spread",
                              change=("barn/total", lambda a, b: a * 2 - b))
    assert not any(sensor == "gh/spread" for sensor, _ in final)
    assert lake.manifest()["generation"] == generation + 2  # metrics, then derived: one each
    assert set(lake.dataset(DERIVED)["derived"]["definitions"]) == {"gh/vpd", "barn/total"}

    report = json.loads(lake.run("tslake", "parity", "--all", "--dataset", DERIVED).stdout)
    assert report["verdict"] == "match", report
    assert report["totals"]["source_rows"] == len(final)
    tested = lake.run("dbt", "test", "--select", "derived_v1", check=False)
    assert tested.returncode == 0, tested.stdout[-3000:]
    # parity notices a wrong derived row: rewrite one committed file's values.
    path = lake.committed_files(DERIVED)[0]
    import duckdb
    duckdb.execute(f"copy (select * replace (value + 1 as value) from '{path}') to "
                   f"'{path}.x' (format parquet)")
    Path(f"{path}.x").replace(path)
    report = json.loads(lake.run("tslake", "parity", "--all", "--dataset", DERIVED).stdout)
    assert report["verdict"] == "mismatch"
    assert lake.run("dbt", "test", "--select", "derived_v1", check=False).returncode != 0

    # Reading: --dataset derived/v1 has the rows; metrics says where to look.
    window = ("--start", "2020-01-01T00:00:00Z", "--end", "2040-01-01T00:00:00Z")
    csv = lake.run("tslake", "query", "--dataset", DERIVED, "--sensor", "gh/vpd", *window,
                   "--format", "csv").stdout
    assert len(csv.strip().splitlines()) - 1 == sum(1 for s, _ in final if s == "gh/vpd")
    wrong = lake.run("tslake", "query", "--sensor", "gh/vpd", *window, check=False)
    assert wrong.returncode == 2 and "--dataset derived/v1" in wrong.stderr


def assert_exact_with(lake: Lake, db: SourceDb, *, drop: str, change: tuple[str, Any]
                      ) -> Rows:
    """assert_exact for the edited definitions: `drop` gone, `change`'s sensor recomputed."""
    sensor, formula = change
    watermark = lake.dataset(DERIVED)["computed_through_ts"]
    want = {key: row for key, row in expected(db, watermark).items() if key[0] != drop}
    parts = db.execute("""
        select b, sum(value) filter (where sensor_id = 'm/1'),
               count(value) filter (where sensor_id = 'm/2')
        from (select *, to_timestamp(floor(extract(epoch from ts) / 300) * 300) as b
              from metrics where inserted_at <= %s and sensor_id in ('m/1', 'm/2')) r
        group by b""", (watermark,))
    for b, a, n in parts:
        if (sensor, iso(b)) in want:
            _, quality, inserted_at = want[sensor, iso(b)]
            want[sensor, iso(b)] = canonical([(formula(a, n), quality, inserted_at)])[0]
    got = lake_derived(lake)
    assert set(got) == set(want)
    wrong = [key for key in want if not all(map(same, want[key], got[key]))]
    assert not wrong, [(key, want[key], got[key]) for key in wrong[:5]]
    return got


BAD_DEFINITIONS = [
    ('"t + q"', "unknown alias 'q'"),
    ('"pg_sleep(1) + t"', "function 'pg_sleep' is not allowed"),
    ('"t; drop table metrics"', "';' is not allowed"),
    ("BUCKET0", "bucket '0m'"),
]


def test_invalid_definitions_exit_2_with_the_lake_unchanged(derived_lake: Lake,
                                                            source_db: SourceDb):
    lake = derived_lake
    history(source_db)
    lake.run("dbt", "run")
    state = lake.settings.manifest_path.read_bytes()
    source_db.execute("insert into metrics (sensor_id, ts, value) values ('gh/t', now(), 1)")
    vpd = '"0.61078 * exp(17.27 * t / (t + 237.3)) * (1 - rh / 100)"'
    for bad, problem in BAD_DEFINITIONS:
        text = DEFINITIONS.replace(vpd, bad if bad != "BUCKET0" else '"t + rh"')
        if bad == "BUCKET0":
            text = text.replace("bucket: 5m", "bucket: 0m", 1)
        Path(lake.env["TSLAKE_DERIVED_SENSORS"]).write_text(text)
        result = lake.run("tslake", "tick", check=False)
        assert result.returncode == 2, (bad, result.stderr)
        line = result.stderr.strip().splitlines()[-1]
        assert "gh/vpd" in line and problem in line, (bad, line)
        assert "Traceback" not in result.stderr
        assert lake.settings.manifest_path.read_bytes() == state, bad


def test_sigkill_while_recomputing_derived_buckets_then_a_tick_is_exact(derived_lake: Lake,
                                                                        source_db: SourceDb):
    lake = derived_lake
    history(source_db)
    lake.run("tslake", "backfill", "--days", "3")
    source_db.execute("insert into metrics (sensor_id, ts, value, quality) "
                      "values ('gh/rh', now() - interval '5 hours', 50, 0), "
                      "('gh/t', now() - interval '5 hours', 30, 0)")
    for point in ("derived_before_publish", "before_manifest_replace#2"):
        killed = lake.run("dbt", "run", check=False, TSLAKE_FAILPOINT=point)
        assert killed.returncode != 0
        # metrics/v1 committed; derived/v1 did not: it is behind, never wrong.
        assert lake.dataset(DERIVED)["computed_through_ts"] < lake.dataset()["computed_through_ts"]
    lake.run("dbt", "run")
    assert_exact(lake, source_db)
    # A repair of derived/v1 recomputes its days from the lake: still exact, same rows.
    rows = lake_derived(lake)
    day = source_db.execute("select (now() at time zone 'UTC')::date - 1")[0][0]
    lake.run("tslake", "repair", "--dataset", DERIVED, "--start", f"{day}T00:00:00Z",
             "--end", f"{day}T12:00:00Z")
    assert lake.dataset(DERIVED)["last_run"]["mode"] == "repair"
    repaired = assert_exact(lake, source_db)
    assert set(repaired) == set(rows)
