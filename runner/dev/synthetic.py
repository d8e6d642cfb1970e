"""Synthetic farm sensor metrics and forecasts, generated inside Postgres (generate_series +
seeded random()).

The metrics table comes plain or in TimescaleDB's shape (an empty parent, one inheritance
child per ISO week); the forecast table (`forecast_points`, README "Datasets") is plain. Each
function commits its own work unless the caller already holds a transaction.

    python -m runner.dev.synthetic create [--hypertable-like] [--drop]
    python -m runner.dev.synthetic history --days 90 --sensors 48   # metrics and forecasts
    python -m runner.dev.synthetic forecasts --days 90               # forecasts only
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

Conn = psycopg.Connection[Any]

# site: kind/cadence-in-seconds ...; sensor i uses template i % 24 (48 sensors = 2 of each).
LAYOUT = """greenhouse-1: air-temp/60 humidity/60 co2/300 par-light/300 soil-moisture/300
greenhouse-2: air-temp/60 humidity/60 soil-moisture/300 water-flow/30
field-north: soil-moisture/300 soil-temp/600 air-temp/300 wind-speed/120
field-south: soil-moisture/300 soil-temp/600 leaf-wetness/600
orchard: soil-moisture/300 air-temp/300 humidity/300
barn: air-temp/300 tank-level/600 water-meter/300
weather-station: solar-radiation/300 air-pressure/600"""
TEMPLATES = [(site, kind, int(cadence)) for site, kinds in
             (line.split(": ") for line in LAYOUT.splitlines())
             for kind, cadence in (item.split("/") for item in kinds.split())]
# kind -> (shape, base, amplitude, noise sd, min, max). Shapes: 0 diurnal sine (peak 14:00 UTC)
# plus a multi-day weather swing, 1 daylight only, 2 sawtooth refilled at 06:00,
# 3 irrigation pulses 06:00-06:30 and 18:00-18:30, 4 gusty (non-negative).
KINDS: dict[str, tuple[int, float, float, float, float, float]] = {
    "air-temp": (0, 18, 6, 0.3, -30, 50), "humidity": (0, 65, -15, 1.5, 0, 100),
    "co2": (0, 600, -150, 15, 300, 2000), "par-light": (1, 0, 1400, 30, 0, 2500),
    "soil-moisture": (2, 24, 10, 0.3, 0, 60), "soil-temp": (0, 14, 2, 0.1, -10, 40),
    "water-flow": (3, 38, 0, 1.2, 0, 80), "wind-speed": (4, 3, 2, 1.5, 0, 40),
    "leaf-wetness": (0, 40, -20, 5, 0, 100), "tank-level": (2, 35, 50, 0.2, 0, 100),
    "water-meter": (3, 12, 0, 0.5, 0, 50), "solar-radiation": (1, 0, 900, 20, 0, 1400),
    "air-pressure": (0, 1013, 1.5, 0.3, 950, 1060),
}
TRIGGER, ENSURE_FN, ROUTE_FN = "tslake_route_insert", "tslake_ensure_week_chunk", "tslake_route"

TABLE_DDL = """CREATE TABLE IF NOT EXISTS {t} (
  sensor_id text NOT NULL, ts timestamptz NOT NULL, value double precision,
  quality smallint, inserted_at timestamptz NOT NULL DEFAULT now())"""
# A chunk per ISO week of ts (UTC), created on demand, with the PK and index if the parent has.
CHUNK_FUNCTIONS = ("""
CREATE OR REPLACE FUNCTION {ensure}(parent regclass, t timestamptz) RETURNS regclass
LANGUAGE plpgsql AS $fn$
DECLARE
  nsp name; rel name; chunk text; lo timestamptz; utc timestamp := t AT TIME ZONE 'UTC';
