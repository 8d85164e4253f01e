"""The smart incremental sync: plan → fetch → commit each batch of units → views.

`run_sync` is the entry point of `ah sync` and of the pipeline's `ah run`. One run owns
one client (so one pacer per API for all tasks) and runs the selected tasks
concurrently. For each task the planner (plan.py) lists the work items; fetchers call
the API (splitting any answer cut short at the row cap) at the quota, each answered
page is written to a durable spill file (spill.py), and a merger merges the spilled
pages into the dataset's partition files (cache/store.py) in large batches in a worker
thread, then records their units in the task state: the fetchers never wait for a
merge, and a killed run's spilled pages are merged by the next run before it plans, so
it resumes where it stopped without asking them again. Afterwards the DuckDB catalogue
of views is rebuilt (unless the caller rebuilds it next: `ah run`, whose load stage
rebuilds it when no database is configured) and a report is written.

Before anything is written, the run fetches the calendar (which also proves the token)
and finds the newest trade date the source has daily bars for, up to the source's today
(`pipeline.sources.market_today`): that is what the run plans up to. After the commits
the data's as-of date (cache/asof.py) is recorded for the steps and reports after it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import polars as pl
from anyio.abc import ObjectReceiveStream

from cache.asof import data_as_of, record_as_of
from cache.atomic import write_bytes_atomic
from cache.layout import CacheLayout, make_state_dir
from cache.partitions import close_years
from cache.quarantine import clear as clear_quarantine
from cache.quarantine import clear_restored
from cache.read import has_files, read_dataset
from cache.state import StateStore, TaskState
from cache.store import AppendConflict, Mode, commit, sweep_temporary_files, write_empty
from cache.views import refresh_catalog
from foundation.config import Settings
from foundation.crashpoints import crash_point
from foundation.errors import UsageError
from foundation.logs import get_logger, register_secrets, slow_operation
from foundation.progress import ProgressBoard
from pipeline.backends import open_locks, open_state
from pipeline.run.report import SyncReport, TaskOutcome, now_iso
from pipeline.sources import Source, market_today, open_source
from pipeline.sources.tushare.errors import (
    AuthError,
    PermissionDenied,
    QuotaExhausted,
    TushareError,
)
from pipeline.sync.plan import (
    CannotSplit,
    Market,
    PlanOptions,
    TaskPlan,
    WorkItem,
    day_items,
    follow_ups,
    plan_task,
    request_id,
    unit_date,
    unit_key,
    within_bounds,
)
from pipeline.sync.recover import quarantine_unreadable, recover_task_states
from pipeline.sync.spill import (
    Spilled,
    mark_fetching,
    recover,
    remove_spills,
    unmark_fetching,
    write_spill,
)
from pipeline.sync.spill import tidy as tidy_spills
from pipeline.sync.tasks import TaskSpec, select_tasks, task

log = get_logger("sync")

DEFAULT_CONCURRENCY = 4
# A merge of spilled pages starts when this many work items or rows wait, or when the
# oldest has waited FLUSH_SECONDS; with no batch size configured it takes every page
# waiting by then (the merger catches up in larger batches when it falls behind).
DEFAULT_BATCH_ITEMS = 64
BATCH_ROWS = 200_000
FLUSH_SECONDS = 20.0
# Mid-sync view rebuilds (each rewrites the whole catalogue file) are this far apart at
# least, so a run of many new datasets does not rebuild it once per dataset; the rebuild
# after the sync shows every dataset anyway.
EARLY_VIEWS_SECONDS = 10.0
DIVIDEND_DONE = "实施"
LISTING_SCHEMA = {"ts_code": pl.String, "list_date": pl.Date, "delist_date": pl.Date}
# Where the codes of each kind of a per-code task come from (the lists' own tasks).
LISTINGS_OF_KIND = {
    "fund": "fund_basic",
    "cb": "cb_basic",
    "hk": "hk_basic",
    "us": "us_basic",
    "futures": "fut_basic",
    "options": "opt_basic",
}


# ------------------------------------------------------------------ the source's identity


SOURCE_FILE = "source.json"


def recorded_source(layout: CacheLayout) -> str | None:
    """The source kind that filled this cache (`sim` or `tushare`), None for a new cache."""
    path = layout.state_dir / SOURCE_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text("utf-8"))
    except ValueError:  # unreadable: `ah health` names it, the next sync rewrites it
        return None
    return doc.get("kind") if isinstance(doc, dict) else None


def check_source(layout: CacheLayout, kind: str) -> None:
    """Refuse to mix sources: a cache filled from one source never takes another's data."""
    recorded = recorded_source(layout)
    if recorded is not None and recorded != kind:
        names = {"sim": "the simulator", "tushare": "Tushare"}
        msg = (
            f"cache {layout.root} holds data from {names.get(recorded, recorded)}; "
            f"refusing to mix in data from {names.get(kind, kind)} (use another --cache-dir)"
        )
        raise UsageError(msg)


def check_not_behind(layout: CacheLayout, kind: str, today: dt.date) -> None:
    """Refuse a source whose today is before the cache's as-of date: a market does not go
    back, and its older snapshots (listings, disclosure dates) would replace newer ones."""
    try:
        as_of = data_as_of(layout, remember=False)  # writes nothing (a dry run too)
    except (OSError, ValueError):  # a damaged raw/daily: the sweep and `ah repair` see to it
        return
    if as_of is not None and today < as_of:
        hint = (
            f"set [simulator] today (AH_SIMULATOR_TODAY) to {as_of} or later"
            if kind == "sim"
            else "check this machine's clock"
        )
        msg = (
            f"the source's today {today} is before the cache's as-of date {as_of} "
            f"({layout.root}): a market does not go back; {hint}"
        )
        raise UsageError(msg)


