"""One log line per event: JSON when stderr is not a terminal (launchd, systemd, pipes),
human-readable when it is. Every line passes a redaction filter: no password, ever."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

# key=value and URI forms of a password, whatever put them in a message.
_PASSWORD_PATTERNS = (
    re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE),
    re.compile(r"(postgres(?:ql)?://[^:/@\s]+:)([^@\s]+)(@)", re.IGNORECASE),
)
# Attributes every LogRecord has; anything else was passed with `extra=` and is emitted.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


def redact(text: str) -> str:
    """Mask passwords in free text (the known source password is masked by its own value
    in runner.postgres.connection; this catches DSNs from anywhere else)."""
    text = _PASSWORD_PATTERNS[0].sub(r"\1***", text)
    return _PASSWORD_PATTERNS[1].sub(r"\1***\3", text)


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = tuple(secret for secret in secrets if secret)

    def filter(self, record: logging.LogRecord) -> bool:
        message = redact(record.getMessage())
        for secret in self.secrets:
            message = message.replace(secret, "***")
        record.msg, record.args = message, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        event.update({key: value for key, value in record.__dict__.items()
                      if key not in _STANDARD})
        if record.exc_info:
            event["error"] = redact(self.formatException(record.exc_info).splitlines()[-1])
        return json.dumps(event, default=str)


def configure(*, secrets: tuple[str, ...] = (), json_lines: bool | None = None,
              level: int = logging.INFO) -> None:
    """Log to stderr, one line per event. `json_lines` defaults to "stderr is not a TTY"."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(
        "%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
