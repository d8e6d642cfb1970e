"""Lake datasets as the dbt project defines them: which Postgres table feeds a dataset.

dbt is the one place that says it (a lake model with `meta.dataset`, its staging model,
the source that staging model selects from), so this asks dbt: `dbt parse`, then a walk
from the lake model up its dependencies to the source.
"""

from __future__ import annotations

from typing import Any

from runner.config import Settings
from runner.dbt_bridge.invoke import run_dbt
from runner.errors import ConfigError


def source_table(settings: Settings, dataset: str) -> tuple[str, str]:
    """(schema, table) of the Postgres source behind `dataset`."""
    graph = run_dbt(settings, ["parse"])
    models = [node for node in graph.nodes.values()
              if node.resource_type == "model"
              and getattr(node.config, "materialized", None) == "lake_dataset"]
    known = sorted(str((node.config.meta or {}).get("dataset")) for node in models)
    model = next((node for node in models
                  if (node.config.meta or {}).get("dataset") == dataset), None)
    if model is None:
        raise ConfigError(f"no lake model has meta.dataset {dataset!r} (known: "
                          f"{', '.join(known) or 'none'}): pass --dataset with one of them")
    sources = _upstream_sources(graph, model.unique_id)
    if len(sources) != 1:
        raise ConfigError(f"dataset {dataset} reads {len(sources)} Postgres sources "
                          f"({', '.join(sorted(sources)) or 'none'}); parity needs exactly one")
    source = graph.sources[sources.pop()]
    return str(source.schema), str(source.identifier)


def _upstream_sources(graph: Any, unique_id: str) -> set[str]:
    found: set[str] = set()
    pending, seen = [unique_id], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        if current in graph.sources:
            found.add(current)
        elif current in graph.nodes:
            pending.extend(graph.nodes[current].depends_on.nodes)
    return found
