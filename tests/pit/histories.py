"""Hypothesis strategies for raw statement and industry histories, and their frames.

A history is `{dataset: (column order, rows)}` with rows as plain dicts, the form the
reference reads; `frames(history)` gives the same data as typed Polars frames, the
form `pipeline.pit.maths` reads. Dates sit on a coarse grid so that announcements collide
(same-day versions, same-day ties) often.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
from hypothesis import strategies as st

from cache.catalogue.apis import api_spec

Row = dict[str, Any]
History = dict[str, tuple[list[str], list[Row]]]

CODES = ("000001.SZ", "600036.SH", "830799.BJ")
PERIODS = tuple(
    dt.date(y, m, d) for y in (2019, 2020, 2021) for m, d in ((3, 31), (6, 30), (9, 30), (12, 31))
)
FETCHES = tuple(dt.datetime(2024, 1, d, tzinfo=dt.UTC) for d in (1, 2, 3))
FETCHED_TYPE = pl.Datetime("us", "UTC")

# The columns each dataset carries in these histories (a subset, in API order).
USED: dict[str, tuple[str, ...]] = {
    "income": (
        "ts_code",
        "ann_date",
        "f_ann_date",
        "end_date",
        "report_type",
        "comp_type",
        "basic_eps",
        "revenue",
        "oper_cost",
        "operate_profit",
        "n_income",
        "n_income_attr_p",
        "update_flag",
    ),
    "balancesheet": (
        "ts_code",
        "ann_date",
        "f_ann_date",
        "end_date",
        "report_type",
        "comp_type",
        "total_share",
        "total_assets",
        "total_liab",
        "total_hldr_eqy_exc_min_int",
        "update_flag",
    ),
    "cashflow": (
        "ts_code",
        "ann_date",
        "f_ann_date",
        "end_date",
        "comp_type",
        "report_type",
        "n_cashflow_act",
        "update_flag",
    ),
    "express": ("ts_code", "ann_date", "end_date", "revenue", "n_income", "total_assets"),
    "forecast": ("ts_code", "ann_date", "end_date", "type", "net_profit_min", "net_profit_max"),
    "index_member_all": (
        "l1_code",
        "l1_name",
        "l2_code",
        "l2_name",
        "l3_code",
        "l3_name",
        "ts_code",
        "in_date",
        "out_date",
        "is_new",
    ),
}
INDUSTRIES = (
    ("801780.SI", "银行", "801783.SI", "股份制银行", "857831.SI", "股份制银行Ⅲ"),
    ("801790.SI", "非银金融", "801193.SI", "证券", "851931.SI", "证券Ⅲ"),
    ("801080.SI", "电子", "801081.SI", "半导体", "850811.SI", "集成电路设计"),
    ("801080.SI", "电子", "801083.SI", "元件", "850831.SI", "印制电路板"),
)


def _sometimes_null(values: st.SearchStrategy[int]) -> st.SearchStrategy[float | None]:
    """Thousands of yuan, null one time in twenty."""
    return st.tuples(st.integers(0, 19), values).map(lambda t: None if t[0] == 0 else t[1] * 1e3)


amounts = _sometimes_null(st.integers(-50, 400))
# mostly positive, zero one time in twelve (denominators at exactly zero)
positive = _sometimes_null(st.integers(-5, 900).map(lambda v: 0 if v >= 820 else v))
day_offsets = st.integers(1, 30).map(lambda k: 10 * k)
late_offsets = st.integers(1, 100).map(lambda k: 10 * k)


def columns_of(name: str) -> list[str]:
    """The dataset's column order in these histories: API order, then `_fetched_at`."""
    api = api_spec(name).field_names
    return [c for c in api if c in USED[name]] + ["_fetched_at"]


@st.composite
def announcement(draw: st.DrawFn, period: dt.date, late: bool) -> dict[str, Any]:
    """ann_date / f_ann_date / update_flag / _fetched_at of one raw row.

    `late` rows (restatements) may come years after the period, after later periods.
    """
    ann = period + dt.timedelta(days=draw(late_offsets if late else day_offsets))
    f_ann = ann + dt.timedelta(days=draw(st.sampled_from((-20, -10, 0, 0, 10, 30))))
    nulls = draw(st.sampled_from(("none",) * 12 + ("ann", "f_ann", "both")))
    return {
        "ann_date": None if nulls in ("ann", "both") else ann,
        "f_ann_date": None if nulls in ("f_ann", "both") else f_ann,
        "update_flag": draw(st.sampled_from(("0", "0", "1", None))),
        "report_type": "1",
        "_fetched_at": draw(st.sampled_from(FETCHES)),
    }


@st.composite
def statement_rows(draw: st.DrawFn, name: str, code: str, comp_type: str | None) -> list[Row]:
    """Raw rows of one stock: most periods once, some restated or missing, some noise."""
    rows: list[Row] = []
    bank = comp_type == "2"
    for period in PERIODS:
        copies = draw(st.sampled_from((0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3)))
        noise = draw(st.sampled_from(("", "", "", "", "", "", "", "2", "null", "day")))
        for i in range(copies + (noise != "")):
            row: Row = {"ts_code": code, "end_date": period, "comp_type": comp_type}
            row |= draw(announcement(period, late=i > 0)) | _values(draw, name, bank)
            if i > 0 and draw(st.integers(0, 3)) == 0:  # a same-day restatement
                row |= {"ann_date": rows[-1]["ann_date"], "f_ann_date": rows[-1]["f_ann_date"]}
            if i == copies:  # the noise row: never used
                if noise == "day":
                    row["end_date"] = period - dt.timedelta(days=1)
                else:
                    row["report_type"] = None if noise == "null" else noise
            rows.append(row)
    for _ in range(draw(st.integers(0, 3))):
        if rows:
            duplicate = dict(draw(st.sampled_from(rows)))
            if draw(st.booleans()):
                duplicate["_fetched_at"] = draw(st.sampled_from(FETCHES))
            rows.append(duplicate)
    return rows


