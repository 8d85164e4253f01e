"""One process per task at a time: the lock protocol and its file backend.

File locks (`cache.oslock`: `flock` on POSIX, `msvcrt.locking` on Windows) are taken on
`<cache>/state/locks/<task>.lock` with the holder (pid, host, since) written inside; the
operating system releases them when the holder dies,
even by `kill -9`, so a crash never leaves a stale "running" lock. With the state in
PostgreSQL, advisory locks play the same part across hosts (`sinks.pg_state.
PostgresLocks`); `pipeline.backends.open_locks` picks one. Either way a second instance
fails at once with a message naming the holder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from cache.layout import CacheLayout
from cache.oslock import read_note, try_lock, write_note
from foundation.errors import AlreadyRunningError

LOCKS_SUBDIR = "locks"
STAGE_PREFIX = "stage."  # the lock of a compute stage (pit, factors, load): `stage.pit`


class LockHeld(AlreadyRunningError):
    """Another process holds the lock of a task."""


def holder_info() -> dict[str, Any]:
    """Who we are: pid, host and since when (UTC, ISO)."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def describe_holder(task: str, holder: dict[str, Any] | None) -> str:
    """The one-line refusal naming the holder (of a sync task, or of a stage's lock)."""
    if task.startswith(STAGE_PREFIX):
        what = f"stage {task.removeprefix(STAGE_PREFIX)} is being run"
    else:
        what = f"task {task} is being synced"
    if not holder:
        return f"{what} by another process (holder unknown)"
    return f"{what} by pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"


class TaskLocks(Protocol):
    """Locks of several tasks, taken together and released together."""

    def check(self, tasks: Iterable[str]) -> None:
        """`LockHeld` when a task is locked now; takes nothing and writes nothing."""
        ...

    def acquire(self, tasks: Iterable[str]) -> None:
        """Take every lock or none; `LockHeld` naming the first holder found."""
        ...

    def release(self) -> None:
        """Release every lock taken."""
        ...

    def known_tasks(self) -> list[str]:
        """Tasks the backend itself remembers (lock files); the stored states name the rest."""
        ...


class FileLocks:
    """OS file locks under `<cache>/state/locks/`."""

    def __init__(self, layout: CacheLayout) -> None:
        self.folder = layout.state_dir / LOCKS_SUBDIR
        self._held: dict[str, int] = {}

    def _path(self, task: str) -> Path:
        return self.folder / f"{task}.lock"

    def acquire(self, tasks: Iterable[str]) -> None:
        """Take every lock or none."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            for task in tasks:
                self._take(task)
        except LockHeld:
            self.release()
            raise

    def check(self, tasks: Iterable[str]) -> None:
        """Refuse when a task's lock file exists and is held (a missing file is free)."""
        for task in tasks:
            try:
                fd = os.open(self._path(task), os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                self._lock_or_refuse(task, fd, shared=True)
            finally:
                os.close(fd)

    def _lock_or_refuse(self, task: str, fd: int, *, shared: bool) -> None:
        if try_lock(fd, shared=shared):
            return
        text = read_note(fd).decode("utf-8", "replace")
        holder = None
        with contextlib.suppress(ValueError):
            holder = json.loads(text)
        raise LockHeld(describe_holder(task, holder))

    def _take(self, task: str) -> None:
        fd = os.open(self._path(task), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._lock_or_refuse(task, fd, shared=False)
        except LockHeld:
            os.close(fd)
            raise
        write_note(fd, json.dumps(holder_info()).encode("utf-8"))
        self._held[task] = fd

    def known_tasks(self) -> list[str]:
        """Tasks that have a lock file (held or not)."""
        return sorted(p.stem for p in self.folder.glob("*.lock")) if self.folder.is_dir() else []

    def release(self) -> None:
        """Empty and unlock every held file (the files stay: unlinking would race)."""
        for fd in self._held.values():
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)
        self._held.clear()


@contextlib.contextmanager
def task_locks(locks: TaskLocks, tasks: Iterable[str]) -> Iterator[None]:
    """Hold the locks of `tasks` for the block."""
    locks.acquire(tasks)
    try:
        yield
    finally:
        locks.release()
