"""Every catalogued API: the package copy of the catalogue is the shared one, each API
has a task, a dataset and an area, and the keys chosen are unique on what the simulator
serves."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from cache.catalogue import raw_dataset
from cache.catalogue.apis import catalogue
from cache.catalogue.coverage import AREAS, DEFAULT_APIS, FILLS, KEY_CHOICES, covered
from cache.catalogue.refresh import PACKAGE_COPY, refresh
from foundation.errors import UsageError
from pipeline.sources.simulator import Simulator, SimulatorConfig
from pipeline.sync.tasks import ALL_TASKS, TASKS, select_tasks

ROOT = Path(__file__).resolve().parents[2]
# CI clones the repository beside shared/; a worktree of it sits one level deeper.
SHARED = [p / "shared" / "tushare" / "apis.json" for p in (ROOT.parent, ROOT.parent.parent)]
TINY = SimulatorConfig(
    stocks=12, start=dt.date(2024, 3, 1), today=dt.date(2024, 6, 28), points=20000
)


def test_the_package_catalogue_is_the_shared_one(tmp_path: Path) -> None:
    shared = next((p for p in SHARED if p.is_file()), None)
    if shared is None:
        pytest.skip("no shared/tushare/apis.json beside the repository")
    assert PACKAGE_COPY.read_bytes() == shared.read_bytes()
    copy = tmp_path / "apis.json"
    assert refresh(shared, copy) == len(catalogue()) == 212
    assert copy.read_bytes() == shared.read_bytes()


def test_the_generator_refuses_what_is_not_a_catalogue(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"apis": {"x": {"params": []}}}')
    target = tmp_path / "apis.json"
    with pytest.raises(UsageError, match="not a catalogue"):
        refresh(bad, target)
    with pytest.raises(UsageError, match="no shared catalogue"):
        refresh(tmp_path / "missing.json", target)
    assert not target.exists()


def test_every_catalogued_api_has_one_area_task_and_dataset() -> None:
    names = [n for names in AREAS.values() for n in names]
    assert sorted(names) == sorted(catalogue())  # each in exactly one area
    assert sorted(t.name for t in ALL_TASKS) == sorted(catalogue())
    assert [t.name for t in TASKS] == [n for n in DEFAULT_APIS if n in {t.name for t in TASKS}]
    assert {t.name for t in TASKS} == set(DEFAULT_APIS)
    for c in covered():
        spec = raw_dataset(c.api)
        assert spec.key and set(spec.key) <= set(spec.columns), c.api
        assert spec.columns == c.spec.field_names, c.api
        assert set(dict(c.fills)) <= set(c.spec.param_names), c.api
        if c.unit == "trade_date":
            assert c.date_param in c.spec.param_names and c.date_field == c.date_param, c.api
    assert set(KEY_CHOICES) <= {c.api for c in covered()}
    assert set(FILLS) <= {c.api for c in covered()}


def test_groups_select_by_area_and_the_default_set_stays_the_26() -> None:
    assert [t.name for t in select_tasks()] == [t.name for t in select_tasks(groups=["default"])]
    assert {t.name for t in select_tasks()} == set(DEFAULT_APIS)
    assert len(select_tasks(groups=["all"])) == 212
    for area, names in AREAS.items():
        assert {t.name for t in select_tasks(groups=[area])} == set(names), area
    finance = {t.name for t in select_tasks(groups=["finance"])}
    assert "income" in finance and "fund_nav" not in finance
    assert [t.name for t in select_tasks(groups=["all"])][:3] == [
        "stock_basic",
        "trade_cal",
        "namechange",
    ]
    with pytest.raises(UsageError, match="unknown group 'crypto'"):
        select_tasks(groups=["crypto"])


@pytest.fixture(scope="module")
def tiny() -> Simulator:
    return Simulator(TINY)


def test_the_simulator_serves_every_api_unique_on_its_key(tiny: Simulator) -> None:
    empty = []
    for c in covered():
        frame = tiny.ground_truth(c.api)
        spec = raw_dataset(c.api)
        assert dict(frame.schema) == dict(spec.schema), c.api
        if frame.height == 0:
            empty.append(c.api)
            continue
        assert frame.select(spec.key).unique().height == frame.height, c.api
        for column in spec.key:
            assert frame[column].null_count() == 0, (c.api, column)
    assert not empty


def test_rows_depend_on_the_row_not_on_the_request(tiny: Simulator) -> None:
    """A range and its single days give the same rows (what lets sync strategies agree)."""
    ranged = tiny.ground_truth("fund_daily", start_date="20240624", end_date="20240628")
    days = pl.concat(
        [tiny.ground_truth("fund_daily", trade_date=d) for d in ("20240628", "20240627")]
    )
    assert ranged["trade_date"].n_unique() == 5
    assert ranged.filter(pl.col("trade_date") >= dt.date(2024, 6, 27)).equals(days)
    listed = tiny.ground_truth("stock_basic", list_status="L")["ts_code"].to_list()
    margin = tiny.ground_truth("margin_detail", trade_date="20240628")
    assert set(margin["ts_code"]) <= set(listed) and margin.height > 0