def remember_source(layout: CacheLayout, kind: str, label: str) -> None:
    """Record which source fills the cache (on first use, or when the record is lost)."""
    path = layout.state_dir / SOURCE_FILE
    if recorded_source(layout) is None:
        doc = {"kind": kind, "label": label, "since": now_iso()}
        write_bytes_atomic(json.dumps(doc).encode("utf-8"), path)


def sweep_catalog_temporaries(layout: CacheLayout) -> None:
    """Remove the temporary catalogue files of killed runs (`.alphahome.duckdb.<pid>.tmp`
    and its WAL) whose process is gone; a live run's are left alone."""
    for path in layout.root.glob(f".{layout.duckdb_path.name}.*.tmp*"):
        pid = path.name.split(".")[3] if path.name.count(".") >= 4 else ""
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ------------------------------------------------------------------ the market context


@dataclass
class Prefetched:
    """Answers fetched while building the context, reused by the tasks that ask the same."""

    frames: dict[str, pl.DataFrame] = field(default_factory=dict)

    def take(self, item_id: str) -> pl.DataFrame | None:
        """The frame of a request fetched already (once)."""
        return self.frames.pop(item_id, None)


async def pages(
    source: Source,
    spec: TaskSpec,
    api: str,
    params: Mapping[str, str],
    market: Market,
    prefetched: Prefetched,
    *,
    tag: str,
    max_retries: int | None = None,
) -> AsyncIterator[tuple[pl.DataFrame, dt.date | None]]:
    """The rows of one request as they arrive, splitting answers cut short at the row
    cap; with each cursor page, the date after which everything asked is complete.

    Follow-up requests are asked newest first, so when a cursor page arrives every date
    after its oldest one is complete for the whole request.
    """
    pending = [dict(params)]
    while pending:
        asked = pending.pop()
        cached = prefetched.take(request_id(api, asked))
        if cached is not None:
            yield cached, None
            continue
        page = await source.client.query(api, asked, spec.fields, max_retries=max_retries, tag=tag)
        crash_point("fetch")
        if not page.truncated:
            yield page.frame, None
            continue
        follow = follow_ups(spec, asked, page.frame, market)
        pending.extend(follow.requests)
        yield follow.keep, follow.complete_after


async def fetch_request(
    source: Source,
    spec: TaskSpec,
    api: str,
    params: Mapping[str, str],
    market: Market,
    prefetched: Prefetched,
    *,
    tag: str,
) -> pl.DataFrame:
    """Every row of one request."""
    frames = [
        frame async for frame, _ in pages(source, spec, api, params, market, prefetched, tag=tag)
    ]
    return pl.concat(frames, how="vertical")


async def _whole(
    source: Source, name: str, params: dict[str, str], prefetched: Prefetched, market: Market
) -> pl.DataFrame:
    """A reference request made for planning, remembered for the task that makes it too."""
    spec = task(name)
    frame = await fetch_request(source, spec, name, params, market, Prefetched(), tag="context")
    prefetched.frames[request_id(name, params)] = frame
    return frame


async def find_as_of(source: Source, hi: dt.date) -> dt.date | None:
    """The newest trade date the source has daily bars for on or before `hi` (None: no
    bars at all): what the sync plans up to. The data's as-of date, what the cache
    holds, is cache/asof.py's.

    One call: rows come newest first, so the first page holds the newest date.
    """
    page = await source.client.query(
        "daily", {"end_date": unit_key(hi)}, ["trade_date"], tag="context"
    )
    return page.frame["trade_date"].max() if page.frame.height else None  # type: ignore[return-value]


def open_dividend_plans(layout: CacheLayout) -> tuple[dt.date, ...]:
    """Announcement days of stored dividend plans not yet carried out (实施): their later
    stages appear without a date of their own, so they are asked again by that day."""
    stored = read_dataset(
        layout, "dividend", columns=["ts_code", "end_date", "ann_date", "div_proc"]
    )
    if stored is None or stored.height == 0:
        return ()
    plans = stored.group_by("ts_code", "end_date", "ann_date").agg(
        (pl.col("div_proc") == DIVIDEND_DONE).any().alias("done")
    )
    days = plans.filter(~pl.col("done") & pl.col("ann_date").is_not_null())["ann_date"]
    return tuple(sorted(days.unique().to_list()))


