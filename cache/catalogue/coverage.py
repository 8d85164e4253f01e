"""Coverage: how every catalogued API beyond the default 26 is asked, keyed and stored.

This is the one place where the choices the catalogue leaves open are written down.
Everything else (the sync tasks, the raw datasets, the simulator's answers for these
APIs) reads the `Coverage` of an API from here.

Each API's `Coverage` is derived from its documented params and fields:

- `area`: the Tushare doc section (`AREAS`, from CATALOGUE.md; hk/us split in two);
- unit of work, from the params, first rule that applies:
  - `code`: a `ts_code` is required: one request per code of the area's listing
    (`code_kind`; stocks, indexes, funds, convertibles, HK/US listings, futures, options);
  - `trade_date`: a `trade_date` (or `date`) param and a field of that name: one
    request per open day of the SSE calendar (`ranged` when start/end are params too);
  - `month`: an `m` or `month` param: one request per calendar month (`YYYYMM`);
  - `period`: a `period` param, or an `end_date` param without a `start_date`: one
    request per report period (quarter end);
  - `snapshot`: the whole dataset every run (lists, small series);
- key: the documented primary key limited to returned fields (`KEY_CHOICES` overrides);
- partitioning: by year of the unit's date when it is in the key and never null,
  otherwise one file;
- refresh window: the last `REFRESH[unit]` units are asked again every run;
- points and rows per call: the catalogue's (`min_points`, `rows_per_call`);
- `fills`: fixed values of required params that are not the unit's own (`FILLS`),
  and `snapshots`: the parameter sets of a snapshot (`SNAPSHOT_PARAMS`).

Uncertain keys (CATALOGUE.md lists them) are kept as documented unless
`KEY_CHOICES` says otherwise; `tests/cache/test_coverage.py` checks every key is
unique on what the simulator serves. The shakiest (teleplay_record's license_key,
bond_blk_detail, fut_wsr, pledge_detail, share_float, limit_list_ths, the hk_/us_
statements in long format) are what the docs and the peers give; a real answer with
two rows on one key keeps the later one. Calendars: trade-date units follow the SSE
calendar, so HK/US/FX days on which Shanghai is closed are not asked (their snapshot
calendars, hk_tradecal and us_tradecal, are synced whole).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

from cache.catalogue.apis import ApiSpec, UnknownApiError, api_spec, catalogue

__all__ = [
    "AREAS",
    "DEFAULT_APIS",
    "FILLS",
    "KEY_CHOICES",
    "SNAPSHOT_PARAMS",
    "Area",
    "Coverage",
    "CoverageUnit",
    "area_of",
    "coverage",
    "covered",
]

Area = Literal[
    "stock", "index", "fund", "futures", "options", "bond", "macro", "hk", "us", "fx", "other"
]
CoverageUnit = Literal["trade_date", "month", "period", "code", "snapshot"]

# The 26 APIs of the default sync set (their task specs are written out in
# pipeline/sync/tasks.py and their datasets in datasets.py).
DEFAULT_APIS: tuple[str, ...] = (
    "stock_basic", "trade_cal", "namechange", "daily", "weekly", "monthly", "adj_factor",
    "daily_basic", "suspend_d", "stk_limit", "moneyflow", "limit_list_d", "income",
    "balancesheet", "cashflow", "fina_indicator", "express", "forecast", "fina_mainbz",
    "dividend", "disclosure_date", "index_basic", "index_classify", "index_member_all",
    "index_daily", "index_weight",
)  # fmt: skip

# The doc section of every catalogued API (CATALOGUE.md "Per-API sources"); the doc's
# hk/us section is split by listing, and the US Treasury rates stay in macro as the
# docs file them.
AREAS: dict[Area, tuple[str, ...]] = {
    "stock": (
        "stock_basic", "trade_cal", "daily", "weekly", "monthly", "adj_factor", "daily_basic",
        "suspend_d", "stk_limit", "namechange", "income", "balancesheet", "cashflow",
        "fina_indicator", "express", "forecast", "disclosure_date", "dividend", "fina_mainbz",
        "limit_list_d", "moneyflow", "moneyflow_hsgt", "hsgt_top10", "ggt_top10", "margin",
        "margin_detail", "top10_holders", "top10_floatholders", "fina_audit", "top_list",
        "top_inst", "pledge_stat", "pledge_detail", "stock_company", "new_share", "repurchase",
        "share_float", "block_trade", "stk_account", "stk_account_old", "stk_holdernumber",
        "stk_holdertrade", "hk_hold", "stk_managers", "stk_rewards", "ggt_daily", "ggt_monthly",
        "bak_daily", "ths_index", "ths_daily", "ths_member", "bak_basic", "broker_recommend",
        "ccass_hold_detail", "stk_surv", "report_rc", "cyq_perf", "cyq_chips", "ccass_hold",
        "stk_factor", "hm_list", "hm_detail", "ths_hot", "dc_hot", "margin_secs",
        "stk_factor_pro", "stk_premarket", "slb_len", "slb_sec", "slb_sec_detail", "slb_len_mm",
        "stk_weekly_monthly", "moneyflow_ind_ths", "moneyflow_ind_dc", "moneyflow_mkt_dc",
        "kpl_list", "moneyflow_ths", "moneyflow_dc", "kpl_concept", "kpl_concept_cons",
        "stk_auction_o", "stk_auction_c", "limit_list_ths", "limit_step", "limit_cpt_list",
        "dc_index", "dc_member", "stk_nineturn", "stk_week_month_adj", "stk_auction", "stk_mins",
        "moneyflow_cnt_ths", "rt_k", "rt_min", "bse_mapping", "tdx_index", "tdx_member",
        "tdx_daily", "dc_daily", "stock_st", "stock_hsgt", "stk_ah_comparison",
    ),
    "index": (
        "index_basic", "index_daily", "index_weight", "index_classify", "index_member_all",
        "index_dailybasic", "index_weekly", "index_monthly", "index_global", "daily_info",
        "sz_daily_info", "ci_daily", "sw_daily", "idx_factor_pro", "ci_index_member", "rt_idx_k",
    ),
    "fund": (
        "fund_basic", "fund_company", "fund_nav", "fund_div", "fund_portfolio", "fund_daily",
        "fund_adj", "fund_share", "fund_manager", "fund_factor_pro", "etf_basic", "etf_index",
        "rt_etf_k", "etf_share_size",
    ),
    "futures": (
        "fut_basic", "fut_daily", "fut_holding", "fut_wsr", "fut_settle", "fut_mapping",
        "fut_weekly_detail", "ft_mins", "fut_weekly_monthly", "ft_limit",
    ),
    "options": ("opt_basic", "opt_daily", "opt_mins"),
    "bond": (
        "cb_basic", "cb_issue", "cb_daily", "yc_cb", "eco_cal", "cb_price_chg", "cb_share",
        "repo_daily", "cb_call", "bond_blk", "bond_blk_detail", "cb_rate", "bc_otcqt",
        "bc_bestotcqt", "cb_factor_pro",
    ),
    "macro": (
        "shibor", "shibor_quote", "shibor_lpr", "libor", "hibor", "wz_index", "gz_index",
        "us_tycr", "us_trycr", "us_tbr", "us_tltr", "us_trltr", "cn_gdp", "cn_cpi", "cn_m",
        "cn_ppi", "sf_month", "cn_pmi",
    ),
    "hk": (
        "hk_basic", "hk_daily", "hk_tradecal", "hk_mins", "hk_daily_adj", "rt_hk_k",
        "hk_fina_indicator", "hk_income", "hk_balancesheet", "hk_cashflow", "hk_adjfactor",
    ),
    "us": (
        "us_basic", "us_tradecal", "us_daily", "us_daily_adj", "us_fina_indicator", "us_income",
        "us_balancesheet", "us_cashflow", "us_adjfactor",
    ),
    "fx": ("fx_obasic", "fx_daily"),
    "other": (
        "tmt_twincomedetail", "tmt_twincome", "bo_monthly", "bo_weekly", "bo_daily", "bo_cinema",
        "film_record", "teleplay_record", "fund_sales_ratio", "fund_sales_vol", "sge_basic",
        "sge_daily",
    ),
}  # fmt: skip

# Which listing a per-code API's codes come from, by area.
CODE_KINDS: dict[Area, str] = {
    "stock": "stock",
    "index": "index",
    "fund": "fund",
    "bond": "cb",
    "hk": "hk",
    "us": "us",
    "futures": "futures",
    "options": "options",
}

# Required params that are not the unit's own, with the value every request carries.
# Minute bars are asked at 1-minute frequency, weekly/monthly bars by week, the
# Stock Connect list by its Shanghai side, Taiwan revenue by item 8 (the total).
FILLS: dict[str, tuple[tuple[str, str], ...]] = {
    "stk_mins": (("freq", "1min"),),
    "hk_mins": (("freq", "1min"),),
    "ft_mins": (("freq", "1min"),),
    "opt_mins": (("freq", "1min"),),
    "rt_min": (("freq", "1MIN"),),
    "rt_etf_k": (("topic", "HQ_FND_TICK"),),
    "stk_weekly_monthly": (("freq", "week"),),
    "stk_week_month_adj": (("freq", "week"),),
    "fut_weekly_monthly": (("freq", "week"),),
    "stock_hsgt": (("type", "HK_SH"),),
    "tmt_twincome": (("item", "8"),),
}

# The parameter sets of a snapshot (one request each); `((),)` when not listed.
SNAPSHOT_PARAMS: dict[str, tuple[tuple[tuple[str, str], ...], ...]] = {
    "fut_basic": tuple((("exchange", e),) for e in ("CFFEX", "DCE", "CZCE", "SHFE", "INE", "GFEX")),
    "fund_basic": ((("market", "E"),), (("market", "O"),)),
}

# Keys chosen where the documented one is not what a row is told apart by.
KEY_CHOICES: dict[str, tuple[str, ...]] = {
    # the docs give no key; a rate table has one row per day
    "bc_bestotcqt": ("trade_date", "ts_code"),
    "bc_otcqt": ("trade_date", "qt_time", "bank", "ts_code"),
    # cn_pmi's page lists no key: one row per month
    "cn_pmi": ("month",),
}

REFRESH: dict[CoverageUnit, int] = {
    "trade_date": 3,
    "month": 2,
    "period": 2,
    "code": 0,
    "snapshot": 0,
}
NULLABLE_DATES = frozenset({"ann_date", "f_ann_date", "end_date", "delist_date", "out_date"})
_DATE_PARAMS = ("trade_date", "date")


@dataclass(frozen=True)
class Coverage:
    """How one API is asked, keyed and stored (see the module docstring)."""

    api: str
    area: Area
    unit: CoverageUnit
    date_param: str | None
    date_field: str | None
    code_kind: str | None
    ranged: bool
    key: tuple[str, ...]
    partitioned: bool
    fills: tuple[tuple[str, str], ...]
    snapshots: tuple[tuple[tuple[str, str], ...], ...]

    @property
    def spec(self) -> ApiSpec:
        """The API's catalogue entry."""
        return api_spec(self.api)

    @property
    def min_points(self) -> int:
        """Points the API needs (catalogue; 0 when the page gives no figure)."""
        return self.spec.min_points or 0

    @property
    def rows_per_call(self) -> int | None:
        """Documented rows per call (None when undocumented)."""
        return self.spec.rows_per_call

    @property
    def refresh(self) -> int:
        """Units asked again every run (the vendor may still revise them)."""
        return REFRESH[self.unit]


