"""Progress of long work: bars on a terminal, periodic log lines under cron.

Two shapes. `stage_progress` follows one stage's shards (PIT buckets, factor dates).
`ProgressBoard` follows many tasks at once (a sync's API tasks), counted in calls so a
task whose units complete only at its end (one call per stock, every date in each)
still moves; it shows one aggregate bar with its ETA plus the tasks running now, as
many as the terminal has rows for, so 26 tasks fit an 80×24 terminal. Off a terminal
both log one line every few seconds: done/total, rate and ETA.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from foundation.logs import get_logger

LOG_EVERY_S = 10.0
BOARD_LOG_EVERY_S = 15.0
MAX_TASKS_IN_LINE = 6
RESERVED_ROWS = 4  # the aggregate bar, the prompt and room for the final report's first line

log = get_logger("progress")


def format_eta(seconds: float | None) -> str:
    """`1h02m`, `4m05s`, `12s`; `?` when unknown."""
    if seconds is None:
        return "?"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def eta_seconds(done: int, total: int, elapsed: float) -> float | None:
    """Time left at the pace so far (None before the first unit of work is done)."""
    if done <= 0 or elapsed <= 0:
        return None
    return max(0.0, (total - done) * elapsed / done)


def _columns(unit: str) -> list[Any]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(bar_width=None),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]


@contextlib.contextmanager
def stage_progress(label: str, tty: bool | None = None) -> Iterator[Callable[[int, int], None]]:
    """Yield an `on_progress(done, total)` callback for one stage's shards."""
    tty = sys.stderr.isatty() if tty is None else tty
    if tty:
        from rich.progress import Progress

        bars = Progress(*_columns("shards"))
        bar = bars.add_task(label, total=None)
        with bars:
            yield lambda done, total: bars.update(bar, completed=done, total=total)
        return
    started = time.monotonic()
    last = [started]

    def on_progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= LOG_EVERY_S:
            last[0] = now
            eta = format_eta(eta_seconds(done, total, now - started))
            log.info("%s: %d/%d shards, ETA %s", label, done, total, eta)

    yield on_progress


class ProgressBoard:
    """Calls done per task and in all: an aggregate bar and the running tasks on a
    terminal, a log line every `BOARD_LOG_EVERY_S` seconds otherwise."""

    def __init__(
        self,
        enabled: bool | None,
        label: str = "sync",
        unit: str = "calls",
        console: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tty = sys.stderr.isatty() if enabled is None else enabled
        self.label, self.unit = label, unit
        self._console = console
        self._clock = clock
        self._started = clock()
        self._state: dict[str, tuple[int, int]] = {}
        self._bars: Any = None
        self._all: Any = None
        self._ids: dict[str, Any] = {}

    # ---- figures

    def totals(self) -> tuple[int, int]:
        """Calls done and planned, all tasks together."""
        return (
            sum(d for d, _ in self._state.values()),
            sum(n for _, n in self._state.values()),
        )

    def running(self) -> list[str]:
        """Tasks started and not finished, in the order they started."""
        return [t for t, (d, n) in self._state.items() if 0 < d < n]

    def line(self) -> str:
        """One log line: calls done/planned, rate, ETA, and the running tasks."""
        done, total = self.totals()
        elapsed = self._clock() - self._started
        share = f" ({100 * done / total:.0f}%)" if total else ""
        rate = f", {done / elapsed:.1f} {self.unit}/s" if elapsed > 0 and done else ""
        eta = format_eta(eta_seconds(done, total, elapsed))
        running = self.running()
        parts = [f"{t} {self._state[t][0]}/{self._state[t][1]}" for t in running]
        shown = ", ".join(parts[:MAX_TASKS_IN_LINE])
        if len(parts) > MAX_TASKS_IN_LINE:
            shown += f", +{len(parts) - MAX_TASKS_IN_LINE} more"
        return f"{self.label} progress: {done}/{total} {self.unit}{share}{rate}, ETA {eta}" + (
            f"; running: {shown}" if shown else ""
        )

    # ---- updates

    def update(self, task: str, done: int, total: int) -> None:
        """Record a task's calls done and planned (a total below done is raised to it)."""
        self._state[task] = (done, max(done, total))
        if self._bars is not None:
            self._redraw()

    def finish(self, task: str) -> None:
        """A task ended: whatever it planned counts as done (a task never started, such
        as a skipped one, stays unknown to the board)."""
        if task not in self._state:
            return
        done, total = self._state[task]
        self.update(task, max(done, total), max(done, total))

    # ---- the terminal

    def __enter__(self) -> ProgressBoard:
        if self.tty:
            from rich.progress import Progress

            self._bars = Progress(*_columns(self.unit), console=self._console, transient=False)
            self._all = self._bars.add_task(self._aggregate_label(), total=None)
            self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bars is not None:
            self._redraw()
            self._bars.stop()

    def renderable(self) -> Any:
        """What the terminal shows now (for a recording console in tests)."""
        self._redraw()
        return self._bars.get_renderable()

    def _aggregate_label(self) -> str:
        finished = sum(1 for d, n in self._state.values() if n and d >= n)
        return f"{self.label}: {finished}/{len(self._state)} tasks"

    def _rows(self) -> int:
        height = self._bars.console.size.height if self._bars is not None else 24
        return max(1, height - RESERVED_ROWS)

    def _redraw(self) -> None:
        bars = self._bars
        done, total = self.totals()
        bars.update(self._all, description=self._aggregate_label(), completed=done, total=total)
        shown = set(self.running()[: self._rows()])
        for task, (task_done, task_total) in self._state.items():
            if task not in self._ids:
                if task not in shown:
                    continue
                self._ids[task] = bars.add_task(f"  {task}", total=task_total, visible=False)
            bars.update(
                self._ids[task], completed=task_done, total=task_total, visible=task in shown
            )

    # ---- off a terminal

    async def log_periodically(self) -> None:
        """When not on a terminal, log progress every few seconds until cancelled."""
        if self.tty:
            return
        import anyio

        while True:
            await anyio.sleep(BOARD_LOG_EVERY_S)
            log.info(self.line())