async def load_market(
    source: Source,
    specs: Sequence[TaskSpec],
    end: dt.date | None,
    layout: CacheLayout,
    today: dt.date,
) -> tuple[Market, Prefetched]:
    """Calendar, the source's newest trade date up to `today` (the source's today) or
    `end`, listings and codes, fetched fresh for this run; the calendar comes first,
    so a bad token stops the run before anything is written."""
    prefetched = Prefetched()
    empty = Market((), None, pl.DataFrame(schema=LISTING_SCHEMA))
    calendar = await _whole(source, "trade_cal", {"exchange": "SSE"}, prefetched, empty)
    open_days = tuple(sorted(calendar.filter(pl.col("is_open") == "1")["cal_date"].to_list()))
    hi = min(end, today) if end else today
    try:
        as_of = await find_as_of(source, hi)
    except PermissionDenied:
        as_of = max((d for d in open_days if d <= hi), default=None)
    frames = [
        await _whole(source, "stock_basic", {"list_status": s}, prefetched, empty) for s in "LDP"
    ]
    listings = pl.concat(frames).select(list(LISTING_SCHEMA)).unique("ts_code")
    kinds = {s.code_kind for s in specs}
    index_codes: tuple[str, ...] = ()
    if "index" in kinds:
        basics = [
            await _whole(source, "index_basic", dict(p), prefetched, empty)
            for p in task("index_basic").snapshots
        ]
        quoted = pl.concat(basics).filter(pl.col("market") != "SW")
        index_codes = tuple(sorted(quoted["ts_code"].unique().to_list()))
    sw_l1: tuple[str, ...] = ()
    if "sw_l1" in kinds:
        tree = await _whole(source, "index_classify", {"src": "SW2021"}, prefetched, empty)
        sw_l1 = tuple(sorted(tree.filter(pl.col("level") == "L1")["index_code"].to_list()))
    plans = open_dividend_plans(layout) if any(s.name == "dividend" for s in specs) else ()
    other: dict[str, tuple[str, ...]] = {
        kind: await _listed_codes(source, kind, as_of, prefetched, empty)
        for kind in sorted(k for k in kinds if k in LISTINGS_OF_KIND)
    }
    market = Market(
        open_days, as_of, listings, index_codes, sw_l1, other_codes=other, open_plans=plans
    )
    return market, prefetched


async def _listed_codes(
    source: Source, kind: str, as_of: dt.date | None, prefetched: Prefetched, empty: Market
) -> tuple[str, ...]:
    """Codes of a kind listed at `as_of` (not delisted before it), from the kind's list;
    none when the account may not read the list."""
    name = LISTINGS_OF_KIND[kind]
    spec = task(name)
    if spec.min_points > source.points:
        return ()
    frames = []
    try:
        for params in spec.snapshots:
            frames.append(await _whole(source, name, dict(params), prefetched, empty))
    except PermissionDenied:
        return ()
    found = pl.concat(frames)
    if "delist_date" in found.columns and as_of is not None:
        found = found.filter(pl.col("delist_date").is_null() | (pl.col("delist_date") >= as_of))
    return tuple(sorted(found["ts_code"].drop_nulls().unique().to_list()))


async def fetch_events(
    source: Source, market: Market, plans: Sequence[TaskPlan], prefetched: Prefetched
) -> pl.DataFrame:
    """Income versions that became visible on the plans' missing days: the (stock,
    period) pairs whose new version other report datasets must fetch again.

    Asked with the income task's own per-day requests (announcement ranges and exact
    f_ann_date days); the answers are kept for the income task when it asks the same.
    """
    income = task("income")
    api = income.api_for(source.points)
    days = sorted({u for p in plans for u in p.missing})
    first, last = unit_date(days[0]), unit_date(days[-1])
    span = [unit_key(first + dt.timedelta(days=i)) for i in range((last - first).days + 1)]
    lo = min(p.lo for p in plans if p.lo is not None)
    frames = []
    for item in day_items(income, api, market, span, days, lo, last):
        frame = await fetch_request(
            source, income, api, item.param_dict, market, Prefetched(), tag="context"
        )
        prefetched.frames[item.id] = frame
        frames.append(frame)
    found = pl.concat(frames).unique() if frames else pl.DataFrame(schema=income.schema())
    return found.select(
        "ts_code",
        "end_date",
        "ann_date",
        pl.max_horizontal("ann_date", "f_ann_date").alias("visible"),
        "update_flag",
    )


# ------------------------------------------------------------------ one task


@dataclass
class RunContext:
    """What every task of a run shares."""

    settings: Settings
    layout: CacheLayout
    source: Source
    store: StateStore
    market: Market
    prefetched: Prefetched
    mode: Mode
    progress: ProgressBoard
    run_id: str
    catalog_lock: anyio.Lock = field(default_factory=anyio.Lock)
    views: set[str] = field(default_factory=set)
    views_built_at: float | None = None  # time.monotonic() of the last mid-sync rebuild


@dataclass(frozen=True)
class Piece:
    """Rows of one item as they arrive: after a cursor page, every unit dated after
    `complete_after` is complete; the `last` piece completes the item."""

    item: WorkItem
    frame: pl.DataFrame
    fetched_at: dt.datetime
    complete_after: dt.date | None
    last: bool


@dataclass
class MergeQueue:
    """Spilled pages waiting for their merge, oldest first; `wake` tells the merger
    that a batch is due or that no more pages come (`closed`)."""

    pages: list[Spilled] = field(default_factory=list)
    rows: int = 0
    items: int = 0  # work items the waiting pages finish
    since: float | None = None  # time.monotonic() when the oldest page was spilled
    closed: bool = False
    wake: anyio.Event = field(default_factory=anyio.Event)

    def add(self, page: Spilled) -> None:
        """One more spilled page."""
        if not self.pages:
            self.since = time.monotonic()
        self.pages.append(page)
        self.rows += page.frame.height
        self.items += page.last

    def due(self, batch_items: int, now: float) -> bool:
        """Whether a merge should start: enough items or rows wait, or the oldest page
        has waited FLUSH_SECONDS."""
        if not self.pages:
            return False
        aged = self.since is not None and now - self.since >= FLUSH_SECONDS
        return self.items >= batch_items or self.rows >= BATCH_ROWS or aged

    def wait_s(self, now: float) -> float:
        """How long the merger may sleep before the oldest page is due by age."""
        if self.since is None or not self.pages:
            return FLUSH_SECONDS
        return max(0.0, FLUSH_SECONDS - (now - self.since))

    def take(self, items: int | None) -> list[Spilled]:
        """The next batch: every waiting page, or (with a fixed batch size) the pages
        up to and including the one that finishes the `items`-th item."""
        count = len(self.pages)
        if items is not None:
            finished = 0
            for position, page in enumerate(self.pages):
                finished += page.last
                if finished >= items:
                    count = position + 1
                    break
        batch, self.pages = self.pages[:count], self.pages[count:]
        self.rows -= sum(p.frame.height for p in batch)
        self.items -= sum(p.last for p in batch)
        self.since = time.monotonic() if self.pages else None
        return batch


