"""build_pit over real Parquet: end to end, incremental = full, executors, crashes, verify."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from cache.catalogue.datasets import dataset
from cache.layout import CacheLayout
from pipeline.pit import maths as pit
from pipeline.pit import step as pit_step
from pipeline.pit.step import PitBuildError, bucket_of, build_pit, verify_pit
from tests.pit.reference import INDICATOR_VALUES, Reference
from tests.pit.synthetic import FETCHED_TYPE, FIRST_FETCH, write_raw

STOCK_TABLES = ("statement_versions", "income_quarterly", "balance", "indicators")
ALL_TABLES = (*STOCK_TABLES, "industry", "industry_monthly")
SCHEMAS = {table: dataset("pit", table).schema for table in ALL_TABLES}
KEYS = {
    "statement_versions": ["ts_code", "end_date", "vis_date", "source", "update_flag"],
    "income_quarterly": ["ts_code", "end_date", "knowledge_date"],
    "balance": ["ts_code", "end_date", "vis_date"],
    "indicators": ["ts_code", "knowledge_date"],
    "industry": list(pit.INDUSTRY_COLUMNS),
    "industry_monthly": ["ts_code", "month_end"],
}
LATER_FETCH = FIRST_FETCH + dt.timedelta(days=7)


def table(layout: CacheLayout, name: str) -> pl.DataFrame:
    """A whole PIT table, sorted by its key (empty with its schema when it has no file)."""
    files = sorted(layout.dataset_dir("pit", name).glob("*.parquet"))
    if not files:
        return pl.DataFrame(schema=SCHEMAS[name])
    return pl.read_parquet(layout.glob("pit", name)).sort(KEYS[name], nulls_last=False)


def assert_same_tables(ours: CacheLayout, theirs: CacheLayout) -> None:
    """The PIT tables of two caches hold the same rows, whatever their files and order,
    and no key twice."""
    for name in ALL_TABLES:
        got = table(ours, name)
        assert got.equals(table(theirs, name)), name
        assert not got.select(KEYS[name]).is_duplicated().any(), name


def part_stats(layout: CacheLayout) -> dict[Path, tuple[int, int]]:
    """(mtime, inode) of every bucket file of the stock tables."""
    return {
        p: (p.stat().st_mtime_ns, p.stat().st_ino)
        for name in STOCK_TABLES
        for p in layout.dataset_dir("pit", name).glob("part-*.parquet")
    }


def full_build_of(layout: CacheLayout, root: Path) -> CacheLayout:
    """A full build over a copy of `layout`'s raw layer."""
    fresh = CacheLayout(root)
    shutil.copytree(layout.root / "raw", fresh.root / "raw")
    build_pit(fresh, mode="full", executor="inline")
    return fresh


def files_of(layout: CacheLayout) -> dict[str, pl.DataFrame]:
    """Every output file by its path under pit/, with its rows in file order."""
    base = layout.root / "pit"
    return {str(p.relative_to(base)): pl.read_parquet(p) for p in sorted(base.rglob("*.parquet"))}


def restate(frames: dict[str, pl.DataFrame], codes: list[str]) -> dict[str, pl.DataFrame]:
    """New revised versions of each code's latest period, fetched a week later."""
    out = {}
    for name, value in (("income", "revenue"), ("balancesheet", "total_assets")):
        latest = (
            frames[name]
            .filter(pl.col("ts_code").is_in(codes))
            .sort("end_date")
            .group_by("ts_code")
            .last()
        )
        out[name] = latest.with_columns(
            (pl.col(value) * 1.25).alias(value),
            ann_date=pl.col("ann_date") + pl.duration(days=200),
            f_ann_date=pl.col("f_ann_date") + pl.duration(days=200),
            update_flag=pl.lit("1"),
            _fetched_at=pl.lit(LATER_FETCH, dtype=FETCHED_TYPE),
        ).select(frames[name].columns)
    return out


def test_full_build_over_parquet_matches_the_pure_maths(
    raw_cache: CacheLayout, raw_frames: dict[str, pl.DataFrame]
) -> None:
    progress: list[tuple[int, int]] = []
    result = build_pit(
        raw_cache, mode="full", executor="inline", on_progress=lambda d, n: progress.append((d, n))
    )
    versions = pit.statement_versions({s: raw_frames[s] for s in pit.SOURCES})
    quarterly = pit.income_quarterly(versions)
    sheets = pit.balance(versions)
    industry = pit.industry(raw_frames["index_member_all"])
    expected = {
        "statement_versions": versions,
        "income_quarterly": quarterly,
        "balance": sheets,
        "indicators": pit.indicators(quarterly, sheets),
        "industry": industry,
        "industry_monthly": pit.industry_monthly(industry, FIRST_FETCH.date()),
    }
    for name, frame in expected.items():
        got = table(raw_cache, name)
        assert got.schema == pl.Schema(SCHEMAS[name]), name
        assert got.height > 0, name
        assert got.equals(frame.sort(KEYS[name], nulls_last=False)), name
        assert result.table_rows[name] == result.rows_written[name] == frame.height
    assert result.stocks_rebuilt == raw_frames["income"]["ts_code"].n_unique()
    assert progress[-1] == (pit_step.GROUPS + 1, pit_step.GROUPS + 1)  # the jobs, industry too
    assert verify_pit(raw_cache) == []
    state = json.loads((raw_cache.state_dir / "pit.json").read_text())
    assert state["targets"]["income"]["watermark"] == FIRST_FETCH.isoformat()


