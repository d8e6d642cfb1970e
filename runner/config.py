"""Settings from the environment (README, "Settings"), validated once, in one place."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import ConfigError

# The repository root: runner/ is installed editable from it, and dbt runs from it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_SHARDS = 8
MAX_SHARDS = 100  # shard directories are two digits: shard=00 .. shard=99
MAX_WORKERS = 256  # TSLAKE_THREADS / TSLAKE_BACKFILL_WORKERS: more is a typo, not a machine


def _first(env: Mapping[str, str], *names: str) -> str | None:
    """The value of the first variable that is set and not empty (aliases come second)."""
    for name in names:
        value = env.get(name)
        if value not in (None, ""):
            return value
    return None


def _number(env: Mapping[str, str], names: tuple[str, ...], default: float, *,
            minimum: float, whole: bool = False, maximum: float = math.inf) -> float:
    raw = _first(env, *names)
    if raw is None:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"{names[0]}={raw!r} is not {kind}; set it to {kind} >= {minimum:g} "
                          f"or unset it for the default {default:g}") from None
    if value < minimum or value != value:  # value != value: NaN
        raise ConfigError(f"{names[0]}={raw!r} is below the minimum {minimum:g}; "
                          f"unset it for the default {default:g}")
    if value > maximum or value == math.inf:
        limit = f"the maximum {maximum:g}" if maximum < math.inf else "any finite number"
        raise ConfigError(f"{names[0]}={raw!r} is above {limit}; unset it for the default "
                          f"{default:g}")
    return value


@dataclass(frozen=True)
class Settings:
    """Where the lake lives and how it is kept. Build with `Settings.from_env()`."""

    data_root: Path
    hot_path: Path
    cold_path: Path | None
    tmp_path: Path
    interval_seconds: float
    lag_seconds: float
    hot_retention_days: int
    shards: int
    compact_min_files: int
    delete_grace_seconds: float
    lock_timeout_seconds: float
    memory_limit: str
    threads: int
    backfill_workers: int
    datasets: tuple[str, ...] = ("metrics/v1",)
    # TSLAKE_COLD_PATH when it is an object-store URL (s3://bucket/prefix); cold_path is
    # then None. runner/core/tiers.py turns either into the cold tier.
    cold_url: str | None = None
    # A hot standby as the source (README, "A hot standby as the source"): the primary's
    # connection string (it may hold a password: never in a repr or a message), and how
    # long a tick waits for the standby to replay past the primary's WAL position.
    primary_dsn: str | None = field(default=None, repr=False)
    standby_replay_timeout_seconds: float = 10.0

    @property
    def has_cold_tier(self) -> bool:
        return self.cold_path is not None or self.cold_url is not None

    # The derived-sensor definitions (SPEC section 8); a missing file is none.
    derived_sensors: Path = PROJECT_ROOT / "derived_sensors.yml"

    @property
    def state_dir(self) -> Path:
        return self.hot_path / "_state"

    @property
    def manifest_path(self) -> Path:
        return self.state_dir / "manifest.json"

    @property
    def replication_path(self) -> Path:
        return self.state_dir / "replication.json"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "lock"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data_root = Path(_first(env, "TSLAKE_DATA_ROOT") or PROJECT_ROOT / ".tslake")
        data_root = data_root.expanduser().absolute()
        hot = _first(env, "TSLAKE_HOT_PATH")
        cold = _first(env, "TSLAKE_COLD_PATH", "CORE_ANALYSIS_LAKE_COLD_PATH")
        tmp = _first(env, "TSLAKE_TMP_PATH")
        shards = int(_number(env, ("TSLAKE_SHARDS",), DEFAULT_SHARDS, minimum=1, whole=True))
        if shards > MAX_SHARDS:
            raise ConfigError(f"TSLAKE_SHARDS={shards} is above {MAX_SHARDS}: shard directories "
                              "have two digits; choose 1..100")
        memory_limit = _first(env, "TSLAKE_MEMORY_LIMIT") or "512MB"
        if not memory_limit.replace(" ", "").rstrip("KMGTiBb").replace(".", "").isdigit():
            raise ConfigError(f"TSLAKE_MEMORY_LIMIT={memory_limit!r} is not a size "
                              "like 512MB or 2GB")
        datasets = tuple(name.strip() for name in
                         (_first(env, "TSLAKE_DATASETS") or "metrics/v1").split(","))
        if not all(datasets) or len(set(datasets)) != len(datasets):
            raise ConfigError(f"TSLAKE_DATASETS={','.join(datasets)!r} must name each dataset "
                              "once, comma-separated, like metrics/v1,forecast_points/v1")
        cold_url = None
        if cold is not None and cold.startswith("s3://"):
            from runner.core.object_store import parse_url  # refuses embedded credentials

            parse_url(cold)
            cold_url, cold = cold.rstrip("/"), None
        return cls(
            data_root=data_root,
            hot_path=Path(hot).expanduser().absolute() if hot
            else data_root / "storage/analysis/lake/hot",
            cold_path=Path(cold).expanduser().absolute() if cold else None,
            tmp_path=Path(tmp).expanduser().absolute() if tmp
            else data_root / "storage/analysis/tmp",
            interval_seconds=_number(env, ("TSLAKE_REPLICATION_INTERVAL_SECONDS",
                                           "CORE_ANALYSIS_REPLICATION_INTERVAL_SECONDS"),
                                     60, minimum=0.1),
            lag_seconds=_number(env, ("TSLAKE_REPLICATION_LAG_SECONDS",
                                      "CORE_ANALYSIS_REPLICATION_LAG_SECONDS"), 300, minimum=0),
            hot_retention_days=int(_number(env, ("TSLAKE_HOT_RETENTION_DAYS",
                                                 "CORE_ANALYSIS_HOT_RETENTION_DAYS"),
                                           90, minimum=1, whole=True)),
            shards=shards,
            compact_min_files=int(_number(env, ("TSLAKE_COMPACT_MIN_FILES",), 10, minimum=1,
                                          whole=True)),
            delete_grace_seconds=_number(env, ("TSLAKE_DELETE_GRACE_SECONDS",), 0, minimum=0),
            lock_timeout_seconds=_number(env, ("TSLAKE_LOCK_TIMEOUT_SECONDS",), 10, minimum=0),
            memory_limit=memory_limit,
            threads=int(_number(env, ("TSLAKE_THREADS",), min(4, os.cpu_count() or 1),
                                minimum=1, whole=True, maximum=MAX_WORKERS)),
            # Concurrent shard reads of a backfill: one more than the cores, so a core is
            # never idle while a read waits for Postgres.
            backfill_workers=int(_number(env, ("TSLAKE_BACKFILL_WORKERS",),
                                         (os.cpu_count() or 1) + 1, minimum=1, whole=True,
                                         maximum=MAX_WORKERS)),
            datasets=datasets,
            cold_url=cold_url,
            primary_dsn=_first(env, "TSLAKE_PRIMARY_DSN"),
            standby_replay_timeout_seconds=_number(
                env, ("TSLAKE_STANDBY_REPLAY_TIMEOUT_SECONDS",), 10, minimum=0),
            derived_sensors=Path(_first(env, "TSLAKE_DERIVED_SENSORS") or
                                 PROJECT_ROOT / "derived_sensors.yml").expanduser().absolute(),
        )