class TaskRunner:
    """Fetches and commits the work items of one task plan."""

    def __init__(
        self,
        ctx: RunContext,
        plan: TaskPlan,
        state: TaskState,
        resume: bool,
        deadline: float | None = None,
    ) -> None:
        self.ctx = ctx
        limit = ctx.settings.run.task_deadline_s
        self.deadline = deadline if deadline is not None else time.monotonic() + limit
        self.plan = plan
        self.spec = plan.task
        self.state = state
        override = ctx.settings.task(self.spec.name)
        self.concurrency = override.concurrency or DEFAULT_CONCURRENCY
        self.max_retries = override.max_retries if override.max_retries is not None else None
        configured = override.batch_size or ctx.settings.run.batch_size
        self.fixed_batch = configured is not None  # `batch_size`: units per merge, exactly
        self.batch_items = configured or DEFAULT_BATCH_ITEMS
        self.queue = MergeQueue()
        self.outcome = TaskOutcome(
            task=self.spec.name,
            api=plan.api,
            strategy=plan.strategy,
            units_total=len(plan.missing),
            calls_estimated=plan.calls,
        )
        if not (resume and state.plan_id == plan.plan_id):
            state.plan_done = set()
        state.plan_id = plan.plan_id
        self.todo = [i for i in plan.items if i.id not in state.plan_done]
        # progress in calls: the plan's estimate, for the items this run still fetches
        share = len(self.todo) / len(plan.items) if plan.items else 0.0
        self.calls_total = max(len(self.todo), round(plan.calls * share))
        self.calls_done = 0
        self.remaining: Counter[str] = Counter()
        for item in plan.items:
            if item.id not in state.plan_done:
                self.remaining.update(item.units)
        self.partly_done: dict[str, set[str]] = {}
        self.errors: list[str] = []
        self.stop_reason: str | None = None
        self.skip_reason: str | None = None
        self.units_done = 0

    # ---- fetching

    async def fetch(self, item: WorkItem, results: Any) -> None:
        """Fetch one item, handing its rows to the committer page by page."""
        ctx = self.ctx
        received = pages(
            ctx.source, self.spec, item.api, item.param_dict, ctx.market, ctx.prefetched,
            tag=self.spec.name, max_retries=self.max_retries,
        )  # fmt: skip
        held: Piece | None = None  # sent once the next page shows it is not the last
        async for page, complete_after in received:
            self.calls_done += 1
            ctx.progress.update(self.spec.name, self.calls_done, self.calls_total)
            if held is not None:
                await results.send(held)
            frame = self.spec.dataset.with_request_columns(page, item.param_dict)
            held = Piece(item, frame, dt.datetime.now(dt.UTC), complete_after, last=False)
        assert held is not None
        await results.send(dataclasses.replace(held, last=True))

    async def fetcher(self, items: ObjectReceiveStream[WorkItem], results: Any) -> None:
        """Take items off the queue and fetch them; errors end the item, not the task."""
        async with items, results:
            async for item in items:
                if self.stop_reason:
                    continue
                try:
                    with anyio.move_on_after(self.deadline - time.monotonic()) as deadline:
                        await self.fetch(item, results)
                    if deadline.cancelled_caught:
                        self._deadline_reached()
                except AuthError:
                    raise
                except PermissionDenied as exc:
                    self.stop_reason = self.skip_reason = exc.message
                except QuotaExhausted as exc:
                    self.stop_reason = f"daily quota of {exc.api} used up"
                    self.errors.append(str(exc))
                except (TushareError, CannotSplit) as exc:
                    self.errors.append(str(exc))

    def _deadline_reached(self) -> None:
        """Stop fetching: the task has used its time (`run.task_deadline_s`)."""
        if self.stop_reason is None:
            limit = self.ctx.settings.run.task_deadline_s
            self.stop_reason = f"task deadline reached after {limit:g} s (run.task_deadline_s)"
            self.errors.append(self.stop_reason)
            log.warning(
                "%s: %s; its other units wait for the next run", self.spec.name, self.stop_reason
            )

    # ---- spilling and merging

    def _commit(self, frame: pl.DataFrame, fetched_at: dt.datetime) -> int:
        result = commit(
            self.ctx.layout,
            self.spec.dataset,
            frame,
            fetched_at,
            self.ctx.mode,
            checkpoint=crash_point,
        )
        return result.rows_saved

    def _write_spill(self, piece: Piece, units: Sequence[str]) -> Spilled:
        """Keep one fetched page on disk until its merge (runs in a worker thread)."""
        return write_spill(
            self.ctx.layout,
            self.spec.name,
            self.ctx.run_id,
            within_bounds(self.plan, piece.frame),
            piece.fetched_at,
            item=piece.item.id,
            last=piece.last,
            units=units,
            plan_id=self.plan.plan_id,
            mode=self.ctx.mode,
        )

    async def spiller(self, results: ObjectReceiveStream[Piece]) -> None:
        """Write each arriving page to a spill file (quick: the fetchers never wait
        for a merge) and hand it to the merger."""
        queue = self.queue
        async with results:
            async for piece in results:
                self.outcome.rows_fetched += piece.frame.height
                units = self._completes(piece)
                spilled = await anyio.to_thread.run_sync(self._write_spill, piece, units)
                queue.add(spilled)
                if queue.due(self.batch_items, time.monotonic()):
                    queue.wake.set()
        queue.closed = True
        queue.wake.set()

    async def merger(self) -> None:
        """Merge the spilled pages into the dataset in large batches, in a worker
        thread, while the fetchers go on; record each batch's units after its merge."""
        queue = self.queue
        while True:
            while not queue.closed and not queue.due(self.batch_items, time.monotonic()):
                with anyio.move_on_after(queue.wait_s(time.monotonic())):
                    await queue.wake.wait()
                queue.wake = anyio.Event()
            batch = queue.take(self.batch_items if self.fixed_batch else None)
            if not batch:
                return
            await self._merge(batch)

    async def _merge(self, batch: list[Spilled]) -> None:
        """Merge one batch of spilled pages, record what they complete, drop their files."""
        frame = pl.concat([s.frame for s in batch], how="vertical")
        fetched_at = min(s.fetched_at for s in batch)
        refused: set[str] = set()
        try:
            with slow_operation(
                f"merge {self.spec.name} ({frame.height} rows)",
                self.ctx.settings.run.slow_operation_s,
                log,
            ):
                saved = await anyio.to_thread.run_sync(self._commit, frame, fetched_at)
            self.outcome.rows_saved += saved
        except AppendConflict:
            refused = await self._commit_one_by_one(batch, fetched_at)
        crash_point("merge")
        completed = [u for s in batch for u in s.units]
        if refused:  # a unit an item failed on is not complete
            lost = {u for i in self.plan.items if i.id in refused for u in i.units}
            completed = [u for u in completed if u not in lost]
        self.state.plan_done.update(s.item for s in batch if s.last and s.item not in refused)
        self._record(completed)
        await anyio.to_thread.run_sync(remove_spills, batch)
        await self.ensure_view()

    async def _commit_one_by_one(
        self, batch: Sequence[Spilled], fetched_at: dt.datetime
    ) -> set[str]:
        """Append mode met stored keys: commit item by item; the refused items fail."""
        refused = set()
        for item in dict.fromkeys(s.item for s in batch):
            part = pl.concat([s.frame for s in batch if s.item == item], how="vertical")
            try:
                self.outcome.rows_saved += await anyio.to_thread.run_sync(
                    self._commit, part, fetched_at
                )
            except AppendConflict as exc:
                self.errors.append(str(exc))
                refused.add(item)
        return refused

    def _completes(self, piece: Piece) -> list[str]:
        """Units that this piece completes: on a cursor page of a ranged item (which
        alone covers its dates), those dated after the cursor; on the last piece, every
        unit of the item not completed before."""
        item, seen = piece.item, self.partly_done.setdefault(piece.item.id, set())
        if piece.last:
            units = [u for u in item.units if u not in seen]
        elif piece.complete_after is not None and self.plan.strategy == "ranges":
            units = [u for u in item.units if u not in seen and unit_date(u) > piece.complete_after]
        else:
            return []
        seen.update(units)
        completed = []
        for unit in units:
            self.remaining[unit] -= 1
            if self.remaining[unit] == 0:
                completed.append(unit)
        return completed

    def _record(self, completed: Sequence[str]) -> None:
        state = self.state
        state.committed.update(completed)
        self.units_done += len(completed)
        if completed:
            state.last_unit = max([*completed, state.last_unit or ""])
        state.units_done = self.units_done
        state.rows_fetched = self.outcome.rows_fetched
        state.rows_saved = self.outcome.rows_saved
        self.ctx.store.save(state)
        crash_point("state")

    async def ensure_view(self) -> None:
        """Give a dataset its view as soon as it has a file, so analysts see it early
        (at most one rebuild every EARLY_VIEWS_SECONDS; a later commit tries again)."""
        name, ctx = self.spec.name, self.ctx
        if name in ctx.views:
            return
        async with ctx.catalog_lock:
            recent = (
                ctx.views_built_at is not None
                and time.monotonic() - ctx.views_built_at < EARLY_VIEWS_SECONDS
            )
            if name not in ctx.views and not recent and has_files(ctx.layout, name):
                crash_point("views")
                built = await anyio.to_thread.run_sync(refresh_catalog, ctx.settings, True)
                ctx.views.update(built.get("raw", []) if built is not None else [name])
                ctx.views_built_at = time.monotonic()

    # ---- the whole task

    async def run(self) -> TaskOutcome:
        """Fetch and commit every remaining item; returns the outcome."""
        started = time.monotonic()
        state, name = self.state, self.spec.name
        state.status, state.reason, state.started, state.finished = "running", None, now_iso(), None
        state.run_id = self.ctx.run_id
        state.pid, state.host = os.getpid(), socket.gethostname()
        state.errors = []
        await self._close_years()  # finishes a killed closing; migrates an older layout
        self._record([u for u in self.plan.missing if self.remaining[u] == 0])
        self.ctx.progress.update(name, 0, self.calls_total)
        send_items, receive_items = anyio.create_memory_object_stream[WorkItem](len(self.todo))
        send_results, receive_results = anyio.create_memory_object_stream[Piece](self.concurrency)
        for item in self.todo:
            send_items.send_nowait(item)
        send_items.close()
        mark_fetching(self.ctx.layout, name, self.ctx.run_id, dt.datetime.now(dt.UTC))
        try:
            async with anyio.create_task_group() as group:
                for _ in range(self.concurrency):
                    group.start_soon(self.fetcher, receive_items.clone(), send_results.clone())
                receive_items.close()
                send_results.close()
                group.start_soon(self.spiller, receive_results)
                group.start_soon(self.merger)
        finally:  # every page fetched is merged or in a spill file now
            unmark_fetching(self.ctx.layout, name)
        tidy_spills(self.ctx.layout, name)
        stats = self.ctx.source.client.stats
        self.outcome.calls = stats.for_tag("calls", name)
        self.outcome.retries = stats.for_tag("retries", name)
        self.outcome.rate_limited = stats.for_tag("rate_limited", name)
        self.outcome.units_done = self.units_done
        self.outcome.duration_s = round(time.monotonic() - started, 3)
        self.outcome.errors = self.errors[:20]
        self._conclude()
        await self._finish_dataset()
        return self.outcome

    def _conclude(self) -> None:
        out, state = self.outcome, self.state
        complete = all(self.remaining[u] <= 0 for u in self.plan.missing)
        if self.skip_reason and not out.units_done:
            out.status, out.reason = "skipped", self.skip_reason
        elif complete and not self.errors:
            empty = not has_files(self.ctx.layout, self.spec.name) and out.rows_fetched == 0
            out.status = "no_data" if empty else "success"
            out.reason = "no rows in the source" if empty else ""
        elif out.units_done or self.state.plan_done:
            out.status = "partial"
            out.reason = self.stop_reason or self.skip_reason or self.errors[0]
        else:
            out.status = "failed"
            out.reason = self.stop_reason or (self.errors[0] if self.errors else "no unit done")
        state.status, state.reason = out.status, out.reason
        state.finished = now_iso()
        state.units_total = len(self.plan.missing)
        state.calls = out.calls
        state.retries = out.retries
        state.errors = out.errors
        if out.status in ("success", "no_data"):
            state.last_success = state.finished
            state.plan_id, state.plan_done = None, set()
        self.ctx.store.save(state)

    async def _close_years(self) -> None:
        """Compact the monthly files of the dataset's closed years (`cache.partitions`)."""
        layout, dataset = self.ctx.layout, self.spec.dataset
        await anyio.to_thread.run_sync(close_years, layout, dataset, crash_point)

    async def _finish_dataset(self) -> None:
        """Close the years this run ended (their successor's rows arrived); a dataset
        that ended up with no file gets an empty one, so it still reads."""
        await self._close_years()
        if self.outcome.status in ("success", "no_data") and not has_files(
            self.ctx.layout, self.spec.name
        ):
            write_empty(self.ctx.layout, self.spec.dataset)
            await self.ensure_view()


