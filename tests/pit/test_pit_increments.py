"""Incremental PIT builds over changed subsets: equal to a full build, touching only the
changed stocks' buckets, reporting exactly the dates at which pit.indicators reads
differently; the older file layout migrates by itself; the dask executor agrees."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from cache.layout import CacheLayout
from cache.quarantine import quarantined, sweep_unreadable
from cache.state import FileStateStore
from foundation.crashpoints import CRASH_ENV
from pipeline.ops.verify import damage_findings
from pipeline.pit import maths as pit
from pipeline.pit import step as pit_step
from pipeline.pit.changes import covers
from pipeline.pit.step import bucket_of, build_pit, read_change_log
from pipeline.sync.spill import mark_fetching, recover, unmark_fetching, write_spill
from pipeline.sync.tasks import task
from tests.pit.synthetic import FETCHED_TYPE, FIRST_FETCH, write_raw
from tests.pit.test_pit_step import (
    STOCK_TABLES,
    assert_same_tables,
    files_of,
    full_build_of,
    part_stats,
    table,
)

LATER_FETCH = FIRST_FETCH + dt.timedelta(days=3)
NEW_CODE = "688999.SH"

Change = Callable[[dict[str, pl.DataFrame]], dict[str, pl.DataFrame]]


def _later(frame: pl.DataFrame, **values: pl.Expr) -> pl.DataFrame:
    return frame.with_columns(**values, _fetched_at=pl.lit(LATER_FETCH, dtype=FETCHED_TYPE)).select(
        frame.columns
    )


def _stocks(frames: dict[str, pl.DataFrame]) -> list[str]:
    return sorted(frames["income"]["ts_code"].unique())


def old_restatement(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """A period two years before the latest restated, announced after everything else."""
    code = _stocks(frames)[3]
    rows = frames["income"].filter(pl.col("ts_code") == code).sort("end_date")
    latest_end = rows["end_date"].max()
    assert isinstance(latest_end, dt.date)
    old = rows.filter(pl.col("end_date") == latest_end.replace(year=latest_end.year - 2)).head(1)
    today = frames["income"]["ann_date"].max() + dt.timedelta(days=1)
    return {
        "income": _later(
            old,
            revenue=pl.col("revenue") * 1.5,
            ann_date=pl.lit(today),
            f_ann_date=pl.lit(today),
            update_flag=pl.lit("1"),
        )
    }


def late_announcement(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """A revised version of an old period, announced long ago, only fetched now."""
    code = _stocks(frames)[5]
    rows = frames["balancesheet"].filter(pl.col("ts_code") == code).sort("end_date")
    old = rows.slice(4, 1)
    announced = pl.col("ann_date") + pl.duration(days=30)
    return {
        "balancesheet": _later(
            old,
            total_assets=pl.col("total_assets") * 0.5,
            ann_date=announced,
            f_ann_date=announced,
            update_flag=pl.lit("1"),
        )
    }


def new_listing(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """A stock not seen before: its statements and its industry membership."""
    source = _stocks(frames)[0]
    out = {}
    for name in ("income", "balancesheet", "cashflow", "index_member_all"):
        rows = frames[name].filter(pl.col("ts_code") == source)
        out[name] = _later(rows, ts_code=pl.lit(NEW_CODE))
    return out


def _as_of_differs(old: pl.DataFrame, new: pl.DataFrame) -> dict[dt.date, bool]:
    """At each date around every knowledge date: whether some stock's as-of row differs."""
    known = pl.concat([old.select("knowledge_date"), new.select("knowledge_date")])
    dates = sorted({d + dt.timedelta(days=k) for d in known["knowledge_date"] for k in (-1, 0, 1)})
    codes = sorted(set(old["ts_code"]) | set(new["ts_code"]))
    pairs = pl.DataFrame(
        [(c, d) for c in codes for d in dates],
        schema={"ts_code": pl.String, "date": pl.Date},
        orient="row",
    )
    before, after = pit.read_as_of(pairs, old), pit.read_as_of(pairs, new)
    same = before.with_row_index().join(
        after.with_row_index(), on=["index", *before.columns], how="semi", nulls_equal=True
    )
    differing = set(pairs.with_row_index().join(same, on="index", how="anti")["date"])
    return {d: d in differing for d in dates}


