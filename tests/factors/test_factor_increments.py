"""Incremental factor runs over a cache built by the PIT step: a new calc date computes
one P and one G cross-section; a statement version found late recomputes exactly the
calc dates whose inputs changed (the PIT change log) and the G dates reading them; the
result equals a full backfill and the slow reference."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest

from cache.atomic import write_parquet_atomic
from cache.layout import CacheLayout
from factors.calendar import calc_dates
from pipeline.factor_step import G_LOOKBACK_DAYS, FactorRunResult, compute_factors
from pipeline.pit.changes import covers
from pipeline.pit.step import build_pit
from tests.factors.helpers import assert_g_equal, assert_p_equal, reference_factors
from tests.factors.synthetic import INDUSTRY_SCHEMA, Market
from tests.pit.synthetic import FETCHED_TYPE, FIRST_FETCH, synthetic_raw, write_raw

D = dt.date
AS_OF = D(2022, 12, 30)  # a Friday: a weekly calc date
NEXT_DAY = D(2023, 1, 6)  # the next Friday
LATER = FIRST_FETCH + dt.timedelta(days=7)
LISTED = D(2019, 7, 1)


def _trade_cal() -> pl.DataFrame:
    days = pl.date_range(D(2018, 1, 1), D(2023, 3, 31), eager=True)
    return pl.DataFrame({"cal_date": days}).select(
        exchange=pl.lit("SSE"),
        cal_date="cal_date",
        is_open=pl.when(pl.col("cal_date").dt.weekday() <= 5)
        .then(pl.lit("1"))
        .otherwise(pl.lit("0")),
        pretrade_date=pl.lit(None, dtype=pl.Date),
        _fetched_at=pl.lit(FIRST_FETCH, dtype=FETCHED_TYPE),
    )


def _write_market(layout: CacheLayout, raw: dict[str, pl.DataFrame], as_of: dt.date) -> None:
    """Raw statements and members (PIT inputs), calendar, stock list and daily up to as_of."""
    write_raw(layout, raw)
    codes = sorted(raw["income"]["ts_code"].unique())
    stocks = pl.DataFrame({"ts_code": codes}).with_columns(
        name=pl.col("ts_code"),
        list_date=pl.lit(LISTED),  # after the first statements: empty first calc dates
        delist_date=pl.lit(None, dtype=pl.Date),
        list_status=pl.lit("L"),
        _fetched_at=pl.lit(FIRST_FETCH, dtype=FETCHED_TYPE),
    )
    trade_cal = _trade_cal()
    open_days = trade_cal.filter((pl.col("is_open") == "1") & (pl.col("cal_date") <= as_of))
    daily = open_days.select(
        ts_code=pl.lit(codes[0]),
        trade_date="cal_date",
        close=pl.lit(10.0),
        _fetched_at="_fetched_at",
    )
    for name, frame in (("trade_cal", trade_cal), ("stock_basic", stocks), ("daily", daily)):
        write_parquet_atomic(frame, layout.dataset_dir("raw", name) / "all.parquet")


def _run(layout: CacheLayout, mode: str = "incremental") -> FactorRunResult:
    build_pit(layout, mode="full" if mode == "backfill" else "incremental", executor="inline")
    return compute_factors(layout, mode=mode, executor="inline")  # type: ignore[arg-type]


def _read(layout: CacheLayout, factor: str) -> pl.DataFrame:
    return pl.read_parquet(layout.glob("factors", factor)).sort("ts_code", "calc_date")


def _backfilled(tmp_path: Path, layout: CacheLayout, name: str) -> CacheLayout:
    fresh = CacheLayout(tmp_path / name)
    shutil.copytree(layout.root / "raw", fresh.root / "raw")
    _run(fresh, "backfill")
    return fresh


def _differing_dates(before: pl.DataFrame, after: pl.DataFrame) -> set[dt.date]:
    """Calc dates with a row in one frame and not identical in the other."""
    only = pl.concat(
        [
            before.join(after, on=before.columns, how="anti", nulls_equal=True),
            after.join(before, on=before.columns, how="anti", nulls_equal=True),
        ]
    )
    return set(only.get_column("calc_date"))


def _version(
    raw: dict[str, pl.DataFrame],
    dataset: str,
    code: str,
    end: dt.date,
    announced: dt.date,
    fetched: dt.datetime = LATER,
) -> dict[str, pl.DataFrame]:
    """A revised version of `code`'s period `end`, announced on `announced`, fetched later."""
    value = "revenue" if dataset == "income" else "total_assets"
    rows = raw[dataset].filter((pl.col("ts_code") == code) & (pl.col("end_date") == end)).head(1)
    assert rows.height == 1
    revised = rows.with_columns(
        (pl.col(value) * 1.7).alias(value),
        ann_date=pl.lit(announced),
        f_ann_date=pl.lit(announced),
        update_flag=pl.lit("1"),
        _fetched_at=pl.lit(fetched, dtype=FETCHED_TYPE),
    )
    return {dataset: revised.select(raw[dataset].columns)}


