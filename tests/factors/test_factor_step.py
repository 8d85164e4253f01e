"""The factor step: cache in, year files out; executors, incremental runs, reranking."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import pipeline.factor_step as step
from cache.layout import CacheLayout
from foundation.errors import UsageError
from pipeline.factor_step import FactorInputError, compute_factors, rerank_factors
from tests.factors.helpers import G_CONTRACT, P_CONTRACT, product_factors
from tests.factors.synthetic import Market, known_at, synthetic_market, write_cache

D = dt.date
FIRST, LAST = D(2018, 1, 1), D(2020, 12, 31)


@pytest.fixture(scope="module")
def market() -> Market:
    """10 stocks over three years (four year files with the early reports)."""
    return synthetic_market(10, FIRST, LAST, seed=5)


def _read(layout: CacheLayout, factor: str) -> pl.DataFrame:
    return pl.read_parquet(layout.glob("factors", factor)).sort("ts_code", "calc_date")


def _backfill(root: Path, market: Market, **kw: object) -> CacheLayout:
    layout = write_cache(root, market)
    compute_factors(layout, mode="backfill", executor="inline", **kw)  # type: ignore[arg-type]
    return layout


def test_backfill_writes_sorted_year_files_equal_to_the_pure_chain(
    tmp_path: Path, market: Market
) -> None:
    layout = write_cache(tmp_path, market)
    result = compute_factors(layout, mode="backfill", executor="inline")
    p, g = _read(layout, "p"), _read(layout, "g")
    expected_p, expected_g = product_factors(market, LAST)
    assert_frame_equal(p, expected_p, check_exact=True)
    assert_frame_equal(g, expected_g, check_exact=True)
    assert result.as_of == LAST
    assert result.rows_written == {"p": p.height, "g": g.height}
    assert result.dates_computed["p"] == p.get_column("calc_date").n_unique()
    for factor, schema in (("p", P_CONTRACT), ("g", G_CONTRACT)):
        files = sorted(layout.dataset_dir("factors", factor).glob("*.parquet"))
        years = sorted(set(p.get_column("calc_date").dt.year()))
        assert [f.name for f in files] == [f"{y}.parquet" for y in years]
        assert len(files) >= 4
        for path in files:
            frame = pl.read_parquet(path)
            assert frame.schema == schema
            assert frame.equals(frame.sort("ts_code", "calc_date"))
            assert frame.get_column("calc_date").dt.year().unique().to_list() == [int(path.stem)]
            assert (frame.get_column("ann_date") <= frame.get_column("calc_date")).all()
            assert frame.get_column("ann_date").null_count() == 0


def test_executors_give_identical_results(tmp_path: Path, market: Market) -> None:
    results = {}
    for spec, workers in (("inline", 1), ("process", 1), ("process", 2), ("local-dask", 2)):
        layout = write_cache(tmp_path / f"{spec}-{workers}", market)
        compute_factors(layout, mode="backfill", executor=spec, workers=workers)
        results[spec, workers] = (_read(layout, "p"), _read(layout, "g"))
    base_p, base_g = results["inline", 1]
    for p, g in results.values():
        assert_frame_equal(p, base_p, check_exact=True)
        assert_frame_equal(g, base_g, check_exact=True)


@pytest.mark.slow
def test_weekly_incremental_runs_equal_one_backfill(tmp_path: Path, market: Market) -> None:
    incremental = tmp_path / "incremental"
    as_of = D(2018, 3, 7)  # Wednesdays: the week's Friday is not a calc date yet
    runs = 0
    while as_of <= LAST + dt.timedelta(days=7):
        layout = write_cache(incremental, known_at(market, as_of))
        compute_factors(layout, executor="inline")
        as_of += dt.timedelta(weeks=1)
        runs += 1
    assert runs > 140
    full = _backfill(tmp_path / "backfill", known_at(market, LAST + dt.timedelta(days=7)))
    for factor in ("p", "g"):
        assert_frame_equal(_read(layout, factor), _read(full, factor), check_exact=True)


def test_incremental_computes_only_new_dates_and_recompute_since_takes_late_data(
    tmp_path: Path, market: Market
) -> None:
    early = known_at(market, D(2020, 6, 30))
    layout = write_cache(tmp_path / "cache", early)
    first = compute_factors(layout, executor="inline")
    assert first.dates_computed["p"] > 0
    again = compute_factors(layout, executor="inline")
    assert again.dates_computed == {"p": 0, "g": 0}

    # a report announced on 2020-06-10 arrives late: the PIT table gains a back-dated row
    code = early.indicators.get_column("ts_code")[0]
    late_row = (
        early.indicators.filter(pl.col("ts_code") == code)
        .tail(1)
        .with_columns(
            knowledge_date=pl.lit(D(2020, 6, 10)),
            ann_date=pl.lit(D(2020, 6, 10)),
            gpa=pl.lit(1e6),
            roe=pl.lit(1e6),
            roa=pl.lit(1e6),
        )
    )
    late = Market(
        early.trade_cal,
        early.stock_basic,
        early.daily,
        pl.concat([early.indicators.filter(pl.col("knowledge_date") != D(2020, 6, 10)), late_row]),
        early.industry,
    )
    write_cache(tmp_path / "cache", late)
    before = _read(layout, "p")
    compute_factors(layout, executor="inline")
    assert_frame_equal(_read(layout, "p"), before)  # incremental: stored dates stay as they were
    redo = compute_factors(layout, executor="inline", recompute_since=D(2020, 6, 10))
    assert redo.dates_computed["p"] == 3  # 06-12, 06-19, 06-24 (as_of 06-30 is a Tuesday)
    full = _backfill(tmp_path / "full", late)
    for factor in ("p", "g"):
        assert_frame_equal(_read(layout, factor), _read(full, factor), check_exact=True)
    assert not _read(layout, "p").equals(before)


def test_g_alone_computes_the_p_history_it_needs(tmp_path: Path, market: Market) -> None:
    full = _backfill(tmp_path / "full", market)
    layout = write_cache(tmp_path / "g-only", market)
    start = D(2020, 7, 1)
    result = compute_factors(layout, "g", start=start, executor="inline")
    g = _read(layout, "g")
    assert g.get_column("calc_date").min() >= start
    expected = _read(full, "g").filter(pl.col("calc_date") >= start)
    assert_frame_equal(g, expected, check_exact=True)
    p_dates = _read(layout, "p").get_column("calc_date")
    assert p_dates.min() <= start - dt.timedelta(days=730 + 335)
    assert result.dates_computed["p"] == p_dates.n_unique()


def test_a_range_backfill_replaces_only_that_range(tmp_path: Path, market: Market) -> None:
    layout = _backfill(tmp_path, market)
    before = _read(layout, "p")
    path = layout.dataset_dir("factors", "p") / "2019.parquet"
    stored = pl.read_parquet(path)
    # a stale row inside the range, at a date that is no calc date, must go
    stray = stored.head(1).with_columns(calc_date=pl.lit(D(2019, 5, 1)))
    step.write_parquet_atomic(pl.concat([stored, stray]).sort("ts_code", "calc_date"), path)
    compute_factors(
        layout, "p", start=D(2019, 4, 1), end=D(2019, 6, 30), mode="backfill", executor="inline"
    )
    assert_frame_equal(_read(layout, "p"), before, check_exact=True)


def test_rerank_restores_scores_from_the_sub_factors(tmp_path: Path, market: Market) -> None:
    layout = _backfill(tmp_path, market)
    before = {f: _read(layout, f) for f in ("p", "g")}
    blank = {
        "p": ["p_score", "p_rank", "s_gpa", "s_roe", "s_roa"],
        "g": ["g_score", "g_rank", "rank_em", "rank_es", "rank_rm", "rank_pm"],
    }
    for factor, columns in blank.items():
        for path in layout.dataset_dir("factors", factor).glob("*.parquet"):
            frame = pl.read_parquet(path)
            step.write_parquet_atomic(
                frame.with_columns(pl.lit(None).cast(frame.schema[c]).alias(c) for c in columns),
                path,
            )
    result = rerank_factors(layout, "all", start=D(2019, 1, 1))
    assert (
        result.dates_computed["p"]
        == before["p"]
        .filter(pl.col("calc_date") >= D(2019, 1, 1))
        .get_column("calc_date")
        .n_unique()
    )
    for factor in ("p", "g"):
        after = _read(layout, factor)
        since = pl.col("calc_date") >= D(2019, 1, 1)
        assert_frame_equal(after.filter(since), before[factor].filter(since), check_exact=True)
        assert (
            after.filter(~since).get_column(blank[factor][0]).null_count()
            == after.filter(~since).height
        )


def test_a_crash_leaves_whole_files_and_a_rerun_finishes(
    tmp_path: Path, market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = write_cache(tmp_path / "crash", market)
    real = step.compute_shard
    calls = {"n": 0}

    def crash_on_sixth(shard: step.Shard) -> step.ShardOutcome:
        calls["n"] += 1
        if calls["n"] == 6:
            msg = "killed"
            raise RuntimeError(msg)
        return real(shard)

    monkeypatch.setattr(step, "compute_shard", crash_on_sixth)
    with pytest.raises(RuntimeError, match="killed"):
        compute_factors(layout, executor="inline")
    monkeypatch.setattr(step, "compute_shard", real)
    years = len(list(layout.dataset_dir("factors", "p").glob("*.parquet")))
    g_files = list(layout.dataset_dir("factors", "g").glob("*.parquet"))
    # all P shards ran first; the in-process executor still ran the G shards after the
    # failing one (the first G year), and the failure surfaced at the end
    assert len(g_files) == years - 1
    assert min(int(f.stem) for f in g_files) > int(
        min(layout.dataset_dir("factors", "p").glob("*.parquet")).stem
    )
    for path in layout.root.joinpath("factors").rglob("*"):
        assert path.suffix == ".parquet" or path.is_dir()  # no temporary file left behind
    killed = layout.dataset_dir("factors", "g") / ".2019.parquet.99999.tmp"
    killed.write_bytes(b"PAR1 cut short")  # what a kill -9 mid-write leaves
    compute_factors(layout, executor="inline")
    assert not killed.exists()
    full = _backfill(tmp_path / "full", market)
    for factor in ("p", "g"):
        assert_frame_equal(_read(layout, factor), _read(full, factor), check_exact=True)


def test_progress_counts_shards_over_both_phases(tmp_path: Path, market: Market) -> None:
    layout = write_cache(tmp_path, market)
    seen: list[tuple[int, int]] = []
    compute_factors(layout, executor="inline", on_progress=lambda d, t: seen.append((d, t)))
    years = len(list(layout.dataset_dir("factors", "p").glob("*.parquet")))
    assert seen == [(i, 2 * years) for i in range(1, 2 * years + 1)]


def test_monthly_frequency_and_beijing_stocks_left_out(tmp_path: Path, market: Market) -> None:
    layout = write_cache(tmp_path, market)
    compute_factors(layout, freq="monthly", mode="backfill", executor="inline", include_bj=False)
    expected_p, expected_g = product_factors(market, LAST, "monthly", include_bj=False)
    assert_frame_equal(_read(layout, "p"), expected_p, check_exact=True)
    assert_frame_equal(_read(layout, "g"), expected_g, check_exact=True)
    assert not _read(layout, "p").get_column("ts_code").str.ends_with(".BJ").any()
    assert market.stock_basic.get_column("ts_code").str.ends_with(".BJ").any()


def test_missing_inputs_and_bad_arguments(tmp_path: Path, market: Market) -> None:
    layout = CacheLayout(tmp_path / "empty")
    with pytest.raises(FactorInputError, match="raw/daily"):
        compute_factors(layout, executor="inline")
    layout = write_cache(tmp_path / "no-pit", market)
    for path in layout.dataset_dir("pit", "indicators").rglob("*.parquet"):
        path.unlink()
    with pytest.raises(FactorInputError, match="pit/indicators"):
        compute_factors(layout, executor="inline")
    with pytest.raises(UsageError, match="freq"):
        compute_factors(layout, freq="hourly", executor="inline")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="--start 2024-02-01 is after --end 2024-01-01"):
        compute_factors(layout, start=dt.date(2024, 2, 1), end=dt.date(2024, 1, 1))


def test_no_trading_data_yet_computes_nothing(tmp_path: Path, market: Market) -> None:
    layout = write_cache(tmp_path, known_at(market, FIRST - dt.timedelta(days=1)))
    result = compute_factors(layout, executor="inline")
    assert result.as_of is None
    assert result.dates_computed == {"p": 0, "g": 0}
    assert not layout.dataset_dir("factors", "p").exists()


def test_indicators_without_lineage_columns_ask_for_a_pit_rebuild(
    tmp_path: Path, market: Market
) -> None:
    old = market.indicators.drop("ttm_vis_date", "yoy_vis_date", "bs_vis_date")
    layout = write_cache(
        tmp_path, Market(market.trade_cal, market.stock_basic, market.daily, old, market.industry)
    )
    with pytest.raises(FactorInputError, match=r"ttm_vis_date.*ah pit --mode full"):
        compute_factors(layout, executor="inline")