def test_output_files_hold_one_bucket_each_sorted_by_stock_and_date(raw_cache: CacheLayout) -> None:
    build_pit(raw_cache, mode="full", executor="inline")
    for name in STOCK_TABLES:
        files = sorted(raw_cache.dataset_dir("pit", name).glob("*.parquet"))
        assert len(files) > 1
        for path in files:
            frame = pl.read_parquet(path)
            bucket = int(path.stem.removeprefix("part-"))
            assert {bucket_of(c) for c in frame["ts_code"].unique()} == {bucket}
            assert frame.equals(frame.sort(KEYS[name], nulls_last=False)), path


def test_indicators_of_the_full_columns_agree_with_the_reference(
    raw_cache: CacheLayout, raw_frames: dict[str, pl.DataFrame]
) -> None:
    build_pit(raw_cache, targets=("indicators",), mode="full", executor="inline")
    codes = sorted(raw_frames["income"]["ts_code"].unique())[:3]
    history = {
        name: (frame.columns, frame.filter(pl.col("ts_code").is_in(codes)).to_dicts())
        for name, frame in raw_frames.items()
        if name in ("income", "balancesheet")
    }
    ref = Reference(history)
    dates = sorted({d + dt.timedelta(days=k) for d in ref.event_dates() for k in (-1, 0, 1)})
    pairs = pl.DataFrame(
        [(c, d) for c in codes for d in dates],
        schema={"ts_code": pl.String, "date": pl.Date},
        orient="row",
    )
    columns = INDICATOR_VALUES
    seen = pit.read_as_of(pairs, table(raw_cache, "indicators"))
    for row in seen.iter_rows(named=True):
        expected = ref.indicators_at(row["ts_code"], row["date"])
        got = None if row["knowledge_date"] is None else {c: row[c] for c in columns}
        assert got == expected, row


def test_an_additive_incremental_build_writes_only_deltas_and_equals_a_full_build(
    tmp_path: Path, raw_cache: CacheLayout, raw_frames: dict[str, pl.DataFrame]
) -> None:
    build_pit(raw_cache, mode="full", executor="inline")
    before = {p: p.stat().st_mtime_ns for p in (raw_cache.root / "pit").rglob("*.parquet")}
    parts = part_stats(raw_cache)
    changed = sorted(raw_frames["income"]["ts_code"].unique())[:2]
    revised = restate(raw_frames, changed)
    write_raw(raw_cache, revised, part="part-1")

    result = build_pit(raw_cache, mode="incremental", executor="inline")

    assert result.buckets_rebuilt == len({bucket_of(c) for c in changed})
    assert part_stats(raw_cache) == parts  # a new version adds rows: no bucket file rewritten
    for path, mtime in before.items():
        assert path.stat().st_mtime_ns == mtime, path
    added = sorted(
        set(files_of(raw_cache)) - {str(p.relative_to(raw_cache.root / "pit")) for p in before}
    )
    assert added == [f"{name}/delta-000002-00-00.parquet" for name in sorted(STOCK_TABLES)]
    for name in added:
        delta = pl.read_parquet(raw_cache.root / "pit" / name)
        assert set(delta["ts_code"]) == set(changed)
        assert delta.equals(delta.sort("ts_code", maintain_order=True))
        assert result.rows_written[name.split("/")[0]] == delta.height
    assert_same_tables(raw_cache, full_build_of(raw_cache, tmp_path / "fresh"))
    seen = table(raw_cache, "income_quarterly").select("ts_code", "end_date", "knowledge_date")
    announced = revised["income"].select("ts_code", "end_date", knowledge_date="ann_date")
    assert announced.join(seen, on=announced.columns).height == len(changed)
    assert build_pit(raw_cache, mode="incremental", executor="inline").buckets_rebuilt == 0


def test_results_do_not_depend_on_the_executor_or_worker_count(
    tmp_path: Path, raw_frames: dict[str, pl.DataFrame]
) -> None:
    outputs = []
    for spec, workers in (("inline", 1), ("process", 1), ("process", 2)):
        layout = CacheLayout(tmp_path / f"{spec}-{workers}")
        write_raw(layout, raw_frames)
        build_pit(layout, mode="full", executor=spec, workers=workers)
        outputs.append(files_of(layout))
    first = outputs[0]
    assert len(first) > len(ALL_TABLES)
    for other in outputs[1:]:
        assert other.keys() == first.keys()
        for name, frame in first.items():
            assert other[name].equals(frame), name


