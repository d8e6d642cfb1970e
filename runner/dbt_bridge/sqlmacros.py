"""Render the project's SQL macros outside dbt, so `tslake` runs the SQL `dbt test` runs.

The parity macros (`macros/parity/`) and the few helpers they call are plain Jinja: they
take every value as an argument and use nothing of dbt's context but
`exceptions.raise_compiler_error` and `modules.re`/`modules.datetime`, which this module
provides. The CLI renders them here with values passed as DuckDB expressions
(`getvariable(...)` for what the user typed, bound as parameters), dbt renders the very
same files in `dbt test`: one definition of the checksum for both. The reader views
(runner/readers/views.py) take the shard formula from `shard_of` the same way.
"""

from __future__ import annotations

import datetime
import functools
import re
from typing import Any

import jinja2

from runner.config import PROJECT_ROOT
from runner.errors import ConfigError

MACRO_FILES = (
    "macros/parity/*.sql",
    "macros/lake/lake_literal.sql",
    "macros/lake/lake_source_catalog.sql",
    "macros/lake/newest_versions.sql",
    "macros/lake/shard_of.sql",
    "macros/postgres/postgres_quote_ident.sql",
)


class _Exceptions:
    @staticmethod
    def raise_compiler_error(message: str) -> None:
        raise ConfigError(message)


@functools.cache
def _macros() -> Any:
    paths = sorted(path for pattern in MACRO_FILES for path in PROJECT_ROOT.glob(pattern))
    if not paths:
        raise ConfigError(f"no SQL macros under {PROJECT_ROOT / 'macros'}: run tslake from "
                          "its repository (an editable install, `make install`)")
    environment = jinja2.Environment(extensions=["jinja2.ext.do"],
                                     undefined=jinja2.StrictUndefined)
    source = "\n".join(path.read_text() for path in paths)
    template = environment.from_string(source, globals={
        "exceptions": _Exceptions(),
        "modules": {"re": re, "datetime": datetime},
    })
    return template.module


def render(name: str, **arguments: Any) -> str:
    """The SQL text of macro `name` called with `arguments`."""
    macro = getattr(_macros(), name, None)
    if macro is None:
        raise ConfigError(f"SQL macro {name!r} not found in {', '.join(MACRO_FILES)}")
    return str(macro(**arguments))
