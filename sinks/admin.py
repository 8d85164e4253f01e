"""Database administration: `ah db status` and `ah db rename OLD NEW`.

Both take the configured URL (`[database] url` / DATABASE_URL). A URL without a
password may be completed by a hidden prompt (`ask_password`, given by the CLI) when
the server asks for one; the password is registered as a secret and never printed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from foundation.config import Settings
from foundation.errors import AlphahomeError, UsageError
from foundation.logs import get_logger, register_secrets
from sinks.ddl import SCHEMAS, quote_ident
from sinks.migrations import MIGRATIONS, Migration, applied_versions
from sinks.postgres import (
    Connection,
    Cursor,
    DatabaseUnavailableError,
    connect,
    describe_url,
    fetch_row,
    with_database,
    with_password,
)

MAINTENANCE_DATABASES = ("postgres", "template1")
MAX_IDENTIFIER_BYTES = 63

PasswordPrompt = Callable[[], str]

log = get_logger("sinks.admin")


class RenameRefusedError(UsageError):
    """`ah db rename` would not be safe or possible (a usage error)."""


def connect_with_prompt(
    url: str, ask_password: PasswordPrompt | None = None, autocommit: bool = False
) -> Connection:
    """`connect(url)`; when the URL has no password and the server wants one, ask once."""
    try:
        return connect(url, autocommit=autocommit)
    except DatabaseUnavailableError as exc:
        if ask_password is None or urlsplit(url).password or "password" not in str(exc):
            raise
    password = ask_password()
    register_secrets([password])
    return connect(with_password(url, password), autocommit=autocommit)


# ------------------------------------------------------------------------------ status


@dataclass(frozen=True)
class TableStatus:
    """One table of the sink: exact row count and its last load."""

    schema: str
    name: str
    rows: int
    partitions: int
    last_load: dt.datetime | None


@dataclass(frozen=True)
class DatabaseStatus:
    """What `ah db status` prints."""

    target: str
    server_version: str
    tables: list[TableStatus]
    applied: list[tuple[int, str, dt.datetime]]
    pending: list[Migration] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """`ah db status --json`: server, migrations and tables (password masked)."""
        return {
            "target": self.target,
            "server_version": self.server_version,
            "migrations": {
                "applied": [
                    {"version": v, "name": name, "applied_at": at.isoformat()}
                    for v, name, at in self.applied
                ],
                "pending": [{"version": m.version, "name": m.name} for m in self.pending],
            },
            "tables": [
                {
                    "table": f"{t.schema}.{t.name}",
                    "rows": t.rows,
                    "partitions": t.partitions,
                    "last_load": t.last_load.isoformat() if t.last_load else None,
                }
                for t in self.tables
            ],
        }

    def lines(self) -> list[str]:
        """A human report."""
        out = [f"PostgreSQL {self.server_version} at {self.target}"]
        out.append(
            f"migrations: {len(self.applied)} applied, {len(self.pending)} pending"
            + (
                f" ({', '.join(f'{m.version} {m.name}' for m in self.pending)})"
                if self.pending
                else ""
            )
        )
        for version, name, applied_at in self.applied:
            out.append(f"  {version:>3} {name}  (applied {applied_at:%Y-%m-%d %H:%M:%S %Z})")
        if not self.tables:
            out.append("no alphahome tables yet (run `ah db migrate` and `ah load`)")
        width = max((len(f"{t.schema}.{t.name}") for t in self.tables), default=0)
        for t in self.tables:
            if t.schema == "ops":
                loaded = "(alphahome bookkeeping)"
            elif t.last_load:
                loaded = f"last load {t.last_load:%Y-%m-%d %H:%M:%S %Z}, {t.partitions} partitions"
            else:
                loaded = "never loaded"
            out.append(f"  {t.schema + '.' + t.name:<{width}}  {t.rows:>12,} rows  {loaded}")
        return out


def database_status(url: str, ask_password: PasswordPrompt | None = None) -> DatabaseStatus:
    """Server version, tables of the alphahome schemas with exact row counts, migrations
    applied and pending, and the last load of each table (`ah db status`)."""
    with connect_with_prompt(url, ask_password) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('server_version')")
            version = fetch_row(cur)[0]
            cur.execute(
                "SELECT n.nspname, c.relname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1) ORDER BY 1, 2",
                (list(SCHEMAS),),
            )
            names = cur.fetchall()
            counts = {}
            for schema, name in names:
                cur.execute(f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(name)}")
                counts[(schema, name)] = fetch_row(cur)[0]
            loads = _last_loads(cur)
        conn.commit()
        done = applied_versions(conn)
    tables = [
        TableStatus(s, n, counts[(s, n)], *loads.get(f"{s}.{n}", (0, None))) for s, n in names
    ]
    applied = [(v, name, at) for v, (name, at) in sorted(done.items())]
    pending = [m for m in MIGRATIONS if m.version not in done]
    return DatabaseStatus(describe_url(url), version, tables, applied, pending)


def _last_loads(cur: Cursor) -> dict[str, tuple[int, dt.datetime]]:
    cur.execute("SELECT to_regclass('ops.load_state') IS NOT NULL")
    if not fetch_row(cur)[0]:
        return {}
    cur.execute(
        "SELECT table_name, count(*), max(loaded_at) FROM ops.load_state GROUP BY table_name"
    )
    return {t: (n, at) for t, n, at in cur.fetchall()}


# ------------------------------------------------------------------------------ rename


@dataclass(frozen=True)
class RenameResult:
    """What `ah db rename` did."""

    old: str
    new: str
    server: str
    sessions_ended: int

    def lines(self) -> list[str]:
        """A human report."""
        return [
            f"renamed database {self.old} to {self.new} on {self.server} "
            f"({self.sessions_ended} other session(s) on {self.old} ended)"
        ]


def renamed_url(url: str, old: str, new: str) -> str | None:
    """`url` pointed at `new` when it names database `old` (None when it names another)."""
    return with_database(url, new) if urlsplit(url).path.strip("/") == old else None


def config_url_update(settings: Settings, old: str, new: str) -> tuple[Path, str]:
    """Where `ah db rename --update-config` rewrites `database.url`, and the new value;
    checked before the rename, so a refusal changes nothing."""
    origin = settings.origins.get("database.url", "default")
    path, url = settings.config_file, settings.database.url
    if path is None or url is None or origin != "file":
        msg = (
            f"--update-config: database.url comes from {origin}, not from a config file; "
            "change it where it is set"
        )
        raise UsageError(msg)
    new_url = renamed_url(url, old, new)
    if new_url is None:
        named = urlsplit(url).path.strip("/")
        msg = f"--update-config: database.url in {path} names {named!r}, not {old!r}"
        raise UsageError(msg)
    return path, new_url


def _check_name(name: str) -> None:
    if not name or len(name.encode()) > MAX_IDENTIFIER_BYTES:
        msg = f"invalid database name {name!r} (1 to {MAX_IDENTIFIER_BYTES} bytes)"
        raise UsageError(msg)


def _maintenance_connection(url: str, ask_password: PasswordPrompt | None) -> Connection:
    """A connection to `postgres`, or to `template1` on a server without it."""
    first, fallback = MAINTENANCE_DATABASES
    try:
        return connect_with_prompt(with_database(url, first), ask_password, autocommit=True)
    except DatabaseUnavailableError as exc:
        if "does not exist" not in str(exc):
            raise
    return connect_with_prompt(with_database(url, fallback), ask_password, autocommit=True)


def rename_database(
    url: str, old: str, new: str, ask_password: PasswordPrompt | None = None
) -> RenameResult:
    """Rename database `old` to `new` on the server of `url` (`ah db rename OLD NEW`).

    Connects to the maintenance database (`postgres`, else `template1`) with the
    configured credentials, refuses when `old` is missing or `new` exists, stops new
    connections to `old`, ends the other sessions on it (pg_terminate_backend),
    renames, restores its connection setting and verifies the result.
    """
    _check_name(old)
    _check_name(new)
    if old == new:
        msg = f"old and new database names are the same ({old!r})"
        raise UsageError(msg)
    server = describe_url(with_database(url, "")).rstrip("/")
    with _maintenance_connection(url, ask_password) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT datname, datallowconn FROM pg_database WHERE datname = ANY($1)", ([old, new],)
        )
        found = dict(cur.fetchall())
        if old not in found:
            msg = f"database {old!r} does not exist on {server}"
            raise RenameRefusedError(msg)
        if new in found:
            msg = f"database {new!r} already exists on {server}; not renaming {old!r}"
            raise RenameRefusedError(msg)
        allowed = found[old]
        cur.execute(f"ALTER DATABASE {quote_ident(old)} WITH ALLOW_CONNECTIONS false")
        current = old
        try:
            cur.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                (old,),
            )
            ended = fetch_row(cur)[0]
            cur.execute(f"ALTER DATABASE {quote_ident(old)} RENAME TO {quote_ident(new)}")
            current = new
        finally:
            cur.execute(f"ALTER DATABASE {quote_ident(current)} WITH ALLOW_CONNECTIONS {allowed}")
        cur.execute("SELECT datname FROM pg_database WHERE datname = ANY($1)", ([old, new],))
        after = {row[0] for row in cur.fetchall()}
    if after != {new}:
        msg = f"rename of {old!r} to {new!r} on {server} could not be verified (found {after})"
        raise AlphahomeError(msg)
    log.info("renamed database %s to %s on %s (%d sessions ended)", old, new, server, ended)
    return RenameResult(old, new, server, ended)
