"""PostgreSQL backends of the sync's task state and task locks, for several hosts sharing
one database (`[state] backend = "postgres"`).

`PostgresStateStore` keeps one task document per row of `ops.sync_state`, the same JSON
as the file backend (`cache.state`). `PostgresLocks` holds session advisory locks
(`pg_try_advisory_lock`): the server releases them when the holder's session ends, even
by `kill -9`, and the holder (pid, host, since) is recorded in `ops.sync_locks` for the
refusal message. Both connect through `sinks.postgres.connect` (timeouts, errors naming
the server, never the password). `pipeline.backends` chooses between these and the
file backends.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from cache.locks import LockHeld, describe_holder, holder_info
from cache.state import TaskState
from sinks.postgres import connect


class PostgresStateStore:
    """Task documents in `ops.sync_state` of the configured PostgreSQL database."""

    DDL = (
        "CREATE SCHEMA IF NOT EXISTS ops",
        "CREATE TABLE IF NOT EXISTS ops.sync_state ("
        " task TEXT PRIMARY KEY, doc TEXT NOT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )

    def __init__(self, url: str) -> None:
        self._conn = connect(url, autocommit=True)
        with self._conn.cursor() as cur:
            for statement in self.DDL:
                cur.execute(statement)

    def load(self, task: str) -> TaskState:
        """The task's state (a fresh one when it has none)."""
        with self._conn.cursor() as cur:
            cur.execute("SELECT doc FROM ops.sync_state WHERE task = $1", (task,))
            row = cur.fetchone()
        return TaskState.from_json(row[0]) if row else TaskState(task)

    def save(self, state: TaskState) -> None:
        """Upsert the task's document (one statement, atomic)."""
        with self._conn.cursor() as cur:
            cur.execute(
                "INSERT INTO ops.sync_state (task, doc, updated_at) VALUES ($1, $2, now()) "
                "ON CONFLICT (task) DO UPDATE SET doc = EXCLUDED.doc, updated_at = now()",
                (state.task, state.to_json()),
            )

    def reset(self, task: str) -> bool:
        """Delete the task's row."""
        with self._conn.cursor() as cur:
            cur.execute("DELETE FROM ops.sync_state WHERE task = $1 RETURNING task", (task,))
            return cur.fetchone() is not None

    def tasks(self) -> list[str]:
        """Tasks with a row."""
        with self._conn.cursor() as cur:
            cur.execute("SELECT task FROM ops.sync_state ORDER BY task")
            return [r[0] for r in cur.fetchall()]

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


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
        self._conn = connect(url, autocommit=True)
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

    def known_tasks(self) -> list[str]:
        """None: advisory locks leave nothing behind (the stored states name the tasks)."""
        return []

    def release(self) -> None:
        """Unlock every held task and close the session."""
        with contextlib.suppress(Exception), self._conn.cursor() as cur:
            for task in self._held:
                cur.execute("SELECT pg_advisory_unlock($1)", (advisory_key(task),))
        self._held.clear()
        with contextlib.suppress(Exception):
            self._conn.close()


def _key_halves(key: int) -> tuple[int, int]:
    """(classid, objid) under which `pg_locks` shows a bigint advisory lock."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


def held_locks(url: str) -> list[tuple[str, dict[str, Any] | None]]:
    """Tasks (and stages) whose advisory lock a session holds now, with the holder each
    recorded in `ops.sync_locks` (None when unreadable); for `ah health`."""
    conn = connect(url, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('ops.sync_locks') IS NOT NULL")
            row = cur.fetchone()
            if not row or not row[0]:
                return []
            cur.execute("SELECT task, holder FROM ops.sync_locks ORDER BY task")
            recorded = [(str(task), str(holder)) for task, holder in cur.fetchall()]
            cur.execute(
                "SELECT classid::bigint, objid::bigint FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            granted = {(int(c), int(o)) for c, o in cur.fetchall()}
    finally:
        conn.close()
    held: list[tuple[str, dict[str, Any] | None]] = []
    for task, text in recorded:
        if _key_halves(advisory_key(task)) not in granted:
            continue
        holder = None
        with contextlib.suppress(ValueError):
            holder = json.loads(text)
        held.append((task, holder if isinstance(holder, dict) else None))
    return held