def area_of(api: str) -> Area:
    """The doc section of a catalogued API."""
    for area, names in AREAS.items():
        if api in names:
            return area
    msg = f"unknown api {api!r}"
    raise UnknownApiError(msg)


def _unit(spec: ApiSpec) -> tuple[CoverageUnit, str | None]:
    params = set(spec.param_names)
    required = {p.name for p in spec.params if p.required}
    fields = set(spec.field_names)
    if "ts_code" in required and not required & set(_DATE_PARAMS):
        return "code", None
    for name in _DATE_PARAMS:
        if name in params and name in fields and spec.field(name).type == "date":
            return "trade_date", name
    key = _key(spec)
    for name in spec.param_names:
        if (
            name in key
            and name not in NULLABLE_DATES
            and name not in ("start_date", "end_date")
            and spec.field(name).type == "date"
        ):
            return "trade_date", name
    for name in ("m", "month"):
        if name in params:
            return "month", name
    if "period" in params and "end_date" in fields:
        return "period", "period"
    if "end_date" in params and "start_date" not in params and "end_date" in fields:
        return "period", "end_date"
    return "snapshot", None


def _key(spec: ApiSpec) -> tuple[str, ...]:
    chosen = KEY_CHOICES.get(spec.name, spec.primary_key)
    return tuple(k for k in chosen if k in spec.field_names)