@pytest.fixture
def raw() -> dict[str, pl.DataFrame]:
    """16 stocks x 16 quarters from 2019: restatements, a bank, industry moves."""
    return synthetic_raw(16, 16, restated=0.3, first_year=2019, seed=11)


def test_restatements_found_today_or_late_recompute_exactly_what_they_feed(
    tmp_path: Path, raw: dict[str, pl.DataFrame]
) -> None:
    layout = CacheLayout(tmp_path / "cache")
    _write_market(layout, raw, AS_OF)
    _run(layout)
    before_p, before_g = _read(layout, "p"), _read(layout, "g")
    assert before_p["calc_date"].min() > LISTED  # calc dates before it were computed empty
    assert compute_factors(layout, executor="inline").dates_computed == {"p": 0, "g": 0}
    code = sorted(raw["income"]["ts_code"].unique())[4]

    # today: one more calc date, and a two-year-old period restated on it
    _write_market(layout, raw, NEXT_DAY)
    write_raw(layout, _version(raw, "income", code, D(2020, 12, 31), NEXT_DAY), part="part-1")
    result = _run(layout)
    assert result.dates_computed == {"p": 1, "g": 1}
    after_p, after_g = _read(layout, "p"), _read(layout, "g")
    assert _differing_dates(before_p, after_p) == _differing_dates(before_g, after_g) == {NEXT_DAY}
    full = _backfilled(tmp_path, layout, "full-1")
    assert after_p.equals(_read(full, "p"))
    assert after_g.equals(_read(full, "g"))
    market = Market(
        trade_cal=pl.read_parquet(layout.glob("raw", "trade_cal")),
        stock_basic=pl.read_parquet(layout.glob("raw", "stock_basic")),
        daily=pl.read_parquet(layout.glob("raw", "daily")),
        indicators=pl.read_parquet(layout.glob("pit", "indicators")),
        industry=pl.read_parquet(layout.glob("pit", "industry")).select(INDUSTRY_SCHEMA.names()),
    )
    ref_p, ref_g = reference_factors(market, NEXT_DAY)
    assert_p_equal(after_p, ref_p)
    assert_g_equal(after_g, ref_g)

    # found late: a revised 2021 annual report announced last spring, fetched only now
    period = D(2021, 12, 31)
    first_seen = raw["income"].filter((pl.col("ts_code") == code) & (pl.col("end_date") == period))
    announced = first_seen["ann_date"].min() + dt.timedelta(days=10)
    late = _version(raw, "income", code, period, announced, LATER + dt.timedelta(days=1))
    write_raw(layout, late, part="part-2")
    pit_result = build_pit(layout, mode="incremental", executor="inline")
    assert pit_result.changed
    assert pit_result.changed[0][0] >= announced
    result = compute_factors(layout, executor="inline")
    dates = calc_dates(pl.read_parquet(layout.glob("raw", "trade_cal")), NEXT_DAY).to_list()
    fed = {d for d in dates if covers(pit_result.changed, d)}
    reading = {t for t in dates if any(t - dt.timedelta(G_LOOKBACK_DAYS) <= d <= t for d in fed)}
    stored = set(after_p.get_column("calc_date"))
    assert result.dates_computed["p"] == len(fed & stored) < len(stored)
    assert result.dates_computed["g"] == len(reading & set(after_g.get_column("calc_date")))
    late_p, late_g = _read(layout, "p"), _read(layout, "g")
    assert _differing_dates(after_p, late_p) <= fed
    assert _differing_dates(after_p, late_p)
    full = _backfilled(tmp_path, layout, "full-2")
    assert late_p.equals(_read(full, "p"))
    assert late_g.equals(_read(full, "g"))
    assert compute_factors(layout, executor="inline").dates_computed == {"p": 0, "g": 0}