def _members_differ(old: pl.DataFrame, new: pl.DataFrame, day: dt.date) -> bool:
    """Whether the industry rows in force at `day` differ."""

    def active(frame: pl.DataFrame) -> list[tuple[object, ...]]:
        live = frame.filter(
            (pl.col("in_date").is_null() | (pl.col("in_date") <= day))
            & (pl.col("out_date").is_null() | (pl.col("out_date") > day))
        )
        return sorted(live.rows(), key=str)

    return active(old) != active(new)


@pytest.mark.parametrize("change", [old_restatement, late_announcement, new_listing])
def test_an_incremental_build_of_changed_stocks_equals_a_full_build(
    tmp_path: Path,
    raw_cache: CacheLayout,
    raw_frames: dict[str, pl.DataFrame],
    change: Change,
) -> None:
    build_pit(raw_cache, mode="full", executor="inline")
    before = {p: p.stat().st_mtime_ns for p in (raw_cache.root / "pit").rglob("*.parquet")}
    old_indicators, old_industry = table(raw_cache, "indicators"), table(raw_cache, "industry")
    added = change(raw_frames)
    write_raw(raw_cache, added, part="part-1")
    changed_codes = {c for frame in added.values() for c in frame["ts_code"]}

    result = build_pit(raw_cache, mode="incremental", executor="inline")

    buckets = {bucket_of(c) for c in changed_codes}
    assert result.stocks_rebuilt == len(changed_codes)
    assert result.buckets_rebuilt == len(buckets)
    for path, mtime in before.items():
        rewritten = path.parent.name in STOCK_TABLES and int(path.stem[5:]) in buckets
        members_changed = "index_member_all" in added
        if not rewritten and not (members_changed and path.parent.name.startswith("industry")):
            assert path.stat().st_mtime_ns == mtime, path
    assert_same_tables(raw_cache, full_build_of(raw_cache, tmp_path / "fresh"))

    assert result.changed is not None
    differs = _as_of_differs(old_indicators, table(raw_cache, "indicators"))
    # eight quarters back is read by no indicator: the restatement changes nothing read
    assert any(differs.values()) is (change is not old_restatement)
    new_industry = table(raw_cache, "industry")
    for day, differ in differs.items():
        differ = differ or _members_differ(old_industry, new_industry, day)
        assert covers(result.changed, day) == differ, day
    last, log = read_change_log(raw_cache)
    assert last == 2
    assert [e["build"] for e in log] == [1, 2]
    assert log[0]["changed"] is None  # the first build: every date


def test_industry_tables_are_rebuilt_only_when_their_members_change(
    raw_cache: CacheLayout, raw_frames: dict[str, pl.DataFrame]
) -> None:
    build_pit(raw_cache, mode="full", executor="inline")
    industry = raw_cache.dataset_dir("pit", "industry") / pit_step.WHOLE_TABLE_FILE
    built = industry.stat().st_mtime_ns
    write_raw(raw_cache, late_announcement(raw_frames), part="part-1")
    build_pit(raw_cache, mode="incremental", executor="inline")
    assert industry.stat().st_mtime_ns == built
    members = raw_frames["index_member_all"]
    moved = members.head(1).with_columns(
        l1_code=pl.lit("801780.SI"), in_date=pl.lit(dt.date(2021, 3, 1))
    )
    write_raw(raw_cache, {"index_member_all": _later(moved)}, part="part-2")
    result = build_pit(raw_cache, mode="incremental", executor="inline")
    assert industry.stat().st_mtime_ns != built
    assert result.stocks_rebuilt == 0
    assert result.changed == [(dt.date(2021, 3, 1), None)]
    # the 2014 membership ends in 2024, the 2021 one winning since 2021: nothing read changes
    first = pl.col("ts_code") == members["ts_code"][0]
    ending = pl.when(first).then(pl.lit(dt.date(2024, 3, 1))).otherwise(pl.col("out_date"))
    fetched = pl.lit(LATER_FETCH + dt.timedelta(days=1), dtype=FETCHED_TYPE)
    write_raw(
        raw_cache, {"index_member_all": members.with_columns(out_date=ending, _fetched_at=fetched)}
    )
    assert build_pit(raw_cache, mode="incremental", executor="inline").changed == []
    # the 2021 one ends in 2023: the 2014 one is read again from then, and nothing after it
    fetched = pl.lit(LATER_FETCH + dt.timedelta(days=2), dtype=FETCHED_TYPE)
    ended = moved.with_columns(out_date=pl.lit(dt.date(2023, 1, 2)), _fetched_at=fetched)
    write_raw(raw_cache, {"index_member_all": ended}, part="part-2")
    result = build_pit(raw_cache, mode="incremental", executor="inline")
    assert result.changed == [(dt.date(2023, 1, 2), None)]


