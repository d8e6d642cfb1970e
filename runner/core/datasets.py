"""Dataset declarations: what each lake dataset is, declared once, in the dbt project.

A dataset is a lake model (`models/lake/<name>.sql`, materialized `lake_dataset`) whose yml
declares it in `config.meta` and its columns with `data_type`:

    - name: forecast_points_v1
      config:
        meta:
          dataset: forecast_points/v1        # <view name>/<version>
          source: postgres.forecast_points   # <dbt source>.<table> it is exported from
          key: [series_id, issued_at, ts]    # one row per key; files sorted by it
          series: series_id                  # decides the shard (md5, README "Datasets")
          time: ts                           # decides the date= partition (UTC)
          version: inserted_at               # newest wins; the watermark column
      columns:
        - {name: series_id, data_type: varchar}
        ...

dbt reads the same yml (the materialization and macros get the declaration from the
model's config); this module reads it with plain YAML, so commands that need no dbt
(query, views, inspect) know the datasets without parsing the project. The declaration is
validated here, once, for every command; `record()` is what the manifest keeps, so a
later command can refuse a lake written with a different declaration.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runner.config import PROJECT_ROOT
from runner.core.manifest import Declaration
from runner.errors import ConfigError

DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]*/v[0-9]+$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
# Lake types a column may declare; `int` keeps the source's integer type (smallint,
# integer or bigint) as it is.
LAKE_TYPES = {"varchar", "double", "timestamptz", "int", "smallint", "integer", "bigint",
              "boolean", "date"}
# The Postgres types (format_type) each lake type is read from.
SOURCE_TYPES = {
    "varchar": {"text", "character varying", "character", "name"},
    "double": {"double precision", "real", "numeric"},
    "timestamptz": {"timestamp with time zone"},
    "int": {"smallint", "integer", "bigint"},
    "smallint": {"smallint"},
    "integer": {"smallint", "integer"},
    "bigint": {"smallint", "integer", "bigint"},
    "boolean": {"boolean"},
    "date": {"date"},
}
PARTITION_COLUMNS = ("date", "shard")
# `meta.source: lake.<dataset>`: computed from a lake dataset, not exported from Postgres.
LAKE_SOURCE = "lake"  # from the paths, never stored in a file
# libyaml's safe loader when PyYAML has it: every command reads the project's ymls.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset's declaration, validated."""

    name: str
    model: str
    source_name: str
    source_schema: str
    source_table: str
    columns: tuple[tuple[str, str], ...]  # (name, lake type), in file order
    key: tuple[str, ...]
    series: str
    time: str
    version: str

    @property
    def lake_source(self) -> str | None:
        """The lake dataset this one is computed from (`source: lake.metrics/v1`, as
        derived/v1 is), or None for a dataset exported from Postgres."""
        return self.source_table if self.source_schema == LAKE_SOURCE else None

    @property
    def view_name(self) -> str:
        """`metrics/v1` -> `metrics` (the reader view, README "Datasets")."""
        return self.name.split("/")[0]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @property
    def value_columns(self) -> tuple[str, ...]:
        """The columns a row's content is compared on (all but key and version)."""
        return tuple(name for name in self.column_names
                     if name not in self.key and name != self.version)

    def lake_type(self, column: str) -> str:
        return dict(self.columns)[column]

    def record(self) -> Declaration:
        return Declaration(source=f"{self.source_schema}.{self.source_table}",
                           columns=dict(self.columns), key=list(self.key), series=self.series,
                           time=self.time, version=self.version)

    @classmethod
    def from_record(cls, name: str, recorded: Declaration) -> DatasetSpec:
        """The spec a manifest recorded (`record()`'s inverse), for a dataset the project
        no longer declares; not validated: its readers check the names they use."""
        schema, _, table = recorded.source.rpartition(".")
        return cls(name=name, model="", source_name="", source_schema=schema or "public",
                   source_table=table, columns=tuple(recorded.columns.items()),
                   key=tuple(recorded.key), series=recorded.series, time=recorded.time,
                   version=recorded.version)

    def check_recorded(self, recorded: Declaration | None) -> None:
        """Refuse a lake written with another declaration (README, "Datasets")."""
        if recorded is None:
            return
        current = self.record()
        for field in ("key", "series", "time", "version", "source"):
            was, now = getattr(recorded, field), getattr(current, field)
            if was != now:
                raise ConfigError(
                    f"dataset {self.name}: its declared {field} is {_show(now)} but the lake "
                    f"was written with {_show(was)}: restore the declaration in "
                    f"models/lake/ (a different {field} needs a new dataset version, "
                    f"e.g. {self.view_name}/v{int(self.name.rsplit('v', 1)[1]) + 1})")
        for column in sorted(set(recorded.columns) | set(current.columns)):
            was_type, now_type = recorded.columns.get(column), current.columns.get(column)
            if was_type != now_type:
                raise ConfigError(
                    f"dataset {self.name}: column {column} is declared "
                    f"{now_type or 'absent'} but the lake was written with "
                    f"{was_type or 'no such column'}: restore its declaration in models/lake/ "
                    "(a changed schema needs a new dataset version)")

    def check_source(self, found: dict[str, str],
                     recorded: dict[str, str] | None) -> dict[str, str]:
        """Compare the source table's column types (Postgres format_type, by column) with
        the declaration and with what the lake was read from; returns the declared
        columns' source types. Undeclared source columns are ignored."""
        table = f"{self.source_schema}.{self.source_table}"
        if not found:
            raise ConfigError(f"dataset {self.name}: source table {table} does not exist: "
                              f"create it, or leave {self.name} out of TSLAKE_DATASETS")
        types: dict[str, str] = {}
        for column, lake_type in self.columns:
            source_type = found.get(column)
            if source_type is None:
                raise ConfigError(f"dataset {self.name}: source table {table} has no column "
                                  f"{column} (declared {lake_type}): restore the column, or "
                                  "declare a new dataset version without it")
            if source_type not in SOURCE_TYPES[lake_type]:
                raise ConfigError(f"dataset {self.name}: column {table}.{column} is "
                                  f"{source_type}, which does not read as {lake_type}: "
                                  "restore its type, or declare a new dataset version")
            was = (recorded or {}).get(column)
            if was is not None and was != source_type:
                raise ConfigError(f"dataset {self.name}: column {table}.{column} changed type "
                                  f"from {was} to {source_type} since the lake was written: "
                                  f"restore it to {was}, or declare a new dataset version")
            types[column] = source_type
        return types


