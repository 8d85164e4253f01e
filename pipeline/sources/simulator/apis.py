"""The table of APIs the simulator serves: how each is answered and what it requires.

`defaults` are the parameters the real service assumes when a request leaves them out
(stock_basic lists only L stocks, index_member_all only current members, ...); they
apply to requests, not to `Simulator.ground_truth` without parameters. `required`
lists groups of parameters of which a request must give at least one. Statement
handlers (and fina_mainbz) page themselves: they order the rows first (cheap) and
compute figures only for the requested window, so paging a capped API with
offset/limit (fina_indicator_vip holds 100 rows per call) costs one pass in total. Row caps are
the documented ones (apis.json), plus daily_basic's documented 6000, which
apis.json does not carry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import polars as pl

from cache.catalogue.apis import api_spec, catalogue
from pipeline.sources.simulator import (
    announcements,
    api_market,
    api_reference,
    generic,
    indexes,
    indicators,
    statements,
)
from pipeline.sources.simulator.market import Market
from pipeline.sources.simulator.query import Query

EXTRA_ROW_CAPS = {"daily_basic": 6000}


@dataclass(frozen=True)
class ApiHandler:
    """How one API is answered."""

    build: Callable[[Market, Query], pl.DataFrame]
    defaults: Mapping[str, str] = field(default_factory=dict)
    required: tuple[tuple[str, ...], ...] = ()
    pages_itself: bool = False  # computes only the requested window of rows (costly rows)

    def query(
        self,
        api: str,
        params: Mapping[str, str],
        today: int,
        budget: int | None = None,
        offset: int = 0,
        *,
        defaults: bool = True,
    ) -> Query:
        """The request as the handler sees it: documented parameters only (the service
        ignores others), the service's defaults filled in."""
        documented = set(api_spec(api).param_names)
        given = {name: value for name, value in params.items() if name in documented}
        merged = {**self.defaults, **given} if defaults else given
        return Query(merged, today, budget, offset if self.pages_itself else 0)

    def row_cap(self, api: str) -> int | None:
        """Most rows one call returns (None: no cap)."""
        spec = api_spec(api)
        return spec.rows_per_call or EXTRA_ROW_CAPS.get(spec.name)


def _statement(api: str) -> Callable[[Market, Query], pl.DataFrame]:
    def build(market: Market, q: Query) -> pl.DataFrame:
        return statements.statement(market, q, api)

    build.__doc__ = f"{api} rows (see statements.statement)."
    return build


_BASE: dict[str, ApiHandler] = {
    "stock_basic": ApiHandler(api_reference.stock_basic, {"list_status": "L"}),
    "trade_cal": ApiHandler(api_reference.trade_cal, {"exchange": "SSE"}),
    "daily": ApiHandler(api_market.daily),
    "weekly": ApiHandler(api_market.weekly, required=(("ts_code", "trade_date"),)),
    "monthly": ApiHandler(api_market.monthly, required=(("ts_code", "trade_date"),)),
    "adj_factor": ApiHandler(api_market.adj_factor, required=(("ts_code", "trade_date"),)),
    "daily_basic": ApiHandler(api_market.daily_basic, required=(("ts_code", "trade_date"),)),
    "suspend_d": ApiHandler(api_market.suspend_d),
    "stk_limit": ApiHandler(api_market.stk_limit),
    "namechange": ApiHandler(api_reference.namechange),
    "income": ApiHandler(_statement("income"), required=(("ts_code",),), pages_itself=True),
    "balancesheet": ApiHandler(
        _statement("balancesheet"), required=(("ts_code",),), pages_itself=True
    ),
    "cashflow": ApiHandler(_statement("cashflow"), required=(("ts_code",),), pages_itself=True),
    "fina_indicator": ApiHandler(
        indicators.fina_indicator, required=(("ts_code",),), pages_itself=True
    ),
    "express": ApiHandler(announcements.express, required=(("ts_code",),)),
    "forecast": ApiHandler(announcements.forecast, required=(("ts_code", "ann_date"),)),
    "disclosure_date": ApiHandler(announcements.disclosure_date),
    "dividend": ApiHandler(
        announcements.dividend,
        required=(("ts_code", "ann_date", "record_date", "ex_date", "imp_ann_date"),),
    ),
    "fina_mainbz": ApiHandler(
        announcements.fina_mainbz, {"type": "P"}, required=(("ts_code",),), pages_itself=True
    ),
    "index_basic": ApiHandler(indexes.index_basic, {"market": "SSE"}),
    "index_daily": ApiHandler(indexes.index_daily, required=(("ts_code",),)),
    "index_weight": ApiHandler(indexes.index_weight, required=(("index_code",),)),
    "index_classify": ApiHandler(api_reference.index_classify),
    "index_member_all": ApiHandler(api_reference.index_member_all, {"is_new": "Y"}),
    "limit_list_d": ApiHandler(api_market.limit_list_d),
    "moneyflow": ApiHandler(
        api_market.moneyflow, required=(("ts_code", "trade_date", "start_date", "end_date"),)
    ),
}


def _with_vip_variants(base: dict[str, ApiHandler]) -> dict[str, ApiHandler]:
    """`*_vip`: the same answers for the whole market (no ts_code needed)."""
    out = dict(base)
    for name, spec in catalogue().items():
        if spec.vip_variant:
            handler = base[name]
            out[spec.vip_variant] = ApiHandler(
                handler.build, handler.defaults, (), handler.pages_itself
            )
    return out


def _generic(api: str) -> Callable[[Market, Query], pl.DataFrame]:
    def build(market: Market, q: Query) -> pl.DataFrame:
        return generic.answer(market, q, api)

    build.__doc__ = f"{api} rows (see generic.answer)."
    return build


def _with_long_tail(base: dict[str, ApiHandler]) -> dict[str, ApiHandler]:
    """Every other catalogued API, answered from its field names and types."""
    out = dict(base)
    for name in catalogue():
        if name not in out:
            out[name] = ApiHandler(_generic(name))
    return out


HANDLERS: dict[str, ApiHandler] = _with_long_tail(_with_vip_variants(_BASE))