def test_a_cache_of_the_older_layout_is_rebuilt_in_full_and_its_files_removed(
    tmp_path: Path, raw_cache: CacheLayout
) -> None:
    build_pit(raw_cache, mode="full", executor="inline")
    expected = files_of(raw_cache)
    for name in STOCK_TABLES:  # the 16-bucket layout: part-NN.parquet
        folder = raw_cache.dataset_dir("pit", name)
        stale = pl.concat([pl.read_parquet(p) for p in sorted(folder.glob("*.parquet"))])
        shutil.rmtree(folder)
        folder.mkdir()
        stale.write_parquet(folder / "part-03.parquet")
    state = raw_cache.state_dir / pit_step.STATE_FILE
    old = json.loads(state.read_text()) | {"version": 2, "buckets": 16}
    old.pop("changes")
    state.write_text(json.dumps(old))

    result = build_pit(raw_cache, mode="incremental", executor="inline")

    assert result.buckets_rebuilt == pit_step.BUCKETS
    assert result.changed is None
    migrated = files_of(raw_cache)
    assert migrated.keys() == expected.keys()
    for name, frame in expected.items():
        assert migrated[name].equals(frame), name


def test_the_dask_executor_gives_the_inline_files(
    tmp_path: Path, raw_frames: dict[str, pl.DataFrame]
) -> None:
    outputs = []
    for spec in ("inline", "local-dask"):  # one cluster: each build starts its own
        layout = CacheLayout(tmp_path / spec)
        write_raw(layout, raw_frames)
        build_pit(layout, mode="full", executor=spec, workers=2)
        outputs.append(files_of(layout))
    inline, dask = outputs
    assert len(inline) > len(STOCK_TABLES)
    assert dask.keys() == inline.keys()
    for name, frame in inline.items():
        assert dask[name].equals(frame), name


def _new_version(
    frames: dict[str, pl.DataFrame], code: str, fetched: dt.datetime
) -> dict[str, pl.DataFrame]:
    """A revised income version of `code`'s latest period, announced and fetched later."""
    latest = frames["income"].filter(pl.col("ts_code") == code).sort("end_date").tail(1)
    later = pl.col("ann_date") + pl.duration(days=200)
    revised = latest.with_columns(
        revenue=pl.col("revenue") * 1.1,
        ann_date=later,
        f_ann_date=later,
        update_flag=pl.lit("1"),
        _fetched_at=pl.lit(fetched, dtype=FETCHED_TYPE),
    )
    return {"income": revised.select(frames["income"].columns)}


def _deltas(layout: CacheLayout, name: str) -> list[str]:
    return sorted(p.name for p in layout.dataset_dir("pit", name).glob("delta-*.parquet"))


