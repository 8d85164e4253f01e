"""Acceptance 1 and 2: a full sync holds exactly the source's data, and later syncs ask
only for the new units plus the refresh window and end with the same cache."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from cache.atomic import write_parquet_atomic
from cache.views import open_catalog
from pipeline.sources.simulator import Simulator
from pipeline.sync.runner import SyncRequest, run_sync
from pipeline.sync.tasks import TASKS
from tests.sync.conftest import START, Served, cache_rows, copy_cache, settings_for
from tests.sync.reference import (
    DATASETS,
    calendar_days,
    duplicate_keys,
    income_pairs,
    open_plan_days,
    truth_rows,
)

INDEXES_QUOTED = 8  # the simulator's computed indexes (index_basic outside market SW)
INDEX_MARKETS = 8
REQUEST = SyncRequest(start=START, progress=False)


def sync(folder: Path, served: Served, request: SyncRequest = REQUEST) -> dict[str, int]:
    """One in-process run over HTTP; the calls the server saw, per API."""
    served.sim.reset_calls()
    report = run_sync(settings_for(folder, served.url), request)
    assert report.exit_code == 0, [(t.task, t.status, t.reason) for t in report.tasks]
    assert sum(report.calls_by_api.values()) == sum(served.sim.calls.values())
    return dict(served.sim.calls)


def assert_matches_source(sim: Simulator, root: Path) -> None:
    assert {spec.name for spec in TASKS} == set(DATASETS)  # the reference covers every task
    for name in DATASETS:
        expected = truth_rows(sim, name, START)
        got = cache_rows(root, name)
        assert got == expected, (name, len(got - expected), len(expected - got))
        assert duplicate_keys(root, name) == 0, name


def test_full_sync_holds_exactly_the_source(synced: Path, serve: Callable[..., Served]) -> None:
    served = serve()  # the same deterministic market the shared sync was made from
    root = synced / "data"
    assert_matches_source(served.sim, root)
    # every version of a restated report is kept
    income = pl.read_parquet(str(root / "raw/income/**/*.parquet"))
    assert set(income["update_flag"]) == {"0", "1"}
    # the analysts' catalogue reads every dataset
    with open_catalog(root / "alphahome.duckdb") as con:
        for name in DATASETS:
            count = con.execute(f"select count(*) from raw.{name}").fetchone()
            assert count is not None and count[0] == len(cache_rows(root, name))


def expected_day_calls(
    sim: Simulator, root: Path, before: dt.date, after: dt.date
) -> dict[str, int]:
    """What a sync the day after must ask, from DESIGN 5 and the source's data."""
    days = calendar_days(
        before, after
    )  # the missing visibility days (the refresh day is among them)
    late = len(income_pairs(sim, days, START, late=True))
    originals = len(income_pairs(sim, days, START, late=False))
    plans = len(open_plan_days(root, after, days))
    return {
        "trade_cal": 3, "stock_basic": 3, "namechange": 1, "index_basic": INDEX_MARKETS,
        "index_classify": 1, "index_member_all": 2,
        "daily": 2,  # the as-of probe and one ranged call for the three refresh dates
        "weekly": 1, "monthly": 1, "adj_factor": 3, "daily_basic": 3,  # by trade date
        "suspend_d": 1, "stk_limit": 1, "moneyflow": 1, "limit_list_d": 1,
        "index_daily": INDEXES_QUOTED, "index_weight": INDEXES_QUOTED,
        "income_vip": 1 + len(days), "cashflow_vip": 1 + len(days),
        "balancesheet_vip": 1 + late, "fina_indicator_vip": len(days) + late,
        "express_vip": 1, "forecast_vip": 1, "fina_mainbz_vip": 3 * originals,
        "dividend": 2 * len(days) + plans, "disclosure_date": 5,
    }  # fmt: skip


def test_a_day_later_only_the_new_units_and_the_refresh_window_are_fetched(
    tmp_path: Path, synced: Path, serve: Callable[..., Served]
) -> None:
    served = serve()
    sim, root = served.sim, copy_cache(synced, tmp_path)
    monthly = [s for s in TASKS if s.partitioning == "year_open_month"]
    for spec in monthly:  # back to the layout before 0.2: monthly files for every year
        split_into_months(root / "raw" / spec.name)
    before = sim.today
    sim.advance(1)
    expected = expected_day_calls(sim, root, before, sim.today)
    calls = sync(tmp_path, served)
    assert {k: v for k, v in calls.items() if v} == {k: v for k, v in expected.items() if v}
    assert_matches_source(sim, root)
    for spec in monthly:  # migrated by the sync: the closed year in one file
        folder = root / "raw" / spec.name
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.parquet"))
        assert files[0] == "2023.parquet" and all(f.startswith("2024/") for f in files[1:])