BEGIN
  SELECT n.nspname, c.relname INTO nsp, rel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = parent;
  chunk := rel || '_chunk_' || to_char(utc, 'IYYY"w"IW');
  PERFORM pg_advisory_xact_lock(hashtext(nsp || '.' || chunk));  -- one creator at a time
  IF to_regclass(format('%I.%I', nsp, chunk)) IS NULL THEN
    lo := date_trunc('week', utc) AT TIME ZONE 'UTC';
    EXECUTE format('CREATE TABLE %I.%I (CHECK (ts >= %L::timestamptz AND ts < %L::timestamptz))'
                   ' INHERITS (%s)', nsp, chunk, lo, lo + interval '7 days', parent);
    IF EXISTS (SELECT FROM pg_index WHERE indrelid = parent AND indisprimary) THEN
      EXECUTE format('ALTER TABLE %I.%I ADD PRIMARY KEY (sensor_id, ts)', nsp, chunk);
      EXECUTE format('CREATE INDEX ON %I.%I (inserted_at)', nsp, chunk);
    END IF;
  END IF;
  RETURN format('%I.%I', nsp, chunk)::regclass;
END $fn$""", """
CREATE OR REPLACE FUNCTION {route}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  EXECUTE format('INSERT INTO %s SELECT ($1).*', {ensure}(TG_RELID, NEW.ts)) USING NEW;
  RETURN NULL;  -- the row lives in its chunk; the parent stays empty, as in TimescaleDB
END $fn$""")

# Readings of the sensor catalogue at the timestamps of {grid}. OFFSET 0 keeps the subquery
# from being flattened, so each random() is drawn once per row however often it is used.
READINGS = """SELECT x.*, CASE WHEN fault THEN NULL ELSE round(least(hi, greatest(lo, v))
       * 100 + CASE WHEN corrected THEN 30 ELSE 0 END) / 100 END AS value,
     (CASE WHEN fault THEN 3 WHEN corrected THEN 4 WHEN v < lo OR v > hi THEN 2
           WHEN r1 < 0.01 THEN 1 ELSE 0 END)::smallint AS quality
FROM (SELECT r.*, r1 < 0.0005 AS fault, r2 < 0.002 AS late,
             r2 BETWEEN 0.002 AND 0.0025 AS corrected,
  CASE shape
    WHEN 0 THEN base + amp * sin(2 * pi() * (h - 8) / 24) + noise * z
                + 0.25 * amp * sin(2 * pi() * ep / 457920 + phase)
    WHEN 1 THEN greatest(0, amp * sin(2 * pi() * (h - 6) / 24) + noise * z)
    WHEN 2 THEN base + amp * (1 - (h + 18 - 24 * floor((h + 18) / 24)) / 24) + noise * z
    WHEN 3 THEN CASE WHEN h - 6 - 12 * floor((h - 6) / 12) < 0.5 THEN base + noise * z ELSE 0 END
    ELSE greatest(0, base + amp * sin(2 * pi() * (h - 9) / 24) + noise * abs(z)) END AS v
  FROM (SELECT s.*, g.ts, date_part('epoch', g.ts) AS ep,
          (date_part('epoch', g.ts) - 86400 * floor(date_part('epoch', g.ts) / 86400)) / 3600 AS h,
          random() AS r1, random() AS r2, random() AS r3, random_normal() AS z
        FROM unnest(%(id)s::text[], %(cadence)s::int[], %(phase)s::float8[], %(shape)s::int[],
                    %(base)s::float8[], %(amp)s::float8[], %(noise)s::float8[], %(lo)s::float8[],
                    %(hi)s::float8[], %(gaps)s::tstzmultirange[], %(buffered)s::tstzrange[],
                    %(delay)s::float8[])
          AS s(sensor_id, cadence, phase, shape, base, amp, noise, lo, hi, gaps, buffered, delay)
        {grid} OFFSET 0) r) x"""
HISTORY_GRID = """CROSS JOIN LATERAL generate_series(
  to_timestamp(ceil((date_part('epoch', %(from)s::timestamptz) - s.phase) / s.cadence) * s.cadence
               + s.phase),
  %(to)s::timestamptz - interval '1 microsecond', make_interval(secs => s.cadence)) AS g(ts)
  WHERE NOT s.gaps @> g.ts"""
# Normally a reading lands 1-5 s after ts; a buffered outage arrives once the gateway is
# back; a few rows arrive hours to days late, a few are corrected days later.
HISTORY_INSERT = """INSERT INTO {t} (sensor_id, ts, value, quality, inserted_at)
SELECT sensor_id, ts, value, quality, least(%(end)s::timestamptz, CASE
  WHEN buffered @> ts THEN upper(buffered) + delay * interval '1 second' + r3 * interval '10 min'
  WHEN late THEN ts + interval '1 hour' + r3 * interval '3 days'
  WHEN corrected THEN ts + interval '1 day' + r3 * interval '6 days'
  ELSE ts + interval '1 second' + r3 * interval '4 seconds' END) FROM ({readings}) q"""
UNIFORM_INSERT = """INSERT INTO {t} (sensor_id, ts, value, quality, inserted_at)
SELECT 's' || lpad(i::text, %(width)s, '0'), g.ts,
       round((20 + 5 * sin(2 * pi() * date_part('epoch', g.ts) / 86400) + i %% 7 + random())
             * 100) / 100, 0::smallint, g.ts + interval '1 second'
