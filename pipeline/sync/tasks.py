"""The sync tasks as data: one frozen `TaskSpec` per dataset (DESIGN section 5).

A task is one dataset of `raw/`: the API it calls (a `*_vip` variant lands in the base
dataset), its group, unit of work, default start, refresh window, and how its API may
be asked (documented parameters only: by date, by date range, by code). What the
dataset is (columns, natural key, storage kind, partitioning, date column, order) is
never written here: it is the dataset's spec in the dataset catalogue
(`cache.catalogue.datasets`), and every documented field, default-N ones such as
`update_flag` included, comes from the API catalogue.

Units of work:
- `trade_date`: open days of the SSE calendar (or the last open day of each week or
  month) up to the as-of date; market data never changes once published, so the
  refresh window only guards against late vendor fixes;
- `period`: report ends (disclosure plans, published ahead and updated until the report
  is out, hence a refresh window of several periods);
- `day`: calendar days on which rows become visible (statements, forecasts, dividends):
  a statement version appears on max(ann_date, f_ann_date), and a restatement may keep
  its old ann_date, so "new since the last run" is asked by announcement day, and the
  (stock, period) pairs whose new version the announcement queries cannot reach are
  taken from the income statement's versions ("events");
- `snapshot`: the whole dataset, every run;
- `month`: calendar months (`YYYYMM` parameters: the monthly macro series);
- `code`: one request per listed code of a kind (stocks, funds, HK listings, ...), every
  run, for APIs that must name one and have no date to go by.

`TASKS` are the 26 of the default set, written out here. `ALL_TASKS` adds one task per
further catalogued API, derived as data from its coverage (`cache.catalogue.coverage`,
where the uncertain units and keys are chosen). Groups: the default set's own
(`market`, `finance`, `index`, `reference`), the doc areas (`stock`, `index`, `fund`,
`futures`, `options`, `bond`, `macro`, `hk`, `us`, `fx`, `other`: every task of the
area), `default` and `all`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import polars as pl

from cache.catalogue.apis import ApiSpec, api_spec
from cache.catalogue.coverage import AREAS, Coverage, area_of, covered
from cache.catalogue.datasets import DatasetSpec, Partitioning, Storage, raw_dataset
from foundation.config import did_you_mean
from foundation.errors import UsageError

Group = Literal[
    "market", "finance", "index", "reference",
    "stock", "fund", "futures", "options", "bond", "macro", "hk", "us", "fx", "other",
]  # fmt: skip
DEFAULT_GROUPS: tuple[str, ...] = ("market", "finance", "index", "reference")
AREA_GROUPS: tuple[str, ...] = tuple(AREAS)
GROUPS: tuple[str, ...] = (
    "default", "all", *DEFAULT_GROUPS, *(a for a in AREA_GROUPS if a not in DEFAULT_GROUPS)
)  # fmt: skip
UnitKind = Literal["trade_date", "period", "day", "snapshot", "month", "code"]
Calendar = Literal["daily", "weekly", "monthly"]
# What a request can be narrowed to when it must name a code.
CodeKind = Literal["stock", "index", "sw_l1", "fund", "cb", "hk", "us", "futures", "options"]
# What an incremental run re-asks besides its own day queries: nothing; the (stock,
# period) pairs of income versions that became visible on a missing day but were
# announced on another one; the pairs of every original report that became visible
# (fina_mainbz has no dates of its own); or the announcement days of dividend plans not
# yet carried out (their later stages keep the plan's ann_date).
Events = Literal["none", "late", "originals", "open_plans"]
INCOME_EVENTS = ("late", "originals")
Backfill = Literal["per_period", "per_code"]

VIP_POINTS = 5000
MARKET_START = dt.date(2010, 1, 1)
FINANCE_LEAD_YEARS = 2  # TTM and YoY at the first date need two years of reports before it
ALL_QUARTERS = (1, 2, 3, 4)


@dataclass(frozen=True)
class TaskSpec:
    """One sync task (see the module docstring for the units).

    Request shapes: `date_param` names one unit (`trade_date=`, `end_date=`);
    `ranged`: `start_date`/`end_date` without a code filter the unit date;
    `ann_range`: `start_date`/`end_date` filter the announcement day;
    `day_params`: parameters that select the rows of one day exactly (`f_ann_date=`);
    `code_param`/`code_kind`: how a request names a code; `needs_code`: the plain API
    wants one in every request; `vip`: a `*_vip` variant serves whole periods;
    `backfill`: how a day-unit task fetches a long span; `types`: one request per
    value of the `type` parameter (kept in the dataset's `type` column); `snapshots`:
    the parameter sets of a snapshot;
    `visible`: output dates whose latest is the day a row appears;
    `density`: expected rows per code and unit (planning only).
    """

    name: str
    group: Group
    unit: UnitKind
    start: dt.date | None
    refresh: int
    calendar: Calendar = "daily"
    date_param: str | None = None
    ranged: bool = False
    ann_range: bool = False
    day_params: tuple[str, ...] = ()
    code_param: str | None = "ts_code"
    code_kind: CodeKind | None = "stock"
    needs_code: bool = False
    vip: bool = False
    backfill: Backfill = "per_period"
    events: Events = "none"
    types: tuple[str, ...] = ()
    quarters: tuple[int, ...] = ALL_QUARTERS
    lead_years: int = 0
    snapshots: tuple[tuple[tuple[str, str], ...], ...] = ((),)
    visible: tuple[str, ...] = ()
    period_ahead_days: int = 0
    density: float = 1.0
    filters: tuple[str, ...] = ()
    fills: tuple[tuple[str, str], ...] = ()
    default: bool = True

    @property
    def area(self) -> str:
        """The doc area of the API (stock, index, fund, ...)."""
        return area_of(self.name)

    @property
    def api(self) -> str:
        """The base API (the dataset's name)."""
        return self.name

    @property
    def spec(self) -> ApiSpec:
        """The catalogue entry of the API."""
        return api_spec(self.name)

    @property
    def dataset(self) -> DatasetSpec:
        """The catalogue entry of the dataset: columns, key, storage, partitions, order."""
        return raw_dataset(self.name)

    @property
    def key(self) -> tuple[str, ...]:
        """The dataset's natural key (dataset catalogue)."""
        return self.dataset.key

    @property
    def storage(self) -> Storage:
        """`latest` (one row per key) or `versions` (a version log)."""
        return self.dataset.storage

    @property
    def partitioning(self) -> Partitioning:
        """How the dataset's files split its rows (by month or year of the date, or one)."""
        return self.dataset.partitioning

    @property
    def date_field(self) -> str | None:
        """The dataset's date column (partitions, spans, bounds), None when undated."""
        return self.dataset.date_field

    @property
    def sort_by(self) -> tuple[str, ...]:
        """The order of rows within a partition file."""
        return self.dataset.sort_by

    @property
    def fields(self) -> tuple[str, ...]:
        """Every documented output field, requested by name (default-N ones included)."""
        return self.spec.field_names

    @property
    def columns(self) -> tuple[str, ...]:
        """The stored columns: the fields and any request column such as `type`."""
        return self.dataset.columns

    @property
    def min_points(self) -> int:
        """Points the API needs (catalogue), 0 when undocumented."""
        return self.spec.min_points or 0

    @property
    def row_cap(self) -> int | None:
        """Documented rows per call (None when undocumented)."""
        return self.spec.rows_per_call

    def api_for(self, points: int) -> str:
        """The API to call with `points`: the `*_vip` whole-period variant when allowed."""
        if self.vip and points >= VIP_POINTS and self.spec.vip_variant:
            return self.spec.vip_variant
        return self.name

    def schema(self) -> dict[str, pl.DataType]:
        """Polars types of every stored column (the fields and request columns)."""
        return dict(self.dataset.schema)


def _market(
    name: str,
    *,
    calendar: Calendar = "daily",
    start: dt.date = MARKET_START,
    ranged: bool = True,
    density: float = 1.0,
) -> TaskSpec:
    return TaskSpec(
        name=name,
        group="market",
        unit="trade_date",
        start=start,
        refresh=3 if calendar == "daily" else 1,
        calendar=calendar,
        date_param="trade_date",
        ranged=ranged,
        density=density,
    )


def _report(
    name: str,
    *,
    ann_range: bool = True,
    day_params: tuple[str, ...] = (),
    backfill: Backfill = "per_period",
    events: Events = "none",
    visible: tuple[str, ...] = ("ann_date",),
    types: tuple[str, ...] = (),
    quarters: tuple[int, ...] = ALL_QUARTERS,
    density: float = 1.05,
) -> TaskSpec:
    spec = api_spec(name)
    return TaskSpec(
        name=name,
        group="finance",
        unit="day",
        start=MARKET_START,
        refresh=1,
        date_param="period",
        ann_range=ann_range,
        day_params=day_params,
        needs_code=True,
        vip=spec.vip_variant is not None,
        backfill=backfill,
        events=events,
        types=types,
        quarters=quarters,
        lead_years=FINANCE_LEAD_YEARS,
        visible=visible,
        density=density,
    )  # fmt: skip


STATEMENT_DATES = ("ann_date", "f_ann_date")

TASKS: tuple[TaskSpec, ...] = (
    # reference: fetched whole every run
    TaskSpec(
        name="stock_basic",
        group="reference",
        unit="snapshot",
        start=None,
        refresh=0,
        snapshots=((("list_status", "L"),), (("list_status", "D"),), (("list_status", "P"),)),
        filters=("exchange", "list_status"),
    ),
    TaskSpec(
        name="trade_cal",
        group="reference",
        unit="snapshot",
        start=None,
        refresh=0,
        code_param=None,
        code_kind=None,
        snapshots=tuple((("exchange", e),) for e in ("SSE", "SZSE", "BSE")),
        filters=("exchange",),
    ),
    TaskSpec(
        name="namechange",
        group="reference",
        unit="snapshot",
        start=None,
        refresh=0,
        ann_range=True,
    ),
    # market: per trade date
    _market("daily"),
    _market("weekly", calendar="weekly", ranged=False),
    _market("monthly", calendar="monthly", ranged=False),
    _market("adj_factor", ranged=False),
    _market("daily_basic", ranged=False),
    _market("suspend_d", density=0.02),
    _market("stk_limit"),
    _market("moneyflow"),
    _market("limit_list_d", start=dt.date(2020, 1, 1), density=0.05),
    # finance: report versions by the day they became visible
    _report("income", day_params=("f_ann_date",), visible=STATEMENT_DATES, density=1.35),
    _report("balancesheet", events="late", visible=STATEMENT_DATES),
    _report("cashflow", day_params=("f_ann_date",), visible=STATEMENT_DATES, density=1.35),
    _report(
        "fina_indicator",
        ann_range=False,
        day_params=("ann_date",),
        backfill="per_code",
        events="late",
    ),
    _report("express", density=0.1),
    _report("forecast", density=0.25),
    _report(
        "fina_mainbz",
        ann_range=False,
        backfill="per_code",
        events="originals",
        visible=(),
        types=("P", "D", "I"),
        quarters=(2, 4),
        density=3.0,
    ),
    TaskSpec(
        name="dividend",
        group="finance",
        unit="day",
        start=MARKET_START,
        refresh=1,
        day_params=("ann_date", "imp_ann_date"),
        backfill="per_code",
        events="open_plans",
        lead_years=FINANCE_LEAD_YEARS,
        density=0.5,
    ),
    TaskSpec(
        name="disclosure_date",
        group="finance",
        unit="period",
        start=MARKET_START,
        refresh=5,
        date_param="end_date",
        lead_years=FINANCE_LEAD_YEARS,
        period_ahead_days=31,
    ),
    # index
    TaskSpec(
        name="index_basic",
        group="index",
        unit="snapshot",
        start=None,
        refresh=0,
        code_param=None,
        code_kind=None,
        snapshots=tuple(
            (("market", m),) for m in ("SSE", "SZSE", "BSE", "CSI", "CICC", "SW", "MSCI", "OTH")
        ),
    ),
    TaskSpec(
        name="index_classify",
        group="index",
        unit="snapshot",
        start=None,
        refresh=0,
        code_param=None,
        code_kind=None,
        snapshots=((("src", "SW2021"),),),
    ),
    TaskSpec(
        name="index_member_all",
        group="index",
        unit="snapshot",
        start=None,
        refresh=0,
        code_param="l1_code",
        code_kind="sw_l1",
        snapshots=((("is_new", "Y"),), (("is_new", "N"),)),
    ),
    TaskSpec(
        name="index_daily",
        group="index",
        unit="trade_date",
        start=MARKET_START,
        refresh=3,
        code_kind="index",
        needs_code=True,
    ),
    TaskSpec(
        name="index_weight",
        group="index",
        unit="trade_date",
        start=MARKET_START,
        refresh=1,
        calendar="monthly",
        code_param="index_code",
        code_kind="index",
        needs_code=True,
        density=60.0,
    ),
)


def _covered_task(c: Coverage) -> TaskSpec:
    """The task of an API beyond the default set, from its coverage."""
    if c.unit == "snapshot":
        return TaskSpec(
            name=c.api, group=c.area, unit="snapshot", start=None, refresh=0,
            code_param=None, code_kind=None,
            snapshots=tuple((*p, *c.fills) for p in c.snapshots), default=False,
        )  # fmt: skip
    if c.unit == "code":
        return TaskSpec(
            name=c.api, group=c.area, unit="code", start=None, refresh=0,
            code_kind=c.code_kind, snapshots=(c.fills,), default=False,  # type: ignore[arg-type]
        )  # fmt: skip
    # a stock API that takes a code and a range can also go stock by stock
    by_stock = c.ranged and c.area == "stock" and "ts_code" in c.spec.param_names
    return TaskSpec(
        name=c.api, group=c.area, unit=c.unit, start=MARKET_START, refresh=c.refresh,
        date_param=c.date_param, ranged=c.ranged,
        code_param="ts_code" if by_stock else None, code_kind="stock" if by_stock else None,
        density=1.0 if by_stock else 0.05, fills=c.fills, default=False,
    )  # fmt: skip


ALL_TASKS: tuple[TaskSpec, ...] = (*TASKS, *(_covered_task(c) for c in covered()))
TASKS_BY_NAME: dict[str, TaskSpec] = {t.name: t for t in ALL_TASKS}
# Reference data first: the others plan from it; then lists before what they list.
GROUP_ORDER = {g: i for i, g in enumerate(("reference", "index", "market", "finance"))}
UNIT_ORDER = {u: i for i, u in enumerate(("snapshot", "trade_date", "month", "period", "code"))}


def task(name: str) -> TaskSpec:
    """The spec of one task; `UsageError` listing the known names otherwise."""
    spec = TASKS_BY_NAME.get(name)
    if spec is None:
        known = ", ".join(TASKS_BY_NAME)
        msg = f"unknown task {name!r}{did_you_mean(name, TASKS_BY_NAME)} (known: {known})"
        raise UsageError(msg)
    return spec


def in_group(spec: TaskSpec, group: str) -> bool:
    """Whether a task belongs to a group: `all`, `default` (the 26), one of the default
    set's own groups (its tasks of that group), or a doc area (every task of the area)."""
    if group == "all":
        return True
    if group == "default":
        return spec.default
    if group in DEFAULT_GROUPS and spec.default and spec.group == group:
        return True
    return group in AREA_GROUPS and spec.area == group


def select_tasks(
    names: Iterable[str] = (),
    groups: Iterable[str] = (),
    exclude: Iterable[str] = (),
) -> list[TaskSpec]:
    """Tasks named or in the groups (the default set when neither is given), minus the
    excluded ones, reference data first."""
    names, groups, exclude = list(names), list(groups), list(exclude)
    for g in groups:
        if g not in GROUPS:
            msg = f"unknown group {g!r} (known: {', '.join(GROUPS)})"
            raise UsageError(msg)
    if not names and not groups:
        groups = ["default"]
    wanted = {task(n).name for n in names} | {
        t.name for t in ALL_TASKS if any(in_group(t, g) for g in groups)
    }
    excluded = {task(n).name for n in exclude}
    chosen = [t for t in ALL_TASKS if t.name in wanted and t.name not in excluded]
    return sorted(chosen, key=_order)


def _order(spec: TaskSpec) -> tuple[int, int]:
    if spec.default:
        return 0, GROUP_ORDER[spec.group]
    return 1, UNIT_ORDER[spec.unit]
