"""Fixtures shared by every test package: the throwaway PostgreSQL server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.postgres_server import PostgresServer, PostgresUnavailable, throwaway_server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL server for the session; skips (fails under REQUIRE_POSTGRES=1)."""
    try:
        with throwaway_server() as server:
            yield server
    except PostgresUnavailable as exc:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"REQUIRE_POSTGRES=1 but {exc}")
        pytest.skip(str(exc))


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
