"""The CLI's error boundary: any exception a command lets out becomes one line and a
documented exit code (README, "Exit codes"), never a traceback (`--debug` shows it).

- a TslakeError: its own message and exit code;
- an OSError or a DuckDB I/O error (a read-only directory, a missing file, a full disk, a
  port in use): 74, naming the path (or address) and the OS's reason;
- anything else: 70 (EX_SOFTWARE), "internal error", with a pointer to `--debug`.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from runner.errors import TslakeError, describe_os_error

IO_ERROR = 74        # EX_IOERR
INTERNAL_ERROR = 70  # EX_SOFTWARE
INTERRUPTED = 130    # 128 + SIGINT, what a shell reports for ^C

@dataclass(frozen=True)
class Failure:
    message: str
    exit_code: int


def classify(error: BaseException) -> Failure:
    """The line and exit code for an exception that reached the CLI."""
    if isinstance(error, TslakeError):
        return Failure(str(error), error.exit_code)
    if isinstance(error, KeyboardInterrupt):
        return Failure("interrupted", INTERRUPTED)
    if isinstance(error, OSError):
        return Failure(describe_os_error(error), IO_ERROR)
    if isinstance(error, duckdb.IOException):
        return Failure(f"I/O error: {_first_line(str(error))}: check that path (permissions, "
                       "free space, the disk or NAS being mounted) and run again", IO_ERROR)
    if isinstance(error, MemoryError):
        return Failure("out of memory: lower TSLAKE_MEMORY_LIMIT or the window, and run "
                       "again", INTERNAL_ERROR)
    return Failure(f"internal error ({type(error).__name__}: {_first_line(str(error))}); "
                   "nothing was committed by the failed step: rerun with --debug for the "
                   "traceback and report it", INTERNAL_ERROR)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "no message"