FROM generate_series(to_timestamp(%(first)s), to_timestamp(%(last)s),
                     make_interval(secs => %(cadence)s)) AS g(ts)
CROSS JOIN generate_series(0, %(sensors)s - 1) AS i
WHERE g.ts >= %(from)s AND g.ts < %(to)s"""
# MERGE rather than INSERT ... ON CONFLICT: an inheritance parent has no unique index that
# covers its children, but MERGE finds the existing row in whichever chunk holds it.
MERGE = """MERGE INTO {t} AS m USING ({rows}) AS n ON m.sensor_id = n.sensor_id AND m.ts = n.ts
WHEN MATCHED THEN UPDATE SET value = n.value, quality = n.quality, inserted_at = {ins_at}
WHEN NOT MATCHED THEN INSERT (sensor_id, ts, value, quality{ins_col})
  VALUES (n.sensor_id, n.ts, n.value, n.quality{ins_val})"""


# Forecasts: series -> the KINDS entry its values follow (the "truth" a forecast aims at).
FORECAST_SERIES = {"greenhouse-1/air-temp-forecast": "air-temp",
                   "greenhouse-1/humidity-forecast": "humidity",
                   "field-north/air-temp-forecast": "air-temp",
                   "weather-station/solar-radiation-forecast": "solar-radiation"}
FORECAST_ISSUE_HOURS = 6     # a forecast is issued at 00, 06, 12 and 18 UTC ...
FORECAST_HORIZON_HOURS = 48  # ... with a point per hour for the next 48 hours
FORECAST_DDL = """CREATE TABLE IF NOT EXISTS {t} (
  series_id text, issued_at timestamptz, ts timestamptz, value double precision,
  inserted_at timestamptz default now(), primary key (series_id, issued_at, ts))"""
# One row per series and issue (one bias and one publication delay per issue, drawn once:
# OFFSET 0), then one per lead hour. The error grows with the lead time: a per-issue bias
# plus noise scaled by sqrt(lead / horizon). Published 5-20 min after issue, never after
# `end`; an issue already in the table is left as it is.
FORECAST_INSERT = """INSERT INTO {t} (series_id, issued_at, ts, value, inserted_at)
SELECT series_id, issued_at, ts,
       round(least(hi, greatest(lo, CASE shape
         WHEN 0 THEN base + amp * sin(2 * pi() * (h - 8) / 24) + error
         WHEN 1 THEN CASE WHEN sin(2 * pi() * (h - 6) / 24) > 0   -- no light at night
                          THEN amp * sin(2 * pi() * (h - 6) / 24) + error ELSE 0 END
         END))::numeric, 2)::float8,
       {inserted_at}
