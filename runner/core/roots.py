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
from runner.core import tiers
from runner.core.datasets import DATASET_NAME
from runner.errors import ConfigError, ManifestError


def dataset_root(settings: Settings, dataset: str, location: str = "hot") -> Path:
    """`<hot or cold path>/<dataset>` of a directory tier; a cold tier that is unset or not
    mounted is ColdTierUnavailableError naming that (exit 69: nothing is missing, no repair)."""
    if not DATASET_NAME.match(dataset):
        raise ConfigError(f"dataset name {dataset!r} is not like 'metrics/v1' (lowercase "
                          "words separated by '/'): fix the model's meta.dataset")
    if location == "hot":
        return settings.hot_path / dataset
    return tiers.cold_root(settings, dataset)


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


def file_location(settings: Settings, dataset: str, location: str, relative: str,
                  containment: Containment) -> str:
    """The absolute path or URL a reader opens for a committed file: directory paths checked
    for symlinks out, object-store URLs as the tier names them (no links there to follow)."""
    if location == "cold" and settings.cold_url is not None:
        return tiers.file_location(settings, dataset, location, relative)
    return str(containment.inside(dataset_root(settings, dataset, location), relative))
