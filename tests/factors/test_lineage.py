"""ann_date of factors.p and factors.g names exactly the statement versions behind the row.

From raw statement histories to factor rows twice: the product (`pipeline.pit.maths`, then
`factors/`) and the plain-Python references (`tests/pit/reference.py` for the PIT
values and lineage dates as known at each calc date, `tests/factors/reference.py` for
the factor rows). Restatements of periods nothing reads must not move ann_date.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factors.calendar import Freq, calc_dates
from factors.g import g_inputs, g_scores
from factors.p import p_inputs, p_scores
from factors.schema import G_SCHEMA, P_SCHEMA
from factors.universe import universe
from pipeline.pit import maths as pit
from pipeline.sources.simulator import Simulator, SimulatorConfig
from tests.factors.helpers import assert_g_equal, assert_p_equal, stocks_of
from tests.factors.reference import ref_calc_dates, ref_factors
from tests.pit.histories import (
    FETCHES,
    INDUSTRIES,
    USED,
    History,
    columns_of,
    frames,
    histories,
)
from tests.pit.reference import Reference

D = dt.date
Row = dict[str, Any]
LISTED = D(2018, 1, 1)
# calendar spans per frequency: daily over one year keeps the loop reference quick
SPANS: dict[str, tuple[dt.date, dt.date]] = {
    "weekly": (D(2019, 3, 1), D(2022, 6, 30)),
    "monthly": (D(2019, 3, 1), D(2022, 6, 30)),
    "daily": (D(2020, 1, 1), D(2020, 12, 31)),
}


def _calendar(first: dt.date, last: dt.date) -> pl.DataFrame:
    days = pl.date_range(first, last, eager=True)
    return pl.DataFrame(
        {
            "exchange": "SSE",
            "cal_date": days,
            "is_open": pl.Series(["1" if d.isoweekday() <= 5 else "0" for d in days]),
        }
    )


def _stocks(history: History) -> pl.DataFrame:
    codes = sorted({r["ts_code"] for _, rows in history.values() for r in rows})
    return stocks_of([{"ts_code": c, "list_date": LISTED} for c in codes])


def product_lineage(
    history: History, cal: pl.DataFrame, as_of: dt.date, freq: Freq
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(factors.p, factors.g) from raw statements through pipeline.pit.maths and factors/."""
    raw = frames(history)
    versions = pit.statement_versions({s: raw[s] for s in pit.SOURCES if s in raw})
    indicators = pit.indicators(pit.income_quarterly(versions), pit.balance(versions))
    industry = pit.industry(raw["index_member_all"])
    dates = calc_dates(cal, as_of, freq)
    rows = universe(_stocks(history), indicators, dates)
    p = p_scores(p_inputs(rows, industry))
    g = g_scores(g_inputs(rows, p.select("ts_code", "calc_date", "p_score", "ann_date"), dates))
    return p, g


