"""Read-only looks at the PostgreSQL sink for the operations tools: is it reachable and
migrated (`ah health --check-db`), how large are its tables (`ah stats`), how many rows
does each hold (`ah verify`'s drift check). Every one connects through
`sinks.postgres.connect`, so the timeouts, the application name and the error naming
user@host:port/dbname (never the password) are the sink's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import adbc_driver_manager

from sinks.ddl import SCHEMAS, quote_ident
from sinks.postgres import DatabaseUnavailableError, connect, describe_url, error_reason, fetch_row


@dataclass(frozen=True)
class TableStats:
    """One sink table: estimated rows (planner statistics) and total size on disk."""

    schema: str
    name: str
    rows_estimate: int
    bytes: int


def _unavailable(url: str, exc: adbc_driver_manager.Error) -> DatabaseUnavailableError:
    reason = error_reason(exc)
    return DatabaseUnavailableError(f"PostgreSQL at {describe_url(url)}: {reason}", reason)


def migrations_applied(url: str) -> int | None:
    """How many schema migrations the database records; None when it was never migrated
    (no `ops.schema_migrations`). `DatabaseUnavailableError` when it cannot be reached."""
    try:
        with connect(url, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('ops.schema_migrations') IS NOT NULL")
            if not fetch_row(cur)[0]:
                return None
            cur.execute("SELECT count(*) FROM ops.schema_migrations")
            return int(fetch_row(cur)[0])
    except adbc_driver_manager.Error as exc:
        raise _unavailable(url, exc) from None


def table_stats(url: str) -> list[TableStats]:
    """Tables of the alphahome schemas (raw, pit, factors, ops) with planner row estimates
    and sizes. Cheap (catalogue only, no count(*)); `row_counts` does the exact counts."""
    sql = (
        "SELECT n.nspname, c.relname, GREATEST(c.reltuples, 0)::bigint, "
        "pg_total_relation_size(c.oid) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1) ORDER BY 1, 2"
    )
    with connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql, (list(SCHEMAS),))
        return [TableStats(s, n, int(r), int(b)) for s, n, r, b in cur.fetchall()]


def row_counts(url: str, tables: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int | None]:
    """count(*) of each (schema, table); None when the table does not exist."""
    counts: dict[tuple[str, str], int | None] = {}
    with connect(url, autocommit=True) as conn, conn.cursor() as cur:
        for schema, table in tables:
            qualified = f"{quote_ident(schema)}.{quote_ident(table)}"
            cur.execute("SELECT to_regclass($1) IS NOT NULL", (qualified,))
            if not fetch_row(cur)[0]:
                counts[(schema, table)] = None
                continue
            cur.execute(f"SELECT count(*) FROM {qualified}")
            counts[(schema, table)] = int(fetch_row(cur)[0])
    return counts
