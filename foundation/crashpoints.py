"""Named points where the crash-safety tests kill a real `ah` process.

`AH_TEST_CRASH_AT=<point>:<n>` makes the process SIGKILL itself the n-th time it passes
`point` (the sync's fetch, spill (a page written to its spill file), merge (spilled
pages merged, their units not yet recorded), write, partition, state, unspill (a spill
file deleted after its record) and views; a finished shard of the
PIT or factor pool; a partition loaded into PostgreSQL). Unset, a point costs one
environment lookup. The tests then check that a re-run ends where a clean run does.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

__all__ = ["CRASH_ENV", "crash_point"]

CRASH_ENV = "AH_TEST_CRASH_AT"

_crash_counts: Counter[str] = Counter()


def crash_point(point: str) -> None:
    """Kill this process with SIGKILL the n-th time it passes `point`, when the
    environment says `AH_TEST_CRASH_AT=<point>:<n>` (crash-safety tests only)."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    name, _, count = wanted.partition(":")
    if name != point:
        return
    _crash_counts[point] += 1
    if _crash_counts[point] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