def test_a_late_found_version_replaces_its_stock_in_one_file(
    tmp_path: Path, raw_cache: CacheLayout, raw_frames: dict[str, pl.DataFrame]
) -> None:
    build_pit(raw_cache, mode="full", executor="inline")
    added = late_announcement(raw_frames)
    (code,) = set(added["balancesheet"]["ts_code"])
    own_part = pit_step.part_path(raw_cache, "indicators", bucket_of(code))
    part_stats_before = part_stats(raw_cache)
    others = {p: s for p, s in part_stats_before.items() if p.name != own_part.name}
    stored = table(raw_cache, "indicators").filter(pl.col("ts_code") == code)
    write_raw(raw_cache, added, part="part-1")

    build_pit(raw_cache, mode="incremental", executor="inline")

    # a balance sheet version found late changes the indicators read after it: the
    # stock's old rows are not all among its fresh ones, so they leave the bucket file
    # and all its fresh rows are in the delta, once; no other bucket file is rewritten
    after = part_stats(raw_cache)
    assert {p: s for p, s in after.items() if p.name != own_part.name} == others
    assert after[own_part] != part_stats_before[own_part]
    assert code not in set(pl.read_parquet(own_part)["ts_code"])
    (delta,) = _deltas(raw_cache, "indicators")
    rows = pl.read_parquet(raw_cache.dataset_dir("pit", "indicators") / delta)
    assert set(rows["ts_code"]) == {code}
    assert rows.height >= stored.height  # the whole stock, not only the new version
    assert not rows.join(stored, on=rows.columns, how="semi", nulls_equal=True).is_empty()
    assert_same_tables(raw_cache, full_build_of(raw_cache, tmp_path / "fresh"))


def test_deltas_fold_into_the_bucket_files_past_the_bound(
    tmp_path: Path,
    raw_cache: CacheLayout,
    raw_frames: dict[str, pl.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pit_step, "FOLD_DELTAS", 2)
    build_pit(raw_cache, mode="full", executor="inline")
    for day, code in enumerate(_stocks(raw_frames)[:3], start=1):
        fetched = LATER_FETCH + dt.timedelta(days=day)
        write_raw(raw_cache, _new_version(raw_frames, code, fetched), part=f"part-{day}")
        build_pit(raw_cache, targets=("income",), mode="incremental", executor="inline")
        expected = day if day <= 2 else 0  # the third delta is one past the bound: folded
        for name in ("statement_versions", "income_quarterly"):
            assert len(_deltas(raw_cache, name)) == expected, (day, name)
    state = json.loads((raw_cache.state_dir / pit_step.STATE_FILE).read_text())
    for name in ("statement_versions", "income_quarterly"):
        folder = raw_cache.dataset_dir("pit", name)
        assert state["files"][name] == sorted(p.name for p in folder.glob("*.parquet"))
        for path in folder.glob("*.parquet"):
            frame = pl.read_parquet(path)
            assert {bucket_of(c) for c in frame["ts_code"]} == {int(path.stem[5:])}
            assert frame.equals(frame.sort("ts_code", maintain_order=True)), path
    fresh = full_build_of(raw_cache, tmp_path / "fresh")
    for name in ("statement_versions", "income_quarterly"):
        assert table(raw_cache, name).equals(table(fresh, name)), name


def _one_delta_each(layout: CacheLayout, frames: dict[str, pl.DataFrame]) -> str:
    """A full build, then an incremental one after one stock's new version: one delta
    per stock table; that stock's code."""
    build_pit(layout, mode="full", executor="inline")
    code = _stocks(frames)[2]
    write_raw(layout, _new_version(frames, code, LATER_FETCH), part="part-1")
    build_pit(layout, mode="incremental", executor="inline")
    return code


def test_a_lost_delta_rebuilds_its_target_in_full(
    tmp_path: Path, raw_cache: CacheLayout, raw_frames: dict[str, pl.DataFrame]
) -> None:
    _one_delta_each(raw_cache, raw_frames)
    (delta,) = _deltas(raw_cache, "income_quarterly")
    lost = raw_cache.dataset_dir("pit", "income_quarterly") / delta
    lost.unlink()
    assert pit_step.missing_parts(raw_cache) == [lost]
    left = lost.with_name(".part-03.parquet.99999.tmp")  # what a killed write leaves
    left.write_bytes(b"PAR1 cut short")

    result = build_pit(raw_cache, mode="incremental", executor="inline")

    assert not left.exists()

    assert result.buckets_rebuilt == pit_step.BUCKETS
    assert pit_step.missing_parts(raw_cache) == []
    for name in ("statement_versions", "income_quarterly"):
        assert _deltas(raw_cache, name) == [], name  # a full build of their target
    assert len(_deltas(raw_cache, "indicators")) == 1  # another target: kept
    assert_same_tables(raw_cache, full_build_of(raw_cache, tmp_path / "fresh"))


def test_a_stray_delta_rebuilds_its_target_in_full(
    tmp_path: Path, raw_cache: CacheLayout, raw_frames: dict[str, pl.DataFrame]
) -> None:
    _one_delta_each(raw_cache, raw_frames)
    (delta,) = _deltas(raw_cache, "indicators")
    folder = raw_cache.dataset_dir("pit", "indicators")
    stray = folder / "delta-000099-00-00.parquet"  # e.g. restored from an older copy
    shutil.copyfile(folder / delta, stray)  # its rows are now in two files
    assert pit_step.stray_files(raw_cache) == [stray]
    (named,) = [f for f in damage_findings(raw_cache, None) if f.check == "stray"]  # ah verify
    assert "pit/indicators/delta-000099-00-00.parquet" in named.message

    result = build_pit(raw_cache, mode="incremental", executor="inline")

    assert result.buckets_rebuilt == pit_step.BUCKETS
    assert _deltas(raw_cache, "indicators") == []
    assert pit_step.stray_files(raw_cache) == []
    assert_same_tables(raw_cache, full_build_of(raw_cache, tmp_path / "fresh"))


def test_a_hand_edited_build_state_means_a_full_build_not_a_crash(
    tmp_path: Path, raw_cache: CacheLayout
) -> None:
    build_pit(raw_cache, mode="full", executor="inline")
    path = raw_cache.state_dir / pit_step.STATE_FILE
    edits = {
        "build": "x",
        "targets": [],
        "changes": {"a": 1},
        "files": [],
    }
    built = json.loads(path.read_text())
    for key, value in edits.items():
        path.write_text(json.dumps({**built, key: value}))
        assert pit_step.missing_parts(raw_cache) == [], key  # what `ah verify` asks
        assert read_change_log(raw_cache) == (0, []), key  # what the factor step asks
    path.write_text(json.dumps({**built, **edits}))

    result = build_pit(raw_cache, mode="incremental", executor="inline")

    assert result.buckets_rebuilt == pit_step.BUCKETS
    assert result.changed is None  # every date, for the factor step
    assert_same_tables(raw_cache, full_build_of(raw_cache, tmp_path / "fresh"))


def test_a_build_state_of_another_version_means_a_full_build_said_in_the_log(
    raw_cache: CacheLayout, caplog: pytest.LogCaptureFixture
) -> None:
    build_pit(raw_cache, mode="full", executor="inline")
    path = raw_cache.state_dir / pit_step.STATE_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), "version": 99}))

    with caplog.at_level(logging.WARNING, logger="alphahome"):
        result = build_pit(raw_cache, mode="incremental", executor="inline")

    assert result.buckets_rebuilt == pit_step.BUCKETS
    (line,) = [r.getMessage() for r in caplog.records if "a full PIT build" in r.getMessage()]
    assert str(path) in line and "version 99" in line
    assert json.loads(path.read_text())["version"] == pit_step.STATE_VERSION


