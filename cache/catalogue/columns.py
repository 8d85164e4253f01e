"""The column dictionary: what every column of every cached table means.

Raw tables take their meanings from the Tushare API catalogue (`apis.json`: the
field's Chinese description, its unit when the description names one), so every API the
catalogue gains is described with no edit here. PIT and factor columns are described
below, in writing (DESIGN 6 and 7); a value column they copy from a statement takes the
statement field's description with what was done to it. `ah describe`, the COMMENT ON
text of the DuckDB catalogue and of PostgreSQL, and docs/columns.md all read
`describe_table`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import polars as pl

from cache.catalogue.apis import UnknownFieldError, api_spec
from cache.catalogue.datasets import (
    FETCHED_AT,
    SOURCE_VALUES,
    DatasetSpec,
    UnknownDatasetError,
    dataset,
    datasets,
)

DATE_UNIT = "DATE (not 'YYYYMMDD' text)"
_UNIT = re.compile(r"[（(]\s*(千元|万元|亿元|元|手|股|万股|%|倍|元/股)\s*[）)]")


@dataclass(frozen=True)
class ColumnDoc:
    """One column: name, stored type, meaning, unit, and where the meaning comes from."""

    column: str
    type: str
    meaning: str
    unit: str
    source: str


# Meanings shared by the PIT and factor tables, then per table.
_COMMON: dict[str, tuple[str, str]] = {
    "ts_code": ("stock code (Tushare form, e.g. 000001.SZ)", ""),
    "end_date": ("report period (quarter end) the row's values belong to", DATE_UNIT),
    "vis_date": (
        "visible date of the statement version: max(ann_date, f_ann_date); usable from "
        "the end of that day",
        DATE_UNIT,
    ),
    "knowledge_date": (
        "first day these values are known; as known at t = the row with the latest "
        "knowledge_date <= t (pit.*_asof(t) does it)",
        DATE_UNIT,
    ),
    "ann_date": ("announcement date", DATE_UNIT),
    "f_ann_date": ("actual (final) announcement date", DATE_UNIT),
    "update_flag": ("Tushare update flag: 1 = a revised version, 0 or null = original", ""),
    "comp_type": ("company type: 1 general, 2 bank, 3 insurance, 4 securities", ""),
    "report_type": ("report type (1 = consolidated; only 1 feeds P and G)", ""),
    "source": ("statement source: income, balancesheet, cashflow, express, forecast", ""),
    "in_date": ("first day of the Shenwan membership (null = always)", DATE_UNIT),
    "out_date": ("day the membership ended, exclusive (null = still a member)", DATE_UNIT),
    "month_end": ("month end the membership is taken at", DATE_UNIT),
    "calc_date": ("calc date: the score uses only what was known at the end of it", DATE_UNIT),
    FETCHED_AT: ("when alphahome fetched the row from the source (UTC)", "timestamp"),
    **{
        f"l{n}_{part}": (f"Shenwan (SW2021) level-{n} industry {part}", "")
        for n in (1, 2, 3)
        for part in ("code", "name")
    },
}
_TABLES: dict[str, dict[str, tuple[str, str]]] = {
    "pit.indicators": {
        "end_date": ("L(t): the latest income period known at knowledge_date", DATE_UNIT),
        "bs_end_date": ("Lb(t): the latest balance-sheet period known", DATE_UNIT),
        "vis_date": ("vis_date of the income version V_t(L)", DATE_UNIT),
        "revenue_ttm": ("trailing twelve months revenue at L", "元"),
        "oper_cost_ttm": ("trailing twelve months operating cost at L", "元"),
        "n_income_attr_p_ttm": ("TTM net income attributable to the parent at L", "元"),
        "total_assets": ("total assets of V_t(Lb)", "元"),
        "total_hldr_eqy_exc_min_int": ("equity excluding minority interests, V_t(Lb)", "元"),
        "gpa": ("gross profitability: (TTM revenue - TTM oper_cost) / TTM revenue", "%"),
        "roe": ("TTM n_income_attr_p / total_hldr_eqy_exc_min_int", "%"),
        "roa": ("TTM n_income_attr_p / total_assets", "%"),
        "revenue_q": ("single-quarter revenue q_t(L)", "元"),
        "revenue_q_ly": ("single-quarter revenue a year before, q_t(L-4), as known at t", "元"),
        "revenue_yoy": ("(revenue_q - revenue_q_ly) / revenue_q_ly, base > 0", "%"),
        "n_income_attr_p_q": ("single-quarter net income attributable to parent", "元"),
        "n_income_attr_p_q_ly": ("the same quarter a year before, as known at t", "元"),
        "profit_yoy": ("(q - q_ly) / |q_ly| of n_income_attr_p, base != 0", "%"),
        "ttm_vis_date": ("latest vis_date of the versions the TTM values read", DATE_UNIT),
        "yoy_vis_date": ("latest vis_date of the versions the YoY values read", DATE_UNIT),
        "bs_vis_date": ("vis_date of the balance-sheet version V_t(Lb)", DATE_UNIT),
        "ann_date": ("latest of ttm_vis_date, yoy_vis_date, bs_vis_date", DATE_UNIT),
    },
    "pit.balance": {
        "vis_date": ("vis_date of this version; in force until a later one", DATE_UNIT),
    },
    "factors.p": {
        "p_score": ("profitability score P, 0-100 (weighted s_gpa, s_roe, s_roa)", "score"),
        "p_rank": ("rank of p_score, 1 = best (ties share the smallest rank)", "rank"),
        "gpa": ("gross profitability at L(t), null for financials", "%"),
        "roe": ("TTM return on equity at L(t)", "%"),
        "roa": ("TTM return on assets at L(t)", "%"),
        "s_gpa": ("gpa sub-score: winsorised 1/99%, average rank scaled to 0-100", "score"),
        "s_roe": ("roe sub-score: winsorised 1/99%, average rank scaled to 0-100", "score"),
        "s_roa": ("roa sub-score: winsorised 1/99%, average rank scaled to 0-100", "score"),
        "is_financial": ("bank or non-bank financial (SW L1) at t; weights 0.5 roe/roa", ""),
        "industry_l1": ("SW L1 industry name at t (null if unknown)", ""),
        "end_date": ("L(t): the income period the row uses", DATE_UNIT),
        "ann_date": ("latest vis_date of the statement versions that fed the row", DATE_UNIT),
    },
    "factors.g": {
        "g_score": ("growth score G, 0-100: mean of the available rank_* values", "score"),
        "g_rank": ("rank of g_score, 1 = best (ties share the smallest rank)", "rank"),
        "em": ("earnings momentum: P_t - P a year before (±30 days)", "score points"),
        "es": ("earnings surprise: em / σ of the year-on-year P changes over 2 years", "σ"),
        "rm": ("revenue growth: single quarter q_t(L) vs q_t(L-4)", "%"),
        "pm": ("profit growth: n_income_attr_p q_t(L) vs |q_t(L-4)|", "%"),
        **{
            f"rank_{k}": (f"{k} percentile rank among non-null values, (0, 100]", "score")
            for k in ("em", "es", "rm", "pm")
        },
        "end_date": ("L(t): the income period the row uses", DATE_UNIT),
        "ann_date": (
            "latest vis_date of the statement versions that fed the row (with P_t's)",
            DATE_UNIT,
        ),
    },
}


def _type_name(dtype: pl.DataType) -> str:
    names = {pl.String: "text", pl.Date: "date", pl.Float64: "double", pl.Int64: "bigint"}
    for kind, name in names.items():
        if dtype == kind:
            return name
    if isinstance(dtype, pl.Datetime):
        return "timestamp with time zone" if dtype.time_zone else "timestamp"
    return "boolean" if dtype == pl.Boolean else str(dtype).lower()


def _unit_of(text: str, dtype: pl.DataType) -> str:
    if dtype == pl.Date:
        return DATE_UNIT
    found = _UNIT.search(text)
    return found.group(1) if found else ""


def _statement_field(column: str) -> tuple[str, str] | None:
    """The description of a statement value column and the API it comes from."""
    for source, values in SOURCE_VALUES.items():
        if column in values:
            try:
                return api_spec(source).field(column).desc, source
            except UnknownFieldError:
                continue
    return None


def _raw_doc(spec: DatasetSpec, column: str, dtype: pl.DataType) -> ColumnDoc:
    api = api_spec(spec.name)
    if column == FETCHED_AT:
        meaning, unit = _COMMON[FETCHED_AT]
        return ColumnDoc(column, _type_name(dtype), meaning, unit, "alphahome")
    if column in api.field_names:
        desc = api.field(column).desc or column
        return ColumnDoc(
            column, _type_name(dtype), desc, _unit_of(desc, dtype), f"Tushare {spec.name}"
        )
    params = {p.name: p.desc for p in api.params}
    desc = params.get(column) or column
    meaning = f"{desc} (the request parameter the row was fetched by)"
    return ColumnDoc(
        column, _type_name(dtype), meaning, _unit_of(desc, dtype), f"Tushare {spec.name} params"
    )


def _derived_doc(spec: DatasetSpec, column: str, dtype: pl.DataType) -> ColumnDoc:
    written = _TABLES.get(spec.qualified, {}).get(column) or _COMMON.get(column)
    if written is not None:
        return ColumnDoc(column, _type_name(dtype), written[0], written[1], "alphahome")
    base, _, kind = column.rpartition("_")
    if kind in ("q", "ttm") and (found := _statement_field(base)) is not None:
        what = "single quarter" if kind == "q" else "trailing twelve months"
        meaning = f"{found[0]}: {what} from year-to-date values, as known at knowledge_date"
        return ColumnDoc(column, _type_name(dtype), meaning, "元", f"alphahome from {found[1]}")
    found = _statement_field(column)
    if found is not None:
        ytd = "; year-to-date" if found[1] in ("income", "cashflow") else ""
        meaning = f"{found[0]} (as reported in this version{ytd})"
        unit = _unit_of(found[0], dtype) or "元"
        return ColumnDoc(column, _type_name(dtype), meaning, unit, f"Tushare {found[1]}")
    return ColumnDoc(column, _type_name(dtype), "", "", "")


def comment_text(doc: ColumnDoc) -> str:
    """A column's COMMENT ON text, the same in DuckDB and PostgreSQL."""
    unit = f" [{doc.unit}]" if doc.unit else ""
    return f"{doc.meaning}{unit} ({doc.source})"


