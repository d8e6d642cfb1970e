"""Named crash points for the crash-safety tests.

`TSLAKE_FAILPOINT=name` makes the process SIGKILL itself when it reaches `failpoint(name)`:
a real kill at an exact step, which no timing-based kill can hit reliably. Unset, it costs
one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

# The steps a publish passes through, in order; tests iterate over these.
PUBLISH_FAILPOINTS = ("after_data_rename", "before_manifest_replace", "after_manifest_replace")
# A compaction's commit of one shard-day, in order: compact file staged (*.tmp) / renamed /
# manifest about to be replaced / replaced (inputs still on disk) / first input deleted.
COMPACT_FAILPOINTS = ("compact_before_data_rename", "compact_after_data_rename",
                      "compact_before_manifest_replace", "compact_after_manifest_replace",
                      "compact_after_first_delete")


def failpoint(name: str) -> None:
    if os.environ.get("TSLAKE_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)

# The steps of a retention move of one partition, in order (runner/retention.py).
RETENTION_FAILPOINTS = ("retention_after_cold_copy", "retention_before_manifest_replace",
                        "retention_after_manifest_replace", "retention_during_hot_removal")
