"""Named points where the crash-safety tests kill a real `ah` process.

`AH_TEST_CRASH_AT=<point>:<n>` makes the process SIGKILL itself the n-th time it passes
`point`. The sync: `fetch`, `spill` (a fetched page spilled to disk), `merge` (spills
merged into their partitions, their units not yet recorded), `unspill`, `write`,
`partition`, `compact` (a closed year's file written, its months not yet deleted),
`state`, `views`. PIT: `pit-plan`, `shard` (a finished shard of the pool, also the
factor step's), `pit-delta` (a job's delta files written, replaced stocks' old rows not
yet removed), `pit-fold` (deltas folded into bucket files, not yet removed), `pit-written`,
`pit-state`. Factors: `factors-plan`, `factors-written`,
`factors-state`. Load: `load-ddl` and `load-commit` (inside a partition's transaction,
or a new table's staging table made and a COPY stream mid-way), `load-staged` (a new
table's parallel streams all committed to its staging table, not yet renamed into
place), `load-partition` (after its COMMIT), `load-table`. A stand-alone stage command:
`<stage>-report` (its work done, its report not yet written). Unset, a point costs one
environment lookup. The tests then check that a re-run ends where a clean run does.
`<point>:<n>:stop` stops the process there (SIGSTOP) instead, so a test can take
something away under it (the database server) before it goes on.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

__all__ = ["CRASH_ENV", "crash_point"]

CRASH_ENV = "AH_TEST_CRASH_AT"

_crash_counts: Counter[str] = Counter()
_lock = threading.Lock()  # points passed by several threads count each pass once


def crash_point(point: str) -> None:
    """Kill this process with SIGKILL the n-th time it passes `point`, when the
    environment says `AH_TEST_CRASH_AT=<point>:<n>` (crash-safety tests only); with
    `<point>:<n>:stop`, stop it there (SIGSTOP) until the test continues it."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    name, _, rest = wanted.partition(":")
    if name != point:
        return
    count, _, action = rest.partition(":")
    with _lock:
        _crash_counts[point] += 1
        reached = _crash_counts[point] == int(count or 1)
    if reached:
        os.kill(os.getpid(), signal.SIGSTOP if action == "stop" else signal.SIGKILL)
