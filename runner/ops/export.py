"""Exports from Postgres through the dataset's lake model: a tick, and a repair of whole days.

The lake model's compiled SQL (dbt compiled it for this run's mode, see
macros/postgres/postgres_window.sql) reads one window selected by DuckDB variables; this
module selects the window, stages the rows, writes one sorted file per date and shard
(macros/export/lake_copy_partition.sql) and commits them through the manifest
(runner/core/publish.py). A tick exports rows with `lo < version <= hi`,
`hi` from Postgres's clock (macros/postgres/stable_watermark.sql), and commits the files
with the watermark `hi`; a repair re-exports whole days and replaces their files.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import date as Date
from datetime import datetime, timedelta
from typing import Any

import duckdb

from runner.config import Settings
from runner.core import manifest, publish
from runner.core.datasets import DatasetSpec
from runner.core.manifest import Manifest
from runner.dbt_bridge import sqlmacros
from runner.errors import ConfigError, ManifestError, SourceError
from runner.postgres import standby
from runner.postgres.connection import SOURCE_CATALOG

log = logging.getLogger("tslake.export")

WINDOW_TABLE = "lake_window"


@dataclass(frozen=True)
class StableWatermark:
    """What Postgres said about its clock and open transactions (stable_watermark); for a
    standby source, the primary's, with how far the standby replayed (`replay`)."""

    stable_hi: str
    postgres_now: str
    oldest_xact_start: str | None
    oldest_xact_pid: int | None
    prepared_xacts: int
    in_recovery: bool = False
    replay: standby.Replay | None = None


def _observe(conn: duckdb.DuckDBPyConnection, catalog: str) -> StableWatermark:
    try:
        row = conn.execute(sqlmacros.render("stable_watermark", catalog=catalog)).fetchone()
    except duckdb.Error as error:
        raise SourceError(f"cannot read Postgres's clock and open transactions: "
                          f"{' '.join(str(error).split())}; check that Postgres is up") from None
    assert row is not None
    stable_hi, now, oldest, pid, prepared, sees_all, role, in_recovery = row
    if not sees_all:
        raise SourceError(f"Postgres role '{role}' cannot see other sessions' transactions, so "
                          "tslake cannot tell which rows are still uncommitted: run GRANT "
                          f"pg_read_all_stats TO \"{role}\"")
    return StableWatermark(stable_hi=stable_hi, postgres_now=now, oldest_xact_start=oldest,
                           oldest_xact_pid=pid, prepared_xacts=int(prepared),
                           in_recovery=bool(in_recovery))


def stable_watermark(settings: Settings, conn: duckdb.DuckDBPyConnection) -> StableWatermark:
    """The window's upper bound from Postgres; refuses a role that cannot see other
    sessions' transactions (it could not tell which rows are still uncommitted).

    On a hot standby the cap and the clock come from the primary (TSLAKE_PRIMARY_DSN, or
    a refusal), then its WAL position, and this waits (TSLAKE_STANDBY_REPLAY_TIMEOUT_SECONDS
    at most) until the standby has replayed past it: `replay.reached` says whether the
    window may be read from the standby now."""
    observed = _observe(conn, SOURCE_CATALOG)
    if not observed.in_recovery:
        return observed
    standby.attach_primary(settings, conn)
    primary = _observe(conn, standby.PRIMARY_CATALOG)
    cap_taken_at = time.monotonic()
    position = standby.primary_wal_position(conn)  # after the cap: covers every commit it saw
    replay = standby.wait_for_replay(conn, position, cap_taken_at,
                                     settings.standby_replay_timeout_seconds)
    return replace(primary, in_recovery=True, replay=replay)


def backfill_watermark(settings: Settings, conn: duckdb.DuckDBPyConnection) -> StableWatermark:
    """stable_watermark for a backfill, which cannot hold: a standby that has not replayed
    past the primary's position within the timeout is an error (nothing written)."""
    stable = stable_watermark(settings, conn)
    if stable.replay is not None and not stable.replay.reached:
        raise SourceError("backfill: " + stable.replay.hold_message(
            settings.standby_replay_timeout_seconds) + "; run it again once replay caught up")
    return stable


def _hold(settings: Settings, stable: StableWatermark, lo: datetime,
          committed: bool) -> dict[str, str] | None:
    """Why this tick must not move the watermark past `lo`, if it must not: a prepared
    transaction (its start is unknown), a standby that has not replayed far enough, or
    Postgres's clock (minus the lag guard) behind the committed watermark."""
    if stable.prepared_xacts > 0:
        return {"reason": "prepared_transactions",
                "message": f"{stable.prepared_xacts} prepared transaction(s) in "
                           "pg_prepared_xacts (their start is unknown)"}
    if stable.replay is not None and not stable.replay.reached:
        return {"reason": "standby_replay",
                "message": stable.replay.hold_message(settings.standby_replay_timeout_seconds)}
    clock = manifest.parse_rfc3339(stable.postgres_now) - timedelta(seconds=settings.lag_seconds)
    if committed and clock < lo:
        return {"reason": "clock_behind",
                "message": f"Postgres's clock {stable.postgres_now} minus the lag guard "
                           f"({settings.lag_seconds:g} s) is behind the committed watermark "
                           f"{manifest.rfc3339(lo)} (a restored database or a clock step?); "
                           "ticks resume once the clock passes it"}
    return None