FROM (SELECT p.*, (date_part('epoch', ts) - 86400 * floor(date_part('epoch', ts) / 86400))
                  / 3600 AS h,
             noise * 3 * (bias * (0.25 + lead_hours::float8 / %(horizon)s)
                          + z * sqrt(lead_hours::float8 / %(horizon)s)) AS error
      FROM (SELECT i.*, lead_hours, i.issued_at + make_interval(hours => lead_hours) AS ts,
                   random_normal() AS z
            FROM (SELECT s.*, g.issued_at, random_normal() AS bias,
                         300 + random() * 900 AS delay
                  FROM unnest(%(id)s::text[], %(shape)s::int[], %(base)s::float8[],
                              %(amp)s::float8[], %(noise)s::float8[], %(lo)s::float8[],
                              %(hi)s::float8[])
                    AS s(series_id, shape, base, amp, noise, lo, hi)
                  CROSS JOIN generate_series(%(first)s::timestamptz, %(last)s::timestamptz,
                                             make_interval(hours => %(every)s)) AS g(issued_at)
                  OFFSET 0) i
            CROSS JOIN generate_series(1, %(horizon)s) AS lead_hours
            OFFSET 0) p) q
ON CONFLICT (series_id, issued_at, ts) DO NOTHING"""


def connect(conninfo: str | None = None) -> Conn:
    """Connect with `conninfo`, else `TSLAKE_PG_DSN`, else libpq's PG* variables."""
    return psycopg.connect(conninfo or os.environ.get("TSLAKE_PG_DSN", ""))


def _one(conn: Conn, query: str | sql.Composed, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _regclass(conn: Conn, schema: str, name: str) -> str:
    return sql.Identifier(schema, name).as_string(conn)


def create_metrics_table(conn: Conn, *, table: str = "metrics", schema: str = "public",
                         hypertable_like: bool = False, with_indexes: bool = True) -> None:
    """Create the metrics table if missing: plain, or an empty parent routing to week chunks.

    `with_indexes=False` leaves out the primary key (sensor_id, ts) and the inserted_at index
    for a faster bulk load (10M rows: 8 s + 10 s to index afterwards, not 28 s); calling again
    with `with_indexes=True` adds whatever is missing, to the table and to every chunk.
    """
    t = sql.Identifier(schema, table)
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL(TABLE_DDL).format(t=t))
        if hypertable_like:
            names = {"ensure": sql.Identifier(schema, ENSURE_FN),
                     "route": sql.Identifier(schema, ROUTE_FN)}
            for ddl in CHUNK_FUNCTIONS:
                conn.execute(sql.SQL(ddl).format(**names))
            conn.execute(sql.SQL("CREATE OR REPLACE TRIGGER {} BEFORE INSERT ON {} FOR EACH ROW "
                                 "EXECUTE FUNCTION {}()").format(
                sql.Identifier(TRIGGER), t, names["route"]))
        if not with_indexes:
            return
        rels = conn.execute("SELECT %s UNION ALL SELECT c.relname FROM pg_inherits i JOIN pg_class"
                            " c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
                            (table, _regclass(conn, schema, table))).fetchall()
        for (rel,) in rels:  # the table and its week chunks
            r = sql.Identifier(schema, rel)
            if not _one(conn, "SELECT EXISTS (SELECT FROM pg_index WHERE indisprimary "
                        "AND indrelid = %s::regclass)", (_regclass(conn, schema, rel),)):
                conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (sensor_id, ts)").format(r))
            conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (inserted_at)").format(
                sql.Identifier(f"{rel}_inserted_at_idx"), r))