# ------------------------------------------------------------------ the run


@dataclass(frozen=True)
class SyncRequest:
    """The arguments of one sync run (what `ah sync` parsed)."""

    tasks: tuple[str, ...] = ()
    source: str | None = None
    full: bool = False
    start: dt.date | None = None
    end: dt.date | None = None
    dry_run: bool = False
    mode: Mode = "upsert"
    resume: bool = True
    exclude: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    workers: int | None = None
    filters: Mapping[str, str] = field(default_factory=dict)
    progress: bool | None = None
    save_report: bool = True  # False: the caller completes and saves it (`ah run`)
    refresh_views: bool = True  # False: the caller rebuilds the catalogue after it (`ah run`)


def _selected(settings: Settings, request: SyncRequest) -> list[TaskSpec]:
    if request.mode not in ("upsert", "append"):
        msg = f"unknown mode {request.mode!r}; expected upsert or append"
        raise UsageError(msg)
    groups = request.groups or (() if request.tasks else tuple(settings.sync.groups))
    specs = select_tasks(request.tasks, groups, [*settings.run.exclude_tasks, *request.exclude])
    specs = [s for s in specs if s.name in request.tasks or settings.task(s.name).enabled]
    known = {f for s in specs for f in s.filters}
    for key in request.filters:
        if key not in known:
            msg = f"filter --{key.replace('_', '-')} applies to none of the selected tasks"
            raise UsageError(msg)
    if request.start and request.end and request.start > request.end:
        msg = f"--start {request.start} is after --end {request.end}"
        raise UsageError(msg)
    return specs