def comments_of(table: str) -> dict[str, str]:
    """Column -> comment text of table `layer.name`; empty for a table the catalogue
    does not know."""
    return dict(_comments(table))


@functools.cache
def _comments(table: str) -> dict[str, str]:
    """`comments_of`, worked out once per table: the catalogue is fixed, and every
    refresh of the DuckDB catalogue asks for every dataset's comments."""
    layer, _, name = table.partition(".")
    try:
        spec = dataset(layer, name)
    except UnknownDatasetError:
        return {}
    return {doc.column: comment_text(doc) for doc in describe_table(spec)}


def describe_table(spec: DatasetSpec) -> list[ColumnDoc]:
    """Every stored column of a table with its meaning, in stored order."""
    make = _raw_doc if spec.layer == "raw" else _derived_doc
    return [make(spec, column, dtype) for column, dtype in spec.stored_schema().items()]


def column_dictionary() -> dict[str, list[ColumnDoc]]:
    """`layer.name` -> its columns, for every table of the catalogue."""
    return {spec.qualified: describe_table(spec) for spec in datasets()}


def render_table(name: str, docs: list[ColumnDoc]) -> str:
    """One table's columns as Markdown (the docs page and `ah describe`)."""
    lines = [
        f"### {name}",
        "",
        "| column | type | meaning | unit | source |",
        "|---|---|---|---|---|",
    ]
    for d in docs:
        meaning = d.meaning.replace("|", "\\|")
        lines.append(f"| `{d.column}` | {d.type} | {meaning} | {d.unit} | {d.source} |")
    return "\n".join(lines) + "\n"


