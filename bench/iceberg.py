"""`make bench`, Iceberg: the time the Iceberg refresh adds to a tick (issue 15's goal: under
10% of the tick's model time at 90 days x 8 shards).

    python -m bench.iceberg [--sensors 64] [--days 90] [--cadence 300] [--ticks 3]

A 90-day lake (backfilled by `tslake backfill`), then ticks. The refresh runs inside each
tick's commit, so it is replayed on the side, same work: the metadata as it was before the
tick is put back, the refresh of the tick's committed manifest is timed in this process,
and the tick's own metadata is restored. Also timed: the check a command makes when
nothing changed (`open_write`'s catch-up), and what importing pyiceberg adds to a command.
Writes its section of BENCHMARKS.md between <!-- iceberg --> markers."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import dataset, measure, report
from runner.config import PROJECT_ROOT, Settings
from runner.core import iceberg, manifest

DATASET = "metrics/v1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sensors", type=int, default=64)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--cadence", type=int, default=300)
    parser.add_argument("--ticks", type=int, default=3)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="tslake-bench-iceberg-"))
    server = dataset.start(work / "pg", 18)
    try:
        table = dataset.create_table(server, "iceberg", sensors=args.sensors, days=args.days,
                                     cadence_seconds=args.cadence)
        env = measure.lake_env(server, "iceberg", work / "lake",
                               TSLAKE_HOT_RETENTION_DAYS=str(args.days + 10),
                               TSLAKE_COMPACT_MIN_FILES="1000")
        subprocess.run([str(PROJECT_ROOT / ".venv/bin/tslake"), "backfill", "--days",
                        str(args.days)], cwd=PROJECT_ROOT, env=env, check=True,
                       capture_output=True)
        settings = Settings.from_env(env)
        results = measure_ticks(server, env, settings, args)
        results["rows"] = table.rows
    finally:
        dataset.stop(server)
        shutil.rmtree(work, ignore_errors=True)
    write_section(results)
    print(json.dumps(results, indent=2))
    return 0


def measure_ticks(server: dataset.Server, env: dict[str, str], settings: Settings,
                  args: argparse.Namespace) -> dict[str, Any]:
    metadata = iceberg.metadata_dir(settings, DATASET)
    aside = metadata.with_name("metadata.before")
    models, refreshes, noops = [], [], []
    for _ in range(args.ticks):
        shutil.copytree(metadata, aside)
        dataset.insert_new_rows(server, "iceberg", args.sensors, 5)
        models.append(measure.tick(server, "iceberg", env).model_seconds)
        document = manifest.load(settings.manifest_path)
        assert document is not None
        entry = document.datasets[DATASET]
        after = metadata.with_name("metadata.after")
        metadata.rename(after)
        aside.rename(metadata)
        started = time.perf_counter()
        assert iceberg.refresh_dataset(settings, DATASET, entry, document.generation)
        refreshes.append(time.perf_counter() - started)
        shutil.rmtree(metadata)
        after.rename(metadata)
        started = time.perf_counter()
        assert not iceberg.refresh_dataset(settings, DATASET, entry, document.generation)
        noops.append(time.perf_counter() - started)
        print(f"tick model {models[-1]:.3f} s, refresh {refreshes[-1] * 1000:.1f} ms",
              file=sys.stderr)
    files = sum(partition.file_count for partition in entry.partitions.values())
    model, refresh = statistics.median(models), statistics.median(refreshes)
    return {"days": len(entry.partitions), "shards": entry.shards, "files": files,
            "tick_model_seconds": round(model, 3), "refresh_seconds": round(refresh, 4),
            "refresh_share": round(refresh / model, 4),
            "unchanged_check_seconds": round(statistics.median(noops), 4),
            "import_seconds": round(import_cost(), 3), "ticks": args.ticks,
            "load_average": measure.load_average()}


def import_cost(runs: int = 3) -> float:
    """What `import runner.core.iceberg` (pyiceberg, pyarrow) adds to a fresh process that
    already imports the manifest module."""
    def best(module: str) -> float:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
            times.append(time.perf_counter() - started)
        return min(times)
    return best("runner.core.iceberg") - best("runner.core.manifest")


def write_section(results: dict[str, Any]) -> None:
    lines = ["## Iceberg refresh: what it adds to a tick", "",
             f"Lake: {results['rows']:,} rows backfilled, {results['days']} days x "
             f"{results['shards']} shards, {results['files']:,} files; median of "
             f"{results['ticks']} ticks; load average {results['load_average']}. The refresh "
             "is replayed beside each tick on the same metadata (see bench/iceberg.py).", "",
             "| measure | value |", "|---|---:|",
             f"| tick, model time (dbt) | {results['tick_model_seconds'] * 1000:.0f} ms |",
             f"| Iceberg refresh after the tick's commit | "
             f"{results['refresh_seconds'] * 1000:.1f} ms |",
             f"| refresh / tick model time (goal < 10%) | "
             f"**{results['refresh_share'] * 100:.1f}%** |",
             f"| check when nothing changed (a command's catch-up) | "
             f"{results['unchanged_check_seconds'] * 1000:.1f} ms |",
             f"| importing pyiceberg, per command | {results['import_seconds'] * 1000:.0f} ms |",
             "", "A tick touches one or two dates: the refresh writes their manifests, reuses "
             "the other dates' from the previous snapshot, and writes one manifest list and "
             "one metadata file (runner/core/iceberg.py)."]
    report.write_marked_section("iceberg", lines)


if __name__ == "__main__":
    raise SystemExit(main())
