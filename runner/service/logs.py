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
        if record.name.startswith("tslake") and message.startswith("tslake: "):
            message = message[len("tslake: "):]  # the logger names tslake already: one prefix
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


def _text_formatter() -> logging.Formatter:
    return logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                             datefmt="%Y-%m-%dT%H:%M:%S")


def configure(*, secrets: tuple[str, ...] = (), json_lines: bool | None = None,
              level: int = logging.INFO) -> None:
    """Log to stderr, one line per event. `json_lines` defaults to "stderr is not a TTY"."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler.setFormatter(JsonFormatter() if json_lines else _text_formatter())
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


CHILD_ERROR_PREFIX = "tslake: error: "


def relay_child_output(text: str, *, logger_name: str = "tslake.tick") -> None:
    """Pass a child command's stderr on as this process's log lines.

    Off a TTY every line the service writes must be one JSON event, so the child's JSON
    lines pass through unchanged and anything else (a plain `tslake: error: ...` line, a
    library's warning) is wrapped as an event of `logger_name`. The child's closing error
    line is dropped: the service logs it once, in its "tick failed" event. On a TTY the
    lines are copied as they are.
    """
    root = logging.getLogger()
    as_json = any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
    relay = logging.getLogger(logger_name)
    for line in text.splitlines():
        if not line.strip():
            continue
        if not as_json:
            sys.stderr.write(line + "\n")
            continue
        if line.startswith("{"):
            try:
                json.loads(line)
            except ValueError:
                pass
            else:
                sys.stderr.write(line + "\n")
                continue
        if line.startswith(CHILD_ERROR_PREFIX):
            continue
        relay.warning("%s", line.rstrip())
    sys.stderr.flush()


def adjust(*, level: int | None = None, json_lines: bool | None = None) -> None:
    """Change the level or the line format of the handler `configure` installed (the
    global --quiet/--verbose/--log-format options), keeping its redaction filter."""
    root = logging.getLogger()
    if level is not None:
        root.setLevel(level)
    if json_lines is not None:
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter() if json_lines else _text_formatter())