def create_week_chunks(conn: Conn, start: datetime, end: datetime, *, table: str = "metrics",
                       schema: str = "public") -> list[tuple[str, datetime, datetime]]:
    """Create the ISO-week chunks covering [start, end]; return (name, week start, week end)."""
    day = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    week = day - timedelta(days=day.weekday())  # Monday 00:00 UTC
    ensure = sql.SQL("SELECT {}(%s::regclass, %s)::oid").format(sql.Identifier(schema, ENSURE_FN))
    chunks = []
    with conn.transaction():
        while week <= end:
            oid = _one(conn, ensure, (_regclass(conn, schema, table), week))
            name = _one(conn, "SELECT relname FROM pg_class WHERE oid = %s", (oid,))
            chunks.append((name, week, week + timedelta(days=7)))
            week += timedelta(days=7)
    return chunks


def _fill(conn: Conn, schema: str, table: str, start: datetime, end: datetime,
          query: str, params: dict[str, Any]) -> int:
    """Run an INSERT for rows with ts in [start, end): into the table, or straight into each
    week chunk of a hypertable-like one (skipping the per-row routing trigger: ~30x faster)."""
    targets = [(table, start, end)]
    if _one(conn, "SELECT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = %s::regclass AND "
            "tgname = %s)", (_regclass(conn, schema, table), TRIGGER)):
        targets = [(name, max(start, lo), min(end, hi)) for name, lo, hi in
                   create_week_chunks(conn, start, end, table=table, schema=schema) if lo < end]
    total = 0
    for name, lo, hi in targets:
        cur = conn.execute(sql.SQL(query).format(t=sql.Identifier(schema, name)),
                           params | {"from": lo, "to": hi})
        total += cur.rowcount
    return total


def _catalogue(sensors: int, start: datetime, end: datetime, seed: float) -> dict[str, list[Any]]:
    """Per-sensor parameters as parallel arrays for READINGS, deterministic for a seed."""
    rng = random.Random(seed)
    span = max((end - start).total_seconds() - 12 * 3600, 1.0)

    def window(hours_lo: float, hours_hi: float) -> str:
        begin = start + timedelta(seconds=rng.uniform(0, span))
        return f'["{begin}","{begin + timedelta(hours=rng.uniform(hours_lo, hours_hi))}")'

    rows = []
    for i in range(sensors):
        site, kind, cadence = TEMPLATES[i % len(TEMPLATES)]
        shape, base, amp, noise, lo, hi = KINDS[kind]
        rows.append((f"{site}/{kind}-{i // len(TEMPLATES) + 1:02d}", cadence,
                     rng.choice([0.0, rng.randrange(cadence * 1000) / 1000]),  # clock offset
                     shape, base + rng.uniform(-1, 1) * noise * 3, amp * rng.uniform(0.8, 1.2),
                     float(noise), float(lo), float(hi),
                     "{" + window(1, 8) + "," + window(1, 8) + "}",  # two outages: data lost
                     window(2, 6) if i % 3 == 0 else None,  # an outage the gateway buffered ...
                     rng.uniform(3600, 2 * 86400)))  # ... and delivered this long after it ended
    keys = ("id", "cadence", "phase", "shape", "base", "amp", "noise", "lo", "hi", "gaps",
            "buffered", "delay")
    return {key: list(column) for key, column in zip(keys, zip(*rows, strict=True), strict=True)}


def fill_history(conn: Conn, *, days: int = 90, sensors: int = 48, end: datetime | None = None,
                 seed: float = 0.42, table: str = "metrics", schema: str = "public") -> int:
    """Insert `days` of realistic readings, ts in [end - days, end); return the row count.

    About 2.5 million rows for 48 sensors x 90 days. inserted_at never exceeds `end`
    (default: the database's now()). Reproducible for a given seed and end.
    """
    with conn.transaction():
        end = end or _one(conn, "SELECT now()")
        start = end - timedelta(days=days)
        conn.execute("SELECT setseed(%s)", (seed,))
        query = sql.SQL(HISTORY_INSERT).format(t=sql.SQL("{t}"), readings=sql.SQL(
            READINGS).format(grid=sql.SQL(HISTORY_GRID))).as_string(conn)
        params = _catalogue(sensors, start, end, seed) | {"end": end}
        return _fill(conn, schema, table, start, end, query, params)


