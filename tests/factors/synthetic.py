"""A synthetic market for the factor tests and the benchmark, generated with numpy.

`synthetic_market` draws a calendar, a stock list (listings, delistings, Beijing
stocks), pit.indicators in the shared PIT schema (quarterly reports announced with
random lags, gaps, restatements, financial comp_types, nulls, tied values) and
pit.industry intervals (changes, overlaps, stocks without industry). `write_cache`
writes them as a cache known at an as-of date: only what had been announced,
listed or changed by then.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from cache.atomic import write_parquet_atomic
from cache.layout import CacheLayout
from tests.pit.reference import INDICATOR_CONTRACT

INDUSTRY_SCHEMA = pl.Schema(
    {
        "ts_code": pl.String,
        "l1_code": pl.String,
        "l1_name": pl.String,
        "l2_code": pl.String,
        "l2_name": pl.String,
        "l3_code": pl.String,
        "l3_name": pl.String,
        "in_date": pl.Date,
        "out_date": pl.Date,
    }
)
L1_NAMES = ("银行", "非银金融", "电子", "医药生物", "食品饮料", "机械设备", "计算机")
FETCHED_AT = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
EPOCH = np.datetime64("1970-01-01", "D")


@dataclass(frozen=True)
class Market:
    """Every input of the factor step, as eventually known."""

    trade_cal: pl.DataFrame
    stock_basic: pl.DataFrame
    daily: pl.DataFrame
    indicators: pl.DataFrame
    industry: pl.DataFrame


def _days(values: np.ndarray) -> pl.Series:
    return pl.Series(values.astype("datetime64[D]")).cast(pl.Date)


def _calendar(first: dt.date, last: dt.date, rng: np.random.Generator) -> pl.DataFrame:
    days = np.arange(np.datetime64(first), np.datetime64(last) + 1, dtype="datetime64[D]")
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    holiday = rng.random(days.size) < 0.03
    is_open = np.where((weekday < 5) & ~holiday, "1", "0")
    frame = pl.DataFrame({"cal_date": _days(days), "is_open": is_open})
    both = pl.concat(
        [
            frame.with_columns(exchange=pl.lit("SSE")),
            # SZSE has its own (here: open every day) calendar, which must be ignored
            frame.with_columns(exchange=pl.lit("SZSE"), is_open=pl.lit("1")),
        ]
    )
    return both.select(
        "exchange",
        "cal_date",
        "is_open",
        pretrade_date=pl.lit(None, dtype=pl.Date),
        _fetched_at=pl.lit(FETCHED_AT),
    )


def _stocks(n: int, first: dt.date, last: dt.date, rng: np.random.Generator) -> pl.DataFrame:
    exchange = rng.choice([".SH", ".SZ", ".BJ"], size=n, p=[0.5, 0.42, 0.08])
    codes = [f"{600000 + i:06d}{x}" for i, x in enumerate(exchange)]
    span = (np.datetime64(last) - np.datetime64(first)).astype(np.int64)
    list_day = np.datetime64(first) - 3650 + rng.integers(0, 3650 + span - 30, size=n)
    delisted = rng.random(n) < 0.08
    delist_day = list_day + 365 + rng.integers(0, max(span, 1), size=n)
    delist_day = np.where(delisted & (delist_day < np.datetime64(last)), delist_day, EPOCH)
    return pl.DataFrame(
        {
            "ts_code": codes,
            "list_date": _days(list_day),
            "delist_date": _days(delist_day),
        }
    ).with_columns(
        delist_date=pl.when(pl.col("delist_date") != dt.date(1970, 1, 1)).then(
            pl.col("delist_date")
        ),
        list_status=pl.lit("L"),
        name=pl.col("ts_code"),
        _fetched_at=pl.lit(FETCHED_AT),
    )


def _quarter_ends(first: dt.date, last: dt.date) -> np.ndarray:
    months = np.arange(
        np.datetime64(first, "M"), np.datetime64(last, "M") + 1, dtype="datetime64[M]"
    )
    months = months[(months.astype(np.int64) % 3) == 2]
    return ((months + 1).astype("datetime64[D]") - 1).astype("datetime64[D]")


def _maybe_null(values: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(values.size) < share, np.nan, values)


def _indicators(
    stocks: pl.DataFrame, first: dt.date, last: dt.date, rng: np.random.Generator
) -> pl.DataFrame:
    codes = stocks.get_column("ts_code").to_numpy()
    listed = stocks.get_column("list_date").to_numpy().astype("datetime64[D]")
    quarters = _quarter_ends(first - dt.timedelta(days=730), last)
    n, q = codes.size, quarters.size
    code = np.repeat(codes, q)
    period = np.tile(quarters, n)
    reported = (rng.random(n * q) < 0.96) & (period >= np.repeat(listed, q) - 730)
    stale = np.repeat(rng.random(n) < 0.05, q) & (np.tile(np.arange(q), n) > q // 2)
    reported &= ~stale  # some stocks stop reporting half way: they go stale
    annual = (period.astype("datetime64[M]").astype(np.int64) % 12) == 11
    lag = np.where(annual, rng.integers(60, 120, n * q), rng.integers(15, 61, n * q))
    known = period + lag
    restated = reported & (rng.random(n * q) < 0.1)
    code = np.concatenate([code[reported], code[restated]])
    period = np.concatenate([period[reported], period[restated]])
    known = np.concatenate([known[reported], known[restated] + rng.integers(1, 90, restated.sum())])
    m = code.size
    gpa = np.round(rng.normal(25, 15, m), 1)
    roe = np.round(rng.normal(8, 10, m), 1)
    roa = np.round(rng.normal(4, 5, m), 1)
    revenue_yoy = np.round(rng.normal(10, 30, m), 1)
    profit_yoy = np.round(rng.normal(5, 60, m), 1)
    comp_type = rng.choice(["1", "2", "3", "4", ""], size=m, p=[0.88, 0.03, 0.03, 0.03, 0.03])
    lead = rng.integers(0, 3, m)
    frame = pl.DataFrame(
        {
            "ts_code": code,
            "knowledge_date": _days(known),
            "period": _days(period),
            "ann_date": _days(known - lead),
            "comp_type": comp_type,
            "gpa": _maybe_null(gpa, 0.04, rng),
            "roe": _maybe_null(roe, 0.04, rng),
            "roa": _maybe_null(roa, 0.04, rng),
            "revenue_yoy": _maybe_null(revenue_yoy, 0.05, rng),
            "profit_yoy": _maybe_null(profit_yoy, 0.05, rng),
            "revenue_ttm": rng.lognormal(20, 1, m),
            "total_assets": rng.lognormal(22, 1, m),
        }
    ).with_columns(
        pl.col("gpa", "roe", "roa", "revenue_yoy", "profit_yoy").fill_nan(None),
        comp_type=pl.when(pl.col("comp_type") != "").then(pl.col("comp_type")),
    )
    # lineage dates apart, so that which of them a row names matters; their own stream
    # of draws keeps every other value of a seed as it was
    extra = np.random.default_rng(m).integers(0, 40, (3, m))
    vis = pl.col("ann_date")
    frame = frame.with_columns(
        ttm_vis_date=pl.max_horizontal(vis, pl.col("knowledge_date") - pl.duration(days=extra[0])),
        yoy_vis_date=pl.max_horizontal(vis, pl.col("knowledge_date") - pl.duration(days=extra[1])),
        bs_vis_date=pl.col("knowledge_date") - pl.duration(days=extra[2]),
        vis_date=vis - pl.duration(days=extra[0] % 3),
    ).with_columns(ann_date=pl.max_horizontal("ttm_vis_date", "yoy_vis_date", "bs_vis_date"))
    # one row per (stock, knowledge date); L(t) never decreases as knowledge grows
    frame = (
        frame.sort("ts_code", "knowledge_date", "period")
        .unique(["ts_code", "knowledge_date"], keep="last", maintain_order=True)
        .with_columns(end_date=pl.col("period").cum_max().over("ts_code"))
    )
    return frame.select(
        "ts_code",
        "knowledge_date",
        "end_date",
        bs_end_date="end_date",
        vis_date="vis_date",
        comp_type="comp_type",
        revenue_ttm="revenue_ttm",
        oper_cost_ttm=pl.col("revenue_ttm") * (1 - pl.col("gpa").fill_null(0) / 100),
        n_income_attr_p_ttm=pl.col("revenue_ttm") * 0.1,
        total_assets="total_assets",
        total_hldr_eqy_exc_min_int=pl.col("total_assets") * 0.4,
        gpa="gpa",
        roe="roe",
        roa="roa",
        revenue_q=pl.col("revenue_ttm") / 4,
        revenue_q_ly=pl.col("revenue_ttm") / 4.4,
        revenue_yoy="revenue_yoy",
        n_income_attr_p_q=pl.col("revenue_ttm") / 40,
        n_income_attr_p_q_ly=pl.col("revenue_ttm") / 42,
        profit_yoy="profit_yoy",
        ttm_vis_date="ttm_vis_date",
        yoy_vis_date="yoy_vis_date",
        bs_vis_date="bs_vis_date",
        ann_date="ann_date",
    ).cast(dict(INDICATOR_CONTRACT))


def _industry(
    stocks: pl.DataFrame, first: dt.date, last: dt.date, rng: np.random.Generator
) -> pl.DataFrame:
    n = stocks.height
    codes = stocks.get_column("ts_code").to_numpy()
    listed = stocks.get_column("list_date").to_numpy().astype("datetime64[D]")
    span = (np.datetime64(last) - np.datetime64(first)).astype(np.int64)
    has = rng.random(n) < 0.9
    switch = np.maximum(listed, np.datetime64(first)) + rng.integers(60, span + 60, n)
    change = has & (rng.random(n) < 0.25) & (switch < np.datetime64(last))
    overlap = change & (rng.random(n) < 0.2)  # the new membership starts before the old ends
    l1_first = rng.choice(len(L1_NAMES), n, p=[0.05, 0.05, 0.3, 0.2, 0.15, 0.15, 0.1])
    l1_second = rng.integers(0, len(L1_NAMES), n)
    null_in = rng.random(n) < 0.2
    first_rows = pl.DataFrame(
        {
            "ts_code": codes[has],
            "l1": l1_first[has],
            "in_date": _days(listed[has]),
            "null_in": null_in[has],
            "out_date": _days(np.where(change, switch, EPOCH)[has]),
        }
    )
    second_rows = pl.DataFrame(
        {
            "ts_code": codes[change],
            "l1": l1_second[change],
            "in_date": _days((switch - np.where(overlap, 40, 0))[change]),
            "null_in": np.zeros(change.sum(), dtype=bool),
            "out_date": _days(np.full(change.sum(), EPOCH)),
        }
    )
    return (
        pl.concat([first_rows, second_rows])
        .with_columns(
            in_date=pl.when(~pl.col("null_in")).then(pl.col("in_date")),
            out_date=pl.when(pl.col("out_date") != dt.date(1970, 1, 1)).then(pl.col("out_date")),
            l1_name=pl.col("l1").replace_strict(dict(enumerate(L1_NAMES)), return_dtype=pl.String),
        )
        .select(
            "ts_code",
            l1_code=pl.format("8011{}.SI", pl.col("l1")),
            l1_name="l1_name",
            l2_code=pl.format("8012{}.SI", pl.col("l1")),
            l2_name=pl.col("l1_name") + "二级",
            l3_code=pl.format("8013{}.SI", pl.col("l1")),
            l3_name=pl.col("l1_name") + "三级",
            in_date="in_date",
            out_date="out_date",
        )
        .cast(dict(INDUSTRY_SCHEMA))
    )


def synthetic_market(n_stocks: int, first: dt.date, last: dt.date, seed: int = 0) -> Market:
    """A market of `n_stocks` stocks whose data runs from `first` to `last`."""
    rng = np.random.default_rng(seed)
    trade_cal = _calendar(first - dt.timedelta(days=400), last + dt.timedelta(days=120), rng)
    stocks = _stocks(n_stocks, first, last, rng)
    open_days = trade_cal.filter(
        (pl.col("exchange") == "SSE")
        & (pl.col("is_open") == "1")
        & pl.col("cal_date").is_between(first, last)
    ).get_column("cal_date")
    daily = pl.DataFrame(
        {
            "ts_code": "600000.SH",
            "trade_date": open_days,
            "close": rng.lognormal(2, 0.1, open_days.len()),
        }
    )
    return Market(
        trade_cal=trade_cal,
        stock_basic=stocks,
        daily=daily,
        indicators=_indicators(stocks, first, last, rng),
        industry=_industry(stocks, first, last, rng),
    )


def known_at(market: Market, as_of: dt.date) -> Market:
    """The market as known at the end of `as_of`: later announcements and events unseen."""
    stocks = market.stock_basic.filter(pl.col("list_date") <= as_of).with_columns(
        delist_date=pl.when(pl.col("delist_date") <= as_of).then(pl.col("delist_date"))
    )
    industry = market.industry.filter(
        pl.col("in_date").is_null() | (pl.col("in_date") <= as_of)
    ).with_columns(out_date=pl.when(pl.col("out_date") <= as_of).then(pl.col("out_date")))
    return Market(
        trade_cal=market.trade_cal,
        stock_basic=stocks,
        daily=market.daily.filter(pl.col("trade_date") <= as_of),
        indicators=market.indicators.filter(pl.col("knowledge_date") <= as_of),
        industry=industry,
    )


def write_cache(root: Path, market: Market) -> CacheLayout:
    """Write `market` into the cache at `root` (replacing its raw and PIT inputs)."""
    layout = CacheLayout(root)
    write_parquet_atomic(market.trade_cal, layout.dataset_dir("raw", "trade_cal") / "all.parquet")
    write_parquet_atomic(
        market.stock_basic.sort("ts_code"), layout.dataset_dir("raw", "stock_basic") / "all.parquet"
    )
    write_parquet_atomic(
        market.daily.sort("ts_code", "trade_date"),
        layout.dataset_dir("raw", "daily") / "all.parquet",
    )
    indicators = market.indicators.sort("ts_code", "knowledge_date")
    # two files in nested folders: a dataset is every Parquet file below its folder
    half = indicators.get_column("ts_code").str.slice(5, 1).is_in(["0", "2", "4", "6", "8"])
    write_parquet_atomic(
        indicators.filter(half), layout.dataset_dir("pit", "indicators") / "a" / "part.parquet"
    )
    write_parquet_atomic(
        indicators.filter(~half), layout.dataset_dir("pit", "indicators") / "b" / "part.parquet"
    )
    write_parquet_atomic(
        market.industry.sort("ts_code"), layout.dataset_dir("pit", "industry") / "all.parquet"
    )
    return layout
