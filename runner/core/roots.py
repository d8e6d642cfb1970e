"""Where a dataset's files live: the one resolver of the lake's roots and of committed paths.

A committed file is `<root>/<relative path>`, the root being `<TSLAKE_HOT_PATH>/<dataset>`
or `<TSLAKE_COLD_PATH>/<dataset>` as its partition's location says. The manifest model
refuses a relative path that is absolute or climbs with `..`; `inside` refuses one that
leads out of its root through a symlink, so a tampered manifest can make tslake read or
delete nothing outside the lake (README, "Exit codes": 65).
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.config import Settings
from runner.core.datasets import DATASET_NAME
from runner.errors import ConfigError, ManifestError


def dataset_root(settings: Settings, dataset: str, location: str = "hot",
                 date: str | None = None) -> Path:
    """`<hot or cold path>/<dataset>`; a cold partition without TSLAKE_COLD_PATH is exit 2
    naming the setting (`date`: the partition, for the message)."""
    if not DATASET_NAME.match(dataset):
        raise ConfigError(f"dataset name {dataset!r} is not like 'metrics/v1' (lowercase "
                          "words separated by '/'): fix the model's meta.dataset")
    if location == "hot":
        return settings.hot_path / dataset
    if settings.cold_path is None:
        which = f"partition {date} of {dataset} is" if date else f"{dataset} has partitions"
        raise ConfigError(f"{which} in the cold tier but TSLAKE_COLD_PATH is not set: set it "
                          "to the cold lake's path")
    return settings.cold_path / dataset


class Containment:
    """Checks that committed paths stay inside their root once symlinks are followed; the
    real path of each directory is looked up once (a lake has few directories, many files)."""

    def __init__(self, manifest_path: Path) -> None:
        self.manifest_path = manifest_path
        self._real: dict[str, str] = {}

    def _realpath(self, path: str) -> str:
        found = self._real.get(path)
        if found is None:
            found = self._real[path] = os.path.realpath(path)
        return found

    def inside(self, root: Path, relative: str) -> Path:
        """`root / relative`, or a ManifestError when it resolves outside `root`."""
        path = root / relative
        text = str(path)
        real_root = self._realpath(str(root))
        real = os.path.join(self._realpath(os.path.dirname(text)), os.path.basename(text))
        if os.path.islink(real):
            real = os.path.realpath(real)
        if os.path.commonpath([real_root, real]) != real_root:
            raise ManifestError(f"manifest at {self.manifest_path} lists {relative}, which leads "
                                f"outside {root} (to {real}): nothing was read or deleted; "
                                "remove the link or the entry, or restore an earlier manifest "
                                "with `tslake doctor --restore`")
        return path