def run_sync(settings: Settings, request: SyncRequest | None = None) -> SyncReport:
    """Sync the selected tasks into `<cache>/raw/` and return the run's report.

    Raises `AuthError` (bad token), `LockHeld` (a task is being synced elsewhere) and
    `UsageError` (bad arguments, no token, mixed sources, a source whose today is before
    the cache's as-of date) before anything is written.
    The report's `exit_code` is non-zero when a task failed or the success rate fell
    under `run.success_rate_alert`. With `dry_run` the report holds the plan only.
    The report is saved unless `request.save_report` is False.
    """
    request = request or SyncRequest()
    register_secrets(settings.secrets())
    specs = _selected(settings, request)
    try:
        return anyio.run(_run, settings, request, specs)
    except BaseExceptionGroup as group:  # task groups wrap what a task raised
        raise first_leaf(group) from None


def plan_skipped(plans: Sequence[TaskPlan], spec: TaskSpec) -> bool:
    """Whether the task is skipped in this run (its spills wait for a run that syncs it)."""
    return any(p.task.name == spec.name and p.skip_reason for p in plans)


def first_leaf(error: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups: the one worth reporting."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


async def _run(settings: Settings, request: SyncRequest, specs: list[TaskSpec]) -> SyncReport:
    layout = CacheLayout(settings.cache.dir)
    source = open_source(settings, request.source)
    started = time.monotonic()
    report = SyncReport(
        run_id=dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6],
        started=now_iso(),
        source=source.label,
        cache_dir=str(layout.root),
        arguments=_arguments(request),
        success_rate_alert=settings.run.success_rate_alert,
        dry_run=request.dry_run,
    )
    names = [s.name for s in specs]
    today = market_today(settings, source.kind)
    report.market_today = today.isoformat()
    check_source(layout, source.kind)
    check_not_behind(layout, source.kind, today)
    store = open_state(settings)
    locks = open_locks(settings)
    try:
        locks.check(names)  # a running task refuses at once, before any call
        requeued = recover_task_states(layout, store, names)
        async with source.client:
            market, prefetched = await load_market(source, specs, request.end, layout, today)
            report.source_as_of = market.as_of.isoformat() if market.as_of else None
            log.info(
                "source %s: as of %s, %d listings",
                source.label, market.as_of, market.listings.height,
            )  # fmt: skip
            planner = Planner(settings, request, source, store)
            plans = planner.plan_all(specs, market)
            if request.dry_run:
                _dry_run_report(report, plans, source)
                report.calls_by_api = source.client.stats.by_api("calls")
                return report
            make_state_dir(layout)  # owner-only, before the first lock or state file
            remember_source(layout, source.kind, source.label)
            locks.acquire(names)
            sweep_catalog_temporaries(layout)
            for name in names:  # locked: what a killed run left, even of a finished task
                removed = sweep_temporary_files(layout, name)
                if removed:
                    log.info("%s: removed %d temporary file(s) of a killed run", name, removed)
            if sum(recover(layout, store, spec) for spec in specs if not plan_skipped(plans, spec)):
                plans = planner.plan_all(specs, market)  # the recovered units are not missing
            market, plans = await _with_events(planner, source, market, plans, prefetched)
            ctx = RunContext(
                settings, layout, source, store, market, prefetched, request.mode,
                ProgressBoard(request.progress), report.run_id,
            )  # fmt: skip
            report.tasks = await _run_tasks(ctx, request, planner, plans)
            report.calls_by_api = source.client.stats.by_api("calls")
            limits = source.client.limits
            report.limits_by_api = {api: limits.per_minute(api) for api in report.calls_by_api}
            report.sync_seconds = round(time.monotonic() - started, 3)
    finally:
        locks.release()
        store.close()
    refetched = [t.task for t in report.tasks if t.task in requeued and t.status == "success"]
    if refetched:  # (no names would clear every record)
        clear_quarantine(layout, tuple(f"raw.{name}" for name in refetched))
    clear_restored(layout)
    as_of = record_as_of(layout)
    report.as_of = as_of.isoformat() if as_of else None
    if request.refresh_views:
        crash_point("views")
        refresh_catalog(settings)
    report.finished = now_iso()
    report.duration_s = round(time.monotonic() - started, 3)
    if request.save_report:
        report.save(layout)
    return report


