""" "As known at t" macros against the slow reference, in DuckDB and PostgreSQL.

The raw statements have restatements (a third of the periods, announced 150-500 days
late, so often after later periods: out of order), announcement lags of 20-120 days
(a period can appear before the one before it), and industry moves; the universe and
price macros get small raw frames of their own, checked by loops written here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import adbc_driver_postgresql.dbapi as pgdb
import duckdb
import polars as pl
import pytest

from cache.atomic import write_parquet_atomic
from cache.catalogue.asof_sql import PRICE_COLUMNS, macros_for
from cache.catalogue.columns import column_dictionary, comment_text
from cache.catalogue.datasets import BALANCE_LEVELS, INCOME_FLOWS
from cache.layout import CacheLayout
from cache.views import open_catalog, rebuild_catalog
from pipeline.pit.step import build_pit
from sinks.postgres_sink import PostgresSink
from tests.pit.reference import INDICATOR_VALUES, Reference, vis_date
from tests.pit.synthetic import FETCHED_TYPE, FIRST_FETCH, full_columns

Row = dict[str, Any]
Query = Callable[[str], list[Row]]
FETCHED = pl.lit(FIRST_FETCH, dtype=FETCHED_TYPE).alias("_fetched_at")
INCOME_VALUES = ["vis_date", "comp_type", *(f"{c}_q" for c in INCOME_FLOWS)]
INCOME_VALUES += [f"{c}_ttm" for c in INCOME_FLOWS]


def market_frames(codes: list[str]) -> dict[str, pl.DataFrame]:
    """stock_basic, namechange (an ST spell, a rename), daily bars and adj_factor."""
    first, second, third = codes[:3]
    basic = pl.DataFrame(
        {
            "ts_code": codes[:3],
            "name": ["甲银行", "乙科技", "丙医药"],
            "list_date": [dt.date(2010, 1, 4), dt.date(2020, 3, 2), dt.date(2015, 6, 1)],
            "delist_date": [None, None, dt.date(2021, 9, 1)],
            "exchange": ["SSE", "SZSE", "SZSE"],
        }
    ).with_columns(FETCHED)
    names = pl.DataFrame(
        {
            "ts_code": [first, first, first, second],
            "name": ["甲银行", "ST甲银行", "甲银行", "乙科技"],
            "start_date": [dt.date(2010, 1, 4), dt.date(2020, 5, 6), dt.date(2021, 5, 10),
                           dt.date(2020, 3, 2)],
            "end_date": [dt.date(2020, 5, 5), dt.date(2021, 5, 9), None, None],
            "ann_date": [dt.date(2010, 1, 1), dt.date(2020, 4, 30), dt.date(2021, 5, 7),
                         dt.date(2020, 2, 28)],
        }
    ).with_columns(FETCHED)  # fmt: skip
    days = [dt.date(2021, 3, 1) + dt.timedelta(days=k) for k in range(8)]
    bars = pl.DataFrame(
        {
            "ts_code": [third] * len(days),
            "trade_date": days,
            **{c: [10.0 + k for k in range(len(days))] for c in PRICE_COLUMNS},
            "vol": [100.0] * len(days),
        }
    ).with_columns(FETCHED)
    factors = pl.DataFrame(
        {
            "ts_code": [third] * len(days),
            "trade_date": days,
            "adj_factor": [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.5, 2.5],
        }
    ).with_columns(FETCHED)
    frames = {"stock_basic": basic, "namechange": names, "daily": bars, "adj_factor": factors}
    return {name: full_columns(name, frame) for name, frame in frames.items()}


@pytest.fixture
def asof_cache(
    raw_cache: CacheLayout, raw_frames: dict[str, pl.DataFrame]
) -> tuple[CacheLayout, Reference, dict[str, pl.DataFrame]]:
    """The raw cache with its PIT tables built and its catalogue; the reference."""
    codes = sorted(raw_frames["income"]["ts_code"].unique())
    market = market_frames(codes)
    for name, frame in market.items():
        write_parquet_atomic(frame, raw_cache.dataset_dir("raw", name) / "data.parquet")
    build_pit(raw_cache, mode="full", executor="inline")
    rebuild_catalog(raw_cache)
    history = {
        name: (frame.columns, frame.to_dicts())
        for name, frame in raw_frames.items()
        if name in ("income", "balancesheet", "index_member_all")
    }
    return raw_cache, Reference(history), market


def dates_of(ref: Reference) -> list[dt.date]:
    """Event dates and their neighbours, thinned: where answers change."""
    events = ref.event_dates()
    picked = {d + dt.timedelta(days=k) for d in events[::40] for k in (-1, 0, 1)}
    return sorted(picked | {events[-1] + dt.timedelta(days=1), dt.date(2021, 7, 30)})


def _by_code(rows: list[Row]) -> dict[str, Row]:
    out = {r["ts_code"]: r for r in rows}
    assert len(out) == len(rows), "one row per stock"
    return out


def check_statements(query: Query, ref: Reference, codes: list[str]) -> int:
    """income_asof, income_quarterly_asof, balance_asof, indicators_asof and
    industry_asof at each date against the reference; the number of rows compared."""
    compared = 0
    for d in dates_of(ref):
        lit = f"DATE '{d.isoformat()}'"
        income = _by_code(query(f"SELECT * FROM pit.income_asof({lit})"))
        balance = _by_code(query(f"SELECT * FROM pit.balance_asof({lit})"))
        indicators = _by_code(query(f"SELECT * FROM pit.indicators_asof({lit})"))
        industry = _by_code(query(f"SELECT * FROM pit.industry_asof({lit})"))
        periods = {
            (r["ts_code"], r["end_date"]): r
            for r in query(f"SELECT * FROM pit.income_quarterly_asof({lit})")
        }
        for code in codes:
            latest = ref.latest_period("income", code, d)
            got = income.get(code)
            if latest is None:
                assert got is None, (code, d)
            else:
                expected = ref.income_quarterly_at(code, latest, d)
                assert got is not None and got["end_date"] == latest, (code, d)
                assert {c: got[c] for c in INCOME_VALUES} == expected, (code, d)
            for (stock, period), row in periods.items():
                if stock == code:
                    assert {c: row[c] for c in INCOME_VALUES} == ref.income_quarterly_at(
                        code, period, d
                    ), (code, period, d)
            latest_bs = ref.latest_period("balancesheet", code, d)
            got = balance.get(code)
            if latest_bs is None:
                assert got is None, (code, d)
            else:
                sheet = ref.version_at("balancesheet", code, latest_bs, d)
                assert sheet is not None and got is not None, (code, d)
                assert (got["end_date"], got["vis_date"]) == (latest_bs, vis_date(sheet))
                assert {c: got[c] for c in BALANCE_LEVELS} == {c: sheet[c] for c in BALANCE_LEVELS}
            expected = ref.indicators_at(code, d)
            got = indicators.get(code)
            assert (None if got is None else {c: got[c] for c in INDICATOR_VALUES}) == expected
            member = ref.industry_at(code, d)
            got = industry.get(code)
            assert (None if member is None else (member["l3_code"], member["in_date"])) == (
                None if got is None else (got["l3_code"], got["in_date"])
            ), (code, d)
            compared += 1
    return compared


def check_universe_and_prices(query: Query, market: dict[str, pl.DataFrame]) -> None:
    """universe_asof and daily_qfq / daily_hfq against loops over the raw frames."""
    basic = market["stock_basic"].to_dicts()
    names = market["namechange"].to_dicts()
    for d in (dt.date(2020, 5, 5), dt.date(2020, 5, 6), dt.date(2021, 5, 10), dt.date(2021, 9, 1)):
        listed = [
            b
            for b in basic
            if b["list_date"] <= d and (b["delist_date"] is None or d < b["delist_date"])
        ]
        got = _by_code(query(f"SELECT * FROM pit.universe_asof(DATE '{d.isoformat()}')"))
        assert set(got) == {b["ts_code"] for b in listed}, d
        for b in listed:
            spells = [n for n in names if n["ts_code"] == b["ts_code"] and n["start_date"] <= d]
            name = max(spells, key=lambda n: n["start_date"])["name"] if spells else b["name"]
            row = got[b["ts_code"]]
            assert (row["name"], row["is_st"]) == (name, "ST" in name), (b["ts_code"], d)
    bars = market["daily"].to_dicts()
    factors = {
        (f["ts_code"], f["trade_date"]): f["adj_factor"] for f in market["adj_factor"].to_dicts()
    }
    hfq = {r["trade_date"]: r for r in query("SELECT * FROM pit.daily_hfq")}
    for d in (bars[2]["trade_date"], bars[5]["trade_date"], bars[-1]["trade_date"]):
        base = factors[(bars[0]["ts_code"], d)]
        qfq = {r["trade_date"]: r for r in query(f"SELECT * FROM pit.daily_qfq(DATE '{d}')")}
        assert sorted(qfq) == [b["trade_date"] for b in bars if b["trade_date"] <= d]
        for b in bars:
            factor = factors[(b["ts_code"], b["trade_date"])]
            assert hfq[b["trade_date"]]["close"] == pytest.approx(b["close"] * factor)
            if b["trade_date"] <= d:
                row = qfq[b["trade_date"]]
                assert row["close"] == pytest.approx(b["close"] * factor / base)
                assert row["vol"] == b["vol"]


def duckdb_query(con: duckdb.DuckDBPyConnection) -> Query:
    def run(sql: str) -> list[Row]:
        frame = pl.from_arrow(con.sql(sql).to_arrow_table())
        assert isinstance(frame, pl.DataFrame)
        return frame.to_dicts()

    return run


def test_every_macro_exists_once_its_tables_do() -> None:
    present = {"pit.income_quarterly", "pit.balance", "pit.indicators", "pit.industry"}
    assert [m.name for m in macros_for(present)] == [
        "income_asof", "income_quarterly_asof", "balance_asof", "indicators_asof",
        "industry_asof",
    ]  # fmt: skip
    everything = present | {"raw.stock_basic", "raw.namechange", "raw.daily", "raw.adj_factor"}
    assert {"universe_asof", "daily_hfq", "daily_qfq"} <= {m.name for m in macros_for(everything)}


def test_duckdb_macros_agree_with_the_reference(
    asof_cache: tuple[CacheLayout, Reference, dict[str, pl.DataFrame]],
) -> None:
    layout, ref, market = asof_cache
    with open_catalog(layout.duckdb_path) as con:
        assert check_statements(duckdb_query(con), ref, ref.codes()) > 100
        check_universe_and_prices(duckdb_query(con), market)


@pytest.mark.postgres
def test_postgres_functions_agree_with_the_reference(
    asof_cache: tuple[CacheLayout, Reference, dict[str, pl.DataFrame]], pg_url: str
) -> None:
    layout, ref, market = asof_cache
    docs = {d.column: d for d in column_dictionary()["pit.indicators"]}
    sink = PostgresSink(pg_url, layout)
    sink.migrate()
    tables = [("pit", n) for n in ("income_quarterly", "balance", "indicators", "industry")]
    tables += [("raw", n) for n in ("stock_basic", "namechange", "daily", "adj_factor")]
    sink.load(tables, full=True)

    with pgdb.connect(pg_url, autocommit=True) as conn, conn.cursor() as cur:

        def query(sql: str) -> list[Row]:
            cur.execute(sql)
            frame = pl.from_arrow(cur.fetch_arrow_table())
            assert isinstance(frame, pl.DataFrame)
            return frame.to_dicts()

        assert check_statements(query, ref, ref.codes()) > 100
        check_universe_and_prices(query, market)
        # the column dictionary as comments, and an index for one stock's history
        comment = query(
            "SELECT col_description('pit.indicators'::regclass, a.attnum) AS c "
            "FROM pg_attribute a WHERE a.attrelid = 'pit.indicators'::regclass "
            "AND a.attname = 'gpa'"
        )
        assert comment == [{"c": comment_text(docs["gpa"])}]
        indexes = query("SELECT indexdef FROM pg_indexes WHERE tablename = 'daily'")
        assert any("(ts_code, trade_date)" in r["indexdef"] for r in indexes), indexes
