"""`ah db migrate`, `ah db status`, `ah db rename`: against the throwaway server."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import adbc_driver_postgresql.dbapi as pgdb
import pytest

from cache.layout import CacheLayout
from pipeline.load import load_datasets
from sinks.admin import RenameRefusedError, database_status, rename_database
from sinks.migrations import MIGRATIONS, migrate
from sinks.postgres import DatabaseUnavailableError
from tests.postgres_server import PostgresServer
from tests.sinks.helpers import codes, factor_frame, fetch, write_partition

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]


def test_migrate_applies_each_migration_once(pg_url: str) -> None:
    applied = migrate(pg_url)
    assert [m.version for m in applied] == [m.version for m in MIGRATIONS]
    assert migrate(pg_url) == []
    rows = fetch(pg_url, "SELECT version, name FROM ops.schema_migrations ORDER BY version")
    assert rows == [(m.version, m.name) for m in MIGRATIONS]
    schemas = fetch(pg_url, "SELECT nspname FROM pg_namespace ORDER BY 1")
    assert {"raw", "pit", "factors", "ops"} <= {s for (s,) in schemas}


def test_status_lists_tables_counts_migrations_and_loads(tmp_path: Path, pg_url: str) -> None:
    fresh = database_status(pg_url)
    assert fresh.tables == [] and fresh.applied == []
    assert [m.version for m in fresh.pending] == [m.version for m in MIGRATIONS]

    layout = CacheLayout(tmp_path / "cache")
    write_partition(
        layout, "factors", "p", "2020.parquet", factor_frame([dt.date(2020, 1, 3)], codes(7), 1)
    )
    load_datasets(layout, pg_url)
    status = database_status(pg_url)
    assert status.server_version.startswith(("15", "16", "17", "18"))
    tables = {f"{t.schema}.{t.name}": t for t in status.tables}
    assert tables["factors.p"].rows == 7 and tables["factors.p"].partitions == 1
    assert tables["factors.p"].last_load is not None
    assert tables["ops.schema_migrations"].rows == len(MIGRATIONS)
    assert status.pending == []
    text = "\n".join(status.lines())
    assert "pending" in text and "factors.p" in text and "last load" in text
    password = urlsplit(pg_url).password
    assert password and password not in text


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}"))


def test_a_missing_password_is_asked_for_once(pg_url: str) -> None:
    bare = _without_password(pg_url)
    with pytest.raises(DatabaseUnavailableError, match="password"):
        database_status(bare)
    asked: list[int] = []

    def ask() -> str:
        asked.append(1)
        return urlsplit(pg_url).password or ""

    assert database_status(bare, ask).target.endswith(urlsplit(pg_url).path)
    assert asked == [1]


@pytest.fixture
def scratch_db(postgres_server: PostgresServer) -> Iterator[tuple[str, str]]:
    """(old, new) names: `old` exists, `new` does not; both dropped afterwards."""
    old, new = f"old_{uuid.uuid4().hex[:8]}", f"new_{uuid.uuid4().hex[:8]}"
    with pgdb.connect(postgres_server.url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{old}"')
    yield old, new
    with pgdb.connect(postgres_server.url, autocommit=True) as conn, conn.cursor() as cur:
        for name in (old, new):
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _databases(server: PostgresServer) -> set[str]:
    return {name for (name,) in fetch(server.url, "SELECT datname FROM pg_database")}


def test_rename_ends_other_sessions_and_verifies(
    postgres_server: PostgresServer, scratch_db: tuple[str, str]
) -> None:
    old, new = scratch_db
    other = pgdb.connect(postgres_server.database_url(old), autocommit=True)
    try:
        result = rename_database(postgres_server.database_url(old), old, new)
        assert result.sessions_ended == 1
        assert new in _databases(postgres_server) and old not in _databases(postgres_server)
        with pytest.raises(pgdb.Error), other.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
    finally:
        other.close()
    allowed = fetch(
        postgres_server.url, f"SELECT datallowconn FROM pg_database WHERE datname = '{new}'"
    )
    assert allowed == [(True,)]
    assert "renamed database" in result.lines()[0]


def test_rename_refuses_a_missing_old_or_an_existing_new(
    postgres_server: PostgresServer, scratch_db: tuple[str, str]
) -> None:
    old, new = scratch_db
    with pytest.raises(RenameRefusedError, match=f"'{new}' does not exist"):
        rename_database(postgres_server.url, new, "whatever_name")
    with pgdb.connect(postgres_server.url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{new}"')
    with pytest.raises(RenameRefusedError, match=f"'{new}' already exists"):
        rename_database(postgres_server.url, old, new)
    assert {old, new} <= _databases(postgres_server)


def test_ah_db_commands(tmp_path: Path, pg_url: str, scratch_db: tuple[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AH_", "DATABASE"))}
    env["DATABASE_URL"] = pg_url

    def ah(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "cli.py"), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first = ah("db", "migrate")
    assert first.returncode == 0 and first.stdout.count("applied") == len(MIGRATIONS)
    status = ah("db", "status")
    assert status.returncode == 0 and "0 pending" in status.stdout
    as_json = ah("db", "status", "--json")
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["migrations"]["pending"] == []
    assert [m["version"] for m in doc["migrations"]["applied"]] == [m.version for m in MIGRATIONS]
    assert "ops.schema_migrations" in {t["table"] for t in doc["tables"]}
    old, new = scratch_db
    refused = ah("db", "rename", "no_such_database_here", new)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"error: database 'no_such_database_here' does not exist on {urlsplit(pg_url).username}"
        f"@{urlsplit(pg_url).hostname}:{urlsplit(pg_url).port}"
    ]
    done = ah("db", "rename", old, new)
    assert done.returncode == 0, done.stderr
    assert f"renamed database {old} to {new}" in done.stdout
    password = urlsplit(pg_url).password or "?"
    shown = first.stdout + status.stdout + as_json.stdout + refused.stderr + done.stdout
    assert password not in shown


def test_ah_db_rename_prints_the_new_url_and_updates_the_config_file(
    tmp_path: Path, postgres_server: PostgresServer, scratch_db: tuple[str, str]
) -> None:
    old, new = scratch_db
    url = postgres_server.database_url(old)
    password = urlsplit(url).password or "?"
    config = tmp_path / "alphahome.toml"
    original = (
        '# the research box\n[cache]\ndir = "data"  # beside the config\n\n'
        f'[database]\nurl = "{url}"  # the sink\n\n[run]\nworkers = 3\n'
    )
    config.write_text(original)
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AH_", "DATABASE"))}

    def ah(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "cli.py"), "--config", str(config), *args],
            cwd=tmp_path, env={**env, **extra}, capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip

    # from the environment, the URL is not the file's to rewrite: refused before renaming
    refused = ah("db", "rename", old, new, "--update-config", DATABASE_URL=url)
    assert refused.returncode == 2 and "comes from env" in refused.stderr
    assert old in _databases(postgres_server) and config.read_text() == original
    done = ah("db", "rename", old, new, "--update-config")
    assert done.returncode == 0, done.stderr
    new_url = urlunsplit(urlsplit(url)._replace(path=f"/{new}"))
    masked = new_url.replace(f":{password}@", ":***@")
    assert f"new URL: {masked}" in done.stdout and password not in done.stdout
    assert config.read_text() == original.replace(url, new_url)  # only the URL changed
    assert config.stat().st_mode & 0o777 == 0o600
    assert new in _databases(postgres_server) and old not in _databases(postgres_server)
    # the file now names `new`: renaming `old` again with --update-config is refused
    again = ah("db", "rename", old, f"{old}_x", "--update-config")
    assert again.returncode == 2 and f"names {new!r}, not {old!r}" in again.stderr
