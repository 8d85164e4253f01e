"""When each report is planned and announced: the disclosure calendar of every stock.

Grids are indexed [period, stock] (periods from `first_pid`, see periods.py) and hold
day ordinals, 0 meaning "none". Listed companies plan each report inside its statutory
window (`pre_date`), publish the plan about a month ahead, sometimes move it
(`modify_date`), and announce on the final plan, with these departures: ~4% announce a
few sessions off plan without a notice, ~0.6% announce after the deadline (late
filers), ~1% of Q1/Q3 reports never appear. Periods before the listing (three annual
reports and the latest quarter) are announced together just before the listing day:
old periods announced late. About 40% of April annual reports bring the Q1 report on
the same day. Some 5% of `f_ann_date`s differ from `ann_date` by a few days, 3% of
reports are restated later, and express reports and forecasts precede some reports.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipeline.sources.simulator import noise
from pipeline.sources.simulator.calendar import TradingCalendar
from pipeline.sources.simulator.periods import deadline_days, end_days
from pipeline.sources.simulator.universe import Universe

_WINDOW_OPENS_AFTER_END = np.array([8, 15, 8, 20])  # days after the period end, by quarter
_EXPRESS_SHARE = np.array([0.03, 0.05, 0.03, 0.20])
_FORECAST_SHARE = np.array([0.10, 0.20, 0.10, 0.35])
_MISSING_SHARE = np.array([0.01, 0.0, 0.01, 0.0])
_LATE_SHARE = 0.006
_MOVED_SHARE = 0.10
_OFF_PLAN_SHARE = 0.04
_SAME_DAY_AS_ANNUAL_SHARE = 0.4
_F_ANN_DIFFERS_SHARE = 0.05
_RESTATED_SHARE = 0.03
_REVISED_FORECAST_SHARE = 0.15


@dataclass(frozen=True)
class Schedule:
    """Plans and announcement days, [period, stock] grids of day ordinals (0 = none)."""

    first_pid: int
    pids: NDArray[np.int64]
    reported: NDArray[np.bool_]  # a formal report exists (announced on `ann`)
    ann: NDArray[np.int64]
    f_ann: NDArray[np.int64]
    planned: NDArray[np.bool_]  # a disclosure_date row exists (published on `pub`)
    pub: NDArray[np.int64]
    pre_first: NDArray[np.int64]  # the plan as first published
    pre_final: NDArray[np.int64]  # the plan after `modify` (equal to pre_first when never moved)
    modify: NDArray[np.int64]
    late: NDArray[np.bool_]
    restated: NDArray[np.bool_]
    rev_ann: NDArray[np.int64]
    rev_f_ann: NDArray[np.int64]
    express: NDArray[np.int64]
    forecast: NDArray[np.int64]
    forecast_revised: NDArray[np.int64]

    def row(self, pid: int) -> int:
        """Grid row of a period id."""
        return pid - self.first_pid

    @property
    def visible(self) -> NDArray[np.int64]:
        """The day each original report becomes visible: the later of ann and f_ann."""
        return np.maximum(self.ann, self.f_ann)


def build_schedule(
    seed: int, calendar: TradingCalendar, universe: Universe, first_pid: int, last_pid: int
) -> Schedule:
    """The disclosure calendar of every stock for periods first_pid..last_pid."""
    pids = np.arange(first_pid, last_pid + 1, dtype=np.int64)
    s, p = np.meshgrid(np.arange(universe.count), pids)  # [period, stock]
    quarter = p % 4
    end = end_days(pids)[:, None] + np.zeros_like(s)
    deadline = deadline_days(pids)[:, None] + np.zeros_like(s)
    opens = end + _WINDOW_OPENS_AFTER_END[quarter]

    def in_window(tag: str) -> NDArray[np.int64]:
        day = calendar.on_or_before(
            opens + ((deadline - opens) * noise.uniform(seed, tag, s, p) ** 0.6).astype(np.int64)
        )
        return np.maximum(day, calendar.on_or_after(opens))

    plan = in_window("plan")
    together = (quarter == 0) & (
        noise.uniform(seed, "with_annual", s, p) < _SAME_DAY_AS_ANNUAL_SHARE
    )
    annual_plan = np.vstack(
        [np.zeros_like(plan[:1]), plan[:-1]]
    )  # row above = the prior annual for Q1
    together &= (annual_plan >= opens) & (annual_plan <= deadline)
    plan = np.where(together, annual_plan, plan)

    list_day = universe.list_day[s]
    end_of_life = np.minimum(universe.delist_day, universe.pause_day)[s]
    listed = plan >= list_day
    late = listed & (noise.uniform(seed, "late", s, p) < _LATE_SHARE)
    moved = listed & ~late & (noise.uniform(seed, "moved", s, p) < _MOVED_SHARE)
    off_plan = listed & ~late & ~moved & (noise.uniform(seed, "off_plan", s, p) < _OFF_PLAN_SHARE)
    late_day = calendar.on_or_after(
        deadline + 3 + (117 * noise.uniform(seed, "late_day", s, p)).astype(np.int64)
    )
    new_plan = np.where(late, late_day, np.where(moved, in_window("new_plan"), plan))
    nudge = np.where(noise.uniform(seed, "nudge_sign", s, p) < 0.5, -1, 1) * (
        1 + (3 * noise.uniform(seed, "nudge", s, p)).astype(np.int64)
    )
    nudged = np.clip(
        calendar.shift(plan, nudge), calendar.on_or_after(opens), calendar.on_or_before(deadline)
    )
    actual = np.where(off_plan, nudged, new_plan)
    # a Q1 report never precedes the previous annual report
    annual_actual = np.vstack([np.zeros_like(actual[:1]), actual[:-1]])
    after_annual = (quarter == 0) & (annual_actual > actual)
    actual = np.where(after_annual, annual_actual, actual)
    new_plan = np.where(after_annual, annual_actual, new_plan)
    late |= listed & (actual > deadline)

    pub = calendar.on_or_before(end - 30 + (25 * noise.uniform(seed, "pub", s, p)).astype(np.int64))
    notice_lead = 3 + (12 * noise.uniform(seed, "notice", s, p)).astype(np.int64)
    modify = np.where(
        moved | late, np.maximum(np.minimum(plan, new_plan) - notice_lead, pub + 1), 0
    )
    modify = np.where(late, np.maximum(deadline - 1 - (notice_lead % 5), pub + 1), modify)
    planned = listed & (pub < end_of_life) & (pub >= list_day)
    missing = listed & (noise.uniform(seed, "missing", s, p) < _MISSING_SHARE[quarter])

    before_listing = ~listed & (end < list_day)
    latest_before = before_listing & ~np.vstack(
        [before_listing[1:], np.zeros_like(before_listing[:1])]
    )
    recent = p >= quarter_of(universe.list_day)[s] - 13
    prospectus = before_listing & recent & ((quarter == 3) | latest_before)
    ipo_ann = calendar.on_or_before(
        list_day - 3 - (12 * noise.uniform(seed, "ipo_ann", s)).astype(np.int64)
    )

    reported = (listed & ~missing & (actual < end_of_life)) | prospectus
    ann = np.where(prospectus, ipo_ann, np.where(reported, actual, 0))
    shift = np.where(noise.uniform(seed, "f_sign", s, p) < 0.5, -1, 1) * (
        1 + (5 * noise.uniform(seed, "f_days", s, p)).astype(np.int64)
    )
    differs = reported & (noise.uniform(seed, "f_differs", s, p) < _F_ANN_DIFFERS_SHARE)
    f_ann = np.where(differs, np.maximum(ann + shift, end + 1), ann)

    restated = reported & (noise.uniform(seed, "restated", s, p) < _RESTATED_SHARE)
    rev_f_ann = np.where(
        restated,
        calendar.on_or_after(
            np.maximum(ann, f_ann)
            + 30
            + (370 * noise.uniform(seed, "rev_day", s, p)).astype(np.int64)
        ),
        0,
    )
    rev_ann = np.where(noise.uniform(seed, "rev_keeps_ann", s, p) < 0.5, ann, rev_f_ann) * restated

    listed_report = reported & listed
    express = calendar.on_or_before(
        ann - 7 - (53 * noise.uniform(seed, "express_day", s, p)).astype(np.int64)
    )
    express_ok = (
        listed_report
        & (noise.uniform(seed, "express", s, p) < _EXPRESS_SHARE[quarter])
        & (express > end + 5)
        & (express < ann)
    )
    express = np.where(express_ok, express, 0)
    first_news = np.where(express_ok, express, ann)
    forecast = calendar.on_or_after(
        end - 15 + (45 * noise.uniform(seed, "forecast_day", s, p)).astype(np.int64)
    )
    forecast_ok = (
        listed_report
        & (noise.uniform(seed, "forecast", s, p) < _FORECAST_SHARE[quarter])
        & (forecast < first_news - 1)
    )
    forecast = np.where(forecast_ok, forecast, 0)
    revised = calendar.on_or_after(
        forecast
        + 5
        + ((first_news - forecast - 6) * noise.uniform(seed, "forecast_rev_day", s, p)).astype(
            np.int64
        )
    )
    revised_ok = (
        forecast_ok
        & (noise.uniform(seed, "forecast_rev", s, p) < _REVISED_FORECAST_SHARE)
        & (revised < first_news)
        & (revised > forecast)
    )
    return Schedule(
        first_pid=first_pid,
        pids=pids,
        reported=reported,
        ann=ann,
        f_ann=f_ann * reported,
        planned=planned,
        pub=pub * planned,
        pre_first=plan * planned,
        pre_final=new_plan * planned,
        modify=modify * planned,
        late=late & reported,
        restated=restated,
        rev_ann=rev_ann,
        rev_f_ann=rev_f_ann,
        express=express,
        forecast=forecast,
        forecast_revised=np.where(revised_ok, revised, 0),
    )


def quarter_of(days: NDArray[np.int64]) -> NDArray[np.int64]:
    """Period id of the quarter containing each day."""
    dates = [dt.date.fromordinal(d) for d in days.tolist()]
    return np.array([d.year * 4 + (d.month - 1) // 3 for d in dates], dtype=np.int64)
