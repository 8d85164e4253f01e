"""What the evening `ah run --cadence calendar` does beyond the daily part, by the calendar.

Cron and systemd fire the same job every weekday; the exchange calendar (the cached
`raw/trade_cal`) decides the rest, judged on the data's as-of date after the sync:

- factors: when a calc date of the run's frequency (the last open day of a week or a
  month, or every open day) is due and newer than the newest stored P score, so they
  are computed on the period's last open day, and caught up on the next run when that
  day was missed;
- PIT: a full rebuild on the week's last open day (AlphaHome's weekly full PIT),
  incremental on the other days.

`ah run --cadence always` (the default for a hand-run `ah run`) runs every stage.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

import polars as pl

from cache.asof import data_as_of
from cache.layout import CacheLayout
from pipeline.ops.stats import dataset_files, scan_files, trade_calendar, unit_dates

Cadence = Literal["always", "calendar"]
CADENCES: tuple[Cadence, ...] = ("always", "calendar")


@dataclass(frozen=True)
class CadencePlan:
    """The calendar's verdict for one run: whether factors are due, which PIT mode."""

    factors_due: bool
    pit_full: bool
    reason: str

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (the run report's `arguments.cadence`)."""
        return {"factors_due": self.factors_due, "pit_full": self.pit_full, "reason": self.reason}


def newest_calc_date(layout: CacheLayout, factor: str = "p") -> dt.date | None:
    """The newest stored calc date of `factors.<factor>`; None when nothing is stored."""
    files = dataset_files(layout, "factors", factor)
    if not files:
        return None
    value = scan_files(files).select(pl.col("calc_date").max()).collect().item()
    return value if isinstance(value, dt.date) else None


def decide_cadence(
    calendar: pl.DataFrame, as_of: dt.date | None, freq: str, newest_factor: dt.date | None
) -> CadencePlan:
    """The verdict for data as of `as_of` (pure: the calendar and the stored factor date in).

    Without a calendar or an as-of date nothing can be judged: the factors run (their
    incremental mode computes only missing calc dates) and PIT stays incremental.
    """
    if as_of is None or calendar.is_empty():
        return CadencePlan(True, False, "no calendar or as-of date: every stage runs")
    week_ends = unit_dates(calendar, "weekly", as_of)
    pit_full = not week_ends.is_empty() and week_ends[-1] == as_of
    due = unit_dates(calendar, freq if freq in ("weekly", "monthly") else "daily", as_of)  # type: ignore[arg-type]
    last_due = due[-1] if not due.is_empty() else None
    factors_due = last_due is not None and (newest_factor is None or last_due > newest_factor)
    pit = "full PIT (week's last open day)" if pit_full else "incremental PIT"
    if factors_due:
        reason = f"{pit}; factors due at {last_due} ({freq})"
    else:
        reason = f"{pit}; factors not due: stored up to {newest_factor}, next {freq} calc date"
        reason += " after " + str(as_of)
    return CadencePlan(factors_due, pit_full, reason)


def plan_cadence(layout: CacheLayout, freq: str) -> CadencePlan:
    """`decide_cadence` on the cache: its calendar, its as-of date, its newest P score."""
    return decide_cadence(
        trade_calendar(layout), data_as_of(layout), freq, newest_calc_date(layout)
    )
