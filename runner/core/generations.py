"""The last few committed manifests, kept in `_state/manifests/` so that "restore the
manifest from a backup" is something an operator can do (`tslake doctor --restore`).

Each commit replaces `_state/manifest.json` by a rename, never in place, so a hard link to
the new file keeps that generation's bytes for free: no copy, no extra write. The newest
KEEP generations are kept; older links are removed. Keeping is best effort: the commit has
already happened, so a failure here is a warning, never a failed command.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from runner.core.durable import fsync_path, makedirs_durable

log = logging.getLogger("tslake.manifest")

KEEP = 5
DIRECTORY = "manifests"
_NAME = re.compile(r"^manifest-([0-9]{12})\.json$")


def directory(manifest_path: Path) -> Path:
    return manifest_path.parent / DIRECTORY


def keep(manifest_path: Path, generation: int) -> None:
    """Link the just-committed manifest as generation `generation`; prune to KEEP."""
    where = directory(manifest_path)
    target = where / f"manifest-{generation:012d}.json"
    try:
        makedirs_durable(where)
        target.unlink(missing_ok=True)
        os.link(manifest_path, target)
        for old in kept(manifest_path)[:-KEEP]:
            old.unlink(missing_ok=True)
        fsync_path(where)
    except OSError as error:
        log.warning("could not keep manifest generation %d in %s: %s; the commit stands, "
                    "only `tslake doctor --restore` has one generation fewer to offer",
                    generation, where, error.strerror)


def kept(manifest_path: Path) -> list[Path]:
    """The kept generations, oldest first."""
    try:
        names = os.listdir(directory(manifest_path))
    except FileNotFoundError:
        return []
    found = sorted((int(match.group(1)), name) for name in names
                   if (match := _NAME.match(name)))
    return [directory(manifest_path) / name for _, name in found]
