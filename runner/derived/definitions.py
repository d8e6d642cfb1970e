"""The derived-sensor definitions file (TSLAKE_DERIVED_SENSORS), loaded and validated once.

Everything is checked before any SQL runs; a problem is a ConfigError (exit 2) naming the
sensor and what is wrong. An input sensor the lake does not hold is only a warning
(`missing_inputs`): a sensor that has not reported yet, or whose first rows are still
behind the watermark, is normal on a new site, and refusing would stop every tick, the
measured sensors' included; the derived sensor simply has no rows until it reports.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runner.derived import expression
from runner.derived.expression import Node
from runner.errors import ConfigError

AGGREGATES = ("avg", "min", "max", "sum", "count", "first", "last")
BUCKET_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_BUCKET_SECONDS = 31 * 86400
_BUCKET = re.compile(r"^([0-9]+)([smhd])$")
_ALIAS = re.compile(r"^[a-z_][a-z0-9_]*$")
_KEYS = {"id", "bucket", "inputs", "agg", "expression", "description"}


@dataclass(frozen=True)
class Definition:
    """One derived sensor, validated."""

    id: str
    bucket_seconds: int
    inputs: tuple[tuple[str, str], ...]  # (alias, input sensor_id), sorted by alias
    aggs: tuple[tuple[str, str], ...]    # (alias, aggregate), every alias
    expression: str
    tree: Node

    @property
    def input_sensors(self) -> tuple[str, ...]:
        return tuple(sorted({sensor for _, sensor in self.inputs}))

    @property
    def hash(self) -> str:
        """What a changed definition is detected by (the manifest records it)."""
        canonical = json.dumps({"bucket": self.bucket_seconds, "inputs": self.inputs,
                                "agg": self.aggs, "expression": repr(self.tree)},
                               sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_bucket(text: object) -> int:
    """`5m` -> 300; 1 s to 31 d (README, "Derived sensors")."""
    match = _BUCKET.match(str(text).strip()) if isinstance(text, str | int) else None
    if match is None:
        raise ValueError(f"bucket {text!r} is not like 30s, 5m, 1h or 1d")
    seconds = int(match.group(1)) * BUCKET_UNITS[match.group(2)]
    if not 1 <= seconds <= MAX_BUCKET_SECONDS:
        raise ValueError(f"bucket {text!r} is outside 1s to 31d")
    return seconds


def load(path: Path) -> list[Definition]:
    """The definitions in `path`; a missing file is none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as error:
        raise ConfigError(f"cannot read the derived sensors file {path}: {error.strerror}: "
                          "fix TSLAKE_DERIVED_SENSORS or the file's permissions") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"derived sensors file {path} is not valid YAML "
                          f"({' '.join(str(error).split())}): fix the file") from None
    return parse_document(document, str(path))


def parse_document(document: Any, where: str) -> list[Definition]:
    if document is None:
        return []
    items = document.get("derived_sensors") if isinstance(document, dict) else None
    if items is None:
        items = [] if isinstance(document, dict) and "derived_sensors" in document else None
    if not isinstance(items, list):
        raise ConfigError(f"derived sensors file {where} must hold a list under "
                          "'derived_sensors:': fix the file")
    found: dict[str, Definition] = {}
    for number, item in enumerate(items, 1):
        definition = _definition(item, number, where)
        if definition.id in found:
            raise ConfigError(f"derived sensor {definition.id} ({where}) is defined twice: "
                              "keep one")
        found[definition.id] = definition
    return list(found.values())


def _definition(item: Any, number: int, where: str) -> Definition:
    if not isinstance(item, dict):
        raise ConfigError(f"derived sensor #{number} in {where} is not a mapping: fix the file")
    sensor = item.get("id")
    name = sensor if isinstance(sensor, str) and sensor.strip() else f"#{number}"

    def fail(problem: str) -> ConfigError:
        return ConfigError(f"derived sensor {name} ({where}): {problem}: fix the definition")

    if not isinstance(sensor, str) or not sensor.strip() or sensor != sensor.strip():
        raise fail("id must be a non-empty sensor id without surrounding spaces")
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} (keys: {', '.join(sorted(_KEYS))})")
    try:
        bucket = parse_bucket(item.get("bucket"))
    except ValueError as error:
        raise fail(str(error)) from None
    inputs = item.get("inputs")
    if not isinstance(inputs, dict) or not inputs:
        raise fail("inputs must map aliases to input sensor ids, like "
                   "{t: greenhouse-1/air-temp-01}")
    for alias, input_sensor in inputs.items():
        if not isinstance(alias, str) or not _ALIAS.match(alias):
            raise fail(f"alias {alias!r} is not a lowercase identifier")
        if alias.lower() in expression.FUNCTIONS:
            raise fail(f"alias {alias!r} is the name of a function")
        if not isinstance(input_sensor, str) or not input_sensor:
            raise fail(f"input {alias} must be a sensor id")
        if input_sensor == sensor:
            raise fail(f"input {alias} is the derived sensor itself")
    aggs = item.get("agg") or {}
    if not isinstance(aggs, dict):
        raise fail("agg must map aliases to an aggregate, like {t: avg}")
    for alias, agg in aggs.items():
        if alias not in inputs:
            raise fail(f"agg names alias {alias!r}, which is not an input")
        if agg not in AGGREGATES:
            raise fail(f"aggregate {agg!r} of {alias} is not one of {', '.join(AGGREGATES)}")
    text = item.get("expression")
    if not isinstance(text, str):
        raise fail("expression must be a string")
    try:
        tree = expression.parse(text, set(inputs))
    except expression.ExpressionError as error:
        raise fail(f"expression {text!r}: {error}") from None
    unused = sorted(set(inputs) - expression.aliases_used(tree))
    if unused:
        # An unused input would still gate the rows (every input must be present): refuse
        # rather than silently drop buckets.
        raise fail(f"input {unused[0]} is not used in the expression")
    return Definition(id=sensor, bucket_seconds=bucket,
                      inputs=tuple(sorted((str(a), str(s)) for a, s in inputs.items())),
                      aggs=tuple(sorted((str(a), str(aggs.get(a, "avg"))) for a in inputs)),
                      expression=text, tree=tree)


def missing_inputs(definitions: list[Definition], known: set[str]) -> list[str]:
    """One warning line per definition with inputs the lake does not hold."""
    lines = []
    for definition in definitions:
        missing = [sensor for sensor in definition.input_sensors if sensor not in known]
        if missing:
            lines.append(f"derived sensor {definition.id}: input(s) {', '.join(missing)} "
                         "have no rows in metrics/v1 yet: it has no rows until they report")
    return lines