def _show(value: object) -> str:
    return ", ".join(value) if isinstance(value, list) else str(value)


def declared(project: Path = PROJECT_ROOT) -> dict[str, DatasetSpec]:
    """Every dataset the dbt project declares, by name."""
    return dict(_declared(project))


@functools.cache
def _declared(project: Path) -> tuple[tuple[str, DatasetSpec], ...]:
    sources = _sources(project)
    specs: dict[str, DatasetSpec] = {}
    for path, model in _models(project):
        meta = (model.get("config") or {}).get("meta") or {}
        if "dataset" not in meta:
            continue
        spec = _spec(path, model, meta, sources)
        if spec.name in specs:
            raise ConfigError(f"{path}: dataset {spec.name} is declared twice (models "
                              f"{specs[spec.name].model} and {spec.model}): keep one")
        specs[spec.name] = spec
    return tuple(sorted(specs.items()))


def enabled(names: Iterable[str], project: Path = PROJECT_ROOT) -> list[DatasetSpec]:
    """The specs of TSLAKE_DATASETS, in order; an unknown name is a ConfigError."""
    known = declared(project)
    specs = []
    for name in names:
        if name not in known:
            raise ConfigError(f"TSLAKE_DATASETS names {name!r}, which no lake model declares "
                              f"(declared: {', '.join(known)}): fix TSLAKE_DATASETS")
        specs.append(known[name])
    return specs


def select(enabled_names: Iterable[str], wanted: str | None,
           project: Path = PROJECT_ROOT) -> list[DatasetSpec]:
    """The datasets a command covers: `--dataset wanted` (which must be enabled), or every
    enabled one."""
    specs = enabled(enabled_names, project)
    if wanted is None:
        return specs
    for spec in specs:
        if spec.name == wanted:
            return [spec]
    known = declared(project)
    names = ", ".join(spec.name for spec in specs)
    if wanted in known:
        raise ConfigError(f"--dataset {wanted} is declared but not enabled (enabled: {names}): "
                          f"add it to TSLAKE_DATASETS, e.g. TSLAKE_DATASETS={names},{wanted}")
    raise ConfigError(f"--dataset {wanted!r} is not a dataset (enabled: {names}; declared: "
                      f"{', '.join(known)}): give one of the enabled ones")


