"""What PostgreSQL gets after each load beside the rows: the "as known at t" macros
(`create_asof_functions`), column comments and one-stock history indexes
(`document_tables`).

The "as known at t" macros in PostgreSQL: SQL functions (and views) from the same
text the DuckDB catalogue uses (`cache.catalogue.asof_sql`).

`pit.income_asof(DATE '2020-06-30')` is `CREATE FUNCTION pit.income_asof(d date)
RETURNS TABLE (…) LANGUAGE sql STABLE`; its result columns and types are read from a
temporary view of the same query, so they follow the loaded tables. Created after each
load for the macros whose tables are in the database; a function whose tables are gone
stays until the next load that has them.
"""

from __future__ import annotations

from collections.abc import Sequence

import adbc_driver_manager
from adbc_driver_postgresql.dbapi import Connection, Cursor

from cache.catalogue.asof_sql import AsOf, macros_for
from cache.catalogue.columns import comments_of
from foundation.logs import get_logger
from sinks.ddl import TableSpec, comment_sql, history_index_sql, quote_ident
from sinks.postgres import column_facts, error_reason

log = get_logger("load")

_PROBE = "ah_asof_probe"


def _present(conn: Connection) -> set[str]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema IN ('raw', 'pit', 'factors') AND table_type = 'BASE TABLE'"
        )
        return {name for (name,) in cur.fetchall()}


def _columns(conn: Connection, macro: AsOf) -> list[tuple[str, str]]:
    """The (name, type) of the macro's result, from a temporary view of its query (the
    parameter an outer column of a LATERAL join)."""
    param = quote_ident(macro.param or "d")
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TEMPORARY VIEW {_PROBE} AS SELECT q.* FROM (SELECT NULL::date AS {param}) "
            f"AS p, LATERAL ({macro.body}) AS q"
        )
        cur.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = $1::regclass AND a.attnum > 0 ORDER BY a.attnum",
            (_PROBE,),
        )
        columns = [(name, typ) for name, typ in cur.fetchall()]
        cur.execute(f"DROP VIEW {_PROBE}")
    return columns


def create_statements(conn: Connection, macro: AsOf) -> list[str]:
    """The statements that (re)create `macro` in the database."""
    if macro.param is None:
        return [
            f"DROP VIEW IF EXISTS {macro.qualified}",
            f"CREATE VIEW {macro.qualified} AS {macro.body}",
        ]
    returns = ", ".join(f"{quote_ident(n)} {t}" for n, t in _columns(conn, macro))
    return [
        f"DROP FUNCTION IF EXISTS {macro.qualified}(date)",
        f"CREATE FUNCTION {macro.qualified}({macro.param} date) RETURNS TABLE ({returns}) "
        f"LANGUAGE sql STABLE AS $body$ {macro.body} $body$",
    ]


def document_tables(conn: Connection, specs: Sequence[TableSpec]) -> None:
    """After a load: each table's column comments (the column dictionary) and the
    index that serves one stock's history (`ddl.history_index_sql`), in one
    transaction; a failure is logged and rolled back, never fails the load."""
    try:
        with conn.cursor() as cur:
            for spec in specs:
                described = _column_comments(cur, spec)
                if described is None:
                    continue
                index = history_index_sql(spec, described)
                statements = [index] if index else []
                wanted = comments_of(spec.qualified)
                stale = [c for c, now in described.items() if c in wanted and wanted[c] != now]
                statements += comment_sql(spec, wanted, stale)  # only those that changed
                for statement in statements:
                    cur.execute(statement)
        conn.commit()
    except adbc_driver_manager.Error as exc:
        conn.rollback()
        log.warning("column comments or history indexes not created: %s", error_reason(exc))


def _column_comments(cur: Cursor, spec: TableSpec) -> dict[str, str | None] | None:
    """Column name -> its comment (None without one); None when the table is missing."""
    return column_facts(cur, spec, "col_description(a.attrelid, a.attnum)")


def create_asof_functions(conn: Connection) -> list[str]:
    """(Re)create every macro whose tables the database has, in one transaction; their
    names. They are a convenience over loaded data: a failure is logged and rolled
    back, never fails the load."""
    made = []
    try:
        for macro in macros_for(_present(conn)):
            statements = create_statements(conn, macro)
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
            made.append(macro.qualified)
        conn.commit()
    except adbc_driver_manager.Error as exc:
        conn.rollback()
        log.warning("as-of functions not created: %s", error_reason(exc))
        return []
    return made