def fill_uniform(conn: Conn, *, sensors: int, days: float, cadence_seconds: int,
                 end: datetime | None = None, table: str = "metrics",
                 schema: str = "public") -> int:
    """Insert sensors x floor(days * 86400 / cadence) rows: sensor ids s0000..., ts on the
    cadence's epoch grid, inserted_at = ts + 1 s <= end (default now()). Returns the count."""
    with conn.transaction():
        end = end or _one(conn, "SELECT now()")
        last = math.floor((end.timestamp() - 1) / cadence_seconds) * cadence_seconds
        first = last - (int(days * 86400 // cadence_seconds) - 1) * cadence_seconds
        params = {"width": max(4, len(str(sensors - 1))), "first": first, "last": last,
                  "cadence": cadence_seconds, "sensors": sensors}
        return _fill(conn, schema, table, datetime.fromtimestamp(first, UTC), end,
                     UNIFORM_INSERT, params)


def _merge(conn: Conn, schema: str, table: str, rows: sql.Composable, params: dict[str, Any],
           explicit_inserted_at: bool) -> None:
    at, col, val = (("n.inserted_at", ", inserted_at", ", n.inserted_at") if explicit_inserted_at
                    else ("now()", "", ""))  # else the column default: now()
    conn.execute(sql.SQL(MERGE).format(rows=rows, t=sql.Identifier(schema, table),
                                       ins_at=sql.SQL(at), ins_col=sql.SQL(col),
                                       ins_val=sql.SQL(val)), params)


def insert_live(conn: Conn, *, sensors: int = 48, at: datetime | None = None,
                table: str = "metrics", schema: str = "public") -> int:
    """Upsert one reading per sensor at `at` (default now(), whole second); return the count.

    A new row's inserted_at is left to its default now(); an existing one gets now() too.
    """
    with conn.transaction():
        at = at or _one(conn, "SELECT now()")
        rows = sql.SQL("SELECT sensor_id, ts, value, quality FROM ({}) q").format(sql.SQL(
            READINGS).format(grid=sql.SQL("CROSS JOIN (SELECT date_trunc('second', "
                                          "%(at)s::timestamptz)) AS g(ts)")))
        _merge(conn, schema, table, rows, _catalogue(sensors, at, at, 0.42) | {"at": at},
               explicit_inserted_at=False)
    return sensors


def awkward_rows(end: datetime) -> list[tuple[str, datetime, float | None, int | None]]:
    """The edge-case rows (sensor_id, ts, value, quality) that `insert_awkward_rows` writes."""
    day = end.astimezone(UTC).replace(microsecond=0) - timedelta(days=1)
    return [
        ("quote'single/air-temp-01", day + timedelta(microseconds=1), 1.5, 0),
        ('quote"double/air-temp-01', day + timedelta(microseconds=999999), -0.0, 0),
        ("back\\slash\\probe-01", day + timedelta(seconds=1, microseconds=123456), 2.25, 1),
        ("température/ß", day + timedelta(hours=1), math.nan, 3),
        ("emoji/🌱🌡️-01", day + timedelta(hours=2), math.inf, 2),
        ("line\nbreak\ttab/%_like", day + timedelta(hours=3), -math.inf, 2),
        ("x'); DROP TABLE metrics; --", day + timedelta(hours=4), None, 3),
        ("", day + timedelta(hours=5), 1.7976931348623157e308, None),
        ("long/" + "x" * 1000, day + timedelta(hours=6), 5e-324, -32768),
        ("epoch/before-1970", datetime(1969, 12, 31, 23, 59, 59, 999999, UTC), 42.0, 32767),
        ("epoch/before-1970", datetime(1950, 6, 15, 12, 0, 0, 500000, UTC), None, None),
    ]


def insert_awkward_rows(conn: Conn, *, table: str = "metrics", schema: str = "public",
                        end: datetime | None = None) -> int:
    """Upsert the `awkward_rows(end)` edge cases, inserted_at = end (default now())."""
    with conn.transaction():
        end = end or _one(conn, "SELECT now()")
        rows = awkward_rows(end)
        ids, stamps, values, qualities = (list(col) for col in zip(*rows, strict=True))
        source = sql.SQL("SELECT *, %(end)s::timestamptz AS inserted_at FROM unnest(%(id)s::text[],"
                         " %(ts)s::timestamptz[], %(value)s::float8[], %(quality)s::int2[]) "
                         "AS n(sensor_id, ts, value, quality)")
        params = {"id": ids, "ts": stamps, "value": values, "quality": qualities, "end": end}
        _merge(conn, schema, table, source, params, explicit_inserted_at=True)
    return len(rows)


def create_forecast_points_table(conn: Conn, *, table: str = "forecast_points",
                                 schema: str = "public") -> None:
    """Create the forecast table of README "Datasets" if missing, with its inserted_at index."""
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL(FORECAST_DDL).format(t=sql.Identifier(schema, table)))
        conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (inserted_at)").format(
            sql.Identifier(f"{table}_inserted_at_idx"), sql.Identifier(schema, table)))


