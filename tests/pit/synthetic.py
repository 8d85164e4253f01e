"""Synthetic raw statement histories at any size, vectorised with numpy (tests, benchmark).

`synthetic_raw(n_stocks, n_quarters)` gives income, balancesheet and cashflow frames
with every documented column of the API (unused ones null) plus `_fetched_at`: each
stock reports every quarter once, about `restated` of the reports get a later revised
version (update_flag '1'), one stock in twenty is a bank (comp_type '2', no
oper_cost); index_member_all gives every stock a Shenwan membership, some with an
earlier one that ended. `write_raw` stores frames as a cache's raw Parquet.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from cache.atomic import write_parquet_atomic
from cache.catalogue.apis import api_spec
from cache.layout import CacheLayout

FETCHED_TYPE = pl.Datetime("us", "UTC")
FIRST_FETCH = dt.datetime(2025, 1, 6, 8, 0, tzinfo=dt.UTC)
SW_START = dt.date(2014, 2, 21)
MOVE_DATE = dt.date(2021, 7, 30)
SW_L1 = (("801780.SI", "银行"), ("801080.SI", "电子"), ("801150.SI", "医药生物"))


def stock_codes(n_stocks: int) -> list[str]:
    """n distinct A-share-like codes, Shanghai then Shenzhen."""
    return [f"{600000 + i:06d}.SH" if i % 2 == 0 else f"{i:06d}.SZ" for i in range(n_stocks)]


def full_columns(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` widened to every documented column of the API (nulls), in API order."""
    schema = api_spec(name).polars_schema()
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in frame.columns]
    return frame.with_columns(missing).select(*schema, "_fetched_at").cast(schema)