@dataclass
class Planner:
    """Plans the tasks of a run from their stored state."""

    settings: Settings
    request: SyncRequest
    source: Source
    store: StateStore

    def options(self, spec: TaskSpec, **changes: Any) -> PlanOptions:
        """The plan options of one task: arguments, per-task overrides, the source."""
        override = self.settings.task(spec.name)
        request, source = self.request, self.source
        start = max(filter(None, (request.start, source.history_start)), default=None)
        options = PlanOptions(
            points=source.points,
            start=start,
            end=request.end,
            full=request.full,
            append=request.mode == "append",
            start_override=override.start_date,
            refresh_override=override.lookback_units,
            filters=request.filters,
        )
        return dataclasses.replace(options, **changes)

    def plan(self, spec: TaskSpec, market: Market, **changes: Any) -> TaskPlan:
        """One task's plan."""
        committed = self.store.load(spec.name).committed
        return plan_task(spec, committed, market, self.options(spec, **changes))

    def plan_all(self, specs: Sequence[TaskSpec], market: Market) -> list[TaskPlan]:
        """Every task's plan; when income goes by announcement day, the events it asks
        for anyway cost the other report datasets nothing."""
        plans = {s.name: self.plan(s, market) for s in specs if s.name == "income"}
        free = "income" in plans and plans["income"].strategy == "per_day"
        for spec in specs:
            if spec.name not in plans:
                plans[spec.name] = self.plan(spec, market, events_free=free)
        return [plans[s.name] for s in specs]


