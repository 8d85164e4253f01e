"""Fixtures shared by every test package: the throwaway PostgreSQL server.

Under REQUIRE_ALL=1 (set by .ci/run) a skipped test or module that is not listed in
EXPECTED_SKIPS fails the session: a clean CI must run everything it claims to.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

from tests.postgres_server import PostgresServer, PostgresUnavailable, throwaway_server

# Node ids that may skip even under REQUIRE_ALL=1: CI installs what tests need, but a
# clone with no shared/ beside it (a user's machine) has no shared catalogue to compare.
EXPECTED_SKIPS: frozenset[str] = frozenset(
    {"tests/cache/test_coverage.py::test_the_package_catalogue_is_the_shared_one"}
)
_unexpected_skips: list[str] = []


def _require_all() -> bool:
    return os.environ.get("REQUIRE_ALL") == "1"


def _note_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    """Remember a skip (of a test or of a whole module) that EXPECTED_SKIPS does not list."""
    if not report.skipped or hasattr(report, "wasxfail") or report.nodeid in EXPECTED_SKIPS:
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    _unexpected_skips.append(f"{report.nodeid or '<session>'}: {reason}")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """Module-level skips (importorskip, pytest.skip at import) are skips too."""
    _note_skip(report)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """A test skipped in setup or in its body."""
    _note_skip(report)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Under REQUIRE_ALL=1, list the unexpected skips (or say there were none)."""
    if not _require_all():
        return
    terminalreporter.section("REQUIRE_ALL=1: unexpected skips")
    terminalreporter.line(f"{len(_unexpected_skips)} unexpected skips")
    for line in _unexpected_skips:
        terminalreporter.line(f"UNEXPECTED SKIP {line}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under REQUIRE_ALL=1, an unexpected skip makes the session fail."""
    if _require_all() and _unexpected_skips and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@contextlib.contextmanager
def _server_or_skip() -> Iterator[PostgresServer]:
    """A throwaway server; the test skips (fails under REQUIRE_POSTGRES=1) when none
    can be had."""
    try:
        with throwaway_server() as server:
            yield server
    except PostgresUnavailable as exc:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"REQUIRE_POSTGRES=1 but {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL server for the session; skips (fails under REQUIRE_POSTGRES=1)."""
    with _server_or_skip() as server:
        yield server


@pytest.fixture
def crashable_server() -> Iterator[PostgresServer]:
    """A server of this test's own, which it may crash (`crash()`) and start again;
    skips (fails under REQUIRE_POSTGRES=1) without server binaries, and skips when
    TEST_DATABASE_URL names a server the tests did not start.

    Its maintenance database keeps every committed transaction through a crash
    (synchronous_commit on, as on a production server), so a crash test tells a
    transaction that committed from one that did not."""
    import adbc_driver_postgresql.dbapi as pgdb

    with _server_or_skip() as server:
        if server.data is None:
            pytest.skip("TEST_DATABASE_URL names a server these tests cannot crash")
        with pgdb.connect(server.url, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("ALTER DATABASE postgres SET synchronous_commit = on")
        yield server


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    import adbc_driver_postgresql.dbapi as pgdb

    name = f"t_{uuid.uuid4().hex[:12]}"
    with pgdb.connect(postgres_server.url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    yield postgres_server.database_url(name)
    with pgdb.connect(postgres_server.url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
