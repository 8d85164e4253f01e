"""The dataset catalogue: one spec per table of the cache (DESIGN sections 4, 6, 7, 8).

Every raw, PIT and factor table has exactly one `DatasetSpec` here: its columns and
types, natural key, storage kind, partitioning, date column and sort order. The sync
(`pipeline.sync.tasks`), the store (`cache.store`), the PIT maths, the sinks and
`ah verify` read these facts from here and never restate them.

- raw: the columns are the API's documented fields (`cache.catalogue.apis`), plus any
  request parameter stored as a column because the API does not return it (the
  `type` fina_mainbz is asked by); the key is the API's documented primary key
  (limited to returned fields), plus the columns that tell history rows apart where
  the documented key cannot (index_member_all's in_date), plus those request columns.
  The APIs beyond the default 26 take key, date column and partitions from their
  coverage (`cache.catalogue.coverage`, where the uncertain choices are written down).
- pit: the PIT table schemas (DESIGN 6); the stock tables are files of hash buckets of
  ts_code, the industry tables one file each.
- factors: the output contract of `factors.schema`; one file per year of calc dates.

`scope` is the column whose values a load replaces whole (the rows of a stock, of a
calc date); None for raw datasets, which never delete. A factor file holds its calc
dates wholly; a PIT stock table's stock may span files (its bucket file and any number
of delta files, `scope_spans_files`), so its rows are the union of every file's.
`nullable_key` lists the key columns that may be null (a null is a value of its own).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

import polars as pl

from cache.catalogue.apis import api_spec
from cache.catalogue.coverage import Coverage, covered
from cache.layout import LAYERS, Layer
from factors.industry import INDUSTRY_COLUMNS as MEMBERSHIP_COLUMNS
from factors.schema import G_SCHEMA, P_SCHEMA
from foundation.config import did_you_mean
from foundation.errors import UsageError

__all__ = [
    "BALANCE_LEVELS",
    "BALANCE_SCHEMA",
    "FETCHED_AT",
    "FETCHED_AT_TYPE",
    "INCOME_FLOWS",
    "INCOME_QUARTERLY_SCHEMA",
    "INDICATOR_SCHEMA",
    "INDUSTRY_COLUMNS",
    "INDUSTRY_MONTHLY_SCHEMA",
    "INDUSTRY_SCHEMA",
    "SOURCE_VALUES",
    "VALUE_COLUMNS",
    "VERSION_SCHEMA",
    "DatasetSpec",
    "Partitioning",
    "Storage",
    "UnknownDatasetError",
    "dataset",
    "datasets",
    "raw_dataset",
]

Storage = Literal["latest", "versions"]
Partitioning = Literal["year_open_month", "year", "single", "stock_bucket"]
"""How a dataset's rows split into files; `cache.partitions` maps a row to its file."""

FETCHED_AT = "_fetched_at"
FETCHED_AT_TYPE = pl.Datetime("us", "UTC")

# Raw key columns Tushare is known to leave null in some rows (statements' update_flag
# and report_type, announcement dates of name changes and dividends).
NULLABLE_RAW_KEY_COLUMNS: frozenset[str] = frozenset(
    {"ann_date", "f_ann_date", "update_flag", "report_type", "div_proc", "in_date"}
)


class UnknownDatasetError(UsageError):
    """A dataset name the catalogue does not know (the message lists the known ones)."""


@dataclass(frozen=True)
class DatasetSpec:
    """One table of the cache: columns, natural key, storage, partitions, order.

    `schema` holds the table's own columns in stored order (raw: the API's fields and
    the request columns; `_fetched_at`, added by the store, is not among them);
    `request_columns` are raw columns filled from the request parameter of the same
    name, for APIs that do not return the value they were asked by.
    """

    layer: Layer
    name: str
    schema: Mapping[str, pl.DataType] = field(hash=False)
    key: tuple[str, ...]
    storage: Storage
    partitioning: Partitioning
    date_field: str | None
    sort_by: tuple[str, ...]
    nullable_key: frozenset[str] = frozenset()
    scope: str | None = None
    request_columns: tuple[str, ...] = ()

    @property
    def qualified(self) -> str:
        """`layer.name`, as in the views file and the database (`raw.daily`)."""
        return f"{self.layer}.{self.name}"

    @property
    def scope_spans_files(self) -> bool:
        """Whether one scope value's rows may be spread over several files (the PIT stock
        tables: bucket files plus delta files), so that a file holds only part of them."""
        return self.partitioning == "stock_bucket"

    @property
    def columns(self) -> tuple[str, ...]:
        """The table's own columns, in stored order."""
        return tuple(self.schema)

    def stored_schema(self) -> dict[str, pl.DataType]:
        """The columns as written: raw tables also carry `_fetched_at`."""
        extra = {FETCHED_AT: FETCHED_AT_TYPE} if self.layer == "raw" else {}
        return {**self.schema, **extra}

    def empty(self) -> pl.DataFrame:
        """A frame with no rows and the stored columns."""
        return pl.DataFrame(schema=self.stored_schema())

    def with_request_columns(self, frame: pl.DataFrame, params: Mapping[str, str]) -> pl.DataFrame:
        """`frame` (rows of one request) with each request column the API did not return
        set to the request's value of that parameter (null when it was not given)."""
        missing = [c for c in self.request_columns if c not in frame.columns]
        return frame.with_columns(
            pl.lit(params.get(c), dtype=self.schema[c]).alias(c) for c in missing
        )


