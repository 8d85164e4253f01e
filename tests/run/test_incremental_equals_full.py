"""The daily cron job on a moving simulated today equals one run straight to the last day.

Driven only through the config, the environment and `ah run --source sim`, as a user
would: one cache is run at a first today and then at later ones (`AH_SIMULATOR_TODAY`),
another once at the last today with the same seed; every raw dataset, PIT table and
factor table must hold the same rows with the same values (order aside, and the fetch
time `_fetched_at`, which records when and not what). The `--freq daily` variant moves
one open day at a time across the day an old report period is restated under its old
announcement date, which an incremental sync must fetch whatever period it names.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import adbc_driver_postgresql.dbapi as pgdb
import polars as pl
import pytest

from pipeline.sources.simulator import Simulator, SimulatorConfig
from tests.cli_runner import ah
from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.slow

MARKET = SimulatorConfig(stocks=24, start=dt.date(2019, 1, 1), today=dt.date(2020, 6, 30), seed=8)
CONFIG = f"""
[simulator]
stocks = {MARKET.stocks}
start = {MARKET.start}
today = {MARKET.today}
seed = {MARKET.seed}
[run]
workers = 1
"""
QUARTERS = ("2020-06-30", "2020-09-30", "2020-12-31", "2021-04-30", "2021-06-30")
STATEMENTS = ("income", "balancesheet", "cashflow")


def run_days(work: Path, days: Sequence[str], *flags: str, database: str | None = None) -> Path:
    """`ah run --source sim` in `work` once per day, today moved by the environment;
    each run also loads `database` when given."""
    work.mkdir(parents=True)
    (work / "alphahome.toml").write_text(CONFIG)
    for day in days:
        env = {"AH_SIMULATOR_TODAY": day} | ({"DATABASE_URL": database} if database else {})
        out = ah("run", "--source", "sim", *flags, cwd=work, env=env, timeout=900)
        assert out.returncode == 0, f"{day}: " + out.stdout[-2000:] + out.stderr[-2000:]
    return work / "data"


def tables(cache: Path) -> dict[str, pl.DataFrame]:
    """Every raw dataset, PIT table and factor table of a cache, `_fetched_at` dropped."""
    out = {}
    for kind in ("raw", "pit", "factors"):
        for folder in sorted(p for p in (cache / kind).iterdir() if p.is_dir()):
            frame = pl.read_parquet(folder / "**/*.parquet")
            out[f"{kind}/{folder.name}"] = frame.drop("_fetched_at", strict=False)
    return out


def assert_same_tables(moved: Path, straight: Path) -> None:
    """The same tables, rows and values on both sides, compared order-independently."""
    ours, theirs = tables(moved), tables(straight)
    assert sorted(ours) == sorted(theirs)
    assert len([n for n in ours if n.startswith("raw/")]) == 26
    for name, frame in ours.items():
        other = theirs[name].select(frame.columns)
        assert frame.height > 0 and frame.height == other.height, name
        for a, b in ((frame, other), (other, frame)):
            extra = a.join(b, on=a.columns, how="anti", nulls_equal=True)
            assert extra.is_empty(), f"{name}: rows on one side only\n{extra.head(5)}"
        counts = [f.group_by(f.columns).len().sort(f.columns) for f in (frame, other)]
        assert counts[0].equals(counts[1]), f"{name}: duplicated rows differ"


def restated_days(sim: Simulator, after: dt.date) -> list[dt.date]:
    """Days after `after` on which a restatement becomes visible that keeps an
    announcement date on or before `after`: no announcement-date range of a later run
    reaches it, yet a full fetch sees it."""
    rows = sim.ground_truth("income")
    restated = rows.filter((pl.col("f_ann_date") > after) & (pl.col("ann_date") <= after))
    return sorted(set(restated["f_ann_date"].to_list()))


@functools.cache
def daily_steps() -> list[str]:
    """The `--freq daily` chain: the open day before the first restatement after the
    first today, that day, and the next open day."""
    sim = Simulator(MARKET)
    sim.set_today(dt.date.fromisoformat(QUARTERS[-1]))
    days = restated_days(sim, MARKET.today)
    assert days, "the market has no restatement to cross"
    calendar = sim.ground_truth("trade_cal", exchange="SSE").filter(pl.col("is_open") == "1")
    before = calendar.filter(pl.col("cal_date") < days[0])["cal_date"].max()
    assert isinstance(before, dt.date)
    sim.set_today(days[0])
    return [before.isoformat(), days[0].isoformat(), sim.advance(1).isoformat()]


@pytest.fixture(scope="module")
def moved_database(postgres_server: PostgresServer) -> str:
    """A database of its own that the quarterly moving chain loads at every run."""
    with pgdb.connect(postgres_server.url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute('CREATE DATABASE "moving_today"')
    return postgres_server.database_url("moving_today")


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory, moved_database: str) -> dict[str, Path]:
    """The four caches, their chains of runs side by side (each chain is sequential)."""
    root = tmp_path_factory.mktemp("moving-today")
    days = daily_steps()
    chains: dict[str, Callable[[], Path]] = {
        "moved": lambda: run_days(root / "moved", QUARTERS, database=moved_database),
        "straight": lambda: run_days(root / "straight", QUARTERS[-1:]),
        "moved_daily": lambda: run_days(root / "moved_daily", days, "--freq", "daily"),
        "straight_daily": lambda: run_days(root / "straight_daily", days[-1:], "--freq", "daily"),
    }
    with ThreadPoolExecutor(len(chains)) as pool:
        futures = {name: pool.submit(chain) for name, chain in chains.items()}
        return {name: future.result() for name, future in futures.items()}


def test_quarterly_runs_equal_one_straight_run(caches: dict[str, Path]) -> None:
    assert_same_tables(caches["moved"], caches["straight"])
    listed = pl.read_parquet(caches["moved"] / "raw/stock_basic/**/*.parquet")
    assert listed.filter(pl.col("list_date") > MARKET.today).height > 0  # listed meanwhile


@pytest.mark.postgres
def test_postgres_loaded_at_every_run_holds_the_moved_caches_tables(
    caches: dict[str, Path], moved_database: str
) -> None:
    """PIT tables grow by delta files and factor files by calc dates from run to run;
    the database loaded after each run ends with every row of every file, no more."""
    cache = caches["moved"]
    with pgdb.connect(moved_database) as conn, conn.cursor() as cur:
        for kind in ("pit", "factors"):
            for folder in sorted(p for p in (cache / kind).iterdir() if p.is_dir()):
                local = pl.read_parquet(folder / "**/*.parquet")
                cur.execute(f"select * from {kind}.{folder.name}")
                loaded = pl.from_arrow(cur.fetch_arrow_table())
                assert isinstance(loaded, pl.DataFrame)
                loaded = loaded.select(local.columns).cast(local.schema)
                assert loaded.height == local.height > 0, folder.name
                diff = local.join(loaded, on=local.columns, how="anti", nulls_equal=True)
                assert diff.is_empty(), f"{folder.name}: rows not in the database\n{diff.head(5)}"
    assert any(cache.glob("pit/indicators/delta-*.parquet"))  # the runs added deltas


def test_daily_runs_across_a_restatement_equal_one_straight_run(caches: dict[str, Path]) -> None:
    assert_same_tables(caches["moved_daily"], caches["straight_daily"])
    before, restated = (dt.date.fromisoformat(d) for d in daily_steps()[:2])
    income = pl.read_parquet(caches["moved_daily"] / "raw/income/**/*.parquet")
    crossed = income.filter((pl.col("f_ann_date") == restated) & (pl.col("ann_date") < before))
    assert not crossed.is_empty()  # fetched by the run of its day, its ann_date long past