def test_a_crash_leaves_old_or_new_files_and_a_rerun_finishes(
    tmp_path: Path,
    raw_cache: CacheLayout,
    raw_frames: dict[str, pl.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build_pit(raw_cache, mode="full", executor="inline")
    state_before = (raw_cache.state_dir / "pit.json").read_bytes()
    old = files_of(raw_cache)
    changed = sorted(raw_frames["income"]["ts_code"].unique())[:6]
    write_raw(raw_cache, restate(raw_frames, changed), part="part-1")
    fresh = full_build_of(raw_cache, tmp_path / "fresh")

    real_write = pit_step.write_parquet_atomic
    calls = []

    def crash_on_third_write(
        frame: pl.DataFrame, target: Path, sync_dir: bool = True, level: int | None = None
    ) -> Path:
        calls.append(target)
        if len(calls) == 3:
            msg = "simulated crash"
            raise OSError(msg)
        return real_write(frame, target, sync_dir, level)

    monkeypatch.setattr(pit_step, "write_parquet_atomic", crash_on_third_write)
    with pytest.raises(OSError, match="simulated crash"):
        build_pit(raw_cache, mode="incremental", executor="inline")
    monkeypatch.undo()

    assert (raw_cache.state_dir / "pit.json").read_bytes() == state_before
    mid = files_of(raw_cache)
    for name, frame in old.items():
        assert mid[name].equals(frame), name  # the bucket files as they were
    written = sorted(set(mid) - set(old))  # the deltas written before the crash
    assert 0 < len(written) < len(STOCK_TABLES)
    assert all(name.split("/")[1].startswith("delta-") for name in written)
    build_pit(raw_cache, mode="incremental", executor="inline")
    assert_same_tables(raw_cache, fresh)


def test_missing_raw_datasets_count_as_empty(
    tmp_path: Path, raw_frames: dict[str, pl.DataFrame]
) -> None:
    layout = CacheLayout(tmp_path / "cache")
    write_raw(layout, {"income": raw_frames["income"]})
    result = build_pit(layout, mode="full", executor="inline")
    assert result.table_rows["balance"] == result.table_rows["industry"] == 0
    indicators = table(layout, "indicators")
    assert indicators.height > 0
    assert indicators["bs_end_date"].null_count() == indicators.height
    assert indicators["roa"].null_count() == indicators.height


def test_no_raw_data_at_all_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PitBuildError, match="no raw data"):
        build_pit(CacheLayout(tmp_path / "empty"), executor="inline")


def test_unknown_target_or_mode_is_rejected(raw_cache: CacheLayout) -> None:
    with pytest.raises(PitBuildError, match="'factors'"):
        build_pit(raw_cache, targets=("factors",), executor="inline")
    with pytest.raises(PitBuildError, match="'sometimes'"):
        build_pit(raw_cache, mode="sometimes", executor="inline")  # type: ignore[arg-type]


def test_a_target_builds_only_its_tables_and_keeps_its_own_watermark(
    raw_cache: CacheLayout,
) -> None:
    result = build_pit(raw_cache, targets=("balance",), mode="incremental", executor="inline")
    assert set(result.table_rows) == {"balance"}
    assert sorted(p.name for p in (raw_cache.root / "pit").iterdir()) == ["balance"]
    result = build_pit(raw_cache, targets=("indicators",), mode="incremental", executor="inline")
    assert result.buckets_rebuilt == pit_step.BUCKETS  # first indicators build: everything
    state = json.loads((raw_cache.state_dir / "pit.json").read_text())
    assert set(state["targets"]) == {"balance", "indicators"}


def test_verify_pit_names_rows_seen_before_their_announcement(raw_cache: CacheLayout) -> None:
    build_pit(raw_cache, targets=("indicators",), mode="full", executor="inline")
    path = sorted(raw_cache.dataset_dir("pit", "indicators").glob("*.parquet"))[0]
    frame = pl.read_parquet(path)
    bad = frame.with_columns(
        ann_date=pl.when(pl.int_range(pl.len()) == 1)
        .then(pl.col("knowledge_date") + pl.duration(days=1))
        .otherwise("ann_date")
    )
    bad.write_parquet(path)
    (finding,) = verify_pit(raw_cache)
    row = frame.row(1, named=True)
    assert finding.startswith("pit.indicators: 1 row(s) where ann_date")
    assert row["ts_code"] in finding
    assert str(row["knowledge_date"]) in finding


def test_alphahome_target_names_are_aliases(raw_cache: CacheLayout) -> None:
    result = build_pit(
        raw_cache, targets=("financial_indicators",), mode="incremental", executor="inline"
    )
    assert set(result.table_rows) == {"indicators"}
    result = build_pit(
        raw_cache, targets=("industry_classification",), mode="incremental", executor="inline"
    )
    assert set(result.table_rows) == set(pit_step.TARGET_TABLES["industry"])
    assert result.table_rows["industry"] > 0
