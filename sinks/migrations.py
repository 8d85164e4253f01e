"""Schema versions of the PostgreSQL sink: `ops.schema_migrations` and `migrate`.

Migrations are data: a tuple of (version, name, statements), applied in version order,
each in its own transaction together with its row in `ops.schema_migrations`, under an
advisory lock so two processes never apply one twice. Dataset tables are not created
here: the loader creates each from the cache's own schema (`sinks.ddl`); migrations
hold the schemas and the sink's bookkeeping, and any later change to a contract table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sinks.ddl import SCHEMAS, quote_ident
from sinks.postgres import Connection, connect, fetch_row

MIGRATION_LOCK = "alphahome.migrate"


@dataclass(frozen=True)
class Migration:
    """One schema change: applied once, recorded in ops.schema_migrations."""

    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "schemas raw, pit, factors and ops",
        tuple(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(s)}" for s in SCHEMAS),
    ),
    Migration(
        2,
        "ops.load_state: the cache partitions each table was loaded from",
        (
            "CREATE TABLE ops.load_state ("
            "table_name text NOT NULL, "
            "partition text NOT NULL, "
            "file_size bigint NOT NULL, "
            "file_mtime_ns bigint NOT NULL, "
            "content_sha256 text NOT NULL, "
            "row_count bigint NOT NULL, "
            "slice_values text[] NOT NULL DEFAULT '{}', "
            "slice_fingerprints text[] NOT NULL DEFAULT '{}', "
            "loaded_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY (table_name, partition))",
            "COMMENT ON TABLE ops.load_state IS 'alphahome: one row per loaded cache "
            "partition (Parquet file), written in the transaction that loaded it'",
        ),
    ),
)

_BOOTSTRAP = (
    "CREATE SCHEMA IF NOT EXISTS ops",
    "CREATE TABLE IF NOT EXISTS ops.schema_migrations ("
    "version integer PRIMARY KEY, name text NOT NULL, "
    "applied_at timestamptz NOT NULL DEFAULT now())",
)


def applied_versions(conn: Connection) -> dict[int, tuple[str, dt.datetime]]:
    """Version -> (name, applied_at) of the migrations recorded in the database."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('ops.schema_migrations') IS NOT NULL")
        if not fetch_row(cur)[0]:
            conn.commit()
            return {}
        cur.execute("SELECT version, name, applied_at FROM ops.schema_migrations")
        found = {version: (name, applied_at) for version, name, applied_at in cur.fetchall()}
    conn.commit()
    return found


def pending_migrations(conn: Connection) -> list[Migration]:
    """Migrations of this version of alphahome not yet applied to the database."""
    done = applied_versions(conn)
    return [m for m in MIGRATIONS if m.version not in done]


def apply_migrations(conn: Connection) -> list[Migration]:
    """Apply every pending migration on an open connection; the ones applied."""
    applied: list[Migration] = []
    for migration in pending_migrations(conn):
        with conn.cursor() as cur:
            try:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext($1))", (MIGRATION_LOCK,))
                cur.fetchall()
                for sql in _BOOTSTRAP:
                    cur.execute(sql)
                cur.execute(
                    "SELECT 1 FROM ops.schema_migrations WHERE version = $1", (migration.version,)
                )
                if cur.fetchall():
                    conn.rollback()
                    continue
                for sql in migration.statements:
                    cur.execute(sql)
                cur.execute(
                    "INSERT INTO ops.schema_migrations (version, name) VALUES ($1, $2)",
                    (migration.version, migration.name),
                )
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        applied.append(migration)
    return applied


def migrate(url: str) -> list[Migration]:
    """Bring the database at `url` to the current schema version (`ah db migrate`).

    Returns the migrations applied now (empty when it was up to date).
    """
    with connect(url) as conn:
        return apply_migrations(conn)
