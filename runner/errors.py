"""Typed errors. Library code raises these; only the CLI turns them into exit codes.

Every message names the object, the value and the next step, on one line.
"""

import errno


class TslakeError(Exception):
    """Base class: a failure the operator can act on. `exit_code` is what the CLI returns."""

    exit_code = 1


class ConfigError(TslakeError):
    """A setting, a dataset definition or a command-line value is invalid."""

    exit_code = 2


class LakeBusyError(TslakeError):
    """Another command holds the lake's write lock."""

    exit_code = 75  # EX_TEMPFAIL: try again later


class SourceError(TslakeError):
    """Postgres is unreachable, or refuses what tslake needs (e.g. seeing other sessions)."""

    exit_code = 69  # EX_UNAVAILABLE


class ManifestError(TslakeError):
    """The manifest is missing, unreadable, or does not match the files on disk."""

    exit_code = 65  # EX_DATAERR


class PublishError(TslakeError):
    """Writing or committing lake files failed; the lake and its watermark are unchanged."""

    exit_code = 74  # EX_IOERR


class ColdTierError(PublishError):
    """The cold tier (TSLAKE_COLD_PATH, often a NAS) is missing, unreachable or returned a
    copy that does not verify; the partitions involved stay where the manifest says."""


class ColdTierUnavailableError(ColdTierError):
    """The lake has partitions in the cold tier but it cannot be reached: TSLAKE_COLD_PATH
    is unset, not mounted, or its object-store endpoint does not answer. Nothing is missing:
    the setting or the mount is what to fix (no repair)."""

    exit_code = 69  # EX_UNAVAILABLE


class ParityMismatchError(TslakeError):
    """`tslake parity --fail-on-mismatch` found rows that differ between Postgres and the lake."""

    exit_code = 3


_FIXES = {
    errno.ENOSPC: "free space there (`tslake retention` moves old days to TSLAKE_COLD_PATH) "
                  "and run again",
    errno.EDQUOT: "raise the quota or free space there, and run again",
    errno.EROFS: "the filesystem is read-only: remount it read-write, or point "
                 "TSLAKE_DATA_ROOT at a writable disk",
    errno.EACCES: "give the user running tslake write access to it (or point TSLAKE_DATA_ROOT "
                  "elsewhere)",
    errno.EPERM: "give the user running tslake access to it (an immutable flag: chattr -i, "
                 "chflags nouchg)",
    errno.ENOENT: "it does not exist: create the directory, or check the path "
                  "(`tslake doctor` checks the lake's files against the manifest)",
    errno.EADDRINUSE: "another process (another `tslake run`?) listens there: stop it, or "
                      "pass --http-port with a free port (0 turns HTTP off)",
}


def describe_os_error(error: OSError) -> str:
    """`<reason>: <path>: <what to do>`, from an OSError."""
    reason = error.strerror or type(error).__name__
    where = error.filename if error.filename is not None else None
    if error.filename2 is not None:
        where = f"{error.filename} -> {error.filename2}"
    fix = _FIXES.get(error.errno or 0, "check that path and run again")
    return f"{reason}: {where}: {fix}" if where else f"{reason}: {fix}"


DISK_FULL = ("No space left on device", "Disk quota exceeded")


def disk_full_message(what: str, detail: str) -> str | None:
    """`<what> failed, a disk is full: <detail>; ...what to do`, when `detail` says a disk
    is full (an OSError's or DuckDB's text); None otherwise."""
    if not any(text in detail for text in DISK_FULL):
        return None
    return (f"{what} failed, a disk is full: {detail}; what the run had not committed is "
            "discarded: free space there (`tslake retention` moves old days to "
            "TSLAKE_COLD_PATH) and run again")