# ------------------------------------------------------------------------------ raw


def _raw(
    name: str,
    *,
    date_field: str | None,
    partitioning: Partitioning,
    sort_by: tuple[str, ...],
    storage: Storage = "latest",
    request_columns: tuple[str, ...] = (),
    history_key: tuple[str, ...] = (),
) -> DatasetSpec:
    api = api_spec(name)
    schema = {**api.polars_schema(), **{c: pl.String() for c in request_columns}}
    documented = tuple(k for k in api.primary_key if k in api.field_names)
    key = (*documented, *history_key, *request_columns)
    return DatasetSpec(
        layer="raw",
        name=name,
        schema=schema,
        key=key,
        storage=storage,
        partitioning=partitioning,
        date_field=date_field,
        sort_by=sort_by,
        nullable_key=frozenset(k for k in key if k in NULLABLE_RAW_KEY_COLUMNS),
        request_columns=request_columns,
    )


def _market(name: str, partitioning: Partitioning = "year_open_month") -> DatasetSpec:
    return _raw(
        name, date_field="trade_date", partitioning=partitioning, sort_by=("ts_code", "trade_date")
    )


def _statement(name: str) -> DatasetSpec:
    """A version log of reports (DESIGN 4): every distinct row is kept."""
    return _raw(
        name,
        storage="versions",
        date_field="end_date",
        partitioning="year",
        sort_by=("ts_code", "end_date", "ann_date"),
    )


def _raw_datasets() -> tuple[DatasetSpec, ...]:
    return (
        # reference
        _raw("stock_basic", date_field="list_date", partitioning="single", sort_by=("ts_code",)),
        _raw(
            "trade_cal", date_field="cal_date", partitioning="single",
            sort_by=("exchange", "cal_date"),
        ),
        _raw(
            "namechange", date_field="ann_date", partitioning="single",
            sort_by=("ts_code", "start_date"),
        ),
        # market
        _market("daily"),
        _market("weekly", "year"),
        _market("monthly", "year"),
        _market("adj_factor"),
        _market("daily_basic"),
        _market("suspend_d", "year"),
        _market("stk_limit"),
        _market("moneyflow"),
        _market("limit_list_d", "year"),
        # finance
        *(
            _statement(n)
            for n in ("income", "balancesheet", "cashflow", "fina_indicator", "express", "forecast")
        ),
        _raw(
            "fina_mainbz", date_field="end_date", partitioning="year",
            sort_by=("ts_code", "end_date"), request_columns=("type",),
        ),
        _raw(
            "dividend", date_field="end_date", partitioning="year",
            sort_by=("ts_code", "end_date", "ann_date"),
        ),
        _raw(
            "disclosure_date", date_field="end_date", partitioning="year",
            sort_by=("ts_code", "end_date"),
        ),
        # index
        _raw("index_basic", date_field=None, partitioning="single", sort_by=("ts_code",)),
        _raw("index_classify", date_field=None, partitioning="single", sort_by=("index_code",)),
        # With history (is_new N), a stock that leaves an industry and later rejoins it
        # has two memberships of the same codes: in_date tells them apart.
        _raw(
            "index_member_all", date_field=None, partitioning="single",
            sort_by=("ts_code", "in_date"), history_key=("in_date",),
        ),
        _raw(
            "index_daily", date_field="trade_date", partitioning="year",
            sort_by=("ts_code", "trade_date"),
        ),
        _raw(
            "index_weight", date_field="trade_date", partitioning="year",
            sort_by=("index_code", "con_code", "trade_date"),
        ),
    )  # fmt: skip


def _covered(c: Coverage) -> DatasetSpec:
    """The dataset of an API beyond the default set: key, date and partitions as its
    coverage chose them (`cache.catalogue.coverage`)."""
    api = api_spec(c.api)
    return DatasetSpec(
        layer="raw",
        name=c.api,
        schema=api.polars_schema(),
        key=c.key,
        storage="latest",
        partitioning="year" if c.partitioned else "single",
        date_field=c.date_field,
        sort_by=c.key,
        nullable_key=frozenset(k for k in c.key if k in NULLABLE_RAW_KEY_COLUMNS),
    )


