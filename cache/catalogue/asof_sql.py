"""The catalogue's "as known at t" macros, in one line each: one SQL text per macro.

Each `AsOf` is a parameterised query over the cache's tables, written once in the SQL
that DuckDB and PostgreSQL share (DISTINCT ON, NULLS LAST): the DuckDB catalogue
creates it as a table macro (`CREATE MACRO pit.income_asof(d) AS TABLE …`) and
PostgreSQL as a SQL function, so `SELECT * FROM pit.income_asof(DATE '2020-06-30')`
reads the same in both. `d` is a DATE: values known at the end of that day (DESIGN 6).

- `pit.income_asof(d)`, `pit.balance_asof(d)`, `pit.indicators_asof(d)`: one row per
  stock, its latest period known at d (L(d), Lb(d)) with that period's values as known
  at d (restatements announced after d are not seen).
- `pit.income_quarterly_asof(d)`: every period of every stock as known at d.
- `pit.industry_asof(d)`: the Shenwan membership in force at d.
- `pit.universe_asof(d)`: the stocks listed at d, with their name and ST flag at d
  (`raw.namechange`) and their industry at d.
- `pit.daily_hfq` (a view, no parameter): daily bars backward-adjusted (price ×
  adj_factor of the day), and `pit.daily_qfq(d)`: bars up to d forward-adjusted to d
  (price × adj_factor / the stock's latest adj_factor known at d); qfq changes with
  every new factor, so it is a function of the as-of date, never a stored column.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "pre_close", "change")
"""Daily columns that are prices (adjusted); vol, amount and pct_chg are not."""


@dataclass(frozen=True)
class AsOf:
    """One macro: `schema.name(d)` (or a view when `param` is None), the tables it
    reads (`needs`, as schema.name), the table whose row type it returns when it returns
    whole rows of one table (`returns`), and its query text."""

    schema: str
    name: str
    needs: tuple[str, ...]
    body: str
    returns: str | None = None
    param: str | None = "d"

    @property
    def qualified(self) -> str:
        """`schema.name`."""
        return f"{self.schema}.{self.name}"


def _latest(table: str, order: str, where: str, partition: str = "ts_code") -> str:
    return (
        f"SELECT DISTINCT ON ({partition}) * FROM {table} WHERE {where} "
        f"ORDER BY {partition}, {order}"
    )


_MEMBER_AT = "(in_date IS NULL OR in_date <= d) AND (out_date IS NULL OR d < out_date)"
_MEMBER_ORDER = ", ".join(
    f"{c} DESC NULLS LAST"
    for c in ("in_date", "l1_code", "l1_name", "l2_code", "l2_name", "l3_code", "l3_name")
)
_ADJUSTED = ", ".join(f"b.{c} * a.adj_factor AS {c}" for c in PRICE_COLUMNS)
_ADJUSTED_TO = ", ".join(f"b.{c} * a.adj_factor / f.adj_factor AS {c}" for c in PRICE_COLUMNS)

MACROS: tuple[AsOf, ...] = (
    AsOf(
        "pit", "income_asof", ("pit.income_quarterly",),
        _latest(
            "pit.income_quarterly", "end_date DESC, knowledge_date DESC", "knowledge_date <= d"
        ),
        returns="pit.income_quarterly",
    ),
    AsOf(
        "pit", "income_quarterly_asof", ("pit.income_quarterly",),
        _latest(
            "pit.income_quarterly", "knowledge_date DESC", "knowledge_date <= d",
            partition="ts_code, end_date",
        ),
        returns="pit.income_quarterly",
    ),
    AsOf(
        "pit", "balance_asof", ("pit.balance",),
        _latest("pit.balance", "end_date DESC, vis_date DESC", "vis_date <= d"),
        returns="pit.balance",
    ),
    AsOf(
        "pit", "indicators_asof", ("pit.indicators",),
        _latest("pit.indicators", "knowledge_date DESC", "knowledge_date <= d"),
        returns="pit.indicators",
    ),
    AsOf(
        "pit", "industry_asof", ("pit.industry",),
        _latest("pit.industry", _MEMBER_ORDER, _MEMBER_AT),
        returns="pit.industry",
    ),
    AsOf(
        "pit", "universe_asof", ("raw.stock_basic", "raw.namechange", "pit.industry"),
        "SELECT b.ts_code, coalesce(n.name, b.name) AS name, "
        "coalesce(n.name, b.name) LIKE '%ST%' AS is_st, b.list_date, b.delist_date, "
        "b.market, b.exchange, i.l1_code, i.l1_name, i.l2_code, i.l2_name, i.l3_code, "
        "i.l3_name FROM raw.stock_basic b "
        "LEFT JOIN (SELECT DISTINCT ON (ts_code) ts_code, name FROM raw.namechange "
        "WHERE start_date <= d ORDER BY ts_code, start_date DESC, ann_date DESC NULLS LAST) n "
        "ON n.ts_code = b.ts_code "
        "LEFT JOIN pit.industry_asof(d) i ON i.ts_code = b.ts_code "
        "WHERE b.list_date <= d AND (b.delist_date IS NULL OR d < b.delist_date)",
    ),
    AsOf(
        "pit", "daily_hfq", ("raw.daily", "raw.adj_factor"),
        f"SELECT b.ts_code, b.trade_date, {_ADJUSTED}, b.pct_chg, b.vol, b.amount, "
        "a.adj_factor FROM raw.daily b LEFT JOIN raw.adj_factor a "
        "ON a.ts_code = b.ts_code AND a.trade_date = b.trade_date",
        param=None,
    ),
    AsOf(
        "pit", "daily_qfq", ("raw.daily", "raw.adj_factor"),
        f"SELECT b.ts_code, b.trade_date, {_ADJUSTED_TO}, b.pct_chg, b.vol, b.amount, "
        "a.adj_factor FROM raw.daily b LEFT JOIN raw.adj_factor a "
        "ON a.ts_code = b.ts_code AND a.trade_date = b.trade_date "
        "LEFT JOIN (SELECT DISTINCT ON (ts_code) ts_code, adj_factor FROM raw.adj_factor "
        "WHERE trade_date <= d ORDER BY ts_code, trade_date DESC) f ON f.ts_code = b.ts_code "
        "WHERE b.trade_date <= d",
    ),
)  # fmt: skip


def macros_for(present: set[str]) -> list[AsOf]:
    """The macros whose tables are all in `present` (schema.name), in creation order
    (a macro may call one created before it)."""
    return [m for m in MACROS if all(n in present for n in m.needs)]


def duckdb_sql(macro: AsOf) -> str:
    """The DuckDB statement creating `macro` (a table macro, or a view)."""
    if macro.param is None:
        return f"CREATE OR REPLACE VIEW {macro.qualified} AS {macro.body}"
    return f"CREATE OR REPLACE MACRO {macro.qualified}({macro.param}) AS TABLE {macro.body}"