def _forecast_params(series: dict[str, str] | None) -> dict[str, Any]:
    chosen = FORECAST_SERIES if series is None else series
    kinds = [KINDS[kind] for kind in chosen.values()]
    return {"id": list(chosen), "shape": [0 if k[0] == 0 else 1 for k in kinds],
            **{name: [float(k[i]) for k in kinds]
               for i, name in ((1, "base"), (2, "amp"), (3, "noise"), (4, "lo"), (5, "hi"))},
            "horizon": FORECAST_HORIZON_HOURS, "every": FORECAST_ISSUE_HOURS}


def fill_forecasts(conn: Conn, *, days: float = 90, end: datetime | None = None,
                   seed: float = 0.42, series: dict[str, str] | None = None,
                   table: str = "forecast_points", schema: str = "public") -> int:
    """Insert the forecasts issued in [end - days, end]: every FORECAST_ISSUE_HOURS (UTC,
    aligned to midnight), FORECAST_HORIZON_HOURS hourly points ahead of each issue, so the
    newest issues reach two days past `end`. inserted_at (publication) is 5-20 min after
    the issue, never after `end` (default: the database's now()). Returns the row count:
    4 series x 90 days = 69,120 rows. Reproducible for a given seed and end; an issue
    already in the table is kept."""
    with conn.transaction():
        end = end or _one(conn, "SELECT now()")
        every = FORECAST_ISSUE_HOURS * 3600
        last = math.floor(end.timestamp() / every) * every
        first = math.ceil((end.timestamp() - days * 86400) / every) * every
        conn.execute("SELECT setseed(%s)", (seed,))
        query = sql.SQL(FORECAST_INSERT).format(
            t=sql.Identifier(schema, table),
            inserted_at=sql.SQL("least(%(end)s::timestamptz, "
                                "issued_at + delay * interval '1 second')"))
        params = _forecast_params(series) | {"first": datetime.fromtimestamp(first, UTC),
                                             "last": datetime.fromtimestamp(last, UTC),
                                             "end": end}
        return conn.execute(query, params).rowcount