# ------------------------------------------------------------------------------ pit

# The YTD values each statement source carries into pit.statement_versions.
SOURCE_VALUES: dict[str, tuple[str, ...]] = {
    "income": (
        "revenue",
        "oper_cost",
        "operate_profit",
        "n_income",
        "n_income_attr_p",
        "total_revenue",
        "total_profit",
    ),
    "balancesheet": (
        "total_assets",
        "total_liab",
        "total_hldr_eqy_exc_min_int",
        "total_hldr_eqy_inc_min_int",
        "total_cur_assets",
        "total_cur_liab",
    ),
    "cashflow": (
        "n_cashflow_act",
        "n_cashflow_inv_act",
        "n_cash_flows_fnc_act",
        "free_cashflow",
        "n_incr_cash_cash_equ",
    ),
    "express": (
        "revenue",
        "operate_profit",
        "total_profit",
        "n_income",
        "total_assets",
        "total_hldr_eqy_exc_min_int",
    ),
    "forecast": (
        "net_profit_min",
        "net_profit_max",
        "p_change_min",
        "p_change_max",
        "last_parent_net",
    ),
}
VALUE_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(c for v in SOURCE_VALUES.values() for c in v))

# Flows turned into single quarters and TTM in pit.income_quarterly.
INCOME_FLOWS: tuple[str, ...] = (
    "revenue",
    "oper_cost",
    "operate_profit",
    "n_income",
    "n_income_attr_p",
)
BALANCE_LEVELS: tuple[str, ...] = SOURCE_VALUES["balancesheet"]

VERSION_SCHEMA: dict[str, pl.DataType] = {
    "ts_code": pl.String(),
    "end_date": pl.Date(),
    "vis_date": pl.Date(),
    "source": pl.String(),
    "update_flag": pl.String(),
    "ann_date": pl.Date(),
    "f_ann_date": pl.Date(),
    "report_type": pl.String(),
    "comp_type": pl.String(),
    FETCHED_AT: FETCHED_AT_TYPE,
    **{c: pl.Float64() for c in VALUE_COLUMNS},
}
INCOME_QUARTERLY_SCHEMA: dict[str, pl.DataType] = {
    "ts_code": pl.String(),
    "end_date": pl.Date(),
    "knowledge_date": pl.Date(),
    "vis_date": pl.Date(),
    "comp_type": pl.String(),
    **{f"{c}_q": pl.Float64() for c in INCOME_FLOWS},
    **{f"{c}_ttm": pl.Float64() for c in INCOME_FLOWS},
}
BALANCE_SCHEMA: dict[str, pl.DataType] = {
    "ts_code": pl.String(),
    "end_date": pl.Date(),
    "vis_date": pl.Date(),
    "ann_date": pl.Date(),
    "f_ann_date": pl.Date(),
    "update_flag": pl.String(),
    "comp_type": pl.String(),
    **{c: pl.Float64() for c in BALANCE_LEVELS},
}
INDICATOR_SCHEMA: dict[str, pl.DataType] = {
    "ts_code": pl.String(),
    "knowledge_date": pl.Date(),
    "end_date": pl.Date(),
    "bs_end_date": pl.Date(),
    "vis_date": pl.Date(),
    "comp_type": pl.String(),
    "revenue_ttm": pl.Float64(),
    "oper_cost_ttm": pl.Float64(),
    "n_income_attr_p_ttm": pl.Float64(),
    "total_assets": pl.Float64(),
    "total_hldr_eqy_exc_min_int": pl.Float64(),
    "gpa": pl.Float64(),
    "roe": pl.Float64(),
    "roa": pl.Float64(),
    "revenue_q": pl.Float64(),
    "revenue_q_ly": pl.Float64(),
    "revenue_yoy": pl.Float64(),
    "n_income_attr_p_q": pl.Float64(),
    "n_income_attr_p_q_ly": pl.Float64(),
    "profit_yoy": pl.Float64(),
    "ttm_vis_date": pl.Date(),
    "yoy_vis_date": pl.Date(),
    "bs_vis_date": pl.Date(),
    "ann_date": pl.Date(),
}
INDUSTRY_COLUMNS: tuple[str, ...] = ("ts_code", *MEMBERSHIP_COLUMNS)
INDUSTRY_SCHEMA: dict[str, pl.DataType] = {
    c: pl.Date() if c.endswith("_date") else pl.String() for c in INDUSTRY_COLUMNS
}
INDUSTRY_MONTHLY_SCHEMA: dict[str, pl.DataType] = {**INDUSTRY_SCHEMA, "month_end": pl.Date()}