def _date_field(
    spec: ApiSpec, unit: CoverageUnit, date_param: str | None, key: tuple[str, ...]
) -> str | None:
    if unit == "trade_date":
        return date_param
    if unit == "period":
        return "end_date"
    dated = [k for k in key if spec.field(k).type == "date"]
    return dated[0] if dated else None


def _build(api: str) -> Coverage:
    spec = api_spec(api)
    area = area_of(api)
    unit, date_param = _unit(spec)
    key = _key(spec)
    date_field = _date_field(spec, unit, date_param, key)
    partitioned = date_field is not None and date_field in key and date_field not in NULLABLE_DATES
    return Coverage(
        api=api,
        area=area,
        unit=unit,
        date_param=date_param,
        date_field=date_field,
        code_kind=CODE_KINDS.get(area) if unit == "code" else None,
        ranged=unit == "trade_date" and {"start_date", "end_date"} <= set(spec.param_names),
        key=key,
        partitioned=partitioned,
        fills=FILLS.get(api, ()),
        snapshots=SNAPSHOT_PARAMS.get(api, ((),)),
    )


@cache
def _all() -> dict[str, Coverage]:
    return {name: _build(name) for name in catalogue() if name not in DEFAULT_APIS}


def coverage(api: str) -> Coverage:
    """The coverage of one API beyond the default set (`UnknownApiError` otherwise)."""
    found = _all().get(api)
    if found is None:
        msg = f"api {api!r} is not one of the APIs beyond the default set"
        raise UnknownApiError(msg)
    return found


def covered() -> tuple[Coverage, ...]:
    """The coverage of every catalogued API beyond the default set, in catalogue order."""
    return tuple(_all().values())