def issue_forecasts(conn: Conn, *, at: datetime | None = None, seed: float = 0.42,
                    series: dict[str, str] | None = None, table: str = "forecast_points",
                    schema: str = "public") -> int:
    """Issue one new forecast per series at `at` (default now(), whole second), inserted_at
    its default now(); returns the row count (series x FORECAST_HORIZON_HOURS)."""
    with conn.transaction():
        at = at or _one(conn, "SELECT date_trunc('second', now())")
        conn.execute("SELECT setseed(%s)", (seed,))
        query = sql.SQL(FORECAST_INSERT).format(t=sql.Identifier(schema, table),
                                                inserted_at=sql.SQL("now()"))
        return conn.execute(query, _forecast_params(series) | {"first": at, "last": at}).rowcount


def main(argv: list[str] | None = None) -> int:
    """The command line; each command prints one line saying what it did."""
    parser = argparse.ArgumentParser(prog="python -m runner.dev.synthetic",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", default="metrics")
    parser.add_argument("--schema", default="public")
    parser.add_argument("--forecast-table", default="forecast_points")
    parser.add_argument("--dsn", help="libpq conninfo (default: TSLAKE_PG_DSN, else PG* vars)")
    commands = parser.add_subparsers(dest="command", required=True)
    sub = {name: commands.add_parser(name) for name in ("create", "history", "uniform", "live",
                                                        "awkward", "forecasts")}
    for flag in ("--hypertable-like", "--no-indexes", "--drop"):
        sub["create"].add_argument(flag, action="store_true")
    for name, sensors, days in (("history", 48, 90), ("uniform", 200, 35), ("live", 48, 0)):
        sub[name].add_argument("--sensors", type=int, default=sensors)
        if days:
            sub[name].add_argument("--days", type=float, default=days)
    sub["history"].add_argument("--seed", type=float, default=0.42)
    sub["history"].add_argument("--no-forecasts", action="store_true",
                                help="metrics only (default: forecasts of the same days too)")
    sub["forecasts"].add_argument("--days", type=float, default=90)
    sub["forecasts"].add_argument("--seed", type=float, default=0.42)
    sub["uniform"].add_argument("--cadence", type=int, default=60)
    args = parser.parse_args(argv)

    where = {"table": args.table, "schema": args.schema}
    began = time.monotonic()
    with connect(args.dsn) as conn:
        if args.command == "create":
            if args.drop:  # CASCADE takes the week chunks along
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(
                    sql.Identifier(args.schema, args.table)))
            create_metrics_table(conn, hypertable_like=args.hypertable_like,
                                 with_indexes=not args.no_indexes, **where)
            what = f"created {'hypertable-like ' * args.hypertable_like}table"
        elif args.command == "forecasts":
            forecasts = {"table": args.forecast_table, "schema": args.schema}
            create_forecast_points_table(conn, **forecasts)
            rows = fill_forecasts(conn, days=args.days, seed=args.seed, **forecasts)
            print(f"wrote {rows:,} forecast rows to {args.schema}.{args.forecast_table} in "
                  f"{time.monotonic() - began:.1f} s")
            return 0
        else:
            rows = {"history": lambda: fill_history(conn, days=args.days, sensors=args.sensors,
                                                    seed=args.seed, **where),
                    "uniform": lambda: fill_uniform(conn, sensors=args.sensors, days=args.days,
                                                    cadence_seconds=args.cadence, **where),
                    "live": lambda: insert_live(conn, sensors=args.sensors, **where),
                    "awkward": lambda: insert_awkward_rows(conn, **where)}[args.command]()
            what = f"wrote {rows:,} {args.command} rows to"
            if args.command == "history" and not args.no_forecasts:
                forecasts = {"table": args.forecast_table, "schema": args.schema}
                create_forecast_points_table(conn, **forecasts)
                points = fill_forecasts(conn, days=args.days, seed=args.seed, **forecasts)
                print(f"{what} {args.schema}.{args.table} and {points:,} forecast rows to "
                      f"{args.schema}.{args.forecast_table} in "
                      f"{time.monotonic() - began:.1f} s")
                return 0
    print(f"{what} {args.schema}.{args.table} in {time.monotonic() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