def _values(draw: st.DrawFn, name: str, bank: bool) -> Row:
    if name == "income":
        return {
            "basic_eps": draw(st.sampled_from((None, 0.1, 0.2))),
            "revenue": draw(positive),
            "oper_cost": None if bank else draw(amounts),
            "operate_profit": draw(amounts),
            "n_income": draw(amounts),
            "n_income_attr_p": draw(amounts),
        }
    if name == "balancesheet":
        return {
            "total_share": draw(st.sampled_from((None, 1.0, 2.0))),
            "total_assets": draw(positive),
            "total_liab": draw(amounts),
            "total_hldr_eqy_exc_min_int": draw(amounts),
        }
    return {"n_cashflow_act": draw(amounts)}


@st.composite
def headline_rows(draw: st.DrawFn, name: str, code: str) -> list[Row]:
    """A few express or forecast rows of one stock."""
    rows = []
    for _ in range(draw(st.integers(0, 3))):
        period = draw(st.sampled_from(PERIODS))
        row: Row = {
            "ts_code": code,
            "end_date": period,
            "ann_date": draw(st.one_of(st.none(), st.just(period + dt.timedelta(days=20)))),
            "_fetched_at": draw(st.sampled_from(FETCHES)),
        }
        if name == "express":
            row |= {
                "revenue": draw(amounts),
                "n_income": draw(amounts),
                "total_assets": draw(positive),
            }
        else:
            row |= {
                "type": draw(st.sampled_from(("预增", "预减"))),
                "net_profit_min": draw(amounts),
                "net_profit_max": draw(amounts),
            }
        rows.append(row)
    return rows


@st.composite
def membership_rows(draw: st.DrawFn, code: str) -> list[Row]:
    """0-3 Shenwan memberships of one stock, possibly overlapping, with duplicates."""
    rows = []
    for _ in range(draw(st.integers(0, 3))):
        industry = draw(st.sampled_from(INDUSTRIES))
        start = draw(st.one_of(st.none(), st.sampled_from(PERIODS)))
        end = None
        if draw(st.booleans()):
            base = start or PERIODS[0]
            end = base + dt.timedelta(days=draw(st.sampled_from((1, 90, 181, 400))))
        row = dict(zip(USED["index_member_all"][:6], industry, strict=True))
        row |= {"ts_code": code, "in_date": start, "out_date": end}
        row |= {"is_new": "Y" if end is None else "N", "_fetched_at": FETCHES[0]}
        rows.append(row)
    if rows and draw(st.booleans()):
        rows.append(dict(rows[0]))
    return rows


STATEMENTS = ("income", "balancesheet", "cashflow", "express", "forecast")


@st.composite
def histories(
    draw: st.DrawFn,
    max_codes: int = 2,
    sources: tuple[str, ...] = STATEMENTS,
    industry: bool = True,
) -> History:
    """Raw histories of 1..max_codes stocks: the statement `sources`, memberships if `industry`."""
    codes = draw(st.lists(st.sampled_from(CODES), min_size=1, max_size=max_codes, unique=True))
    data: dict[str, list[Row]] = {name: [] for name in USED}
    for code in codes:
        comp_type = draw(st.sampled_from(("1", "1", "2", None)))
        for name in sources:
            if name in ("express", "forecast"):
                data[name] += draw(headline_rows(name, code))
            else:
                data[name] += draw(statement_rows(name, code, comp_type))
        if industry:
            data["index_member_all"] += draw(membership_rows(code))
    order = draw(st.randoms(use_true_random=False))
    for rows in data.values():
        order.shuffle(rows)
    return {name: (columns_of(name), rows) for name, rows in data.items()}


@st.composite
def tied_rows(draw: st.DrawFn) -> History:
    """Income rows of one version key (same vis_date, flag, fetch) differing elsewhere."""
    period = PERIODS[4]
    shared = {
        "ts_code": CODES[0],
        "end_date": period,
        "report_type": "1",
        "comp_type": "1",
        "update_flag": "1",
        "_fetched_at": FETCHES[0],
    }
    dates = st.sampled_from((None, period + dt.timedelta(days=30)))
    rows = []
    for _ in range(draw(st.integers(1, 4))):
        ann, f_ann = draw(dates), draw(dates)
        if ann is None and f_ann is None:
            ann = period + dt.timedelta(days=30)
        row = shared | {"ann_date": ann, "f_ann_date": f_ann}
        row |= {c: draw(st.sampled_from((None, 1.0, 2.0))) for c in USED["income"] if c not in row}
        rows.append(row)
    return {"income": (columns_of("income"), rows)}


def frame(name: str, columns: list[str], rows: list[Row]) -> pl.DataFrame:
    """Rows as a frame with the documented types, in the given column order."""
    schema = api_spec(name).polars_schema([c for c in columns if c != "_fetched_at"])
    schema["_fetched_at"] = FETCHED_TYPE
    ordered = {c: schema[c] for c in columns}
    return pl.DataFrame(
        {c: [r.get(c) for r in rows] for c in columns}, schema=ordered, orient="col"
    )


def frames(history: History) -> dict[str, pl.DataFrame]:
    """Every dataset of a history as a typed frame."""
    return {name: frame(name, columns, rows) for name, (columns, rows) in history.items()}