def select_window(conn: duckdb.DuckDBPyConnection, *, lo: str | None = None,
                  hi: str | None = None, ts_from: str | None = None, ts_to: str | None = None,
                  series: str | None = None) -> None:
    """Set the window variables postgres_window() reads, on this connection."""
    conn.execute(sqlmacros.render("export_window_statements", lo=lo, hi=hi, ts_from=ts_from,
                                  ts_to=ts_to, series=series))


def write_window(settings: Settings, conn: duckdb.DuckDBPyConnection, spec: DatasetSpec,
                 model_sql: str, run_id: str, kind: str) -> list[publish.StagedFile]:
    """Run the model for the selected window and write its rows as one sorted
    `<kind>-<run_id>.parquet.tmp` per date and shard, beside where it will be published."""
    conn.execute(f"create or replace temp table {WINDOW_TABLE} as {model_sql}")
    try:
        partitions = [(day.isoformat(), int(shard)) for day, shard in conn.execute(
            f"select date, shard from {WINDOW_TABLE} group by all order by all").fetchall()]
        publish.prepare_partitions(settings, spec.name, partitions)
        root = publish.dataset_root(settings, spec.name)
        files = []
        for day, shard in partitions:
            path = publish.staged_path(root, day, shard, kind, run_id)
            row = conn.execute(sqlmacros.render(
                "lake_copy_partition", relation=WINDOW_TABLE, date=day, shard=shard,
                key=list(spec.key), path=str(path))).fetchone()
            files.append(publish.StagedFile(date=day, shard=shard, rows=int(row[0]) if row else 0,
                                            path=str(path)))
        return files
    finally:
        conn.execute(f"drop table if exists {WINDOW_TABLE}")


def tick(settings: Settings, conn: duckdb.DuckDBPyConnection, document: Manifest,
         spec: DatasetSpec, model_sql: str, run_id: str) -> dict[str, Any]:
    """One incremental tick of `spec`: rows with lo < version <= hi, committed with hi."""
    stable = stable_watermark(settings, conn)
    entry = document.dataset(spec.name, settings.shards)
    stable_hi = manifest.parse_rfc3339(stable.stable_hi)
    lo = (manifest.parse_rfc3339(entry.computed_through_ts) if entry.computed_through_ts
          else stable_hi - timedelta(hours=1))
    # Never move the watermark back (a longer lag, a clock step), nor forward while held.
    held = _hold(settings, stable, lo, committed=entry.computed_through_ts is not None)
    hi = lo if held else max(lo, stable_hi)
    if held is not None:
        log.log(logging.INFO if held["reason"] == "prepared_transactions" else logging.WARNING,
                "tslake: %s: watermark held at %s: %s", spec.name, manifest.rfc3339(lo),
                held["message"], extra={"hold_reason": held["reason"]})
    files: list[publish.StagedFile] = []
    window = (manifest.rfc3339(lo), manifest.rfc3339(hi))
    if lo != hi:
        select_window(conn, lo=window[0], hi=window[1])
        files = write_window(settings, conn, spec, model_sql, run_id, "part")
    summary = publish.publish_segments(
        settings, document, spec.name, run_id=run_id, kind="part", files=files,
        watermark=window[1],
        run_info={"mode": "tick", "window_from": window[0], "window_to": window[1],
                  "oldest_open_xact_start": stable.oldest_xact_start,
                  "oldest_open_xact_pid": stable.oldest_xact_pid,
                  **({"held": held} if held else {}),
                  **({"source": "standby", "primary_wal_lsn": stable.replay.primary_wal_lsn,
                      "standby_replay_lsn": stable.replay.standby_replay_lsn}
                     if stable.replay else {})})
    log.info("tslake: %s: tick %s exported %d rows in %d files, window (%s, %s]", spec.name,
             run_id, summary["rows"], summary["files"], *window)
    return summary


def repair(settings: Settings, conn: duckdb.DuckDBPyConnection, document: Manifest,
           spec: DatasetSpec, model_sql: str, run_id: str, days: list[str]) -> dict[str, Any]:
    """Re-export whole UTC days from Postgres, each day's files replaced in one commit, so
    rows deleted or rewritten in Postgres without a new version reach the lake. Rows are
    capped at the committed watermark, which does not move; a cold day stays cold."""
    entry = document.datasets.get(spec.name)
    cap = entry.computed_through_ts if entry else None
    if cap is None:
        raise ManifestError(f"repair: {spec.name} has no committed watermark yet: run `tslake "
                            "tick` or `tslake backfill` first")
    rows = 0
    for number, day in enumerate(days, 1):
        if not manifest.is_calendar_date(day):
            raise ConfigError(f"repair date {day!r} is not a date like 2026-01-22")
        next_day = (Date.fromisoformat(day) + timedelta(days=1)).isoformat()
        select_window(conn, hi=cap, ts_from=f"{day}T00:00:00Z", ts_to=f"{next_day}T00:00:00Z")
        files = write_window(settings, conn, spec, model_sql, run_id, "backfill")
        publish.publish_segments(settings, document, spec.name, run_id=run_id, kind="backfill",
                                 files=files, watermark=cap, replace_dates=frozenset({day}),
                                 run_info={"mode": "repair", "date": day, "days": len(days)})
        day_rows = sum(file.rows for file in files)
        rows += day_rows
        log.info("tslake: %s: repair %s: %d rows in %d files (%d/%d)", spec.name, day,
                 day_rows, len(files), number, len(days))
    log.info("tslake: %s: repair %s re-exported %d rows over %d days, capped at %s <= %s",
             spec.name, run_id, rows, len(days), spec.version, cap)
    return {"days": days, "rows": rows}