def _cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def _bad_page(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8:40] = b"X" * 32  # the first page, not the footer
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_cut_short, _bad_page])
def test_a_damaged_delta_is_quarantined_rebuilt_and_its_record_cleared(
    tmp_path: Path,
    raw_cache: CacheLayout,
    raw_frames: dict[str, pl.DataFrame],
    damage: Callable[[Path], None],
) -> None:
    code = _one_delta_each(raw_cache, raw_frames)
    (delta,) = _deltas(raw_cache, "indicators")
    damaged = raw_cache.dataset_dir("pit", "indicators") / delta
    damage(damaged)
    # what `ah run` does first: a file cut short is moved aside, a bad page (found
    # only by reading every page) is left for the build that reads it
    swept = [(e.dataset, e.partition) for e in sweep_unreadable(raw_cache)]
    assert swept == ([("pit.indicators", delta)] if damage is _cut_short else [])
    later = LATER_FETCH + dt.timedelta(days=1)  # the same stock changes again
    write_raw(raw_cache, _new_version(raw_frames, code, later), part="part-2")

    build_pit(raw_cache, mode="incremental", executor="inline")

    assert quarantined(raw_cache) == []  # no alert and no verify failure from now on
    assert any((raw_cache.root / "quarantine").rglob(f"{delta}.*"))  # kept to inspect
    assert _deltas(raw_cache, "indicators") == []  # its target was rebuilt in full
    assert pit_step.missing_parts(raw_cache) == []
    assert_same_tables(raw_cache, full_build_of(raw_cache, tmp_path / "fresh"))


