"""Damage the sync meets before planning: a lost task document is rebuilt from what raw/
holds and a quarantined partition re-plans only its own units, so the next sync fetches
what is missing and nothing more; any unreadable Parquet file is found."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from cache.layout import CacheLayout
from cache.partitions import partition_span
from cache.quarantine import quarantined, sweep_unreadable, unreadable_state_files
from pipeline.sync.runner import SyncRequest, run_sync
from tests.sync.conftest import START, Served, cache_rows, copy_cache, settings_for
from tests.sync.reference import truth_rows

TASKS = ("daily", "adj_factor", "income", "suspend_d")


def test_partition_span_reads_months_and_years_and_nothing_else() -> None:
    assert partition_span("2024/2024-02.parquet") == (dt.date(2024, 2, 1), dt.date(2024, 2, 29))
    assert partition_span("2023/2023-12.parquet") == (dt.date(2023, 12, 1), dt.date(2023, 12, 31))
    assert partition_span("2023.parquet") == (dt.date(2023, 1, 1), dt.date(2023, 12, 31))
    assert partition_span("data.parquet") is None
    assert partition_span("part-07.parquet") is None


def truncate(path: Path) -> None:
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def test_lost_states_are_rebuilt_from_raw_and_a_lost_partition_refetches_only_its_units(
    synced: Path, tmp_path: Path, serve: Callable[..., Served]
) -> None:
    served = serve()  # the market the shared cache was synced from
    root = copy_cache(synced, tmp_path)
    before = {
        name: set(json.loads((root / "state/tasks" / f"{name}.json").read_text())["committed"])
        for name in TASKS
    }
    documents = [root / "state/tasks" / f"{name}.json" for name in TASKS]
    documents += [root / "state/source.json", root / "state/asof.json"]
    for path in documents:
        truncate(path)
    lost = sorted((root / "raw" / "daily").rglob("*.parquet"))[-3]
    truncate(lost)
    reports = root / "raw" / "income" / "2024.parquet"  # report periods of 2024
    truncate(reports)
    first, last = partition_span(lost.relative_to(root / "raw" / "daily").as_posix()) or ()
    lost_days = {
        u for u in before["daily"] if first.strftime("%Y%m%d") <= u <= last.strftime("%Y%m%d")
    }
    assert len(lost_days) > 15
    assert set(unreadable_state_files(CacheLayout(root))) == set(documents)

    served.sim.reset_calls()
    settings = settings_for(tmp_path, served.url)
    report = run_sync(settings, SyncRequest(tasks=TASKS, start=START, progress=False))
    assert report.exit_code == 0, [t.reason for t in report.tasks]
    missing = {t.task: t.units_total for t in report.tasks}
    # the refresh window (3 trade dates, 1 day), and the lost month of daily
    assert missing["daily"] == len(lost_days | set(sorted(before["daily"])[-3:]))
    assert missing["adj_factor"] == 3
    assert missing["suspend_d"] == 3
    # versions of 2024's periods may be visible a year ahead: those days, not all since 2021
    assert missing["income"] == len({u for u in before["income"] if u >= "20221231"})
    assert missing["income"] < len(before["income"]) * 0.6
    assert served.sim.calls["daily"] <= 4  # as-of probe, the lost month, the window
    for name in TASKS:
        assert cache_rows(root, name) == truth_rows(served.sim, name, START), name
        state = json.loads((root / "state/tasks" / f"{name}.json").read_text())
        assert set(state["committed"]) >= before[name], name
        assert state["rebuild"] is False
    assert not unreadable_state_files(CacheLayout(root))  # every document written again
    assert json.loads((root / "state/source.json").read_text())["kind"] == "tushare"
    assert quarantined(CacheLayout(root)) == []  # re-fetched and rewritten: records cleared
    kept = sorted(p.name.split(".")[0] for p in (root / "quarantine").rglob("*.bad"))
    # the damaged files, kept for inspection
    assert kept == sorted([lost.stem, reports.stem, *TASKS])


def corrupt_a_page(path: Path) -> None:
    """Overwrite the middle of the data pages, leaving the footer whole."""
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    middle = (len(data) - footer) // 2
    data[middle : middle + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["empty", "magic", "cut", "page"])
def test_any_unreadable_parquet_file_is_quarantined(
    synced: Path, tmp_path: Path, damage: str
) -> None:
    root = copy_cache(synced, tmp_path)
    path = sorted((root / "raw" / "daily").rglob("*.parquet"))[2]
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "magic":
        path.write_bytes(b"XXXX" + path.read_bytes()[4:])
    elif damage == "cut":
        truncate(path)
    else:
        corrupt_a_page(path)
        pl.read_parquet_schema(path)  # the footer still reads
    layout = CacheLayout(root)
    shallow = sweep_unreadable(layout, ("raw",), ("daily",))
    moved = shallow or sweep_unreadable(layout, ("raw",), ("daily",), deep=True)
    assert bool(shallow) == (damage != "page")
    assert [e.partition for e in moved] == [path.relative_to(root / "raw" / "daily").as_posix()]
    assert not path.exists()
    assert Path(moved[0].moved_to).is_file()
    assert "unreadable Parquet" in moved[0].reason


def test_a_page_that_does_not_decode_fails_one_sync_and_the_next_refetches_it(
    synced: Path, tmp_path: Path, serve: Callable[..., Served]
) -> None:
    served = serve()
    root = copy_cache(synced, tmp_path)
    newest = sorted((root / "raw" / "daily").rglob("*.parquet"))[-1]  # the refresh window's
    corrupt_a_page(newest)
    settings = settings_for(tmp_path, served.url)
    request = SyncRequest(tasks=("daily",), start=START, progress=False)
    first = run_sync(settings, request)
    assert first.tasks[0].status == "failed"
    assert [e.dataset for e in quarantined(CacheLayout(root))] == ["raw.daily"]
    again = run_sync(settings, request)
    assert again.exit_code == 0, again.tasks[0].reason
    assert again.tasks[0].units_total < 30  # the lost month, not the whole task
    assert cache_rows(root, "daily") == truth_rows(served.sim, "daily", START)
    assert quarantined(CacheLayout(root)) == []
