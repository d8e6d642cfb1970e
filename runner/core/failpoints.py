"""Named crash points for the crash-safety tests.

`TSLAKE_FAILPOINT=name` makes the process SIGKILL itself when it reaches `failpoint(name)`;
`TSLAKE_FAILPOINT=name#N` the N-th time it gets there (a backfill commits once per day).
A real kill at an exact step, which no timing-based kill can hit reliably. Unset, it costs
one dictionary lookup. `name@stop` (also `name#N@stop`) SIGSTOPs the process there instead,
so a test can change the world at that step (stop the S3 endpoint) and SIGCONT it.
"""

from __future__ import annotations

import os
import signal
import threading

# The steps a publish passes through, in order; tests iterate over these.
PUBLISH_FAILPOINTS = ("after_data_rename", "before_manifest_replace", "after_manifest_replace")
# A compaction's commit of one shard-day, in order: compact file staged (*.tmp) / renamed /
# manifest about to be replaced / replaced (inputs still on disk) / first input deleted.
COMPACT_FAILPOINTS = ("compact_before_data_rename", "compact_after_data_rename",
                      "compact_before_manifest_replace", "compact_after_manifest_replace",
                      "compact_after_first_delete")
# The steps of a retention move of one partition, in order (runner/ops/retention.py).
RETENTION_FAILPOINTS = ("retention_after_cold_copy", "retention_before_manifest_replace",
                        "retention_after_manifest_replace", "retention_during_hot_removal")

_hits: dict[str, int] = {}
_lock = threading.Lock()


def failpoint(name: str) -> None:
    wanted = os.environ.get("TSLAKE_FAILPOINT")
    if not wanted:
        return
    wanted, _, action = wanted.partition("@")
    target, _, nth = wanted.partition("#")
    if target != name:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] == int(nth or 1) or (_hits[name] > int(nth or 1) and not action):
            os.kill(os.getpid(), signal.SIGSTOP if action == "stop" else signal.SIGKILL)
