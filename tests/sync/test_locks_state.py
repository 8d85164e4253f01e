"""Task locks (flock and PostgreSQL advisory) and task state (files and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cache.layout import CacheLayout
from cache.locks import FileLocks, LockHeld
from cache.state import FileStateStore, TaskState
from foundation.config import Settings, load_settings
from foundation.errors import UsageError
from pipeline.backends import open_locks, open_state
from sinks.pg_state import PostgresLocks, PostgresStateStore
from sinks.postgres import DatabaseUnavailableError

ROOT = Path(__file__).resolve().parents[2]

HOLDER = """
import sys, time
from cache.layout import CacheLayout
from cache.locks import FileLocks
from sinks.pg_state import PostgresLocks
locks = {cls}({arg})
locks.acquire(["daily", "weekly"])
print("locked", flush=True)
time.sleep(60)
"""


def hold_in_subprocess(cls: str, arg: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(cls=cls, arg=arg)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def kill9(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_file_lock_names_the_holder_and_dies_with_it(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    proc = hold_in_subprocess("FileLocks", f"CacheLayout({str(tmp_path)!r})")
    try:
        locks = FileLocks(layout)
        started = time.monotonic()
        with pytest.raises(LockHeld) as caught:
            locks.acquire(["monthly", "weekly"])
        assert time.monotonic() - started < 1.0
        assert f"pid {proc.pid}" in str(caught.value) and socket.gethostname() in str(caught.value)
        assert "weekly" in str(caught.value)
        # all or nothing: the free lock taken on the way was released again
        other = FileLocks(layout)
        other.acquire(["monthly"])
        other.release()
    finally:
        kill9(proc)
    locks = FileLocks(layout)
    locks.acquire(["daily", "weekly"])  # the OS released the dead holder's locks
    locks.release()


@pytest.mark.postgres
def test_advisory_lock_names_the_holder_and_dies_with_it(pg_url: str) -> None:
    proc = hold_in_subprocess("PostgresLocks", repr(pg_url))
    try:
        locks = PostgresLocks(pg_url)
        with pytest.raises(LockHeld, match=f"pid {proc.pid}"):
            locks.acquire(["daily"])
        locks.release()
    finally:
        kill9(proc)
    deadline = time.monotonic() + 10
    while True:  # the server notices the dropped session within moments
        locks = PostgresLocks(pg_url)
        try:
            locks.acquire(["daily", "weekly"])
            break
        except LockHeld:
            locks.release()
            assert time.monotonic() < deadline, "the advisory lock outlived its holder"
            time.sleep(0.1)
    locks.release()


def roundtrip(store: FileStateStore | PostgresStateStore) -> None:
    assert store.load("daily") == TaskState("daily")
    state = TaskState("daily", status="partial", units_done=3, committed={"20240102", "20240103"})
    state.plan_id, state.plan_done = "per_unit:abc", {"daily?trade_date=20240104"}
    state.errors = ["tushare daily: 系统内部错误"]
    store.save(state)
    assert store.load("daily") == state
    assert store.tasks() == ["daily"]
    assert store.reset("daily") and not store.reset("daily")
    assert store.load("daily") == TaskState("daily")


def test_file_state_roundtrip(tmp_path: Path) -> None:
    store = FileStateStore(CacheLayout(tmp_path))
    roundtrip(store)


@pytest.mark.postgres
def test_postgres_state_roundtrip(pg_url: str) -> None:
    store = PostgresStateStore(pg_url)
    try:
        roundtrip(store)
    finally:
        store.close()


def _settings(tmp_path: Path, config: str) -> Settings:
    path = tmp_path / "alphahome.toml"
    path.write_text(config)
    return load_settings(path, None, {"cache.dir": str(tmp_path / "data")}, env={})


def test_the_file_backend_is_the_default(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "")
    store, locks = open_state(settings), open_locks(settings)
    try:
        assert isinstance(store, FileStateStore) and isinstance(locks, FileLocks)
        locks.acquire(["daily"])
        assert locks.known_tasks() == ["daily"]
    finally:
        locks.release()
        store.close()


def test_the_postgres_backend_needs_a_database(tmp_path: Path) -> None:
    settings = _settings(tmp_path, '[state]\nbackend = "postgres"\n')
    with pytest.raises(UsageError, match=r"needs database\.url"):
        open_state(settings)
    with pytest.raises(UsageError, match=r"needs database\.url"):
        open_locks(settings)


@pytest.mark.postgres
def test_the_postgres_backend_holds_state_and_locks_in_the_database(
    tmp_path: Path, pg_url: str
) -> None:
    settings = _settings(tmp_path, f'[state]\nbackend = "postgres"\n[database]\nurl = "{pg_url}"\n')
    store, locks = open_state(settings), open_locks(settings)
    try:
        assert isinstance(store, PostgresStateStore) and isinstance(locks, PostgresLocks)
        locks.acquire(["weekly"])
        other = open_locks(settings)
        try:
            with pytest.raises(LockHeld, match="weekly"):
                other.check(["weekly"])
        finally:
            other.release()
    finally:
        locks.release()
        store.close()
    assert not (tmp_path / "data" / "state").exists()  # nothing written to the cache


def test_an_unreachable_state_database_names_the_server_not_the_password(tmp_path: Path) -> None:
    url = f"postgresql://ah:pw-never-shown@127.0.0.1:{_closed_port()}/ah"
    settings = _settings(tmp_path, f'[state]\nbackend = "postgres"\n[database]\nurl = "{url}"\n')
    with pytest.raises(DatabaseUnavailableError) as caught:
        open_state(settings)
    assert "ah@127.0.0.1" in str(caught.value) and "pw-never-shown" not in str(caught.value)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
