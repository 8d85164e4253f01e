"""Stage 7: how long `ah` takes to answer, start-up included.

`ah --version` and `ah --help` (the commands a user or a health probe types first)
and `ah tasks` over the prepared cache, each run as a new process, as the shell
would: wall seconds from start to exit, and the CPU seconds the child used (the CPU
figure is steady on a busy machine, where the wall figure also counts the waiting).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.context import StageContext
from bench.figures import Figure, StageResult, Target, median

TITLE = "start-up: `ah --version`, `ah --help`, `ah tasks` as new processes"
NEEDS_DATA = True
QUICK_S = 0.5  # --version and --help: well under half a second
TASKS_S = 2.0  # tasks: imports Polars and reads every dataset's footer


def ah_command() -> list[str]:
    """The installed `ah` beside this interpreter, else the same entry point through it."""
    script = Path(sys.executable).with_name("ah")
    if script.exists():
        return [str(script)]
    found = shutil.which("ah")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys, cli; sys.exit(cli.main())"]


def time_command(argv: list[str], cwd: Path, reps: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of `reps` runs of `argv`, after one run not counted."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AH_")}
    env.pop("DATABASE_URL", None)
    walls, cpus = [], []
    for rep in range(reps + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            msg = f"{' '.join(argv[-2:])} exited {done.returncode}: {done.stderr[-300:]!r}"
            raise RuntimeError(msg)
        if rep:
            walls.append(wall)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def run(ctx: StageContext) -> StageResult:
    """Time the three commands (median of at least 5 runs each)."""
    data = ctx.data()
    result = StageResult("startup", TITLE)
    reps = max(ctx.reps, 5)
    ah = ah_command()
    cases = {
        "ah --version": ([*ah, "--version"], QUICK_S),
        "ah --help": ([*ah, "--help"], QUICK_S),
        "ah tasks": ([*ah, "--cache-dir", str(data.base), "tasks"], TASKS_S),
    }
    for name, (argv, bound) in cases.items():
        walls, cpus = time_command(argv, ctx.scratch, reps)
        result.add_timings({name: walls, f"{name} cpu": cpus})
        result.figures += [
            Figure(name, round(median(walls), 3), "s", Target("<", bound), "wall, median"),
            Figure(f"{name}, CPU", round(median(cpus), 3), "s", detail="user + system"),
        ]
    result.notes = [
        f"Each command run {reps} times after one run not counted, as a new process "
        f"({' '.join(ah)}), from an empty folder with no AH_* variables; wall seconds from "
        "start to exit, CPU seconds from the OS accounting of the finished child.",
    ]
    return result
