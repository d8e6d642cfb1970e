"""Render the project's SQL macros outside dbt: the runner runs the SQL dbt owns.

Every macro outside `macros/bridge/`, `macros/materializations/` and
`macros/generic_tests/` (which need dbt's context) is plain Jinja: it takes every value
as an argument and uses nothing of dbt's context but `exceptions.raise_compiler_error`
and `modules.re`/`modules.datetime`, which this module provides. The runner renders them
here (the export COPYs, compaction, the stable watermark, parity, the shard formula of the
reader views), with values as literals or DuckDB expressions (`getvariable(...)`); dbt
renders the very same files in `dbt test`: one definition of each piece of SQL.
"""

from __future__ import annotations

import datetime
import functools
import re
from typing import Any

import jinja2

from runner.config import PROJECT_ROOT
from runner.errors import ConfigError

MACRO_FILES = ("macros/derived/*.sql", "macros/export/*.sql", "macros/lake/*.sql",
               "macros/parity/*.sql",
               "macros/postgres/*.sql")


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
