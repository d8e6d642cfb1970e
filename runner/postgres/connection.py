"""DuckDB sessions: the postgres extension from its wheel, Postgres attached read-only.

The password never enters an ATTACH string (DuckDB repeats that string in its connection
errors): it goes into a temporary DuckDB secret, and every error text is redacted anyway.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import duckdb
import duckdb_extension_postgres
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from runner.config import Settings
from runner.errors import ConfigError, SourceError

SOURCE_CATALOG = "pg"  # the attached Postgres database, as sources and macros name it
_LIBPQ_VARIABLES = {"PGHOST": "host", "PGPORT": "port", "PGDATABASE": "dbname", "PGUSER": "user",
                    "PGPASSWORD": "password", "PGSSLMODE": "sslmode", "PGPASSFILE": "passfile",
                    "PGCONNECT_TIMEOUT": "connect_timeout"}
APPLICATION_NAME = "tslake"


def sql_literal(value: object) -> str:
    """The one way a value enters SQL text: a quoted string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def _parse_dsn(setting: str, dsn: str) -> dict[str, str | int | None]:
    try:
        return conninfo_to_dict(dsn) if dsn else {}
    except Exception:  # psycopg raises ProgrammingError with the DSN in its text
        raise ConfigError(f"{setting} is not a valid libpq connection string or URI: "
                          "check its syntax (e.g. 'host=db port=5432 dbname=farm')") from None


def postgres_extension_file() -> Path:
    """The extension binary shipped in the `duckdb-extension-postgres` wheel."""
    return wheel_extension_file(duckdb_extension_postgres.__file__, "postgres")


def wheel_extension_file(package_init: str, name: str) -> Path:
    """`<name>.duckdb_extension` for this DuckDB version inside the `duckdb-extension-<name>`
    wheel whose package `__init__` is at `package_init` (never downloaded)."""
    package = Path(package_init).parent
    candidates = sorted(package.glob(f"extensions/v{duckdb.__version__}/{name}.duckdb_extension"))
    if not candidates:
        raise ConfigError(f"no {name} extension for DuckDB {duckdb.__version__} under {package}: "
                          f"install duckdb-extension-{name} with the same version as duckdb "
                          "(run `make install`)")
    return candidates[0]


class SourceConninfo:
    """Where Postgres is: `TSLAKE_PG_DSN`, else libpq's own PG* variables and ~/.pgpass."""

    def __init__(self, env: Mapping[str, str] | None = None, *,
                 primary_dsn: str | None = None) -> None:
        env = os.environ if env is None else env
        params = _parse_dsn("TSLAKE_PG_DSN", env.get("TSLAKE_PG_DSN", ""))
        # Spelled out (not left to libpq's own lookup) so that the environment given here is
        # the one used, and messages can say where tslake connects.
        for variable, key in _LIBPQ_VARIABLES.items():
            if env.get(variable):
                params.setdefault(key, env[variable])
        # The primary of a standby source (TSLAKE_PRIMARY_DSN): the source's parameters
        # with the keys it names replaced, so `host=primary.example` alone is enough.
        params.update(_parse_dsn("TSLAKE_PRIMARY_DSN", primary_dsn or ""))
        password = params.pop("password", None)
        self.password: str | None = None if password is None else str(password)
        params.setdefault("application_name", APPLICATION_NAME)
        self.conninfo = make_conninfo(**{key: str(value) for key, value in params.items()})
        self._where = {key: str(params.get(key) or "default")
                       for key in ("host", "port", "dbname", "user")}

    def describe(self) -> str:
        """host/port/dbname/user for messages; never the password."""
        return " ".join(f"{key}={value}" for key, value in self._where.items())

    def redact(self, text: str) -> str:
        return text.replace(self.password, "***") if self.password else text


def known_passwords(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The passwords of the source and of a standby source's primary (TSLAKE_PRIMARY_DSN),
    for the log's redaction; settings too malformed to parse yield none."""
    env = os.environ if env is None else env
    found = []
    for primary_dsn in (None, env.get("TSLAKE_PRIMARY_DSN") or None):
        try:
            password = SourceConninfo(env, primary_dsn=primary_dsn).password
        except ConfigError:
            continue
        if password and password not in found:
            found.append(password)
    return tuple(found)


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    for password in known_passwords(env):
        text = text.replace(password, "***")
    return text


def configure_database(conn: duckdb.DuckDBPyConnection, settings: Settings,
                       source: SourceConninfo | None) -> None:
    """Database-wide setup, once per DuckDB database: extension, resources, the source."""
    extension_dir = settings.tmp_path / "duckdb_extensions"
    spill_dir = settings.tmp_path / "duckdb_spill"
    extension_dir.mkdir(parents=True, exist_ok=True)
    spill_dir.mkdir(parents=True, exist_ok=True)
    conn.execute(f"SET extension_directory = {sql_literal(extension_dir)}")
    conn.execute(f"INSTALL {sql_literal(postgres_extension_file())}")
    conn.execute("LOAD postgres")
    conn.execute(f"SET memory_limit = {sql_literal(settings.memory_limit)}")
    conn.execute(f"SET threads = {int(settings.threads)}")
    conn.execute(f"SET temp_directory = {sql_literal(spill_dir)}")
    from runner.core.tiers import enable_cold_reads  # (tiers imports this module)

    enable_cold_reads(conn, settings)  # an S3 cold tier: httpfs + a temporary secret
    if source is not None:
        attach_source(conn, source)


def attach_source(conn: duckdb.DuckDBPyConnection, source: SourceConninfo, *,
                  catalog: str = SOURCE_CATALOG, what: str = "Postgres",
                  settings_hint: str = "PGHOST/PGPORT/PGDATABASE/PGUSER or TSLAKE_PG_DSN") -> None:
    """Attach `source` read-only as `catalog` (the source, or a standby's primary)."""
    options = "TYPE postgres, READ_ONLY"
    if source.password is not None:
        secret = f"tslake_{catalog}"
        conn.execute(f"CREATE OR REPLACE TEMPORARY SECRET {secret} "
                     f"(TYPE postgres, PASSWORD {sql_literal(source.password)})")
        options += f", SECRET {secret}"
    try:
        conn.execute(f"ATTACH {sql_literal(source.conninfo)} AS {catalog} ({options})")
    except duckdb.Error as error:
        reason = " ".join(source.redact(str(error)).split(": ", 2)[-1].split())
        raise SourceError(f"cannot connect to {what} ({source.describe()}): {reason}; check "
                          f"{settings_hint}, and that the server is running") from None


def configure_session(conn: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Per-connection (per-cursor) state: UTC, and the settings SQL reads as variables."""
    conn.execute("SET TimeZone = 'UTC'")
    variables = {
        "tslake_hot_path": str(settings.hot_path),
        "tslake_cold_path": str(settings.cold_url or settings.cold_path or ""),
        "tslake_manifest_path": str(settings.manifest_path),
        "tslake_shards": settings.shards,
        "tslake_lag_seconds": settings.lag_seconds,
        "tslake_compact_min_files": settings.compact_min_files,
    }
    for name, value in variables.items():
        literal = sql_literal(value) if isinstance(value, str) else repr(value)
        conn.execute(f"SET VARIABLE {name} = {literal}")


def connect(settings: Settings, *, attach: bool,
            env: Mapping[str, str] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB session for tslake's own queries (parity, the demo, readers)."""
    conn = duckdb.connect()
    configure_database(conn, settings, SourceConninfo(env) if attach else None)
    configure_session(conn, settings)
    return conn
