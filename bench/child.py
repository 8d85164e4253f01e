"""Run one measured piece of work in a fresh spawned process and record its peak memory.

Why a child per piece: peak memory is a high-water mark, so two pieces run in one
process would share theirs. Why not `getrusage(RUSAGE_CHILDREN).ru_maxrss`: Linux
carries the parent's resident size into a forked child's `ru_maxrss` (measured here: a
32 MB child of a 1.6 GB parent reports 1.6 GB), and process pools fork. So the parent
samples the child's whole process tree from /proc while it runs: the peak of the sum of
VmRSS over the tree (pool workers included), and never less than the child's own
VmHWM, which the child reads itself at the end (exact for that process).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Generic, TypeVar

A = TypeVar("A")
R = TypeVar("R")

SAMPLE_INTERVAL_S = 0.1
PROC = Path("/proc")


class ChildFailed(RuntimeError):
    """The measured work raised, or its process died; carries the child's traceback."""


@dataclass(frozen=True)
class ChildResult(Generic[R]):
    """The value the work returned and its process tree's peak memory."""

    value: R
    peak_rss_mb: float


def _status_kb(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status (0 when the process is gone)."""
    try:
        with open(PROC / str(pid) / "status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError, IndexError):
        return 0
    return 0


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    found: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        # the command name (2nd field) may hold spaces and parentheses: split after it
        fields = stat[stat.rfind(")") + 2 :].split()
        found[int(entry.name)] = int(fields[1])
    return found


def _tree(root: int) -> list[int]:
    """`root` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    tree, frontier = [root], [root]
    while frontier:
        below = children.get(frontier.pop(), [])
        tree.extend(below)
        frontier.extend(below)
    return tree


def tree_rss_kb(root: int) -> int:
    """Sum of VmRSS over `root` and all its descendants, now."""
    return sum(_status_kb(pid, "VmRSS") for pid in _tree(root))


def _cpu_ticks(pid: int) -> int:
    """utime + stime + cutime + cstime of /proc/<pid>/stat: the CPU the process and its
    reaped children used, in clock ticks (0 when the process is gone)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    fields = stat[stat.rfind(")") + 2 :].split()
    return sum(int(f) for f in fields[11:15])


def tree_cpu_s(root: int) -> float:
    """CPU seconds used so far by `root`, its live descendants and every descendant
    already reaped (a reaped process's time is in its parent's cutime/cstime): the
    difference of two readings is the work the tree did between them, e.g. a database
    server's for one load."""
    return sum(_cpu_ticks(pid) for pid in _tree(root)) / os.sysconf("SC_CLK_TCK")


class TreeSampler:
    """Samples a process tree's total resident memory in a background thread."""

    def __init__(self, root: int, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.root = root
        self.interval_s = interval_s
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, tree_rss_kb(self.root))
            self._stop.wait(self.interval_s)


def _child_main(fn: Callable[[Any], Any], arg: Any, pipe: Connection) -> None:
    try:
        value = fn(arg)
    except BaseException:
        pipe.send(("error", traceback.format_exc(), _status_kb(os.getpid(), "VmHWM")))
    else:
        pipe.send(("ok", value, _status_kb(os.getpid(), "VmHWM")))
    finally:
        pipe.close()


def in_child(fn: Callable[[A], R], arg: A) -> ChildResult[R]:
    """Run `fn(arg)` in a new spawned process; its value and peak tree memory.

    `fn` must be importable (a module-level function) and `arg` and the value picklable.
    Raises `ChildFailed` with the child's traceback when `fn` raises or the process dies.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(fn, arg, sender), daemon=False)
    process.start()
    sender.close()
    assert process.pid is not None
    with TreeSampler(process.pid) as sampler:
        try:
            outcome, value, hwm_kb = receiver.recv()
        except EOFError:
            outcome, value, hwm_kb = "died", None, 0
        process.join()
    receiver.close()
    if outcome == "died":
        msg = f"{fn.__module__}.{fn.__qualname__} died with exit code {process.exitcode}"
        raise ChildFailed(msg)
    if outcome == "error":
        msg = f"{fn.__module__}.{fn.__qualname__} failed:\n{value}"
        raise ChildFailed(msg)
    peak_mb = max(sampler.peak_kb, hwm_kb) / 1024
    return ChildResult(value, peak_mb)
