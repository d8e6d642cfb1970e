"""Command-line values for parity and repair, parsed and validated before any SQL exists.

A time `T` is RFC 3339 (`2026-01-22T10:15:00Z`, an offset is converted to UTC) or a date
(`2026-01-22`, meaning 00:00 UTC). Windows are half-open: `[start, end)`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from runner.errors import ConfigError

MAX_DAYS = 3700        # ten years of days: a larger window is a typo
MAX_SENSOR_IDS = 1000  # more than this: use --sample or --all
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def parse_instant(text: str, option: str) -> datetime:
    """`--start`/`--end` as an aware UTC datetime."""
    value = text.strip()
    try:
        if _DATE.match(value):
            return datetime.combine(date.fromisoformat(value), time(), UTC)
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a time: use RFC 3339 like "
                          "2026-01-22T10:15:00Z or a date like 2026-01-22") from None
    if moment.tzinfo is None:
        raise ConfigError(f"{option} {text!r} has no time zone: add Z (UTC) or an offset "
                          "like +01:00")
    return moment.astimezone(UTC)


def parse_window(start: str, end: str) -> tuple[datetime, datetime]:
    lo, hi = parse_instant(start, "--start"), parse_instant(end, "--end")
    if lo >= hi:
        raise ConfigError(f"--start {start} is not before --end {end}: the window is "
                          "[start, end); for one day give --start D --end D+1")
    if hi - lo > timedelta(days=MAX_DAYS):
        raise ConfigError(f"the window {start} .. {end} is longer than {MAX_DAYS} days: "
                          "narrow it (or use `tslake parity --all`)")
    return lo, hi


def days_in(lo: datetime, hi: datetime) -> list[str]:
    """The UTC dates (YYYY-MM-DD) that [lo, hi) touches."""
    first = lo.astimezone(UTC).date()
    last = (hi.astimezone(UTC) - timedelta(microseconds=1)).date()
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def parse_sensor_ids(values: tuple[str, ...] | list[str]) -> list[str]:
    """`--sensor-ids a,b` (repeatable): the ids, unique, in the order given. They are
    bound as query parameters later, never written into SQL text."""
    ids: list[str] = []
    for value in values:
        for item in value.split(","):
            sensor = item.strip()
            if not sensor:
                raise ConfigError(f"--sensor-ids {value!r} has an empty id: separate ids "
                                  "with single commas, like --sensor-ids a,b")
            if "\x00" in sensor:
                raise ConfigError("--sensor-ids contains a NUL character, which no Postgres "
                                  "text value can hold: remove it")
            if sensor not in ids:
                ids.append(sensor)
    if len(ids) > MAX_SENSOR_IDS:
        raise ConfigError(f"--sensor-ids names {len(ids)} sensors, more than "
                          f"{MAX_SENSOR_IDS}: use --sample N or --all instead")
    return ids
