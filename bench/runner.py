"""One benchmark run: prepare (or reuse) the cache, run the stages, assemble the document.

A stage that raises (its product code missing or broken) is recorded with its error and
the run goes on; so is a failed preparation, for the stages that need its cache.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from bench.context import StageContext
from bench.figures import StageResult
from bench.report import machine_facts
from bench.scenarios import Scenario
from bench.stages import daily, factors, load, pit, query, simulator, startup, sync
from bench.workdir import Prepared, Say, prepare, work_root

STAGES: dict[str, ModuleType] = {
    "simulator": simulator,
    "sync": sync,
    "pit": pit,
    "factors": factors,
    "load": load,
    "query": query,
    "startup": startup,
    "daily": daily,
}
STAGE_NAMES: tuple[str, ...] = tuple(STAGES)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _stage_error(name: str, error: str) -> StageResult:
    result = StageResult(name, STAGES[name].TITLE)
    result.error = error
    return result


def run_bench(
    scenario: Scenario,
    stages: Sequence[str],
    reps: int,
    rebuild: bool = False,
    say: Say = _stderr,
) -> dict[str, Any]:
    """Run `stages` of `scenario` with `reps` repetitions; the results document.

    `rebuild` prepares the cache anew even when a matching one exists (after a change
    of the pipeline that the scenario's fingerprint cannot see).
    """
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        msg = f"unknown stage(s) {', '.join(unknown)}; expected some of {', '.join(STAGE_NAMES)}"
        raise ValueError(msg)
    started = time.perf_counter()
    root = work_root(scenario)
    data: Prepared | None = None
    prep_error: str | None = None
    reused = False
    if any(STAGES[s].NEEDS_DATA for s in stages):
        data, prep_error, reused = prepare(scenario, say, rebuild)
    done: dict[str, StageResult] = {}
    for name in (s for s in STAGE_NAMES if s in stages):
        module = STAGES[name]
        if module.NEEDS_DATA and data is None:
            done[name] = _stage_error(name, prep_error or "no prepared cache")
            continue
        scratch = root / "scratch" / f"{name}-{os.getpid()}"  # runs may overlap
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        ctx = StageContext(scenario, reps, scratch, data, dict(done))
        say(f"stage {name}: {module.TITLE}")
        stage_started = time.perf_counter()
        try:
            result: StageResult = module.run(ctx)
        except Exception as exc:
            result = _stage_error(name, f"{type(exc).__name__}: {exc}")
        result.seconds = time.perf_counter() - stage_started
        shutil.rmtree(scratch, ignore_errors=True)
        done[name] = result
        say(f"stage {name}: {'ERROR' if result.error else 'done'} in {result.seconds:.1f} s")
    return assemble(scenario, reps, done, data, reused, time.perf_counter() - started)


def assemble(
    scenario: Scenario,
    reps: int,
    done: dict[str, StageResult],
    data: Prepared | None,
    reused: bool,
    seconds: float,
) -> dict[str, Any]:
    """The results document (what is saved as JSON)."""
    figures = [f for r in done.values() for f in r.figures]
    return {
        "scenario": scenario.to_json(),
        "machine": machine_facts(),
        "reps": reps,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "prepared": {
            "reused": reused,
            "day": data.day.isoformat() if data else None,
            "next_day": data.next_day.isoformat() if data else None,
            "facts": data.facts if data else {},
        },
        "summary": {
            "pass": sum(f.status == "PASS" for f in figures),
            "miss": sum(f.status == "MISS" for f in figures),
            "errors": sum(r.error is not None for r in done.values()),
        },
        "stages": {name: result.to_json() for name, result in done.items()},
    }
