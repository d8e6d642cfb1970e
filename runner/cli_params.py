"""Command-line values, parsed and validated before any SQL exists: the one parser of
times, dates and counts for every command, also as click parameter types (TIME, DATE,
WholeNumber), so a bad value is exit 2 before the command's body runs.

A time `T` is RFC 3339 (`2026-01-22T10:15:00Z`, an offset is converted to UTC) or a date
(`2026-01-22`, meaning 00:00 UTC). Windows are half-open: `[start, end)`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

import click

from runner.core.manifest import is_calendar_date
from runner.errors import ConfigError

MAX_DAYS = 3700        # ten years of days: a larger window is a typo
MAX_SENSOR_IDS = 1000  # more than this: use --sample or --all
MAX_SAMPLE = 100_000   # `parity --sample N`: more series than a lake holds is a typo
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


def parse_date(text: str, option: str = "--date") -> str:
    """A UTC calendar date as YYYY-MM-DD."""
    if not is_calendar_date(text):
        raise ConfigError(f"{option} {text!r} is not a calendar date: give a UTC date like "
                          "2026-01-22 (YYYY-MM-DD)")
    return text


def parse_window(start: str | datetime, end: str | datetime) -> tuple[datetime, datetime]:
    """`--start`/`--end` (text, or already parsed by TIME) as a half-open UTC window."""
    lo = start if isinstance(start, datetime) else parse_instant(start, "--start")
    hi = end if isinstance(end, datetime) else parse_instant(end, "--end")
    shown = (_shown(start), _shown(end))
    if lo >= hi:
        raise ConfigError(f"--start {shown[0]} is not before --end {shown[1]}: the window is "
                          "[start, end); for one day give --start D --end D+1")
    if hi - lo > timedelta(days=MAX_DAYS):
        raise ConfigError(f"the window {shown[0]} .. {shown[1]} is longer than {MAX_DAYS} "
                          "days: narrow it (or use `tslake parity --all`)")
    return lo, hi


def _shown(value: str | datetime) -> str:
    if isinstance(value, str):
        return value
    if value.time() == time():
        return value.date().isoformat()
    return value.isoformat().replace("+00:00", "Z")


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


class OptionError(click.BadParameter):
    """A bad option value whose message already names the option: printed as it is."""


class _Instant(click.ParamType):
    """`T`: RFC 3339 or a date (00:00 UTC), as an aware UTC datetime."""

    name = "T"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_instant(str(value), _option(param))
        except ConfigError as error:
            raise OptionError(str(error), ctx, param) from None


class _CalendarDate(click.ParamType):
    """A UTC calendar date, YYYY-MM-DD."""

    name = "YYYY-MM-DD"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        try:
            return parse_date(str(value), _option(param))
        except ConfigError as error:
            raise OptionError(str(error), ctx, param) from None


class WholeNumber(click.IntRange):
    """A count within bounds (click's IntRange), with a message that names the option."""

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        text = str(value).strip()
        number = int(text) if text.isdigit() else None
        if number is None or (self.min is not None and number < self.min) \
                or (self.max is not None and number > self.max):
            bounds = f">= {self.min}" if self.max is None else f"from {self.min} to {self.max}"
            raise OptionError(f"{_option(param)} {value!r} is not a whole number {bounds}",
                              ctx, param)
        return number


TIME = _Instant()
DATE = _CalendarDate()


def _option(param: click.Parameter | None) -> str:
    return param.opts[0] if param is not None and param.opts else "value"