async def _with_events(
    planner: Planner,
    source: Source,
    market: Market,
    plans: list[TaskPlan],
    prefetched: Prefetched,
) -> tuple[Market, list[TaskPlan]]:
    """The plans that go by announcement day, completed with the income events; when the
    service refuses the vip variant after all, those tasks go per stock instead."""
    waiting = [p for p in plans if p.awaiting_events]
    if not waiting:
        return market, plans
    try:
        events = await fetch_events(source, market, waiting, prefetched)
    except PermissionDenied as exc:
        log.info("events: %s; report datasets go per stock", exc.message)
        return market, [
            planner.plan(p.task, market, allow_vip=False) if p.awaiting_events else p for p in plans
        ]
    market = dataclasses.replace(market, events=events)
    return market, [planner.plan(p.task, market) if p.awaiting_events else p for p in plans]


async def _run_tasks(
    ctx: RunContext, request: SyncRequest, planner: Planner, plans: Sequence[TaskPlan]
) -> list[TaskOutcome]:
    workers = request.workers or ctx.settings.run.workers
    if ctx.layout.duckdb_path.exists():
        ctx.views.update(ctx.layout.datasets("raw"))
    outcomes: dict[str, TaskOutcome] = {}
    limiter = anyio.CapacityLimiter(max(1, workers))

    async def one(plan: TaskPlan) -> None:
        async with limiter:
            try:
                outcomes[plan.task.name] = await _run_task(ctx, request, planner, plan)
            finally:  # a failed task is not left among the running ones
                ctx.progress.finish(plan.task.name)

    for plan in plans:  # every task's calls in the total from the start, for the ETA
        if not plan.skip_reason:
            ctx.progress.update(plan.task.name, 0, plan.calls)
    with ctx.progress:
        async with anyio.create_task_group() as group:
            group.start_soon(ctx.progress.log_periodically)
            async with anyio.create_task_group() as tasks:
                for plan in plans:
                    tasks.start_soon(one, plan)
            group.cancel_scope.cancel()
    return [outcomes[p.task.name] for p in plans]


async def _run_task(
    ctx: RunContext, request: SyncRequest, planner: Planner, plan: TaskPlan
) -> TaskOutcome:
    spec = plan.task
    state = ctx.store.load(spec.name)
    if plan.skip_reason:
        state.status, state.reason, state.finished = "skipped", plan.skip_reason, now_iso()
        ctx.store.save(state)
        log.info("%s: skipped (%s)", spec.name, plan.skip_reason)
        return TaskOutcome(spec.name, "skipped", plan.skip_reason, api=plan.api)
    log.info(
        "%s: %d units missing of %d wanted, %d calls planned (%s via %s)",
        spec.name, len(plan.missing), len(plan.wanted), plan.calls, plan.strategy, plan.api,
    )  # fmt: skip
    deadline = time.monotonic() + ctx.settings.run.task_deadline_s  # the fallback's too
    try:
        outcome = await TaskRunner(ctx, plan, state, request.resume, deadline).run()
        if outcome.status == "skipped" and plan.api != spec.name:
            log.info("%s: %s refused (%s); asking per stock", spec.name, plan.api, outcome.reason)
            fallback = planner.plan(spec, ctx.market, allow_vip=False)
            outcome = await TaskRunner(ctx, fallback, state, False, deadline).run()
    except Exception as exc:  # a task's bug or I/O failure must not take the others down
        cause = first_leaf(exc)
        if isinstance(cause, AuthError):
            raise cause from None
        reason = f"{type(cause).__name__}: {cause}"
        log.error("%s: failed (%s)", spec.name, reason, exc_info=True)
        quarantine_unreadable(ctx.layout, spec.name)  # the next sync re-fetches what it held
        state.status, state.reason, state.finished = "failed", reason, now_iso()
        ctx.store.save(state)
        return TaskOutcome(spec.name, "failed", reason, api=plan.api, strategy=plan.strategy)
    log.log(
        logging.INFO if outcome.status in ("success", "no_data") else logging.WARNING,
        "%s: %s, %d/%d units, %d calls, %d rows fetched, %d saved%s",
        spec.name, outcome.status, outcome.units_done, outcome.units_total, outcome.calls,
        outcome.rows_fetched, outcome.rows_saved, f" ({outcome.reason})" if outcome.reason else "",
    )  # fmt: skip
    return outcome


def _dry_run_report(report: SyncReport, plans: Sequence[TaskPlan], source: Source) -> None:
    limits = source.client.limits
    per_api: Counter[str] = Counter()
    for plan in plans:
        calls = plan.calls + plan.extra_calls
        report.tasks.append(
            TaskOutcome(
                task=plan.task.name,
                status="skipped" if plan.skip_reason else "planned",
                reason=plan.skip_reason or "",
                api=plan.api,
                strategy=plan.strategy,
                units_total=len(plan.missing),
                calls_estimated=calls,
                duration_s=limits.seconds_for(plan.api, calls),
            )
        )
        per_api[plan.api] += calls
    # APIs are paced independently: the run takes as long as its busiest API
    report.estimated_seconds = max(
        (limits.seconds_for(api, n) for api, n in per_api.items()), default=0.0
    )


def _arguments(request: SyncRequest) -> dict[str, Any]:
    return {
        "tasks": list(request.tasks),
        "source": request.source,
        "full": request.full,
        "start": request.start.isoformat() if request.start else None,
        "end": request.end.isoformat() if request.end else None,
        "mode": request.mode,
        "resume": request.resume,
        "exclude": list(request.exclude),
        "groups": list(request.groups),
        "filters": dict(request.filters),
    }
