"""Where the sync keeps its task state and takes its task locks: the one place that reads
`[state] backend`.

`files` (the default): documents under `<cache>/state/tasks/` and `flock` files under
`<cache>/state/locks/` (`cache.state`, `cache.locks`). `postgres`: `ops.sync_state`
and session advisory locks in the configured database (`sinks.pg_state`), for several
hosts sharing one database. The compute stages (PIT, factors, load) take a lock of the
same backend (`stage_lock`), so a second `ah pit` refuses to start (exit 4) naming the
first one's pid, host and start.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from cache.layout import CacheLayout, make_state_dir
from cache.locks import STAGE_PREFIX, FileLocks, TaskLocks, task_locks
from cache.state import FileStateStore, StateStore
from foundation.config import Settings
from foundation.errors import UsageError


def _postgres_url(settings: Settings) -> str | None:
    """The database URL when the state lives in PostgreSQL, None for the file backend."""
    if settings.state.backend != "postgres":
        return None
    if not settings.database.url:
        msg = "state.backend = 'postgres' needs database.url (or DATABASE_URL)"
        raise UsageError(msg)
    return settings.database.url


def state_layout(settings: Settings) -> CacheLayout:
    """The cache layout whose `state_dir` holds task state and locks (`[state] dir`)."""
    return CacheLayout(settings.cache.dir, settings.state.dir)


def open_state(settings: Settings) -> StateStore:
    """The task state store chosen by `[state] backend` (close it when done)."""
    url = _postgres_url(settings)
    if url is None:
        return FileStateStore(state_layout(settings))
    from sinks.pg_state import PostgresStateStore

    return PostgresStateStore(url)


def open_locks(settings: Settings) -> TaskLocks:
    """The task locks chosen by `[state] backend` (release them when done)."""
    url = _postgres_url(settings)
    if url is None:
        return FileLocks(state_layout(settings))
    from sinks.pg_state import PostgresLocks

    return PostgresLocks(url)


@contextlib.contextmanager
def stage_lock(settings: Settings, stage: str) -> Iterator[None]:
    """Hold the lock of a compute stage (`pit`, `factors`, `load`) for the block;
    `LockHeld` naming the holder when another process runs that stage on this cache
    (or, with the state in PostgreSQL, on this database)."""
    make_state_dir(CacheLayout(settings.cache.dir))
    with task_locks(open_locks(settings), [STAGE_PREFIX + stage]):
        yield