def reference_lineage(
    history: History, cal: pl.DataFrame, as_of: dt.date, freq: Freq
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(factors.p, factors.g) from the loop references: PIT values as known at each date."""
    ref = Reference(history)
    cal_rows = cal.to_dicts()
    indicators = []
    for t in ref_calc_dates(cal_rows, as_of, freq):
        for code in ref.codes():
            row = ref.indicators_at(code, t)
            if row is not None:
                indicators.append({"ts_code": code, "knowledge_date": t, **row})
    p_rows, g_rows = ref_factors(
        cal_rows,
        _stocks(history).to_dicts(),
        indicators,
        ref.rows.get("index_member_all", []),
        as_of,
        freq,
    )
    p = pl.DataFrame(p_rows, schema=P_SCHEMA, orient="row" if not p_rows else None)
    g = pl.DataFrame(g_rows, schema=G_SCHEMA, orient="row" if not g_rows else None)
    return p.sort("ts_code", "calc_date"), g.sort("ts_code", "calc_date")


@st.composite
def cases(draw: st.DrawFn) -> tuple[History, pl.DataFrame, dt.date, str]:
    freq = draw(st.sampled_from(["weekly", "monthly", "daily"]))
    first, last = SPANS[freq]
    history = draw(histories(max_codes=2, sources=("income", "balancesheet")))
    as_of = last - dt.timedelta(days=draw(st.integers(0, 60)))
    return history, _calendar(first, last), as_of, freq


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(cases())
def test_random_restatement_histories_match_the_reference(
    case: tuple[History, pl.DataFrame, dt.date, str],
) -> None:
    history, cal, as_of, freq = case
    p, g = product_lineage(history, cal, as_of, freq)  # type: ignore[arg-type]
    ref_p, ref_g = reference_lineage(history, cal, as_of, freq)  # type: ignore[arg-type]
    assert_p_equal(p, ref_p)
    assert_g_equal(g, ref_g)
    for frame in (p, g):
        assert frame.filter(pl.col("ann_date") > pl.col("calc_date")).is_empty()
        assert frame.filter(pl.col("ann_date").is_null() != pl.col("end_date").is_null()).is_empty()


# ---------------------------------------------------------------- the 300222.SZ shape

CODE = "300222.SZ"
Q = {
    "2018Q4": D(2018, 12, 31),
    "2019Q1": D(2019, 3, 31),
    "2019Q2": D(2019, 6, 30),
    "2019Q3": D(2019, 9, 30),
    "2019Q4": D(2019, 12, 31),
    "2020Q1": D(2020, 3, 31),
}
# first announcements (ann_date = f_ann_date)
ANNOUNCED = {
    "2018Q4": D(2019, 4, 1),
    "2019Q1": D(2019, 4, 23),
    "2019Q2": D(2019, 8, 7),
    "2019Q3": D(2019, 10, 20),
    "2019Q4": D(2020, 3, 30),
    "2020Q1": D(2020, 4, 20),
}
RESTATED_ON = D(2020, 4, 22)


def _statement(name: str, period: str, ann: dt.date, f_ann: dt.date, flag: str, k: float) -> Row:
    row: Row = {
        "ts_code": CODE,
        "ann_date": ann,
        "f_ann_date": f_ann,
        "end_date": Q[period],
        "report_type": "1",
        "comp_type": "1",
        "update_flag": flag,
        "_fetched_at": FETCHES[0],
    }
    quarter = Q[period].month // 3
    if name == "income":
        row |= {"revenue": 100.0 * quarter * k, "oper_cost": 60.0 * quarter * k}
        row |= {"n_income_attr_p": 10.0 * quarter * k}
    else:
        row |= {"total_assets": 1000.0 * k, "total_hldr_eqy_exc_min_int": 400.0 * k}
    return row


def shaped_history(restated: str) -> History:
    """Both statements of every period once; `restated` again with f_ann_date 2020-04-22."""
    data: dict[str, list[Row]] = {}
    for name in ("income", "balancesheet"):
        rows = [_statement(name, p, day, day, "0", 1.0) for p, day in ANNOUNCED.items()]
        first = ANNOUNCED[restated]
        rows.append(_statement(name, restated, first, RESTATED_ON, "1", 0.97))
        data[name] = rows
    member = dict(zip(USED["index_member_all"][:6], INDUSTRIES[2], strict=True))
    member |= {"ts_code": CODE, "in_date": None, "out_date": None, "is_new": "Y"}
    data["index_member_all"] = [member | {"_fetched_at": FETCHES[0]}]
    return {name: (columns_of(name), rows) for name, rows in data.items()}


@pytest.mark.parametrize("freq", ["weekly", "monthly", "daily"])
def test_a_restated_period_nothing_reads_leaves_ann_date_alone(freq: str) -> None:
    # L(t) = 2020Q1: P's TTM reads the YTD versions 2019Q1 .. 2020Q1, G's q(L) and q(L-4)
    # read 2020Q1 and 2019Q1; the balance sheet is 2020Q1. Nobody reads 2018Q4.
    history = shaped_history("2018Q4")
    cal = _calendar(D(2019, 1, 1), D(2020, 7, 31))
    as_of = D(2020, 7, 31)
    p, g = product_lineage(history, cal, as_of, freq)  # type: ignore[arg-type]
    ref_p, ref_g = reference_lineage(history, cal, as_of, freq)  # type: ignore[arg-type]
    assert_p_equal(p, ref_p)
    assert_g_equal(g, ref_g)
    for frame in (p, g):
        after = frame.filter(pl.col("calc_date") >= RESTATED_ON)
        assert after.height > 0
        assert after.get_column("end_date").unique().to_list() == [Q["2020Q1"]]
        assert after.get_column("ann_date").unique().to_list() == [ANNOUNCED["2020Q1"]]
    assert p.filter(pl.col("calc_date") >= RESTATED_ON).get_column("roe").is_not_null().all()
    assert g.filter(pl.col("calc_date") >= RESTATED_ON).get_column("rm").is_not_null().all()


@pytest.mark.parametrize("freq", ["weekly", "monthly", "daily"])
def test_a_restated_period_that_is_read_moves_ann_date(freq: str) -> None:
    # 2019Q1 is read by P (q(2019Q2) = YTD(2019Q2) - YTD(2019Q1)) and by G (q(L-4))
    history = shaped_history("2019Q1")
    cal = _calendar(D(2019, 1, 1), D(2020, 7, 31))
    p, g = product_lineage(history, cal, D(2020, 7, 31), freq)  # type: ignore[arg-type]
    ref_p, ref_g = reference_lineage(history, cal, D(2020, 7, 31), freq)  # type: ignore[arg-type]
    assert_p_equal(p, ref_p)
    assert_g_equal(g, ref_g)
    for frame in (p, g):
        after = frame.filter(pl.col("calc_date") >= RESTATED_ON)
        assert after.get_column("ann_date").unique().to_list() == [RESTATED_ON]


def test_a_null_value_is_fed_by_nothing() -> None:
    # the 2019Q3 income statement is missing: every TTM at 2020Q1 is null (so gpa, roe,
    # roa), and a restatement of 2019Q2, read only by those TTMs, feeds no value
    history = shaped_history("2019Q2")
    columns, rows = history["income"]
    history["income"] = (columns, [r for r in rows if r["end_date"] != Q["2019Q3"]])
    cal = _calendar(D(2019, 1, 1), D(2020, 7, 31))
    p, g = product_lineage(history, cal, D(2020, 7, 31), "monthly")
    ref_p, ref_g = reference_lineage(history, cal, D(2020, 7, 31), "monthly")
    assert_p_equal(p, ref_p)
    assert_g_equal(g, ref_g)
    after = p.filter(pl.col("calc_date") >= RESTATED_ON)
    assert after.select(pl.col("gpa", "roe", "roa").is_null().all()).row(0) == (True,) * 3
    assert after.get_column("ann_date").unique().to_list() == [ANNOUNCED["2020Q1"]]


# ---------------------------------------------------------------- the issue's example


def simulated_inputs(code: str) -> tuple[dict[str, pl.DataFrame], pl.DataFrame, pl.DataFrame]:
    """(raw statements and memberships of `code`, trade_cal, stock_basic) of the issue's
    market: 120 stocks from 2016-01-01, today 2021-10-29, seed 23, every row as known."""
    config = SimulatorConfig(stocks=120, start=D(2016, 1, 1), today=D(2021, 10, 29), seed=23)
    sim = Simulator(config)
    raw = {name: sim.ground_truth(name, ts_code=code) for name in ("income", "balancesheet")}
    members = sim.ground_truth("index_member_all")
    raw["index_member_all"] = members.filter(pl.col("ts_code") == code)
    stocks = sim.ground_truth("stock_basic").filter(pl.col("ts_code") == code)
    return raw, sim.ground_truth("trade_cal"), stocks


def test_the_issue_example_names_the_2020q1_report() -> None:
    raw, cal, stocks = simulated_inputs(CODE)
    versions = pit.statement_versions({s: raw[s] for s in ("income", "balancesheet")})
    restated = versions.filter(pl.col("end_date") == Q["2018Q4"])
    assert RESTATED_ON in restated.get_column("vis_date").to_list()  # the example's shape
    indicators = pit.indicators(pit.income_quarterly(versions), pit.balance(versions))
    dates = calc_dates(cal, D(2021, 10, 29), "monthly")
    rows = universe(stocks, indicators, dates)
    p = p_scores(p_inputs(rows, pit.industry(raw["index_member_all"])))
    g = g_scores(g_inputs(rows, p.select("ts_code", "calc_date", "p_score", "ann_date"), dates))
    for frame in (p, g):
        at = frame.filter(pl.col("calc_date").is_in([D(2020, 4, 30), D(2020, 7, 31)]))
        assert at.get_column("end_date").to_list() == [Q["2020Q1"]] * 2
        assert at.get_column("ann_date").to_list() == [D(2020, 4, 20)] * 2
        assert frame.filter(pl.col("ann_date") > pl.col("calc_date")).is_empty()
