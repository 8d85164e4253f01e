"""P: sub-scores, weights, financials, rounding and ranks (DESIGN section 7)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from factors.p import p_scores
from tests.factors.helpers import P_CONTRACT, frame_of
from tests.factors.reference import ref_p_scores

T = dt.date(2024, 4, 30)
INPUT_SCHEMA = pl.Schema(
    {
        "ts_code": pl.String,
        "calc_date": pl.Date,
        "gpa": pl.Float64,
        "roe": pl.Float64,
        "roa": pl.Float64,
        "is_financial": pl.Boolean,
        "industry_l1": pl.String,
        "end_date": pl.Date,
        "ann_date": pl.Date,
    }
)


def _inputs(rows: list[dict[str, Any]]) -> pl.DataFrame:
    base = {"calc_date": T, "is_financial": False, "end_date": dt.date(2024, 3, 31)}
    return frame_of([{**base, **r} for r in rows], INPUT_SCHEMA)


def _by_code(frame: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {r["ts_code"]: r for r in frame.iter_rows(named=True)}


def _reference(inputs: pl.DataFrame) -> dict[str, dict[str, Any]]:
    rows = {r["ts_code"]: dict(r) for r in inputs.iter_rows(named=True)}
    for r in rows.values():
        if r["is_financial"]:
            r["gpa"] = None
    return {r["ts_code"]: r for r in ref_p_scores(rows)}


def test_hand_computed_scores_with_reweighting() -> None:
    inputs = _inputs(
        [
            {"ts_code": "A", "gpa": 10.0, "roe": 1.0, "roa": None},
            {"ts_code": "B", "gpa": 20.0, "roe": 1.0, "roa": 5.0},
            {"ts_code": "C", "gpa": 30.0, "roe": 2.0, "roa": 3.0},
        ]
    )
    got = _by_code(p_scores(inputs))
    # gpa: ranks 1, 2, 3 -> 0, 50, 100; roe: 1, 1 tie -> 25, 25, 100; roa: B 100, C 0
    assert [got[c]["s_gpa"] for c in "ABC"] == [0.0, 50.0, 100.0]
    assert [got[c]["s_roe"] for c in "ABC"] == [25.0, 25.0, 100.0]
    assert [got[c]["s_roa"] for c in "ABC"] == [None, 100.0, 0.0]
    # A: (0.4 * 0 + 0.3 * 25) / 0.7 = 10.7142857... ; B: 20 + 7.5 + 30 ; C: 40 + 30 + 0
    assert [got[c]["p_score"] for c in "ABC"] == [10.714286, 57.5, 70.0]
    assert [got[c]["p_rank"] for c in "ABC"] == [3, 2, 1]


def test_a_single_stock_scores_50() -> None:
    got = p_scores(_inputs([{"ts_code": "A", "gpa": -3.0, "roe": 2.0, "roa": 1.0}]))
    assert got.row(0, named=True)["p_score"] == 50.0
    assert got.row(0, named=True)["p_rank"] == 1


def test_all_null_metrics_give_a_row_with_null_scores() -> None:
    got = _by_code(
        p_scores(
            _inputs(
                [
                    {"ts_code": "A", "gpa": None, "roe": None, "roa": None},
                    {"ts_code": "B", "gpa": None, "roe": None, "roa": None},
                ]
            )
        )
    )
    assert set(got) == {"A", "B"}
    for row in got.values():
        assert (row["p_score"], row["p_rank"], row["s_gpa"], row["s_roe"]) == (
            None,
            None,
            None,
            None,
        )


def test_financials_leave_the_gpa_cross_section_and_weigh_roe_roa_equally() -> None:
    inputs = _inputs(
        [
            {"ts_code": "BANK", "gpa": 99.0, "roe": 12.0, "roa": 1.0, "is_financial": True},
            {"ts_code": "X", "gpa": 10.0, "roe": 10.0, "roa": 5.0},
            {"ts_code": "Y", "gpa": 20.0, "roe": 8.0, "roa": 6.0},
        ]
    )
    got = _by_code(p_scores(inputs))
    assert got["BANK"]["gpa"] is None and got["BANK"]["s_gpa"] is None
    assert [got[c]["s_gpa"] for c in ("X", "Y")] == [0.0, 100.0]  # n = 2 without the bank
    assert got["BANK"]["s_roe"] == 100.0 and got["BANK"]["s_roa"] == 0.0
    assert got["BANK"]["p_score"] == 50.0  # 0.5 * 100 + 0.5 * 0
    assert got["BANK"]["is_financial"] is True


def test_equal_rounded_scores_share_the_smallest_rank() -> None:
    inputs = _inputs(
        [
            {"ts_code": "A", "gpa": 1.0},
            {"ts_code": "B", "gpa": 1.0},
            {"ts_code": "C", "gpa": 3.0},
            {"ts_code": "D", "gpa": 0.0},
        ]
    )
    got = _by_code(p_scores(inputs))
    assert [got[c]["p_rank"] for c in "CABD"] == [1, 2, 2, 4]


def test_dates_are_separate_cross_sections() -> None:
    day1 = _inputs([{"ts_code": "A", "gpa": 1.0}, {"ts_code": "B", "gpa": 2.0}])
    day2 = day1.with_columns(calc_date=pl.lit(T + dt.timedelta(days=7)), gpa=-pl.col("gpa"))
    got = p_scores(pl.concat([day1, day2]))
    assert got.select("ts_code", "calc_date", "p_rank").rows() == [
        ("A", T, 2),
        ("A", T + dt.timedelta(days=7), 1),
        ("B", T, 1),
        ("B", T + dt.timedelta(days=7), 2),
    ]


def test_output_contract_columns_and_types() -> None:
    got = p_scores(_inputs([{"ts_code": "A", "gpa": 1.0}]))
    assert got.schema == P_CONTRACT
    assert got.columns == [
        "ts_code",
        "calc_date",
        "p_score",
        "p_rank",
        "gpa",
        "roe",
        "roa",
        "s_gpa",
        "s_roe",
        "s_roa",
        "is_financial",
        "industry_l1",
        "end_date",
        "ann_date",
    ]


def test_many_ties_and_nulls_match_the_reference() -> None:
    values = [None, -5.0, 0.0, 0.0, 2.5, 2.5, 2.5, 10.0, 1e6]
    rows = []
    for i in range(150):
        rows.append(
            {
                "ts_code": f"S{i:03d}",
                "gpa": values[i % 9],
                "roe": values[(i * 7) % 9],
                "roa": values[(i * 5 + 3) % 9],
                "is_financial": i % 11 == 0,
            }
        )
    inputs = _inputs(rows)
    got = _by_code(p_scores(inputs))
    expected = _reference(inputs)
    for code, row in expected.items():
        for column in ("s_gpa", "s_roe", "s_roa", "p_score", "p_rank", "gpa"):
            assert got[code][column] == row[column], (code, column)