def _derived(
    layer: Layer,
    name: str,
    schema: Mapping[str, pl.DataType],
    key: tuple[str, ...],
    *,
    scope: str,
    partitioning: Partitioning,
    date_field: str,
    sort_by: tuple[str, ...],
    nullable: frozenset[str] = frozenset(),
) -> DatasetSpec:
    return DatasetSpec(
        layer=layer,
        name=name,
        schema=dict(schema),
        key=key,
        storage="latest",
        partitioning=partitioning,
        date_field=date_field,
        sort_by=sort_by,
        nullable_key=nullable,
        scope=scope,
    )


def _stock_table(
    name: str,
    schema: Mapping[str, pl.DataType],
    key: tuple[str, ...],
    *,
    date_field: str,
    nullable: frozenset[str] = frozenset(),
) -> DatasetSpec:
    """A PIT table of hash buckets of ts_code: a stock's rows are in its bucket file and
    any delta files (`DatasetSpec.scope_spans_files`)."""
    return _derived(
        "pit", name, schema, key, scope="ts_code", partitioning="stock_bucket",
        date_field=date_field, sort_by=key, nullable=nullable,
    )  # fmt: skip


def _derived_datasets() -> tuple[DatasetSpec, ...]:
    return (
        _stock_table(
            "statement_versions", VERSION_SCHEMA,
            ("ts_code", "end_date", "source", "vis_date", "update_flag"),
            date_field="vis_date", nullable=frozenset({"update_flag"}),
        ),
        _stock_table(
            "income_quarterly", INCOME_QUARTERLY_SCHEMA, ("ts_code", "end_date", "knowledge_date"),
            date_field="knowledge_date",
        ),
        _stock_table(
            "balance", BALANCE_SCHEMA, ("ts_code", "end_date", "vis_date"), date_field="vis_date"
        ),
        _stock_table(
            "indicators", INDICATOR_SCHEMA, ("ts_code", "knowledge_date"),
            date_field="knowledge_date",
        ),
        _derived(
            "pit", "industry", INDUSTRY_SCHEMA, ("ts_code", "l3_code", "in_date"),
            scope="ts_code", partitioning="single", date_field="in_date",
            sort_by=("ts_code", "in_date", "out_date"), nullable=frozenset({"in_date"}),
        ),
        _derived(
            "pit", "industry_monthly", INDUSTRY_MONTHLY_SCHEMA, ("month_end", "ts_code"),
            scope="ts_code", partitioning="single", date_field="month_end",
            sort_by=("ts_code", "month_end"),
        ),
        _derived(
            "factors", "p", P_SCHEMA, ("calc_date", "ts_code"), scope="calc_date",
            partitioning="year", date_field="calc_date", sort_by=("ts_code", "calc_date"),
        ),
        _derived(
            "factors", "g", G_SCHEMA, ("calc_date", "ts_code"), scope="calc_date",
            partitioning="year", date_field="calc_date", sort_by=("ts_code", "calc_date"),
        ),
    )  # fmt: skip


# ------------------------------------------------------------------------------ lookups


@cache
def _by_layer() -> dict[str, dict[str, DatasetSpec]]:
    found: dict[str, dict[str, DatasetSpec]] = {layer: {} for layer in LAYERS}
    for spec in (*_raw_datasets(), *(_covered(c) for c in covered()), *_derived_datasets()):
        found[spec.layer][spec.name] = spec
    return found


def datasets(layer: Layer | None = None) -> tuple[DatasetSpec, ...]:
    """Every dataset of `layer` (all layers when None), in catalogue order."""
    chosen = LAYERS if layer is None else (layer,)
    return tuple(spec for lay in chosen for spec in _by_layer().get(lay, {}).values())


def dataset(layer: str, name: str) -> DatasetSpec:
    """The spec of dataset `name` of cache layer `layer`; `UnknownDatasetError` naming
    it and the known ones otherwise."""
    by_name = _by_layer().get(layer)
    if by_name is None:
        msg = f"unknown cache layer {layer!r} (known: {', '.join(LAYERS)})"
        raise UnknownDatasetError(msg)
    spec = by_name.get(name)
    if spec is None:
        known = ", ".join(by_name)
        hint = did_you_mean(name, by_name)
        msg = f"unknown {layer} dataset {name!r}{hint} (known: {known})"
        raise UnknownDatasetError(msg)
    return spec


def raw_dataset(name: str) -> DatasetSpec:
    """The spec of raw dataset `name` (one per synced Tushare API)."""
    return dataset("raw", name)
