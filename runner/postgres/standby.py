"""A hot standby as the source (README, "A hot standby as the source").

A standby's `pg_stat_activity` cannot see the primary's open transactions, and a row
committed on the primary appears on the standby only once replayed. So a tick against a
standby takes its open-transaction cap and clock from the primary (TSLAKE_PRIMARY_DSN,
attached read-only as another catalog), then the primary's WAL position, and reads
its window from the standby only once the standby has replayed past that position. Every
row with `inserted_at` at or below the cap belongs to a transaction that had committed when
the cap was taken, so its commit record lies below the position: once replayed there, the
standby shows it. Without TSLAKE_PRIMARY_DSN a standby source is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import duckdb

from runner.config import Settings
from runner.dbt_bridge import sqlmacros
from runner.errors import SourceError
from runner.postgres.connection import SOURCE_CATALOG, SourceConninfo, attach_source

PRIMARY_CATALOG = "pg_primary"  # the DuckDB catalog of a standby source's primary
POLL_SECONDS = 0.1
# WAL page headers (PostgreSQL's SizeOfXLogLongPHD at a segment's start, SizeOfXLogShortPHD
# on every other page): an idle primary's insert position points past one of them.
_LONG_PAGE_HEADER, _SHORT_PAGE_HEADER = 40, 24


def format_lsn(position: int) -> str:
    """A WAL byte position as Postgres prints a pg_lsn: `16/B374D848`."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def wal_end(insert_position: int, page_size: int, segment_size: int) -> int:
    """The end of the last WAL record at or before `insert_position`.

    At a page boundary Postgres reports the insert position past the next page's header,
    where no record can end (the smallest record is longer than the header); the records
    before it end at the boundary itself, which is as far as a standby can replay."""
    if insert_position % segment_size == _LONG_PAGE_HEADER:
        return insert_position - _LONG_PAGE_HEADER
    if insert_position % page_size == _SHORT_PAGE_HEADER:
        return insert_position - _SHORT_PAGE_HEADER
    return insert_position


def refusal(source: SourceConninfo) -> SourceError:
    return SourceError(f"Postgres at {source.describe()} is a hot standby (pg_is_in_recovery()): "
                       "its pg_stat_activity cannot see the primary's open transactions, so a "
                       "tick could skip their rows: set TSLAKE_PRIMARY_DSN to the primary's "
                       "connection string (e.g. 'host=primary.example'), nothing was written")


def is_in_recovery(conn: duckdb.DuckDBPyConnection, catalog: str = SOURCE_CATALOG) -> bool:
    try:
        row = conn.execute(sqlmacros.render("postgres_in_recovery", catalog=catalog)
                           ).fetchone()
    except duckdb.Error as error:
        raise SourceError(f"cannot ask Postgres whether it is a standby: "
                          f"{' '.join(str(error).split())}; check that Postgres is up") from None
    return bool(row and row[0])


def require_primary_for_standby(settings: Settings, conn: duckdb.DuckDBPyConnection) -> None:
    """Refuse a standby source without TSLAKE_PRIMARY_DSN, before anything is written."""
    if settings.primary_dsn is None and is_in_recovery(conn):
        raise refusal(SourceConninfo())


def attach_primary(settings: Settings, conn: duckdb.DuckDBPyConnection) -> SourceConninfo:
    """The standby source's primary, attached read-only as PRIMARY_CATALOG (once per
    DuckDB database); refuses when TSLAKE_PRIMARY_DSN is unset."""
    if settings.primary_dsn is None:
        raise refusal(SourceConninfo())
    primary = SourceConninfo(primary_dsn=settings.primary_dsn)
    attached = conn.execute("select count(*) from duckdb_databases() where database_name = ?",
                            [PRIMARY_CATALOG]).fetchone()
    if not attached or not attached[0]:
        attach_source(conn, primary, catalog=PRIMARY_CATALOG, what="the primary",
                      settings_hint="TSLAKE_PRIMARY_DSN")
    if is_in_recovery(conn, PRIMARY_CATALOG):
        raise SourceError(f"TSLAKE_PRIMARY_DSN names a standby too ({primary.describe()}): "
                          "point it at the primary, the server that accepts writes")
    return primary


@dataclass(frozen=True)
class PrimaryPosition:
    """The primary's WAL, read just after its open-transaction cap."""

    insert_end: int  # every commit the cap relied on ends at or below it
    flush: int
    async_flush_seconds: float  # 3 x wal_writer_delay: an async commit is flushed by then


def primary_wal_position(conn: duckdb.DuckDBPyConnection) -> PrimaryPosition:
    """Read after the cap (a later statement), so it covers every commit the cap saw."""
    row = conn.execute(sqlmacros.render("primary_wal_position", catalog=PRIMARY_CATALOG)
                       ).fetchone()
    assert row is not None
    insert, flush, page, segment, writer_delay_ms = row
    return PrimaryPosition(insert_end=wal_end(int(insert), int(page), int(segment)),
                           flush=int(flush), async_flush_seconds=3 * int(writer_delay_ms) / 1000)


@dataclass(frozen=True)
class Replay:
    """How far the standby got while the tick waited for the primary's position."""

    primary_wal_lsn: str
    standby_replay_lsn: str | None
    reached: bool
    paused: bool
    waited_seconds: float

    def hold_message(self, timeout: float) -> str:
        cause = ("replay is paused on the standby (pg_wal_replay_resume() resumes it)"
                 if self.paused else "the standby is behind the primary")
        return (f"the standby has replayed to {self.standby_replay_lsn or 'nothing'}, not yet "
                f"past the primary's {self.primary_wal_lsn} taken with the cap, after "
                f"{timeout:g} s (TSLAKE_STANDBY_REPLAY_TIMEOUT_SECONDS): {cause}")


def wait_for_replay(conn: duckdb.DuckDBPyConnection, primary: PrimaryPosition,
                    cap_taken_at: float, timeout: float) -> Replay:
    """Poll the standby (the source) until it has replayed every commit the cap saw, for at
    most `timeout` seconds. That is the primary's insert position, or, as soon as every
    asynchronous commit from before the cap has been flushed (3 x wal_writer_delay after
    it), the primary's flush position then, if lower: WAL above it that an idle primary
    has not flushed holds no commit the cap saw, and no standby can replay it yet. Each
    poll is its own statement, so the window read after a successful wait takes a
    snapshot that includes everything replayed up to it."""
    started = time.monotonic()
    target, settled = primary.insert_end, primary.flush >= primary.insert_end
    while True:
        row = conn.execute(sqlmacros.render("standby_replay_position", catalog=SOURCE_CATALOG)
                           ).fetchone()
        replayed = int(row[0]) if row and row[0] is not None else None
        paused = bool(row and row[1])
        now = time.monotonic()
        reached = replayed is not None and replayed >= target
        if not reached and not settled and now >= cap_taken_at + primary.async_flush_seconds:
            target, settled = min(target, primary_wal_position(conn).flush), True
            continue  # compare with the settled target before sleeping
        if reached or now - started >= timeout:
            return Replay(primary_wal_lsn=format_lsn(target),
                          standby_replay_lsn=None if replayed is None else format_lsn(replayed),
                          reached=reached, paused=paused, waited_seconds=round(now - started, 3))
        time.sleep(POLL_SECONDS)
