"""One process per task at a time: file locks, or PostgreSQL advisory locks.

File locks are `fcntl.flock` on `<cache>/state/locks/<task>.lock` with the holder (pid,
host, since) written inside; the operating system releases them when the holder dies,
even by `kill -9`, so a crash never leaves a stale "running" lock. With the state in
PostgreSQL, `pg_try_advisory_lock` on the session plays the same part across hosts, and
the holder is recorded in `ops.sync_locks`. Either way a second instance fails at once
with a message naming the holder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from cache.layout import CacheLayout
from foundation.errors import AlphahomeError, AlreadyRunningError


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
    """The one-line refusal naming the holder."""
    if not holder:
        return f"task {task} is being synced by another process (holder unknown)"
    return (
        f"task {task} is being synced by pid {holder.get('pid')} on "
        f"{holder.get('host')} since {holder.get('since')}"
    )


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


class FileLocks:
    """`flock` locks under `<cache>/state/locks/`."""

    def __init__(self, layout: CacheLayout) -> None:
        self.folder = layout.state_dir / "locks"
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
                self._lock_or_refuse(task, fd, fcntl.LOCK_SH)
            finally:
                os.close(fd)

    def _lock_or_refuse(self, task: str, fd: int, kind: int) -> None:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            holder = None
            with contextlib.suppress(ValueError):
                holder = json.loads(text)
            raise LockHeld(describe_holder(task, holder)) from None

    def _take(self, task: str) -> None:
        fd = os.open(self._path(task), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._lock_or_refuse(task, fd, fcntl.LOCK_EX)
        except LockHeld:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder_info()).encode("utf-8"), 0)
        os.fsync(fd)
        self._held[task] = fd

    def release(self) -> None:
        """Empty and unlock every held file (the files stay: unlinking would race)."""
        for fd in self._held.values():
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)
        self._held.clear()


def advisory_key(task: str) -> int:
    """A stable signed 64-bit key for a task's advisory lock."""
    digest = hashlib.sha256(f"alphahome.sync:{task}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresLocks:
    """Session advisory locks on one connection; holders listed in `ops.sync_locks`."""

    DDL = (
        "CREATE SCHEMA IF NOT EXISTS ops",
        "CREATE TABLE IF NOT EXISTS ops.sync_locks (task TEXT PRIMARY KEY,"
        " holder TEXT NOT NULL, taken_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )

    def __init__(self, url: str) -> None:
        import adbc_driver_postgresql.dbapi as pgdb

        try:
            self._conn = pgdb.connect(url, autocommit=True)
        except Exception as exc:
            msg = f"lock backend postgres: cannot connect ({type(exc).__name__})"
            raise AlphahomeError(msg) from None
        with self._conn.cursor() as cur:
            for statement in self.DDL:
                cur.execute(statement)
        self._held: list[str] = []

    def check(self, tasks: Iterable[str]) -> None:
        """Refuse when a task's advisory lock is held elsewhere (taken and given back)."""
        for task in tasks:
            self._try_or_refuse(task)
            with self._conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock($1)", (advisory_key(task),))

    def acquire(self, tasks: Iterable[str]) -> None:
        """Take every lock or none; the holder is recorded for whoever is refused."""
        try:
            for task in tasks:
                self._try_or_refuse(task)
                self._held.append(task)
                with self._conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO ops.sync_locks (task, holder, taken_at) "
                        "VALUES ($1, $2, now()) ON CONFLICT (task) DO UPDATE "
                        "SET holder = EXCLUDED.holder, taken_at = now()",
                        (task, json.dumps(holder_info())),
                    )
        except LockHeld:
            self.release()
            raise

    def _try_or_refuse(self, task: str) -> None:
        with self._conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock($1)", (advisory_key(task),))
            row = cur.fetchone()
            if row and row[0]:
                return
            cur.execute("SELECT holder FROM ops.sync_locks WHERE task = $1", (task,))
            found = cur.fetchone()
        holder = None
        if found:
            with contextlib.suppress(ValueError):
                holder = json.loads(found[0])
        raise LockHeld(describe_holder(task, holder))

    def release(self) -> None:
        """Unlock every held task and close the session."""
        with contextlib.suppress(Exception), self._conn.cursor() as cur:
            for task in self._held:
                cur.execute("SELECT pg_advisory_unlock($1)", (advisory_key(task),))
        self._held.clear()
        with contextlib.suppress(Exception):
            self._conn.close()


@contextlib.contextmanager
def task_locks(locks: TaskLocks, tasks: Iterable[str]) -> Iterator[None]:
    """Hold the locks of `tasks` for the block."""
    locks.acquire(tasks)
    try:
        yield
    finally:
        locks.release()
