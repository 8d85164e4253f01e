"""Point-in-time financial tables (DESIGN section 6): pure maths, frames in, frames out.

Every table here answers "what was known on day t": a statement version counts from
its vis_date = max(ann_date, f_ann_date) on. The build step (`pipeline.pit.step`)
reads raw Parquet per stock bucket and calls these functions; nothing here does I/O.

Periods are handled as an integer quarter index (year * 4 + quarter - 1), so "p - 1"
is the previous quarter end and "p - 4" the same quarter a year earlier. Every as-of
lookup goes through `factors.asof.as_of` (explicitly sorted, non-null keys only).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import polars as pl

# The PIT table schemas live in the dataset catalogue (one home), imported from there.
from cache.catalogue.datasets import (
    BALANCE_SCHEMA,
    INCOME_FLOWS,
    INCOME_QUARTERLY_SCHEMA,
    INDICATOR_SCHEMA,
    INDUSTRY_COLUMNS,
    INDUSTRY_MONTHLY_SCHEMA,
    SOURCE_VALUES,
    VALUE_COLUMNS,
    VERSION_SCHEMA,
)
from factors.asof import as_of
from foundation.errors import InternalError

SOURCES: tuple[str, ...] = ("income", "balancesheet", "cashflow", "express", "forecast")
FORMAL_SOURCES: frozenset[str] = frozenset({"income", "balancesheet", "cashflow"})

_QI = "_qi"  # integer quarter index of end_date
_NO_PERIOD = -1  # a quarter index no statement has: stands in for "no period" in lookups
_TTM_TERMS = 4  # quarters in a trailing twelve months
_YEAR_AGO = 4  # quarters back to the same quarter of the previous year


def quarter_index(column: str) -> pl.Expr:
    """The quarter index (year * 4 + quarter - 1) of a quarter-end date column."""
    date = pl.col(column)
    return date.dt.year().cast(pl.Int32) * 4 + date.dt.month().cast(pl.Int32) // 3 - 1


def quarter_end(index: pl.Expr) -> pl.Expr:
    """The quarter-end date of a quarter index (inverse of `quarter_index`)."""
    return pl.date(index // 4, (index % 4 + 1) * 3, 1).dt.month_end()


def is_quarter_end(column: str) -> pl.Expr:
    """True where the date column is 31 Mar, 30 Jun, 30 Sep or 31 Dec."""
    date = pl.col(column)
    return (date.dt.month() % 3 == 0) & (date == date.dt.month_end())


def _typed_empty(schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=dict(schema))


VERSION_FIELDS: tuple[str, ...] = (
    "ts_code",
    "end_date",
    "ann_date",
    "f_ann_date",
    "report_type",
    "comp_type",
    "update_flag",
    "_fetched_at",
)
_VERSION_KEY = ["ts_code", "end_date", "vis_date", "_flag"]
# The order of pit.statement_versions (a key: no two rows share it).
VERSION_ORDER: tuple[str, ...] = ("ts_code", "end_date", "vis_date", "source", "update_flag")


def version_columns(source: str, columns: Sequence[str]) -> list[str]:
    """The columns of a raw statement dataset (of `columns`, in their order) that its
    versions are made of. The others matter only to break a tie (`tied_stocks`), so a
    reader may read just these for every stock without a tie."""
    wanted = {*VERSION_FIELDS, *SOURCE_VALUES[source]}
    return [c for c in columns if c in wanted]


def _latest_rows(raw: pl.DataFrame, source: str) -> pl.DataFrame:
    """The usable rows of one statement dataset, with vis_date and _flag, of the latest
    fetch of each version key (ties not resolved yet)."""
    optional = {"f_ann_date": pl.Date(), "report_type": pl.String(), "comp_type": pl.String()}
    optional |= {"update_flag": pl.String(), "_fetched_at": VERSION_SCHEMA["_fetched_at"]}
    optional |= {c: pl.Float64() for c in SOURCE_VALUES[source]}
    rows = raw.with_columns(
        pl.lit(None, dtype=t).alias(c) for c, t in optional.items() if c not in raw.columns
    )
    usable = pl.col("ts_code").is_not_null() & is_quarter_end("end_date")
    if source in FORMAL_SOURCES:
        usable &= pl.col("report_type").eq_missing(pl.lit("1"))
    rows = rows.filter(usable).with_columns(
        vis_date=pl.max_horizontal("ann_date", "f_ann_date"),
        _flag=pl.col("update_flag").fill_null("0"),
    )
    rows = rows.filter(pl.col("vis_date").is_not_null())
    latest_fetch = pl.col("_fetched_at").max().over(_VERSION_KEY)
    return rows.filter(pl.col("_fetched_at").eq_missing(latest_fetch))


def tied_stocks(raw: pl.DataFrame, source: str) -> list[str]:
    """The stocks (sorted) with two or more rows of one version of `source` fetched at the
    same time: only their versions depend on the columns `version_columns` leaves out
    (the tie rule sorts by every column), so `raw` may hold just those columns."""
    rows = _latest_rows(raw, source)
    tied = rows.filter(pl.len().over(_VERSION_KEY) > 1)
    return sorted(tied.get_column("ts_code").unique().to_list())


def _source_versions(raw: pl.DataFrame, source: str) -> pl.DataFrame:
    """The distinct versions of one statement dataset, ties resolved by the DESIGN 6 rules."""
    dataset_order = list(raw.columns)
    rows = _latest_rows(raw, source)
    tied = pl.len().over(_VERSION_KEY) > 1
    # Remaining ties: the row sorting last by all its columns, dataset order, nulls first.
    tie_winners = (
        rows.filter(tied)
        .sort(dataset_order, nulls_last=False)
        .unique(subset=_VERSION_KEY, keep="last", maintain_order=True)
    )
    winners = pl.concat([rows.filter(~tied), tie_winners])
    return winners.with_columns(
        source=pl.lit(source), update_flag=pl.col("_flag"), **_missing_values(source)
    ).select(list(VERSION_SCHEMA))


def _missing_values(source: str) -> dict[str, pl.Expr]:
    return {
        c: pl.lit(None, dtype=pl.Float64) for c in VALUE_COLUMNS if c not in SOURCE_VALUES[source]
    }


def statement_versions(raw: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """pit.statement_versions: one row per (ts_code, end_date, vis_date, source, update_flag).

    `raw` maps dataset names (`SOURCES`) to raw frames with the dataset's columns in
    its column order (which breaks ties); absent datasets count as empty. Formal
    statements keep report_type '1' only; rows whose end_date is not a quarter end or
    with neither ann_date nor f_ann_date are never visible and are dropped.
    """
    frames = [_source_versions(raw[s], s) for s in SOURCES if s in raw]
    if not frames:
        return _typed_empty(VERSION_SCHEMA)
    return pl.concat(frames).sort(VERSION_ORDER)


def balance(versions: pl.DataFrame) -> pl.DataFrame:
    """pit.balance: the balance-sheet version that is V_t(end_date) from each vis_date on.

    Of the versions sharing (ts_code, end_date, vis_date) only the greatest
    update_flag is ever V_t, so only it is listed.
    """
    return _visible(versions, "balancesheet").select(list(BALANCE_SCHEMA))


def _visible(versions: pl.DataFrame, source: str) -> pl.DataFrame:
    """Versions of one source that become V_t: the greatest update_flag per vis_date."""
    key = ["ts_code", "end_date", "vis_date"]
    return (
        versions.filter(pl.col("source") == source)
        .sort([*key, "update_flag"])
        .unique(subset=key, keep="last", maintain_order=True)
    )


def _first_visible(frame: pl.DataFrame, date: str) -> pl.DataFrame:
    """Per (ts_code, quarter) the first date a version of it is visible."""
    return frame.group_by("ts_code", _QI).agg(pl.col(date).min().alias("_first"))


def _period_grid(
    steps: pl.DataFrame, date: str, shifts: range, first: pl.DataFrame
) -> pl.DataFrame:
    """(ts_code, quarter p, knowledge_date) where a value of p can change.

    A value of p that reads periods p - k for k in `shifts` can change on the dates
    of those periods' rows; before p itself is first visible it does not exist.
    """
    dates = pl.concat(
        steps.select("ts_code", (pl.col(_QI) + k).alias(_QI), pl.col(date).alias("knowledge_date"))
        for k in shifts
    ).unique()
    return (
        dates.join(first, on=["ts_code", _QI])
        .filter(pl.col("knowledge_date") >= pl.col("_first"))
        .drop("_first")
    )


def _lookup(
    grid: pl.DataFrame, steps: pl.DataFrame, *, back: int, date: str, rename: Mapping[str, str]
) -> pl.DataFrame:
    """Attach to each grid row the `steps` row of quarter (p - back) as known at its date."""
    key = f"_qi_{back}"
    since = f"_since_{back}"
    right = steps.select(
        "ts_code",
        pl.col(_QI).alias(key),
        pl.col(date).alias(since),
        *(pl.col(src).alias(dst) for src, dst in rename.items()),
    )
    left = grid.with_columns((pl.col(_QI) - back).alias(key))
    joined = as_of(left, right, by=["ts_code", key], left_on="knowledge_date", right_on=since)
    return joined.drop(key, since)


def _collapse(frame: pl.DataFrame, group: list[str], date: str) -> pl.DataFrame:
    """Drop rows equal (null-safe) to the previous row of their group, dates aside."""
    values = [c for c in frame.columns if c not in (*group, date)]

    def differs(columns: list[str]) -> pl.Expr:
        return pl.any_horizontal(pl.col(c).ne_missing(pl.col(c).shift(1)) for c in columns)

    first = differs(group) | (pl.int_range(pl.len()) == 0)
    return frame.sort([*group, date]).filter(first | differs(values))


def income_quarterly(versions: pl.DataFrame) -> pl.DataFrame:
    """pit.income_quarterly: single-quarter and TTM flows of every period as known over time.

    One row per (ts_code, end_date, knowledge_date) on which the period's values, the
    vis_date or comp_type of V_t(end_date) change, from the period's first visible
    version on. q_t(p) = ytd(V_t(p)) for Q1, else ytd(V_t(p)) - ytd(V_t(p-1)), null
    when either is missing; TTM_t(p) = q_t(p) + q_t(p-1) + q_t(p-2) + q_t(p-3).
    """
    income = _visible(versions, "income").with_columns(quarter_index("end_date").alias(_QI))
    first = _first_visible(income, "vis_date")
    ytd = income.select("ts_code", _QI, "vis_date", "comp_type", *INCOME_FLOWS)
    grid = _period_grid(ytd, "vis_date", range(2), first)
    quarters = _lookup(
        grid,
        ytd,
        back=0,
        date="vis_date",
        rename={"vis_date": "vis_date", "comp_type": "comp_type", **{c: c for c in INCOME_FLOWS}},
    )
    quarters = _lookup(
        quarters, ytd, back=1, date="vis_date", rename={c: f"{c}_prev" for c in INCOME_FLOWS}
    )
    is_q1 = pl.col(_QI) % 4 == 0
    quarters = quarters.select(
        "ts_code",
        _QI,
        "knowledge_date",
        "vis_date",
        "comp_type",
        *(
            pl.when(is_q1)
            .then(pl.col(c))
            .otherwise(pl.col(c) - pl.col(f"{c}_prev"))
            .alias(f"{c}_q")
            for c in INCOME_FLOWS
        ),
    )
    single = [f"{c}_q" for c in INCOME_FLOWS]
    table = _period_grid(quarters, "knowledge_date", range(_TTM_TERMS), first)
    for back in range(_TTM_TERMS):
        rename = {c: f"{c}_{back}" for c in single}
        if back == 0:
            rename |= {"vis_date": "vis_date", "comp_type": "comp_type"}
        table = _lookup(table, quarters, back=back, date="knowledge_date", rename=rename)
    table = table.select(
        "ts_code",
        quarter_end(pl.col(_QI)).alias("end_date"),
        "knowledge_date",
        "vis_date",
        "comp_type",
        *(pl.col(f"{c}_0").alias(c) for c in single),
        *(_ttm_sum(c).alias(f"{c}_ttm") for c in INCOME_FLOWS),
    )
    return _collapse(table, ["ts_code", "end_date"], "knowledge_date").select(
        list(INCOME_QUARTERLY_SCHEMA)
    )


def _ttm_sum(flow: str) -> pl.Expr:
    """q(p) + q(p-1) + q(p-2) + q(p-3), left to right, null if any term is null."""
    total = pl.col(f"{flow}_q_0")
    for back in range(1, _TTM_TERMS):
        total = total + pl.col(f"{flow}_q_{back}")
    return total


def _latest_period_steps(first: pl.DataFrame, name: str) -> pl.DataFrame:
    """(ts_code, since, latest period visible from `since` on), a step table for as_of."""
    return (
        first.sort("ts_code", "_first", _QI)
        .with_columns(pl.col(_QI).cum_max().over("ts_code").alias(name))
        .group_by("ts_code", "_first")
        .agg(pl.col(name).max())
    )


def indicators(income_q: pl.DataFrame, balance_table: pl.DataFrame) -> pl.DataFrame:
    """pit.indicators: P and G inputs per stock at every knowledge date where one changes.

    Built from pit.income_quarterly and pit.balance (both as produced here). Rows start
    at the stock's first visible income version (before it L(t) does not exist); the
    knowledge dates are the vis_dates of the stock's income and balance-sheet versions,
    and runs of identical rows are collapsed into their first.

    Lineage columns, each the latest vis_date of the versions a group of values reads:
    ttm_vis_date for the TTMs at L (`_ttm_lineage`), yoy_vis_date for q(L) and q(L-4)
    (`_yoy_lineage`), bs_vis_date for the balance sheet V_t(Lb); ann_date is the latest
    of the three, and vis_date that of V_t(L). The factor step picks among them per row.
    """
    quarterly = income_q.with_columns(quarter_index("end_date").alias(_QI))
    sheets = balance_table.with_columns(quarter_index("end_date").alias(_QI))
    first_income = _first_visible(quarterly, "knowledge_date")
    latest = _latest_period_steps(first_income, "_l")
    latest_bs = _latest_period_steps(_first_visible(sheets, "vis_date"), "_lb")
    start = first_income.group_by("ts_code").agg(pl.col("_first").min().alias("_start"))
    dates = (
        pl.concat(
            [
                quarterly.select("ts_code", "knowledge_date"),
                sheets.select("ts_code", pl.col("vis_date").alias("knowledge_date")),
            ]
        )
        .unique()
        .join(start, on="ts_code")
        .filter(pl.col("knowledge_date") >= pl.col("_start"))
        .drop("_start")
    )
    grid = as_of(dates, latest, by="ts_code", left_on="knowledge_date", right_on="_first")
    grid = as_of(
        grid.drop("_first"), latest_bs, by="ts_code", left_on="knowledge_date", right_on="_first"
    )
    grid = grid.drop("_first").with_columns(pl.col("_l").alias(_QI))

    wanted = {
        0: {
            "comp_type": "comp_type",
            "revenue_ttm": "revenue_ttm",
            "oper_cost_ttm": "oper_cost_ttm",
            "n_income_attr_p_ttm": "n_income_attr_p_ttm",
            "revenue_q": "revenue_q",
            "n_income_attr_p_q": "n_income_attr_p_q",
        },
        _YEAR_AGO: {"revenue_q": "revenue_q_ly", "n_income_attr_p_q": "n_income_attr_p_q_ly"},
    }
    for back in range(_YEAR_AGO + 2):  # L-5 .. L: every version the TTM, q(L) and q(L-4) read
        rename = wanted.get(back, {}) | {"vis_date": f"_vis_{back}"}
        grid = _lookup(grid, quarterly, back=back, date="knowledge_date", rename=rename)

    grid = grid.with_columns(pl.col("_lb").fill_null(_NO_PERIOD).alias(_QI))
    grid = _lookup(
        grid,
        sheets,
        back=0,
        date="vis_date",
        rename={
            "vis_date": "_vis_bs",
            "total_assets": "total_assets",
            "total_hldr_eqy_exc_min_int": "total_hldr_eqy_exc_min_int",
        },
    )
    table = grid.with_columns(
        end_date=quarter_end(pl.col("_l")),
        vis_date=pl.col("_vis_0"),
        bs_end_date=quarter_end(pl.col("_lb")),
        ttm_vis_date=_ttm_lineage(),
        yoy_vis_date=_yoy_lineage(),
        bs_vis_date=pl.col("_vis_bs"),
        **_ratios(),
    )
    table = table.with_columns(
        ann_date=pl.max_horizontal("ttm_vis_date", "yoy_vis_date", "bs_vis_date")
    ).select(list(INDICATOR_SCHEMA))
    return _collapse(table, ["ts_code"], "knowledge_date")


def _ttm_lineage() -> pl.Expr:
    """The latest vis_date of the income versions the TTMs at L read.

    TTM(L) sums q(L) .. q(L-3); q(p) reads V_t(p), and V_t(p-1) unless p is a Q1. So
    V_t(L-3) .. V_t(L) always, and V_t(L-4) unless L-3 is a Q1 (L is a Q4). Missing
    versions are skipped (every TTM is then null). Reads the `_vis_<back>` columns.
    """
    reads_l4 = pl.when(pl.col("_l") % 4 != 3).then(pl.col(f"_vis_{_TTM_TERMS}"))
    return pl.max_horizontal(*(pl.col(f"_vis_{back}") for back in range(_TTM_TERMS)), reads_l4)


def _yoy_lineage() -> pl.Expr:
    """The latest vis_date of the income versions q(L) and q(L-4) read.

    V_t(L) and V_t(L-4), plus V_t(L-1) and V_t(L-5) unless L (and so L-4) is a Q1.
    Missing versions are skipped (the growth rates are then null).
    """
    not_q1 = pl.col("_l") % 4 != 0
    return pl.max_horizontal(
        pl.col("_vis_0"),
        pl.when(not_q1).then(pl.col("_vis_1")),
        pl.col(f"_vis_{_YEAR_AGO}"),
        pl.when(not_q1).then(pl.col(f"_vis_{_YEAR_AGO + 1}")),
    )


def _ratios() -> dict[str, pl.Expr]:
    """gpa, roe, roa and YoY growth, null where a term is null or the base is not usable."""
    revenue = pl.col("revenue_ttm")
    profit = pl.col("n_income_attr_p_ttm")
    equity = pl.col("total_hldr_eqy_exc_min_int")
    assets = pl.col("total_assets")
    rev_q, rev_ly = pl.col("revenue_q"), pl.col("revenue_q_ly")
    np_q, np_ly = pl.col("n_income_attr_p_q"), pl.col("n_income_attr_p_q_ly")
    return {
        "gpa": pl.when(revenue > 0).then((revenue - pl.col("oper_cost_ttm")) / revenue * 100),
        "roe": pl.when(equity > 0).then(profit / equity * 100),
        "roa": pl.when(assets > 0).then(profit / assets * 100),
        "revenue_yoy": pl.when(rev_ly > 0).then((rev_q - rev_ly) / rev_ly * 100),
        "profit_yoy": pl.when(np_ly != 0).then((np_q - np_ly) / np_ly.abs() * 100),
    }


def industry(members: pl.DataFrame) -> pl.DataFrame:
    """pit.industry: Shenwan membership intervals, exact duplicates removed.

    `members` is raw index_member_all (is_new Y and N rows alike).
    """
    return (
        members.select(list(INDUSTRY_COLUMNS))
        .filter(pl.col("ts_code").is_not_null())
        .unique()
        .sort(["ts_code", "in_date", "out_date", *INDUSTRY_COLUMNS[1:7]], nulls_last=False)
    )


def _memberships(pairs: pl.DataFrame, industry_table: pl.DataFrame, date: str) -> pl.DataFrame:
    """(_pair, membership columns) for the pairs that have a membership at their date."""
    t = pl.col(date)
    member = (pl.col("in_date").is_null() | (pl.col("in_date") <= t)) & (
        pl.col("out_date").is_null() | (t < pl.col("out_date"))
    )
    order = ["_pair", "in_date", *INDUSTRY_COLUMNS[1:7], "out_date"]
    return (
        pairs.select("_pair", "ts_code", date)
        .join(industry_table.select(list(INDUSTRY_COLUMNS)), on="ts_code")
        .filter(member)
        .sort(order, nulls_last=False)
        .unique(subset="_pair", keep="last", maintain_order=True)
    )


def industry_at(
    pairs: pl.DataFrame, industry_table: pl.DataFrame, *, date: str = "date"
) -> pl.DataFrame:
    """The Shenwan membership of each (ts_code, date) pair, in the order of `pairs`.

    Member at t when (in_date null or in_date <= t) and (out_date null or t < out_date);
    of several, the latest in_date wins (null = earliest), then the row sorting last by
    (l1_code, l1_name, l2_code, l2_name, l3_code, l3_name, out_date), nulls first.
    Pairs without a membership get nulls.
    """
    _require_keys(pairs, ["ts_code", date])
    indexed = pairs.with_row_index("_pair")
    found = _memberships(indexed, industry_table, date).drop("ts_code", date)
    return indexed.join(found, on="_pair", how="left").sort("_pair").drop("_pair")


def industry_monthly(industry_table: pl.DataFrame, through: dt.date) -> pl.DataFrame:
    """pit.industry_monthly: each stock's membership at every calendar month end.

    Months run from the month of the earliest in_date or out_date to the month of
    `through` (the build passes the date the membership data is known up to).
    """
    bounds = pl.concat([industry_table["in_date"], industry_table["out_date"]]).drop_nulls()
    if bounds.is_empty():
        return _typed_empty(INDUSTRY_MONTHLY_SCHEMA)
    earliest = bounds.min()
    assert isinstance(earliest, dt.date)  # in_date and out_date are DATE columns
    first = min(earliest, through).replace(day=1)
    month_ends = pl.date_range(first, through, interval="1mo", eager=True).dt.month_end()
    pairs = (
        industry_table.select("ts_code")
        .unique()
        .join(pl.DataFrame({"month_end": month_ends}), how="cross")
        .with_row_index("_pair")
    )
    return (
        _memberships(pairs, industry_table, "month_end")
        .select(list(INDUSTRY_MONTHLY_SCHEMA))
        .sort("ts_code", "month_end")
    )


def _require_keys(pairs: pl.DataFrame, keys: Sequence[str]) -> None:
    """As-of joins on null keys give wrong matches: refuse them with the count."""
    for key in keys:
        if key not in pairs.columns:
            msg = f"pairs have no column {key!r}; columns are {pairs.columns}"
            raise InternalError(msg)
        nulls = pairs[key].null_count()
        if nulls:
            msg = f"pairs have {nulls} null value(s) in key column {key!r}; drop them first"
            raise InternalError(msg)


def read_as_of(
    pairs: pl.DataFrame,
    table: pl.DataFrame,
    *,
    date: str = "date",
    valid_from: str = "knowledge_date",
) -> pl.DataFrame:
    """The rows of a PIT table as known on each date of `pairs`, in the order of `pairs`.

    `pairs` holds the date column plus the table's keys (e.g. ts_code for
    pit.indicators; ts_code and end_date for pit.income_quarterly, or pit.balance with
    `valid_from="vis_date"`). Each pair gets the table row with the greatest
    `valid_from` <= date for its keys (nulls when none), and keeps its own columns.
    """
    keys = [c for c in pairs.columns if c != date]
    _require_keys(pairs, [*keys, date])
    indexed = pairs.with_row_index("_pair")
    joined = as_of(indexed, table, by=keys, left_on=date, right_on=valid_from)
    return joined.sort("_pair").drop("_pair")