def render_markdown() -> str:
    """docs/columns.md: every table and column (generated: `ah describe --markdown`)."""
    head = (
        "# Column dictionary\n\n"
        "Every table of the cache, the DuckDB catalogue and PostgreSQL, with what each\n"
        "column means. Generated by `ah describe --markdown > docs/columns.md`; a test\n"
        "keeps it current. Dates are DATE values (compare with `DATE '2024-01-02'`), not\n"
        "Tushare's 'YYYYMMDD' text. Raw meanings are the Tushare catalogue's.\n"
        "As known at t: `pit.income_asof(d)`, `pit.balance_asof(d)`, `pit.indicators_asof(d)`,\n"
        "`pit.industry_asof(d)`, `pit.universe_asof(d)`, `pit.income_quarterly_asof(d)`;\n"
        "prices: the view `pit.daily_hfq` and `pit.daily_qfq(d)`.\n"
    )
    tables = column_dictionary()
    return head + "".join(f"\n{render_table(n, docs)}" for n, docs in tables.items())


def render_text(name: str, docs: list[ColumnDoc]) -> str:
    """One table's columns as aligned text: column, type, unit, source, meaning."""
    rows = [("column", "type", "unit", "source", "meaning")]
    rows += [(d.column, d.type, d.unit, d.source, d.meaning) for d in docs]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [name]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        lines.append("  " + "  ".join([*cells, row[4]]).rstrip())
    return "\n".join(lines) + "\n"


def describe(table: str | None = None, markdown: bool = False) -> str:
    """`ah describe [TABLE]`: one table (`raw.daily`, `pit.indicators`, or a raw name
    alone) or every table, as text or Markdown; an unknown table is a usage error."""
    if table is None:
        if markdown:
            return render_markdown()
        tables = column_dictionary()
        return "\n".join(render_text(n, docs) for n, docs in tables.items())
    layer, _, name = table.rpartition(".")
    spec = dataset(layer or "raw", name)
    docs = describe_table(spec)
    return render_table(spec.qualified, docs) if markdown else render_text(spec.qualified, docs)