BUILD_IN_A_PROCESS = (
    "import sys; from pathlib import Path; from cache.layout import CacheLayout; "
    "from pipeline.pit import step; step.FOLD_DELTAS = int(sys.argv[2]); "
    "step.build_pit(CacheLayout(Path(sys.argv[1])), executor='inline')"
)


def _killed_build(layout: CacheLayout, point: str, fold: int = pit_step.FOLD_DELTAS) -> None:
    """An incremental build in another process, killed (SIGKILL) at the crash point."""
    killed = subprocess.run(
        [sys.executable, "-c", BUILD_IN_A_PROCESS, str(layout.root), str(fold)],
        env=os.environ | {CRASH_ENV: point},
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr


def test_a_rerun_after_a_kill_past_a_written_delta_equals_a_full_build(
    tmp_path: Path, raw_cache: CacheLayout, raw_frames: dict[str, pl.DataFrame]
) -> None:
    build_pit(raw_cache, mode="full", executor="inline")
    state = (raw_cache.state_dir / pit_step.STATE_FILE).read_bytes()
    added = late_announcement(raw_frames)  # replaces its stock
    (replaced,) = set(added["balancesheet"]["ts_code"])
    grown = _stocks(raw_frames)[2]  # adds a version
    write_raw(raw_cache, added | _new_version(raw_frames, grown, LATER_FETCH), part="part-1")

    _killed_build(raw_cache, "pit-delta:1")
    assert (raw_cache.state_dir / pit_step.STATE_FILE).read_bytes() == state
    assert _deltas(raw_cache, "balance") == ["delta-000002-00-00.parquet"]
    folder = raw_cache.dataset_dir("pit", "indicators")
    first = pl.read_parquet(folder / "delta-000002-00-00.parquet")
    assert set(first["ts_code"]) == {grown, replaced}  # the crash left both stocks' rows

    build_pit(raw_cache, mode="incremental", executor="inline")

    # the re-run found the grown stock's rows all there and replaced the other one:
    # its fresh rows in a new delta, removed from the one the crash left
    assert _deltas(raw_cache, "indicators") == [
        "delta-000002-00-00.parquet",
        "delta-000002-00-01.parquet",
    ]
    kept = pl.read_parquet(folder / "delta-000002-00-00.parquet")
    assert kept.equals(first.filter(pl.col("ts_code") == grown))
    assert_same_tables(raw_cache, full_build_of(raw_cache, tmp_path / "fresh"))


def test_several_jobs_in_a_pool_write_a_delta_each_and_equal_a_full_build(
    tmp_path: Path,
    raw_cache: CacheLayout,
    raw_frames: dict[str, pl.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build_pit(raw_cache, mode="full", executor="inline")
    monkeypatch.setattr(pit_step, "INLINE_STOCKS", 1)
    monkeypatch.setattr(pit_step, "STOCKS_PER_JOB", 1)
    grown = _stocks(raw_frames)[6:9]
    added = [late_announcement(raw_frames)] + [
        _new_version(raw_frames, code, LATER_FETCH) for code in grown
    ]
    frames = {
        name: pl.concat([a[name] for a in added if name in a])
        for name in ("income", "balancesheet")
    }
    write_raw(raw_cache, frames, part="part-1")

    result = build_pit(raw_cache, mode="incremental", executor="process", workers=2)

    assert result.stocks_rebuilt == 4
    names = _deltas(raw_cache, "statement_versions")
    assert names == [f"delta-000002-{job:02d}-00.parquet" for job in range(len(names))]
    codes = {c for frame in frames.values() for c in frame["ts_code"]}
    assert len(names) == len({bucket_of(c) for c in codes}) > 1  # a job per bucket here
    assert_same_tables(raw_cache, full_build_of(raw_cache, tmp_path / "fresh"))


def test_a_rerun_after_a_kill_mid_fold_equals_a_full_build(
    tmp_path: Path,
    raw_cache: CacheLayout,
    raw_frames: dict[str, pl.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pit_step, "FOLD_DELTAS", 1)
    build_pit(raw_cache, mode="full", executor="inline")
    first, second = _stocks(raw_frames)[1:3]
    write_raw(raw_cache, _new_version(raw_frames, first, LATER_FETCH), part="part-1")
    build_pit(raw_cache, mode="incremental", executor="inline")
    later = LATER_FETCH + dt.timedelta(days=1)
    write_raw(raw_cache, _new_version(raw_frames, second, later), part="part-2")

    _killed_build(raw_cache, "pit-fold:1", fold=1)  # the bucket files hold the deltas' rows

    folder = raw_cache.dataset_dir("pit", "statement_versions")
    assert len(_deltas(raw_cache, "statement_versions")) == 2
    rows = pl.read_parquet(folder / "*.parquet")
    assert rows.height > rows.unique().height  # the deltas' rows are twice in the table
    build_pit(raw_cache, mode="incremental", executor="inline")
    assert_same_tables(raw_cache, full_build_of(raw_cache, tmp_path / "fresh"))


def test_rows_a_killed_sync_left_in_spill_files_are_built_after_their_merge(
    tmp_path: Path, raw_cache: CacheLayout, raw_frames: dict[str, pl.DataFrame]
) -> None:
    """A sync killed between its tasks' merges leaves spill files fetched before rows it
    did merge. A PIT build before the next sync must not record a watermark past them,
    or the build after the next sync (which merges them with their fetch time) skips
    their stocks."""
    build_pit(raw_cache, mode="full", executor="inline")
    grown = _stocks(raw_frames)[2]
    write_raw(raw_cache, _new_version(raw_frames, grown, LATER_FETCH), part="part-1")  # merged
    pending = late_announcement(raw_frames)["balancesheet"]  # fetched earlier, still spilled
    fetched = FIRST_FETCH + dt.timedelta(days=1)
    assert fetched < LATER_FETCH
    write_spill(
        raw_cache, "balancesheet", "killed-run", pending.drop("_fetched_at"), fetched,
        item="balancesheet-1", last=True, units=(), plan_id=None, mode="upsert",
    )  # fmt: skip

    build_pit(raw_cache, mode="incremental", executor="inline")  # `ah pit` before the sync
    assert recover(raw_cache, FileStateStore(raw_cache), task("balancesheet")) == 1
    result = build_pit(raw_cache, mode="incremental", executor="inline")

    assert result.stocks_rebuilt >= 1
    assert_same_tables(raw_cache, full_build_of(raw_cache, tmp_path / "fresh"))


def test_rows_a_running_sync_merges_after_rows_fetched_later_are_built_next_time(
    tmp_path: Path,
    raw_cache: CacheLayout,
    raw_frames: dict[str, pl.DataFrame],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A sync fetching balancesheet since `since` holds a page in memory while another
    task merges income rows fetched later; a PIT build then must keep its watermark
    before `since`, so the build after the page's merge takes its stock."""
    build_pit(raw_cache, mode="full", executor="inline")
    since = FIRST_FETCH + dt.timedelta(days=1)
    mark_fetching(raw_cache, "balancesheet", "running-sync", since)
    grown = _stocks(raw_frames)[2]
    write_raw(raw_cache, _new_version(raw_frames, grown, LATER_FETCH), part="part-1")

    with caplog.at_level(logging.WARNING, logger="alphahome.pit"):
        build_pit(raw_cache, mode="incremental", executor="inline")  # `ah pit` meanwhile
    assert any("rows of balancesheet fetched since" in r.getMessage() for r in caplog.records)
    held = late_announcement(raw_frames)["balancesheet"].with_columns(
        _fetched_at=pl.lit(since + dt.timedelta(seconds=1), dtype=FETCHED_TYPE)
    )
    write_raw(raw_cache, {"balancesheet": held}, part="part-2")  # the page, merged
    unmark_fetching(raw_cache, "balancesheet")  # the sync ends
    build_pit(raw_cache, mode="incremental", executor="inline")

    assert_same_tables(raw_cache, full_build_of(raw_cache, tmp_path / "fresh"))
