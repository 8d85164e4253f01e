"""Progress of a compute stage: a bar on a terminal, periodic log lines under cron."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

from foundation.logs import get_logger

LOG_EVERY_S = 10.0

log = get_logger("progress")


@contextlib.contextmanager
def stage_progress(label: str, tty: bool | None = None) -> Iterator[Callable[[int, int], None]]:
    """Yield an `on_progress(done, total)` callback for one stage's shards."""
    tty = sys.stderr.isatty() if tty is None else tty
    if tty:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        bars = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        bar = bars.add_task(label, total=None)
        with bars:
            yield lambda done, total: bars.update(bar, completed=done, total=total)
        return
    last = [time.monotonic()]

    def on_progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= LOG_EVERY_S:
            last[0] = now
            log.info("%s: %d/%d", label, done, total)

    yield on_progress
