"""Industry at t and the financial flag (SW L1 name, else comp_type)."""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from factors.industry import industry_at, is_financial
from tests.factors.helpers import industry_of
from tests.factors.reference import ref_industry_at

D = dt.date


def _at(industry: pl.DataFrame, code: str, t: dt.date) -> tuple[str | None, bool]:
    pairs = pl.DataFrame({"ts_code": [code], "calc_date": [t]})
    row = industry_at(pairs, industry).row(0, named=True)
    return row["industry_l1"], row["has_industry"]


def test_membership_interval_bounds_and_latest_in_date() -> None:
    industry = industry_of(
        [
            {"ts_code": "A", "l1_name": "电子", "in_date": None, "out_date": D(2021, 1, 1)},
            {"ts_code": "A", "l1_name": "银行", "in_date": D(2020, 6, 1), "out_date": None},
        ]
    )
    assert _at(industry, "A", D(2020, 5, 31)) == ("电子", True)  # null in_date: always begun
    assert _at(industry, "A", D(2020, 6, 1)) == ("银行", True)  # both hold: latest in_date wins
    assert _at(industry, "A", D(2021, 1, 1)) == ("银行", True)  # out_date is exclusive
    assert _at(industry, "B", D(2021, 1, 1)) == (None, False)


def test_financial_by_industry_first_then_by_comp_type() -> None:
    frame = pl.DataFrame(
        {
            "has_industry": [True, True, True, False, False, False, False, True],
            "industry_l1": ["银行", "非银金融", "电子", None, None, None, None, None],
            "comp_type": ["1", "1", "2", "2", "3", "4", "1", None],
        }
    )
    got = frame.select(is_financial()).to_series().to_list()
    assert got == [True, True, False, True, True, True, False, False]
    no_type = pl.DataFrame({"has_industry": [False], "industry_l1": [None], "comp_type": [None]})
    assert no_type.select(is_financial()).item() is False


@st.composite
def _memberships(draw: st.DrawFn) -> list[dict]:
    day = st.one_of(
        st.none(), st.integers(0, 60).map(lambda n: D(2020, 1, 1) + dt.timedelta(days=n))
    )
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        rows.append(
            {
                "ts_code": draw(st.sampled_from(["A", "B"])),
                "l1_code": draw(st.sampled_from(["1", "2", None])),
                "l1_name": draw(st.sampled_from(["银行", "电子", None])),
                "l2_code": draw(st.sampled_from(["x", "y"])),
                "in_date": draw(day),
                "out_date": draw(day),
            }
        )
    return rows


@settings(max_examples=80, deadline=None)
@given(_memberships(), st.integers(0, 60))
def test_industry_at_matches_the_reference(rows: list[dict], offset: int) -> None:
    t = D(2020, 1, 1) + dt.timedelta(days=offset)
    industry = industry_of(rows)
    for code in ("A", "B"):
        expected = ref_industry_at(industry.to_dicts(), code, t)
        got = _at(industry, code, t)
        assert got == ((None, False) if expected is None else (expected["l1_name"], True))
