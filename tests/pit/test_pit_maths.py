"""pipeline.pit.maths against the plain-Python reference, over generated statement histories."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

from cache.catalogue.datasets import dataset
from foundation.errors import InternalError
from pipeline.pit import maths as pit
from tests.pit.histories import History, frames, histories, tied_rows
from tests.pit.reference import FLOWS, INDICATOR_CONTRACT, INDICATOR_VALUES, Reference

PROPERTY = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
QUARTERLY_VALUES = [
    "vis_date",
    "comp_type",
    *(f"{f}_q" for f in FLOWS),
    *(f"{f}_ttm" for f in FLOWS),
]
ONE_DAY = dt.timedelta(days=1)
PAIRS = {"ts_code": pl.String, "date": pl.Date}


def build(history: History) -> dict[str, pl.DataFrame]:
    """Every PIT table of a history; versions are shuffled so no step relies on row order."""
    raw = frames(history)
    versions = pit.statement_versions({s: raw[s] for s in pit.SOURCES})
    versions = versions.sample(fraction=1.0, shuffle=True, seed=len(versions))
    quarterly = pit.income_quarterly(versions)
    sheets = pit.balance(versions)
    return {
        "versions": versions,
        "income_quarterly": quarterly,
        "balance": sheets,
        "indicators": pit.indicators(quarterly, sheets),
        "industry": pit.industry(raw["index_member_all"]),
    }


def probe_dates(ref: Reference) -> list[dt.date]:
    """Every date where anything could change, a day before and after each."""
    events = ref.event_dates()
    dates = {d + k * ONE_DAY for d in events for k in (-1, 0, 1)}
    return sorted(dates | {dt.date(2018, 1, 1)})


def changes(values: list[tuple[dt.date, dict[str, Any] | None]]) -> list[tuple[dt.date, Any]]:
    """The (date, row) pairs where a step function changes; None rows are not listed."""
    out = []
    previous = None
    for day, row in values:
        if row is not None and row != previous:
            out.append((day, row))
        previous = row
    return out


def rows_of(table: pl.DataFrame, date: str, columns: list[str]) -> list[tuple[dt.date, Any]]:
    return [(r[date], {c: r[c] for c in columns}) for r in table.iter_rows(named=True)]


@given(histories(max_codes=2, industry=False))
@PROPERTY
def test_statement_versions_match_reference(history: History) -> None:
    ref = Reference(history)
    versions = build(history)["versions"]
    for source in pit.SOURCES:
        columns = ["ann_date", "f_ann_date", "report_type", "comp_type", "_fetched_at"]
        columns += pit.SOURCE_VALUES[source]
        expected = {}
        for v in ref.versions(source):
            code, period, vis, flag = v["key"]
            row = v["row"]
            expected[(code, period, vis, flag)] = {c: row.get(c) for c in columns}
        got = {}
        for r in versions.filter(pl.col("source") == source).iter_rows(named=True):
            key = (r["ts_code"], r["end_date"], r["vis_date"], r["update_flag"])
            assert key not in got, f"duplicate version {key}"
            got[key] = {c: r[c] for c in columns}
        assert got == expected, source


@given(tied_rows())
@PROPERTY
def test_ties_go_to_the_row_sorting_last_by_all_columns_nulls_first(
    history: History,
) -> None:
    ref = Reference(history)
    versions = pit.statement_versions({"income": frames(history)["income"]})
    (winner,) = ref.versions("income")
    columns = [c for c in history["income"][0] if c in versions.columns]
    assert versions.select(columns).rows() == [tuple(winner["row"].get(c) for c in columns)]


@given(histories(max_codes=2, sources=("balancesheet",), industry=False))
@PROPERTY
def test_balance_lists_the_versions_that_become_current(history: History) -> None:
    ref = Reference(history)
    sheets = build(history)["balance"]
    expected = sorted(
        (
            b["ts_code"],
            b["end_date"],
            b["vis_date"],
            b["row"].get("update_flag") or "0",
            b["row"].get("comp_type"),
            *(
                b["row"].get(c)
                for c in ("total_assets", "total_liab", "total_hldr_eqy_exc_min_int")
            ),
        )
        for b in ref.balance_rows()
    )
    got = sheets.select(
        "ts_code",
        "end_date",
        "vis_date",
        "update_flag",
        "comp_type",
        "total_assets",
        "total_liab",
        "total_hldr_eqy_exc_min_int",
    ).rows()
    assert got == expected


@given(histories(max_codes=2, sources=("income",), industry=False))
@PROPERTY
def test_income_quarterly_matches_reference_on_every_date(history: History) -> None:
    ref = Reference(history)
    table = build(history)["income_quarterly"]
    dates = probe_dates(ref)
    periods = sorted({r["end_date"] for r in ref.rows["income"]})
    keys = [(c, p, d) for c in ref.codes() for p in periods for d in dates]
    expected = {k: ref.income_quarterly_at(*k) for k in keys}
    pairs = pl.DataFrame(
        keys, schema={"ts_code": pl.String, "end_date": pl.Date, "date": pl.Date}, orient="row"
    )
    for r in pit.read_as_of(pairs, table).iter_rows(named=True):
        row = expected[(r["ts_code"], r["end_date"], r["date"])]
        if row is None:
            assert r["knowledge_date"] is None, r
        else:
            assert {c: r[c] for c in QUARTERLY_VALUES} == row, r
            assert r["vis_date"] <= r["knowledge_date"] <= r["date"]
    for code in ref.codes():
        for period in periods:
            steps = changes([(d, expected[(code, period, d)]) for d in dates])
            got = table.filter((pl.col("ts_code") == code) & (pl.col("end_date") == period))
            assert rows_of(got, "knowledge_date", QUARTERLY_VALUES) == steps


@given(histories(max_codes=2, sources=("income", "balancesheet"), industry=False))
@PROPERTY
def test_indicators_match_reference_on_every_date(history: History) -> None:
    ref = Reference(history)
    table = build(history)["indicators"]
    assert table.schema == INDICATOR_CONTRACT
    dates = probe_dates(ref)
    keys = [(c, d) for c in ref.codes() for d in dates]
    expected = {k: ref.indicators_at(*k) for k in keys}
    pairs = pl.DataFrame(keys, schema=PAIRS, orient="row")
    for r in pit.read_as_of(pairs, table).iter_rows(named=True):
        row = expected[(r["ts_code"], r["date"])]
        if row is None:
            assert r["knowledge_date"] is None, r
        else:
            assert {c: r[c] for c in INDICATOR_VALUES} == row, r
            assert r["ann_date"] <= r["knowledge_date"] <= r["date"]
            assert r["vis_date"] <= r["knowledge_date"]
    for code in ref.codes():
        steps = changes([(d, expected[(code, d)]) for d in dates])
        got = table.filter(pl.col("ts_code") == code)
        assert rows_of(got, "knowledge_date", INDICATOR_VALUES) == steps


@given(histories(max_codes=3, sources=()))
@PROPERTY
def test_industry_matches_reference_on_every_date(history: History) -> None:
    ref = Reference(history)
    table = build(history)["industry"]
    assert table.schema == pl.Schema(dataset("pit", "industry").schema)
    raw = {tuple(r[c] for c in pit.INDUSTRY_COLUMNS) for r in ref.rows["index_member_all"]}
    assert sorted(table.rows(), key=repr) == sorted(raw, key=repr)
    dates = probe_dates(ref)
    codes = sorted({r["ts_code"] for r in ref.rows["index_member_all"]})
    pairs = pl.DataFrame([(c, d) for c in codes for d in dates], schema=PAIRS, orient="row")
    for r in pit.industry_at(pairs, table).iter_rows(named=True):
        member = ref.industry_at(r["ts_code"], r["date"])
        expected = None if member is None else [member[c] for c in pit.INDUSTRY_COLUMNS[1:]]
        got = [r[c] for c in pit.INDUSTRY_COLUMNS[1:]]
        assert got == (expected or [None] * len(got)), r


@given(histories(max_codes=2, sources=()))
@PROPERTY
def test_industry_monthly_is_the_membership_at_each_month_end(history: History) -> None:
    ref = Reference(history)
    table = build(history)["industry"]
    through = dt.date(2022, 3, 15)
    monthly = pit.industry_monthly(table, through)
    assert monthly.schema == pl.Schema(pit.INDUSTRY_MONTHLY_SCHEMA)
    dates = [d for r in ref.rows["index_member_all"] for d in (r["in_date"], r["out_date"]) if d]
    expected = []
    if dates:
        month = min(dates).replace(day=1)
        while month <= through:
            following = (month + dt.timedelta(days=32)).replace(day=1)
            month_end = following - ONE_DAY
            for code in sorted({r["ts_code"] for r in ref.rows["index_member_all"]}):
                member = ref.industry_at(code, month_end)
                if member is not None:
                    expected.append(
                        (code, *(member[c] for c in pit.INDUSTRY_COLUMNS[1:]), month_end)
                    )
            month = following
    assert monthly.rows() == sorted(expected, key=lambda row: (row[0], row[-1]))


def test_restated_previous_quarter_changes_the_single_quarter_as_known() -> None:
    """Worked by hand: Q2 YTD 300, Q3 YTD 500; Q2 restated to 350 later -> q3 150."""
    rows = [
        _income("2024-06-30", "2024-08-20", 300.0, "0"),
        _income("2024-09-30", "2024-10-25", 500.0, "0"),
        _income("2024-06-30", "2024-11-05", 350.0, "1"),
    ]
    versions = pit.statement_versions({"income": pl.DataFrame(rows)})
    quarterly = pit.income_quarterly(versions).filter(pl.col("end_date") == dt.date(2024, 9, 30))
    assert quarterly.select("knowledge_date", "vis_date", "revenue_q").rows() == [
        (dt.date(2024, 10, 25), dt.date(2024, 10, 25), 200.0),
        (dt.date(2024, 11, 5), dt.date(2024, 10, 25), 150.0),
    ]


def test_same_day_restatement_hides_the_original_from_balance() -> None:
    rows = [
        _sheet("2024-03-31", "2024-04-20", 1000.0, "0"),
        _sheet("2024-03-31", "2024-04-20", 1100.0, "1"),
        _sheet("2024-03-31", "2024-05-01", 900.0, None),
    ]
    versions = pit.statement_versions({"balancesheet": pl.DataFrame(rows)})
    sheets = pit.balance(versions.reverse())
    assert sheets.select("vis_date", "update_flag", "total_assets").rows() == [
        (dt.date(2024, 4, 20), "1", 1100.0),
        (dt.date(2024, 5, 1), "0", 900.0),
    ]


def test_read_as_of_keeps_pair_order_and_refuses_null_keys() -> None:
    table = pl.DataFrame(
        {
            "ts_code": ["A", "A", "B"],
            "knowledge_date": [dt.date(2024, 1, 1), dt.date(2024, 2, 1), dt.date(2024, 1, 15)],
            "gpa": [1.0, 2.0, 3.0],
        }
    )
    pairs = pl.DataFrame(
        {
            "ts_code": ["B", "A", "A", "B"],
            "date": [
                dt.date(2024, 3, 1),
                dt.date(2024, 2, 1),
                dt.date(2023, 12, 31),
                dt.date(2024, 1, 14),
            ],
        }
    )
    got = pit.read_as_of(pairs, table)
    assert got.select("ts_code", "date", "gpa").rows() == [
        ("B", dt.date(2024, 3, 1), 3.0),
        ("A", dt.date(2024, 2, 1), 2.0),
        ("A", dt.date(2023, 12, 31), None),
        ("B", dt.date(2024, 1, 14), None),
    ]
    with pytest.raises(InternalError, match="null"):
        pit.read_as_of(pairs.with_columns(date=pl.lit(None, dtype=pl.Date)), table)


def _statement(end: str, ann: str, flag: str | None) -> dict[str, Any]:
    return {
        "ts_code": "600000.SH",
        "ann_date": dt.date.fromisoformat(ann),
        "f_ann_date": dt.date.fromisoformat(ann),
        "end_date": dt.date.fromisoformat(end),
        "report_type": "1",
        "comp_type": "1",
        "update_flag": flag,
        "_fetched_at": dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    }


def _income(end: str, ann: str, revenue: float, flag: str | None) -> dict[str, Any]:
    return _statement(end, ann, flag) | {"revenue": revenue}


def _sheet(end: str, ann: str, assets: float, flag: str | None) -> dict[str, Any]:
    return _statement(end, ann, flag) | {"total_assets": assets}
