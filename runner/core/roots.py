"""Where a dataset's files live: the one resolver of the lake's roots and of committed paths.

A committed file is `<root>/<relative path>`, the root being `<TSLAKE_HOT_PATH>/<dataset>`
or `<TSLAKE_COLD_PATH>/<dataset>` as its partition's location says. The manifest model
refuses a relative path that is absolute or climbs with `..`; `inside` refuses one that
leads out of its root through a symlink, so a tampered manifest can make tslake read or
delete nothing outside the lake (README, "Exit codes": 65).
"""

from __future__ import annotations

import os
import stat
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
    """Checks that committed paths stay inside their root once symlinks are followed.

    A lake has one directory per shard-day, so resolving each file's directory with
    os.path.realpath (an lstat per component of the whole path) costs more than the rest
    of a load at a year of days: directories are resolved one component at a time instead,
    each from its parent's cached real path (realpath(a/b) == realpath(realpath(a)/b)), so
    a file costs one lstat (is it a link?) and each directory one."""

    def __init__(self, manifest_path: Path) -> None:
        self.manifest_path = manifest_path
        self._real: dict[str, str] = {}
        self._roots: dict[Path, str] = {}

    def _realpath(self, path: str) -> str:
        """os.path.realpath(path) of a normalised absolute path, component by component."""
        found = self._real.get(path)
        if found is None:
            parent, _, name = path.rpartition("/")
            if not name or not parent:
                found = os.path.realpath(path)
            else:
                found = f"{self._realpath(parent)}/{name}"
                if _is_link(found):
                    found = os.path.realpath(found)
            self._real[path] = found
        return found

    def inside(self, root: Path, relative: str) -> Path:
        """`root / relative`, or a ManifestError when it resolves outside `root`."""
        return Path(self.inside_text(root, relative))

    def inside_text(self, root: Path, relative: str) -> str:
        """`inside` as a string, built without pathlib (this runs for every file of every
        load): `relative` is a manifest path (runner/core/manifest: relative, no `..`)."""
        base = self._roots.get(root)
        if base is None:
            base = self._roots[root] = str(root.absolute())
        text = f"{base}/{relative}"
        if "//" in text or "/./" in text or relative.startswith("./") or relative.endswith("/"):
            text = str(Path(text))  # normalised the way `root / relative` would be
        real_root = self._realpath(base)
        folder, name = text.rsplit("/", 1)
        real = f"{self._realpath(folder)}/{name}"
        if _is_link(real):
            real = os.path.realpath(real)
        if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
            raise ManifestError(f"manifest at {self.manifest_path} lists {relative}, which leads "
                                f"outside {root} (to {real}): nothing was read or deleted; "
                                "remove the link or the entry, or restore an earlier manifest "
                                "with `tslake doctor --restore`")
        return text


def _is_link(path: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def file_location(settings: Settings, dataset: str, location: str, relative: str,
                  containment: Containment) -> str:
    """The absolute path or URL a reader opens for a committed file: directory paths checked
    for symlinks out, object-store URLs as the tier names them (no links there to follow)."""
    if location == "cold" and settings.cold_url is not None:
        return tiers.file_location(settings, dataset, location, relative)
    return containment.inside_text(dataset_root(settings, dataset, location), relative)
