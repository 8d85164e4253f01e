"""Pool workers that die with the process that started them, and never write after it.

A worker of the PIT or factor pool is bound to its parent when it starts
(`bind_to_parent`, the pool's initializer): on Linux the kernel sends it SIGKILL when the
parent dies (`prctl(PR_SET_PDEATHSIG)`), and on every platform a watchdog thread waits
on the parent's sentinel (the pipe `multiprocessing` keeps to the parent, which becomes
readable when the parent is gone) and ends the worker at once. Between the parent's
death and the worker's, writes ask `parent_gone()` before they rename anything into
place (`cache.atomic`), so a file of a killed run never appears after the kill.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading

from foundation.errors import AlphahomeError

__all__ = ["ParentGoneError", "bind_to_parent", "check_parent", "parent_gone"]

PR_SET_PDEATHSIG = 1
ORPHAN_EXIT = 70  # what a worker exits with when its parent is gone (EX_SOFTWARE)
POLL_SECONDS = 0.2

_parent_pid: int | None = None
_sentinel: int | None = None


class ParentGoneError(AlphahomeError):
    """The process that started this worker is gone: its work must not be written."""


def _set_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)) == 0
    return False


def _sentinel_ready(sentinel: int, timeout: float | None) -> bool:
    try:
        return bool(multiprocessing.connection.wait([sentinel], timeout))
    except (OSError, ValueError):
        return True  # the pipe itself is gone: so is the parent


def parent_gone() -> bool:
    """True in a bound worker whose parent has died; False anywhere else."""
    if _parent_pid is None:
        return False
    if os.name == "posix" and os.getppid() != _parent_pid:
        return True  # re-parented: the parent died
    return _sentinel is not None and _sentinel_ready(_sentinel, 0)


def check_parent(what: object) -> None:
    """Raise `ParentGoneError` naming `what` when this worker's parent is gone."""
    if parent_gone():
        msg = f"not writing {what}: the process that started this worker is gone"
        raise ParentGoneError(msg)


def _die() -> None:
    os._exit(ORPHAN_EXIT)


def _watch(sentinel: int | None) -> None:
    """Wait for the parent's end (its sentinel, else a change of parent pid), then exit."""
    while True:
        if sentinel is not None and _sentinel_ready(sentinel, POLL_SECONDS):
            _die()
        if sentinel is None:
            threading.Event().wait(POLL_SECONDS)
        if parent_gone():
            _die()


def bind_to_parent(death_signal: bool = True) -> None:
    """Tie this process's life to its parent's (call first thing in a pool worker).

    Sets the Linux death signal where available (unless `death_signal` is false: the
    watchdog alone, as on other systems) and starts the watchdog thread; exits at once
    when the parent is already gone (it may die before the death signal was set).
    """
    global _parent_pid, _sentinel
    _parent_pid = os.getppid()
    if death_signal:
        _set_death_signal()
    parent = multiprocessing.parent_process()
    _sentinel = getattr(parent, "sentinel", None) if parent is not None else None
    if parent_gone():
        _die()
    threading.Thread(target=_watch, args=(_sentinel,), name="parent-watchdog", daemon=True).start()
