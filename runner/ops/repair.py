"""`tslake repair`: re-export whole UTC days from Postgres, replacing each day's files in
one manifest commit (the `repair` mode of the lake_dataset materialization).

Ticks only see rows whose inserted_at moves past the watermark; rows deleted in Postgres,
or rewritten without a new inserted_at, reach the lake only this way. Parity names the
days; repair them, and parity is clean.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from runner.cli_params import days_in
from runner.config import Settings
from runner.core import datasets, manifest, publish
from runner.dbt_bridge.invoke import run_dbt
from runner.errors import ConfigError, ManifestError
from runner.ops import retention


def repair_days(settings: Settings, lo: datetime, hi: datetime, dataset: str | None) -> list[str]:
    """The days [lo, hi) touches, refused when retention would delete them again."""
    names = {spec.name for spec in datasets.select(settings.datasets, dataset)}
    days = days_in(lo, hi)
    document = manifest.load(settings.manifest_path)
    entries = {name: entry for name, entry in (document.datasets if document else {}).items()
               if name in names and entry.computed_through_ts}
    if not entries:
        raise ManifestError(f"nothing is committed in {settings.manifest_path}"
                            + (f" for dataset {dataset}" if dataset else "")
                            + ": run `tslake backfill` first; repair only rewrites committed days")
    if not settings.has_cold_tier:
        for name, entry in entries.items():
            cutoff = retention.cutoff_date(entry, settings.hot_retention_days)
            if cutoff and days[0] < cutoff:
                raise ConfigError(
                    f"{days[0]} is older than {name}'s hot horizon (TSLAKE_HOT_RETENTION_DAYS="
                    f"{settings.hot_retention_days}, from {cutoff}) and there is no cold tier, so "
                    f"retention would delete it again: start the repair at {cutoff} or later")
    return days


def run_repair(settings: Settings, lo: datetime, hi: datetime,
               dataset: str | None) -> dict[str, Any]:
    days = repair_days(settings, lo, hi, dataset)
    with publish.writing(settings, "tslake repair"):
        run_dbt(settings, ["run"], dataset=dataset, variables={"repair_dates": days})
    document = manifest.load(settings.manifest_path)
    report: dict[str, Any] = {"days": days, "datasets": {}}
    for name, entry in (document.datasets if document else {}).items():
        if dataset in (None, name):
            report["datasets"][name] = {
                day: {"location": p.location if p else None, "files": p.file_count if p else 0,
                      "rows": p.rows if p else 0}
                for day, p in ((day, entry.partitions.get(day)) for day in days)}
    return report