def split_into_months(folder: Path) -> None:
    """Rewrite a dataset's yearly files as monthly ones (the layout before 0.2)."""
    for path in folder.glob("*.parquet"):
        frame = pl.read_parquet(path)
        for (month,), part in frame.group_by(pl.col("trade_date").dt.strftime("%Y/%Y-%m")):
            write_parquet_atomic(part.sort("ts_code", "trade_date"), folder / f"{month}.parquet")
        path.unlink()


@pytest.mark.slow
def test_5_and_30_days_later_the_cache_equals_a_fresh_full_sync(
    tmp_path: Path, synced: Path, serve: Callable[..., Served]
) -> None:
    served = serve()
    sim, root = served.sim, copy_cache(synced, tmp_path / "a")
    for step in (5, 30):
        sim.advance(step)
        calls = sync(tmp_path / "a", served)
        assert calls["adj_factor"] == calls["daily_basic"] == step  # one call per trade date
        assert calls["daily"] == 2 and calls["stk_limit"] == calls["moneyflow"] == 1
        assert_matches_source(sim, root)
    fresh = sync(tmp_path / "b", served)
    assert sum(calls.values()) < sum(fresh.values())
    for name in DATASETS:
        assert cache_rows(root, name) == cache_rows(tmp_path / "b" / "data", name)


@pytest.mark.slow
def test_full_sync_of_300_stocks_over_5_years(tmp_path: Path, serve: Callable[..., Served]) -> None:
    served = serve(stocks=300, start=dt.date(2019, 7, 1))
    served.sim.reset_calls()
    request = SyncRequest(start=dt.date(2019, 7, 1), progress=False)
    report = run_sync(settings_for(tmp_path, served.url), request)
    assert report.exit_code == 0, report.render()
    root = tmp_path / "data"
    for name in DATASETS:
        expected = truth_rows(served.sim, name, dt.date(2019, 7, 1))
        assert cache_rows(root, name) == expected, name
        assert duplicate_keys(root, name) == 0, name


# Which units a sync re-fetches although they are committed: the latest N, per DESIGN 5
# (the vendor may still revise them). Written here, not read from the task catalogue.
REFRESHED_UNITS = {"daily": 3, "adj_factor": 3, "index_daily": 3, "weekly": 1}
TAMPERED_UNITS = 2  # units before the window that are tampered with too, and must stay so


def _tamper(root: Path, name: str, dates: list[dt.date]) -> None:
    """Change every float of the dataset's rows on `dates` in the cache (as a wrong copy
    of the vendor's data would), keeping `_fetched_at` and the file layout."""
    for path in sorted((root / "raw" / name).rglob("*.parquet")):
        frame = pl.read_parquet(path)
        hit = pl.col("trade_date").is_in(dates)
        floats = [c for c, t in frame.schema.items() if t == pl.Float64]
        changed = frame.with_columns(
            pl.when(hit).then(pl.col(c) + 1000.0).otherwise(pl.col(c)).alias(c) for c in floats
        )
        if not changed.equals(frame):
            write_parquet_atomic(changed, path)


def _rows_on(frame: pl.DataFrame, day: dt.date) -> set[tuple[object, ...]]:
    """The rows of a frame on one trade date, columns sorted, `_fetched_at` left out."""
    frame = frame.filter(pl.col("trade_date") == day).drop("_fetched_at", strict=False)
    return set(frame.select(sorted(frame.columns)).iter_rows())


def test_a_sync_re_fetches_exactly_the_latest_units(
    tmp_path: Path, synced: Path, serve: Callable[..., Served]
) -> None:
    served = serve()
    sim, root = served.sim, copy_cache(synced, tmp_path)
    tampered: dict[str, list[dt.date]] = {}
    for name, window in REFRESHED_UNITS.items():
        units = sorted(set(sim.ground_truth(name)["trade_date"]))  # one per unit
        tampered[name] = units[-(window + TAMPERED_UNITS) :]
        _tamper(root, name, tampered[name])
        cached = pl.read_parquet(str(root / "raw" / name / "**" / "*.parquet"))
        truth = sim.ground_truth(name)
        assert all(not _rows_on(cached, d) & _rows_on(truth, d) for d in tampered[name])
    sync(tmp_path, served)  # the same day: nothing new, only the refresh windows
    for name in REFRESHED_UNITS:
        truth = sim.ground_truth(name)
        cached = pl.read_parquet(str(root / "raw" / name / "**" / "*.parquet"))
        for i, day in enumerate(tampered[name]):
            want, got = _rows_on(truth, day), _rows_on(cached, day)
            assert want, (name, day)
            if i < TAMPERED_UNITS:  # before the window: not fetched, still wrong
                assert got and not got & want, (name, day, "re-fetched outside the window")
            else:
                assert got == want, (name, day, "not re-fetched")
