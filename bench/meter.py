"""Wall time and peak memory of each stage of `ah run`, measured inside the running process.

`run_pipeline` runs its stages one after another in this process (and their pool
workers as its children), so a stage's peak is taken while it is the one running: a
background thread samples the summed VmRSS of this process's tree (pool workers
included) and files each sample under the stage running then, and at every stage's
start the process's own high-water mark is reset (`/proc/self/clear_refs`, "5") and read
back at its end, so a spike between two samples still counts for the process itself.
`metered_stages` wraps the pipeline's stage functions (the sync and each compute
stage of `pipeline.run.job`) so they report to a meter; the time outside them is the
run's own overhead (opening sweep, report, metrics), filed under "other".
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.child import _status_kb, tree_rss_kb

OTHER = "other"
SAMPLE_INTERVAL_S = 0.05


def _reset_high_water_mark() -> None:
    """Reset this process's VmHWM to its current RSS (a no-op where not allowed)."""
    with contextlib.suppress(OSError), open(Path("/proc/self/clear_refs"), "w") as fh:
        fh.write("5")


class StageMeter:
    """Seconds and peak tree RSS (MB) per stage; samples while used as a context."""

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.current = OTHER
        self.seconds: dict[str, float] = {}
        self.peak_kb: dict[str, int] = {}
        self._pid = os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="stage-meter", daemon=True)

    def __enter__(self) -> StageMeter:
        _reset_high_water_mark()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _note(self, label: str, kb: int) -> None:
        self.peak_kb[label] = max(self.peak_kb.get(label, 0), kb)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._note(self.current, tree_rss_kb(self._pid))
            self._stop.wait(self.interval_s)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Meter the block as stage `name`."""
        _reset_high_water_mark()
        self.current = name
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
            self._note(name, max(tree_rss_kb(self._pid), _status_kb(self._pid, "VmHWM")))
            self.current = OTHER
            _reset_high_water_mark()

    def peak_mb(self) -> dict[str, float]:
        """Peak RSS per stage, in MB."""
        return {name: round(kb / 1024, 1) for name, kb in self.peak_kb.items()}


@contextlib.contextmanager
def metered_stages(meter: StageMeter) -> Iterator[None]:
    """Within the block, `run_pipeline`'s sync and compute stages report to `meter`."""
    import pipeline.run.job as job

    original_sync, original_stages = job.run_sync, job.COMPUTE_STAGES

    def sync(*args: Any, **kwargs: Any) -> Any:
        with meter.stage("sync"):
            return original_sync(*args, **kwargs)

    def metered(name: str, stage: job.Stage) -> job.Stage:
        def run(settings: Any, request: Any, on_progress: Any) -> job.StageResult:
            with meter.stage(name):
                return stage(settings, request, on_progress)

        return run

    job.run_sync = sync
    job.COMPUTE_STAGES = tuple((name, metered(name, stage)) for name, stage in original_stages)
    try:
        yield
    finally:
        job.run_sync, job.COMPUTE_STAGES = original_sync, original_stages
