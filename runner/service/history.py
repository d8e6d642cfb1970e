"""The service's recent ticks, kept in `<hot>/_state/service-history.json` so the status
page's lag-over-time chart and `tslake status` survive a restart.

Bounded (the newest MAX_TICKS ticks, ~12 h at the default 60 s interval) and replaced
atomically after every tick. It is a convenience, not state: a missing or unreadable
file is an empty history, never an error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runner.config import Settings
from runner.core.durable import write_json_atomic

log = logging.getLogger("tslake.service")

MAX_TICKS = 720
FILE_NAME = "service-history.json"


class TickRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    started_at: str
    duration_seconds: float
    result: str  # "ok" | "error"
    rows: int = 0
    files: int = 0
    error: str | None = None
    # Per dataset, the watermark's age right after the tick (None: nothing committed yet).
    lag_seconds: dict[str, float | None] = Field(default_factory=dict)


class TickHistory(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: int = 1
    ticks: list[TickRecord] = Field(default_factory=list)

    def append(self, record: TickRecord) -> None:
        self.ticks.append(record)
        del self.ticks[:-MAX_TICKS]


def history_path(settings: Settings) -> Path:
    return settings.state_dir / FILE_NAME


def load(settings: Settings) -> TickHistory:
    path = history_path(settings)
    try:
        return TickHistory.model_validate(json.loads(path.read_bytes()))
    except FileNotFoundError:
        return TickHistory()
    except (OSError, ValueError, ValidationError) as error:
        log.warning("ignoring an unreadable tick history %s: %s", path, error)
        return TickHistory()


def save(settings: Settings, history: TickHistory) -> None:
    """Replace the file; a failure (read-only or full disk) is logged, the tick stands."""
    if not settings.state_dir.is_dir():  # no lake yet: nothing to keep history beside
        return
    try:
        write_json_atomic(history_path(settings), history.model_dump(mode="json"))
    except OSError as error:
        log.warning("cannot write the tick history %s: %s", history_path(settings), error)