def _models(project: Path) -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted((project / "models").rglob("*.yml")):
        document = _yaml(path)
        for model in document.get("models") or []:
            if isinstance(model, dict):
                found.append((path, model))
    return found


def _sources(project: Path) -> dict[str, tuple[str, str]]:
    """`<source>.<table>` -> (schema, identifier), from the project's source ymls."""
    found: dict[str, tuple[str, str]] = {}
    for path in sorted((project / "models").rglob("*.yml")):
        for source in _yaml(path).get("sources") or []:
            schema = str(source.get("schema") or "public")
            for table in source.get("tables") or []:
                found[f"{source['name']}.{table['name']}"] = (
                    schema, str(table.get("identifier") or table["name"]))
    return found


def _yaml(path: Path) -> dict[str, Any]:
    try:
        document = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path} cannot be read as YAML ({' '.join(str(error).split())}): "
                          "fix the file") from None
    return document if isinstance(document, dict) else {}


def _spec(path: Path, model: dict[str, Any], meta: dict[str, Any],
          sources: dict[str, tuple[str, str]]) -> DatasetSpec:
    name = meta.get("dataset")
    where = f"{path.relative_to(path.parents[1]) if len(path.parents) > 1 else path}: " \
            f"model {model.get('name')}"

    def fail(problem: str) -> ConfigError:
        return ConfigError(f"{where}: {problem}: fix the declaration")

    if not isinstance(name, str) or not DATASET_NAME.match(name):
        raise fail(f"meta.dataset {name!r} is not like metrics/v1 (<lowercase name>/v<N>)")
    columns: list[tuple[str, str]] = []
    for column in model.get("columns") or []:
        column_name, lake_type = column.get("name"), column.get("data_type")
        if column_name in PARTITION_COLUMNS:
            continue
        if not isinstance(column_name, str) or not _IDENTIFIER.match(column_name):
            raise fail(f"column {column_name!r} is not a lowercase identifier")
        if lake_type not in LAKE_TYPES:
            raise fail(f"column {column_name} has data_type {lake_type!r}, not one of "
                       f"{', '.join(sorted(LAKE_TYPES))}")
        columns.append((column_name, str(lake_type)))
    names = [column for column, _ in columns]
    if not columns:
        raise fail("no columns with a data_type")
    key = meta.get("key")
    if not isinstance(key, list) or not key or not all(isinstance(k, str) for k in key):
        raise fail("meta.key must be a list of column names, like [sensor_id, ts]")
    for role in ("series", "time", "version"):
        if not isinstance(meta.get(role), str):
            raise fail(f"meta.{role} must name a column")
    series, time, version = str(meta["series"]), str(meta["time"]), str(meta["version"])
    for column in [*key, series, time, version]:
        if column not in names:
            raise fail(f"{column!r} (in meta) is not one of its columns {', '.join(names)}")
    if series not in key or time not in key:
        raise fail(f"the key {', '.join(key)} must contain the series ({series}) and the time "
                   f"({time}) columns")
    if version in key:
        raise fail(f"the version column {version} cannot be part of the key")
    types = dict(columns)
    if types[series] != "varchar":
        raise fail(f"the series column {series} must be varchar")
    for role, column in (("time", time), ("version", version)):
        if types[column] != "timestamptz":
            raise fail(f"the {role} column {column} must be timestamptz")
    source = meta.get("source")
    lake_source = str(source)[len(LAKE_SOURCE) + 1:] if str(source).startswith(
        LAKE_SOURCE + ".") else None
    if lake_source is not None and DATASET_NAME.match(lake_source):
        return DatasetSpec(name=name, model=str(model.get("name")), source_name=str(source),
                           source_schema=LAKE_SOURCE, source_table=lake_source,
                           columns=tuple(columns), key=tuple(key), series=series, time=time,
                           version=version)
    if source not in sources:
        raise fail(f"meta.source {source!r} is not a table of the project's sources "
                   f"({', '.join(sorted(sources))}): give <source>.<table>")
    schema, table = sources[str(source)]
    return DatasetSpec(name=name, model=str(model.get("name")), source_name=str(source),
                       source_schema=schema, source_table=table, columns=tuple(columns),
                       key=tuple(key), series=series, time=time, version=version)
