"""Who is listed: codes, boards, list and delist dates, names over time, ST, industries.

Every stock's attributes come from counter-based draws keyed by its index, so adding
stocks never changes the names, dates or prices of the others (codes are handed out in
listing order per board, so those can shift). Boards follow the real history (STAR from
2019-07-22, ChiNext from 2009-10-30, Beijing from 2020-07-27) and codes are taken in
listing order from each board's real ranges. Stock `i` with `i % 50 == 7` is a bank,
`i % 100 == 13` a broker, `i % 200 == 29` an insurer, so small markets hold all three
financial templates. The `stocks` of the config are listed by its `anchor` day (fixed,
independent of `today`); about 2% more list in each year after it, stock by stock in
index order, so a later horizon adds stocks and never changes the earlier ones: their
codes come from the codes the earlier stocks left free.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from pipeline.sources.simulator import names, noise
from pipeline.sources.simulator.calendar import TradingCalendar
from pipeline.sources.simulator.config import MAX_STOCKS, SimulatorConfig, SimulatorConfigError
from pipeline.sources.simulator.industries import tree
from pipeline.sources.simulator.steps import StepSeries

NEVER = dt.date(9999, 12, 31).toordinal()
YEAR = 365


@dataclass(frozen=True)
class Board:
    """A listing board: where it trades, when it opened, which codes it hands out."""

    exchange: str
    suffix: str
    market: str
    opens: dt.date
    codes: tuple[tuple[int, int], ...]  # the real code ranges, in the order they were used
    spare: tuple[tuple[int, int], ...] = ()  # used only when a very large market overflows


BOARDS = (
    Board("SSE", "SH", "主板", dt.date(1990, 12, 19),
          ((600000, 602000), (603000, 604000), (605000, 605600)),
          ((605600, 606000), (602000, 603000))),
    Board("SSE", "SH", "科创板", dt.date(2019, 7, 22), ((688001, 689000),), ((689000, 690000),)),
    Board("SZSE", "SZ", "主板", dt.date(1991, 4, 3),
          ((1, 1000), (2001, 3000), (1201, 1400), (3001, 3100)), ((1400, 2000), (3100, 5000))),
    Board("SZSE", "SZ", "创业板", dt.date(2009, 10, 30), ((300001, 301000), (301001, 301700)),
          ((301700, 303000),)),
    Board("BSE", "BJ", "北交所", dt.date(2020, 7, 27),
          ((830001, 840000), (870001, 874000), (430001, 431000), (920001, 921000))),
)  # fmt: skip
SH_MAIN, STAR, SZ_MAIN, CHINEXT, BJ = range(5)
# Share of new listings per board, by era (first day of the era).
_ERAS = (
    (dt.date(1990, 1, 1), (55, 0, 45, 0, 0)),
    (dt.date(2004, 6, 25), (35, 0, 65, 0, 0)),
    (dt.date(2009, 10, 30), (40, 0, 30, 30, 0)),
    (dt.date(2019, 7, 22), (30, 35, 10, 25, 0)),
    (dt.date(2020, 7, 27), (22, 25, 12, 30, 11)),
)
_SHARE_LISTED_BEFORE_START = 0.55
_DELIST_SHARE = 0.05
_RANDOM_ST_SHARE = 0.06
_RENAME_SHARE = 0.08
_INDUSTRY_CHANGE_SHARE = 0.10
_SUSPENSION_SLOTS = 12
_SUSPENSIONS_PER_YEAR = 0.35
_ADMIN_DELISTING_NAME = dt.date(2020, 12, 31).toordinal()  # "X退" names from the 2020 reform
_PAUSE_ABOLISHED = dt.date(2020, 1, 1).toordinal()


@dataclass(frozen=True)
class NameSegment:
    """One name of one stock, in force from `start` (ordinal) until the next segment."""

    start: int
    ann: int
    name: str
    reason: str | None
    is_st: bool


@dataclass(frozen=True)
class Universe:
    """Every stock that is or will be listed, as arrays indexed by stock."""

    count: int
    ts_code: NDArray[np.str_]
    symbol: NDArray[np.str_]
    board: NDArray[np.int64]
    list_day: NDArray[np.int64]
    delist_day: NDArray[np.int64]  # NEVER when not delisted
    pause_day: NDArray[np.int64]  # start of 暂停上市 before delisting, NEVER when none
    comp_type: NDArray[np.int64]
    fullname: NDArray[np.str_]
    enname: NDArray[np.str_]
    cnspell: NDArray[np.str_]
    area: NDArray[np.str_]
    is_hs: NDArray[np.str_]
    act_name: NDArray[np.str_]
    act_ent_type: NDArray[np.str_]
    name_segments: tuple[tuple[NameSegment, ...], ...]
    st_intervals: tuple[tuple[int, int, int], ...]  # (stock, first day, day after), ST or *ST
    membership_rows: tuple[tuple[int, int, int, int], ...]  # (stock, l3, in_day, out_day)
    suspensions: tuple[tuple[int, int, int], ...]  # (stock, first day, sessions)

    def exchange(self, stocks: NDArray[np.int64]) -> NDArray[np.str_]:
        """SSE, SZSE or BSE for each stock."""
        return np.array([b.exchange for b in BOARDS])[self.board[stocks]]

    def market(self, stocks: NDArray[np.int64]) -> NDArray[np.str_]:
        """主板, 创业板, 科创板 or 北交所 for each stock."""
        return np.array([b.market for b in BOARDS])[self.board[stocks]]

    def names_at(self, stocks: NDArray[np.int64], days: NDArray[np.int64]) -> NDArray[np.str_]:
        """The name each stock had on each day (its first name before listing)."""
        at = self._names.at("name", stocks, days, "")
        return np.where(at == "", self.first_name[stocks], at)

    def is_st_at(self, stocks: NDArray[np.int64], days: NDArray[np.int64]) -> NDArray[np.bool_]:
        """True where the stock carried an ST or *ST name on the day."""
        return self._names.at("is_st", stocks, days, default=False).astype(bool)

    def l3_at(self, stocks: NDArray[np.int64], days: NDArray[np.int64]) -> NDArray[np.int64]:
        """The SW L3 class of each stock on each day (its first one before listing)."""
        l3 = self.memberships.at("l3", stocks, days, -1)
        return np.where(l3 >= 0, l3, self.first_l3[stocks])

    @cached_property
    def memberships(self) -> StepSeries:
        """Column l3 (position in tree().l3) of each stock, in force from its in_day."""
        stocks, l3, days, _ = zip(*self.membership_rows, strict=True)
        return StepSeries(stocks, days, {"l3": np.array(l3)})

    @cached_property
    def index_of(self) -> dict[str, int]:
        """Stock index by ts_code."""
        return {code: i for i, code in enumerate(self.ts_code.tolist())}

    @cached_property
    def code_rank(self) -> NDArray[np.int64]:
        """Position of each stock when sorted by ts_code (for the service's row order)."""
        rank = np.empty(self.count, dtype=np.int64)
        rank[np.argsort(self.ts_code, kind="stable")] = np.arange(self.count)
        return rank

    def select(self, codes: list[str] | None) -> NDArray[np.int64]:
        """Indexes of the given ts_codes (unknown ones skipped); every stock when None."""
        if codes is None:
            return np.arange(self.count, dtype=np.int64)
        return np.array(
            sorted({self.index_of[c] for c in codes if c in self.index_of}), dtype=np.int64
        )

    @cached_property
    def first_name(self) -> NDArray[np.str_]:
        """The name each stock listed under."""
        return np.array([segs[0].name for segs in self.name_segments])

    @cached_property
    def first_l3(self) -> NDArray[np.int64]:
        """The SW L3 class each stock listed in."""
        first = np.full(self.count, -1, dtype=np.int64)
        for stock, l3, _, _ in reversed(self.membership_rows):
            first[stock] = l3
        return first

    @cached_property
    def _names(self) -> StepSeries:
        rows = [
            (s, g.start, g.name, g.is_st) for s, segs in enumerate(self.name_segments) for g in segs
        ]
        stocks, days, labels, st = zip(*rows, strict=True)
        return StepSeries(stocks, days, {"name": np.array(labels), "is_st": np.array(st)})


def _financial_comp_type(idx: NDArray[np.int64]) -> NDArray[np.int64]:
    comp = np.ones_like(idx)
    comp[idx % 200 == 29] = 3
    comp[idx % 100 == 13] = 4
    comp[idx % 50 == 7] = 2
    return comp


def yearly_listings(stocks: int) -> int:
    """Stocks listing in each year after the anchor day (about 2% of `stocks`)."""
    return max(1, stocks // 50)


def universe_size(config: SimulatorConfig, horizon_year: int) -> int:
    """Stocks of the universe that covers listings through the end of `horizon_year`:
    the `stocks` listed by the anchor, then one batch per year after it."""
    years = max(1, horizon_year - config.anchor.year + 1)
    return config.stocks + years * yearly_listings(config.stocks)


def _list_days(
    config: SimulatorConfig, calendar: TradingCalendar, idx: NDArray[np.int64], earliest: int
) -> NDArray[np.int64]:
    seed, n = config.seed, config.stocks
    start, anchor = config.start.toordinal(), config.anchor.toordinal()
    u = noise.uniform(seed, "list_day", idx)
    lo_pre, hi_pre = max(dt.date(1991, 1, 1).toordinal(), earliest), start - 30
    before = (noise.uniform(seed, "listed_before_start", idx) < _SHARE_LISTED_BEFORE_START) & (
        hi_pre > lo_pre
    )
    after = np.maximum(start, earliest) + (anchor - np.maximum(start, earliest)) * u
    day = np.where(before, lo_pre + (hi_pre - lo_pre) * u**0.6, after)
    year_after = np.maximum(idx - n, 0) // yearly_listings(n)
    day = np.where(idx < n, day, anchor + 1 + YEAR * year_after + 364 * u).astype(np.int64)
    day = calendar.on_or_after(np.maximum(day, earliest))
    last_open = calendar.on_or_before(np.array([anchor]))[0]
    return np.where(idx < n, np.minimum(day, last_open), np.maximum(day, last_open + 1))


def _boards(
    seed: int,
    allowed: NDArray[np.bool_],
    day: NDArray[np.int64],
    financial: NDArray[np.bool_],
    latest: int,
) -> NDArray[np.int64]:
    era_starts = np.array([e[0].toordinal() for e in _ERAS])
    weights = np.array([e[1] for e in _ERAS], dtype=np.float64)[
        np.searchsorted(era_starts, day, side="right") - 1
    ]
    opening = np.array([b.opens.toordinal() for b in BOARDS])
    weights *= allowed[None, :] & (opening[None, :] <= day[:, None])
    main = np.zeros(len(BOARDS), dtype=bool)
    main[[SH_MAIN, SZ_MAIN]] = True
    weights = np.where(financial[:, None], weights * main[None, :], weights)
    weights[weights.sum(axis=1) == 0] = allowed & (opening <= latest)  # fallback: any open board
    edges = np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True)
    u = noise.uniform(seed, "board", np.arange(len(day)))
    return np.minimum((edges < u[:, None]).sum(axis=1), len(BOARDS) - 1)


def _codes(
    seed: int, board: NDArray[np.int64], day: NDArray[np.int64], base: int
) -> tuple[NDArray[np.str_], NDArray[np.str_]]:
    """Codes per board in listing order: the first `base` stocks spread over the board's
    ranges; later ones take the codes left free, those after the last one used first."""
    symbol = np.empty(len(board), dtype=object)
    ts_code = np.empty(len(board), dtype=object)
    jitter = noise.uniform(seed, "code", np.arange(len(board)))
    for b, spec in enumerate(BOARDS):
        where = f"{spec.market}.{spec.suffix}"
        members = np.flatnonzero(board == b)
        members = members[np.lexsort((members, day[members]))]
        first, later = members[members < base], members[members >= base]
        ranges = np.concatenate([np.arange(lo, hi) for lo, hi in spec.codes])
        every = np.concatenate([ranges, *(np.arange(lo, hi) for lo, hi in spec.spare)])
        codes = ranges if len(first) <= len(ranges) else every
        if len(first) > len(codes):
            msg = f"{len(first)} stocks exceed the {len(codes)} codes of {where}"
            raise SimulatorConfigError(msg)
        spacing = len(codes) // max(len(first), 1)
        slots = np.arange(len(first)) * spacing + (jitter[first] * spacing).astype(np.int64)
        picked = codes[slots]
        if len(later):
            after = int(slots.max()) + 1 if len(slots) else 0  # `codes` begins `every`
            order = np.concatenate([np.arange(after, len(every)), np.arange(after)])
            free = every[order][~np.isin(every[order], picked)]
            if len(later) > len(free):
                msg = f"the listings after the anchor day exhaust the codes of {where}"
                raise SimulatorConfigError(msg)
            picked = np.concatenate([picked, free[: len(later)]])
        chosen = np.concatenate([first, later])
        symbol[chosen] = [f"{c:06d}" for c in picked]
        ts_code[chosen] = [f"{c:06d}.{spec.suffix}" for c in picked]
    return symbol.astype(str), ts_code.astype(str)


def _window(
    seed: int, tag: str, idx: NDArray[np.int64], lo: NDArray[np.int64], hi: NDArray[np.int64]
) -> NDArray[np.int64]:
    return (lo + (hi - lo) * noise.uniform(seed, tag, idx)).astype(np.int64)


def build_universe(
    config: SimulatorConfig, calendar: TradingCalendar, horizon_year: int
) -> Universe:
    """Every stock of the market described by `config` listed by the end of
    `horizon_year` (and a few after it; see the module docstring)."""
    seed, n = config.seed, config.stocks
    m = universe_size(config, horizon_year)
    idx = np.arange(m, dtype=np.int64)
    anchor = config.anchor.toordinal()
    allowed = np.array([b.exchange in config.exchanges for b in BOARDS])
    earliest = min(b.opens.toordinal() for b, ok in zip(BOARDS, allowed, strict=True) if ok)
    comp_type = (
        _financial_comp_type(idx) if (allowed[SH_MAIN] or allowed[SZ_MAIN]) else np.ones_like(idx)
    )
    list_day = _list_days(config, calendar, idx, earliest)
    board = _boards(seed, allowed, list_day, comp_type > 1, anchor + YEAR)
    symbol, ts_code = _codes(seed, board, list_day, n + yearly_listings(n))

    start = config.start.toordinal()
    lo = np.maximum(list_day + 3 * YEAR, start + YEAR)
    hi = np.full(m, anchor + 2 * YEAR)
    delisting = (comp_type == 1) & (noise.uniform(seed, "delist", idx) < _DELIST_SHARE) & (hi > lo)
    delist_day = np.where(
        delisting, calendar.on_or_after(_window(seed, "delist_day", idx, lo, hi)), NEVER
    )
    pausing = (
        delisting & (delist_day < _PAUSE_ABOLISHED) & (noise.uniform(seed, "pause", idx) < 0.6)
    )
    pause_day = np.where(pausing, calendar.on_or_after(delist_day - YEAR), NEVER)

    segments = _name_segments(config, calendar, idx, comp_type, list_day, delist_day, pause_day)
    memberships = _memberships(seed, anchor, idx, comp_type, list_day, delist_day)
    area = np.array(names.AREAS)[noise.choice(seed, "area", names.AREA_WEIGHTS, idx)]
    act_name, act_ent_type = _controllers(seed, idx, area, comp_type)
    spelled = [names.name_parts(*_name_key(seed, int(i), int(comp_type[i]))) for i in idx]
    return Universe(
        count=m,
        ts_code=ts_code,
        symbol=symbol,
        board=board,
        list_day=list_day,
        delist_day=delist_day,
        pause_day=pause_day,
        comp_type=comp_type,
        fullname=np.array(
            [
                segs[0].name.removeprefix("*ST").removeprefix("ST") + "股份有限公司"
                for segs in segments
            ]
        ),
        enname=np.array([p[2] for p in spelled]),
        cnspell=np.array([p[1] for p in spelled]),
        area=area,
        is_hs=_connect(seed, idx, board),
        act_name=act_name,
        act_ent_type=act_ent_type,
        name_segments=tuple(segments),
        st_intervals=_st_intervals(segments, delist_day),
        membership_rows=tuple(memberships),
        suspensions=_suspensions(config, idx, list_day, delist_day, pause_day),
    )


def _name_key(seed: int, stock: int, comp_type: int, renamed: bool = False) -> tuple[int, int]:
    """A distinct name number per stock (and per rename): an affine bijection of the index."""
    offset = (seed * 104729) % names.CAPACITY
    if comp_type > 1:
        rank = stock // {2: 50, 3: 200, 4: 100}[comp_type]
        return (617 * rank + offset) % names.HEAD_PAIRS, comp_type
    position = stock + (2 * MAX_STOCKS if renamed else 0)
    return (7919 * position + offset) % names.CAPACITY, 1


def _connect(seed: int, idx: NDArray[np.int64], board: NDArray[np.int64]) -> NDArray[np.str_]:
    member = noise.uniform(seed, "connect", idx) < 0.45
    label = np.where(np.isin(board, [SH_MAIN, STAR]), "H", np.where(board == BJ, "N", "S"))
    return np.where(member, label, "N")


def _controllers(
    seed: int, idx: NDArray[np.int64], area: NDArray[np.str_], comp_type: NDArray[np.int64]
) -> tuple[NDArray[np.str_], NDArray[np.str_]]:
    kind = np.array(names.CONTROLLER_TYPES)[
        noise.choice(seed, "controller", names.CONTROLLER_WEIGHTS, idx)
    ]
    kind = np.where((comp_type == 2) & (kind == "民营企业"), "地方国企", kind)
    person = noise.hash64(seed, "person", idx) % np.uint64(400)
    who = []
    for i, k, a in zip(idx, kind, area, strict=True):
        if k in ("地方国企", "集体企业"):
            who.append(f"{a}国资委")
        elif k == "中央国企":
            who.append("国务院国资委")
        elif k == "无":
            who.append("无")
        else:
            who.append(names.person(int(person[i])))
    return np.array(who), kind


def _name_segments(
    config: SimulatorConfig,
    calendar: TradingCalendar,
    idx: NDArray[np.int64],
    comp_type: NDArray[np.int64],
    list_day: NDArray[np.int64],
    delist_day: NDArray[np.int64],
    pause_day: NDArray[np.int64],
) -> list[tuple[NameSegment, ...]]:
    """Names over time: the listing name, ST / *ST periods, renames, the "退" name."""
    seed, anchor = config.seed, config.anchor.toordinal()
    end_of_life = np.minimum(pause_day, delist_day)
    pre_delist_st = calendar.on_or_after(
        end_of_life - _window(seed, "st_lead", idx, np.full_like(idx, 300), np.full_like(idx, 500))
    )
    has_pre_delist_st = (delist_day < NEVER) & (pre_delist_st > list_day + 400)
    st_start = calendar.on_or_after(
        _window(seed, "st_day", idx, list_day + 2 * YEAR, np.full_like(idx, anchor + YEAR))
    )
    st_end = calendar.on_or_after(
        st_start + _window(seed, "st_length", idx, np.full_like(idx, 250), np.full_like(idx, 700))
    )
    random_st = (
        (comp_type == 1)
        & (noise.uniform(seed, "st", idx) < _RANDOM_ST_SHARE)
        & (list_day + 2 * YEAR < anchor + YEAR)
        & (st_end < np.where(has_pre_delist_st, pre_delist_st, end_of_life))
    )
    star = noise.uniform(seed, "st_star", idx) < 0.6
    unstar = star & (noise.uniform(seed, "st_unstar", idx) < 0.3)
    rename_day = calendar.on_or_after(
        _window(seed, "rename_day", idx, list_day + YEAR, np.full_like(idx, anchor + YEAR))
    )
    renames = (
        (comp_type == 1)
        & (noise.uniform(seed, "rename", idx) < _RENAME_SHARE)
        & (delist_day == NEVER)
        & (list_day + YEAR < anchor + YEAR)
        & ~(random_st & (rename_day >= st_start) & (rename_day <= st_end))
    )
    farewell = calendar.shift(delist_day, -15)
    lead = _window(seed, "name_notice", idx, np.ones_like(idx), np.full_like(idx, 6))

    out: list[tuple[NameSegment, ...]] = []
    for i in idx:
        events: list[tuple[int, str]] = []
        if random_st[i]:
            events.append((int(st_start[i]), "*ST" if star[i] else "ST"))
            if unstar[i]:
                events.append(
                    (
                        int(
                            calendar.on_or_after((st_start[i : i + 1] + st_end[i : i + 1]) // 2)[0]
                        ),
                        "摘星改ST",
                    )
                )
            events.append((int(st_end[i]), "撤销*ST" if star[i] and not unstar[i] else "撤销ST"))
        if has_pre_delist_st[i]:
            events.append((int(pre_delist_st[i]), "*ST"))
        if renames[i]:
            events.append((int(rename_day[i]), "改名"))
        if (
            delist_day[i] < NEVER
            and delist_day[i] >= _ADMIN_DELISTING_NAME
            and farewell[i] > list_day[i]
        ):
            events.append((int(farewell[i]), "终止上市"))
        out.append(
            _segments_from_events(
                seed, int(i), int(comp_type[i]), int(list_day[i]), int(lead[i]), sorted(events)
            )
        )
    return out


def _segments_from_events(
    seed: int, stock: int, comp_type: int, list_day: int, lead: int, events: list[tuple[int, str]]
) -> tuple[NameSegment, ...]:
    base = names.name_parts(*_name_key(seed, stock, comp_type))[0]
    prefix = ""
    segments = [NameSegment(list_day, list_day, base, None, False)]
    for day, reason in events:
        if reason in ("ST", "*ST"):
            prefix = reason
        elif reason == "摘星改ST":
            prefix = "ST"
        elif reason.startswith("撤销"):
            prefix = ""
        elif reason == "改名":
            base = names.name_parts(*_name_key(seed, stock, comp_type, renamed=True))[0]
        if reason == "终止上市":
            base, prefix = base[:2] + "退", ""
        segments.append(
            NameSegment(
                day, max(day - lead, segments[-1].start), prefix + base, reason, bool(prefix)
            )
        )
    return tuple(segments)


def _st_intervals(
    segments: list[tuple[NameSegment, ...]], delist_day: NDArray[np.int64]
) -> tuple[tuple[int, int, int], ...]:
    intervals = []
    for stock, segs in enumerate(segments):
        ends = [g.start for g in segs[1:]] + [int(delist_day[stock])]
        intervals += [(stock, g.start, end) for g, end in zip(segs, ends, strict=True) if g.is_st]
    return tuple(intervals)


def _memberships(
    seed: int,
    anchor: int,
    idx: NDArray[np.int64],
    comp_type: NDArray[np.int64],
    list_day: NDArray[np.int64],
    delist_day: NDArray[np.int64],
) -> list[tuple[int, int, int, int]]:
    """(stock, l3, in_day, out_day) rows: the listing class, then up to two moves."""
    sw = tree()
    general_l1 = np.array(sw.l1_weight)
    l1 = noise.choice(seed, "l1", general_l1, idx)
    pick = noise.uniform(seed, "l3", idx)
    first = np.empty(len(idx), dtype=np.int64)
    for i in idx:
        pool = sw.l3_in_l1(int(l1[i])) if comp_type[i] == 1 else sw.l3_of(int(comp_type[i]))
        first[i] = pool[int(pick[i] * len(pool))]
    moves = (comp_type == 1) & (noise.uniform(seed, "move", idx) < _INDUSTRY_CHANGE_SHARE)
    second = moves & (noise.uniform(seed, "move_again", idx) < 0.2)
    move_day = _window(seed, "move_day", idx, list_day + YEAR, np.full_like(idx, anchor + YEAR))
    move_again_day = move_day + _window(
        seed, "move_again_day", idx, np.full_like(idx, YEAR), np.full_like(idx, 3 * YEAR)
    )
    rows: list[tuple[int, int, int, int]] = []
    for i in idx:
        days = [int(list_day[i])]
        classes = [int(first[i])]
        for k, (flag, day) in enumerate(((moves[i], move_day[i]), (second[i], move_again_day[i]))):
            if flag and days[-1] < day < delist_day[i]:
                days.append(int(day))
                classes.append(_new_class(seed, int(i), k, classes[-1]))
        outs = [*days[1:], int(delist_day[i])]
        rows += [(int(i), c, d, o) for c, d, o in zip(classes, days, outs, strict=True)]
    return rows


def _new_class(seed: int, stock: int, k: int, current: int) -> int:
    """Another general L3: in the same L1 half of the time, else anywhere."""
    sw = tree()
    same = noise.uniform(seed, "move_same_l1", stock, k)[()] < 0.5
    pool = [c for c in sw.l3_in_l1(sw.l3[current].l1) if c != current] if same else []
    if not pool:
        l1 = int(noise.choice(seed, "move_l1", np.array(sw.l1_weight), stock, k)[()])
        pool = [c for c in sw.l3_in_l1(l1) if c != current] or [
            c for c in sw.l3_of(1) if c != current
        ]
    return pool[int(noise.uniform(seed, "move_l3", stock, k)[()] * len(pool))]


def _suspensions(
    config: SimulatorConfig,
    idx: NDArray[np.int64],
    list_day: NDArray[np.int64],
    delist_day: NDArray[np.int64],
    pause_day: NDArray[np.int64],
) -> tuple[tuple[int, int, int], ...]:
    """(stock, first day, sessions): mostly one-day halts, some weeks-long ones."""
    seed = config.seed
    lo = np.maximum(list_day + 5, config.start.toordinal())
    hi = np.minimum(np.minimum(delist_day, pause_day) - 30, config.anchor.toordinal() + YEAR)
    years = np.maximum(hi - lo, 0) / YEAR
    slots = np.arange(_SUSPENSION_SLOTS)
    s, k = np.meshgrid(idx, slots, indexing="ij")
    used = (
        noise.uniform(seed, "suspend", s, k)
        < (_SUSPENSIONS_PER_YEAR * years / _SUSPENSION_SLOTS)[:, None]
    )
    first = (lo[:, None] + (hi - lo)[:, None] * noise.uniform(seed, "suspend_day", s, k)).astype(
        np.int64
    )
    kind = noise.choice(seed, "suspend_kind", (65, 25, 10), s, k)
    length = np.choose(
        kind,
        [
            np.ones_like(s),
            2 + (noise.uniform(seed, "suspend_short", s, k) * 4).astype(np.int64),
            10 + (noise.uniform(seed, "suspend_long", s, k) * 50).astype(np.int64),
        ],
    )
    rows = np.flatnonzero(used.ravel())
    return tuple(
        zip(
            s.ravel()[rows].tolist(),
            first.ravel()[rows].tolist(),
            length.ravel()[rows].tolist(),
            strict=True,
        )
    )