def synthetic_raw(
    n_stocks: int,
    n_quarters: int,
    *,
    restated: float = 0.1,
    first_year: int = 2010,
    seed: int = 0,
    fetched_at: dt.datetime = FIRST_FETCH,
) -> dict[str, pl.DataFrame]:
    """Raw income, balancesheet, cashflow and index_member_all frames (see module doc)."""
    rng = np.random.default_rng(seed)
    codes = np.array(stock_codes(n_stocks))
    years = -(-n_quarters // 4)
    quarter_revenue = rng.lognormal(18, 1, (n_stocks, years, 4)) * rng.uniform(
        0.5, 1.5, (n_stocks, 1, 1)
    )
    ytd_revenue = np.cumsum(quarter_revenue, axis=2).reshape(n_stocks, -1)[:, :n_quarters].ravel()
    margin = rng.uniform(0.05, 0.6, n_stocks).repeat(n_quarters)
    bank = (np.arange(n_stocks) % 20 == 7).repeat(n_quarters)
    index = np.tile(np.arange(n_quarters), n_stocks) + first_year * 4
    base = pl.DataFrame(
        {
            "ts_code": codes.repeat(n_quarters),
            "_qi": index,
            "ann_lag": rng.integers(20, 120, index.size),
            "revenue": ytd_revenue,
            "margin": margin,
            "bank": bank,
            "restate": rng.random(index.size) < restated,
            "restate_lag": rng.integers(150, 500, index.size),
            "noise": rng.normal(1.0, 0.03, index.size),
            "assets": ytd_revenue * rng.uniform(1.5, 4.0, index.size),
        }
    ).with_columns(
        end_date=pl.date(pl.col("_qi") // 4, (pl.col("_qi") % 4 + 1) * 3, 1).dt.month_end()
    )
    original = base.with_columns(lag=pl.col("ann_lag"), update_flag=pl.lit("0"), scale=pl.lit(1.0))
    revised = base.filter("restate").with_columns(
        lag=pl.col("restate_lag"), update_flag=pl.lit("1"), scale=pl.col("noise")
    )
    rows = (
        pl.concat([original, revised])
        .with_columns(
            ann_date=pl.col("end_date") + pl.duration(days=pl.col("lag")),
            report_type=pl.lit("1"),
            comp_type=pl.when("bank").then(pl.lit("2")).otherwise(pl.lit("1")),
            _fetched_at=pl.lit(fetched_at, dtype=FETCHED_TYPE),
        )
        .with_columns(f_ann_date=pl.col("ann_date"))
    )
    revenue = pl.col("revenue") * pl.col("scale")
    statement = ["ts_code", "ann_date", "f_ann_date", "end_date", "report_type", "comp_type"]
    income = rows.select(
        *statement,
        revenue.alias("revenue"),
        revenue.alias("total_revenue"),
        pl.when(~pl.col("bank")).then(revenue * (1 - pl.col("margin"))).alias("oper_cost"),
        (revenue * pl.col("margin") * 0.5).alias("operate_profit"),
        (revenue * pl.col("margin") * 0.4).alias("n_income"),
        (revenue * pl.col("margin") * 0.35).alias("n_income_attr_p"),
        "update_flag",
        "_fetched_at",
    )
    assets = pl.col("assets") * pl.col("scale")
    balancesheet = rows.select(
        *statement,
        assets.alias("total_assets"),
        (assets * 0.55).alias("total_liab"),
        (assets * 0.4).alias("total_hldr_eqy_exc_min_int"),
        (assets * 0.45).alias("total_hldr_eqy_inc_min_int"),
        "update_flag",
        "_fetched_at",
    )
    cashflow = rows.select(
        *statement, (revenue * 0.2).alias("n_cashflow_act"), "update_flag", "_fetched_at"
    )
    return {
        "income": full_columns("income", income),
        "balancesheet": full_columns("balancesheet", balancesheet),
        "cashflow": full_columns("cashflow", cashflow),
        "index_member_all": _memberships(codes, rng, fetched_at),
    }


def _memberships(
    codes: np.ndarray, rng: np.random.Generator, fetched_at: dt.datetime
) -> pl.DataFrame:
    names = np.array(SW_L1)[rng.integers(0, len(SW_L1), codes.size)]
    moved = rng.random(codes.size) < 0.2
    current = pl.DataFrame(
        {"ts_code": codes, "l1_code": names[:, 0], "l1_name": names[:, 1], "moved": moved}
    ).select(
        "ts_code",
        "l1_code",
        "l1_name",
        in_date=pl.when("moved").then(pl.lit(MOVE_DATE)).otherwise(pl.lit(SW_START)),
        out_date=pl.lit(None, dtype=pl.Date),
        is_new=pl.lit("Y"),
        moved="moved",
    )
    previous = current.filter("moved").with_columns(
        l1_code=pl.lit(SW_L1[0][0]),
        l1_name=pl.lit(SW_L1[0][1]),
        in_date=pl.lit(SW_START),
        out_date=pl.lit(MOVE_DATE),
        is_new=pl.lit("N"),
    )
    members = (
        pl.concat([current, previous])
        .drop("moved")
        .with_columns(
            l2_code=pl.col("l1_code").str.replace(".SI", "1.SI", literal=True),
            l2_name=pl.col("l1_name") + "Ⅱ",
            l3_code=pl.col("l1_code").str.replace(".SI", "11.SI", literal=True),
            l3_name=pl.col("l1_name") + "Ⅲ",
            name=pl.col("ts_code"),
            _fetched_at=pl.lit(fetched_at, dtype=FETCHED_TYPE),
        )
    )
    return full_columns("index_member_all", members)


def write_raw(layout: CacheLayout, frames: dict[str, pl.DataFrame], part: str = "part-0") -> None:
    """Store each frame as `<cache>/raw/<dataset>/<part>.parquet`, sorted by (ts_code, date)."""
    for name, frame in frames.items():
        order = ["ts_code", "end_date"] if "end_date" in frame.columns else ["ts_code", "in_date"]
        target = layout.dataset_dir("raw", name) / f"{part}.parquet"
        write_parquet_atomic(frame.sort(order, nulls_last=False), target)
