"""Committing rows into partition files, checked against a plain-Python reference."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache.catalogue.datasets import FETCHED_AT, DatasetSpec
from cache.layout import CacheLayout
from cache.partitions import close_years, closed_years
from cache.read import read_dataset, scan_dataset, summarize
from cache.store import (
    AppendConflict,
    commit,
    sweep_temporary_files,
    write_empty,
)

COLUMNS = ("ts_code", "trade_date", "close", "flag")
SCHEMA = {"ts_code": pl.String, "trade_date": pl.Date, "close": pl.Float64, "flag": pl.String}
LATEST = DatasetSpec(
    layer="raw",
    name="toy",
    schema=SCHEMA,
    key=("ts_code", "trade_date"),
    storage="latest",
    partitioning="year_open_month",
    date_field="trade_date",
    sort_by=("ts_code", "trade_date"),
)
VERSIONS = DatasetSpec(
    layer="raw",
    name="toyv",
    schema=SCHEMA,
    key=("ts_code", "trade_date", "flag"),
    storage="versions",
    partitioning="year",
    date_field="trade_date",
    sort_by=("ts_code", "trade_date"),
)

Row = dict[str, Any]


def reference_latest(stored: list[Row], fetched: list[Row], at: dt.datetime) -> list[Row]:
    """DESIGN 4: latest value per key; `_fetched_at` of the fetch that first brought it."""
    by_key = {(r["ts_code"], r["trade_date"]): r for r in stored}
    last: dict[tuple[Any, ...], Row] = {}
    for r in fetched:
        last[(r["ts_code"], r["trade_date"])] = r
    for key, r in last.items():
        old = by_key.get(key)
        same = old is not None and all(old[c] == r[c] for c in COLUMNS)
        if not same:
            by_key[key] = {**r, FETCHED_AT: at}
    return list(by_key.values())


def reference_versions(stored: list[Row], fetched: list[Row], at: dt.datetime) -> list[Row]:
    """DESIGN 4: a row differing in any column is added; exact duplicates dropped."""
    out = list(stored)
    for r in fetched:
        if not any(all(o[c] == r[c] for c in COLUMNS) for o in out):
            out.append({**r, FETCHED_AT: at})
    return out


def canon(rows: list[Row]) -> list[str]:
    return sorted(repr((*(r[c] for c in COLUMNS), r[FETCHED_AT].timestamp())) for r in rows)


rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "ts_code": st.sampled_from(["000001.SZ", "600000.SH", "300750.SZ"]),
            "trade_date": st.dates(dt.date(2022, 12, 25), dt.date(2023, 2, 5)),
            "close": st.one_of(st.none(), st.sampled_from([1.0, 2.5, 3.25])),
            "flag": st.one_of(st.none(), st.sampled_from(["0", "1"])),
        }
    ),
    max_size=12,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(rows_strategy, min_size=1, max_size=4))
@pytest.mark.parametrize("spec", [LATEST, VERSIONS], ids=["latest", "versions"])
def test_commits_match_the_reference(
    tmp_path: Path, spec: DatasetSpec, batches: list[list[Row]]
) -> None:
    root = tmp_path / spec.storage / str(abs(hash(str(batches))))
    layout = CacheLayout(root)
    reference: list[Row] = []
    for i, batch in enumerate(batches):
        at = dt.datetime(2024, 1, 1 + i, tzinfo=dt.UTC)
        frame = pl.DataFrame(batch, schema=SCHEMA)
        commit(layout, spec, frame, at)
        if i % 2:  # closing a year between commits changes no row
            close_years(layout, spec)
        merge = reference_latest if spec.storage == "latest" else reference_versions
        reference = merge(reference, batch, at)
    stored = read_dataset(layout, spec.name)
    got = [] if stored is None else stored.to_dicts()
    assert canon(got) == canon(reference)
    folder = layout.dataset_dir("raw", spec.name)
    closed = closed_years(folder)
    for path in folder.rglob("*.parquet"):
        part = pl.read_parquet(path)
        expected = {
            d.strftime("%Y.parquet" if d.year in closed else "%Y/%Y-%m.parquet")
            for d in part["trade_date"]
        }
        assert {str(path.relative_to(folder))} == expected
        if spec.partitioning == "year":
            assert "/" not in str(path.relative_to(folder))
        assert part.select("ts_code", "trade_date").rows() == sorted(
            part.select("ts_code", "trade_date").rows()
        )


def test_an_unchanged_row_keeps_its_first_fetch_time(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    first = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    later = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    day = dt.date(2024, 1, 2)
    rows = pl.DataFrame(
        {"ts_code": ["A", "B"], "trade_date": [day, day], "close": [1.0, 2.0], "flag": ["0", "0"]},
        schema=SCHEMA,
    )
    commit(layout, LATEST, rows, first)
    result = commit(layout, LATEST, rows.with_columns(close=pl.Series([1.0, 9.0])), later)
    assert result.rows_saved == 1
    stored = read_dataset(layout, "toy")
    assert stored is not None
    by_code = {r["ts_code"]: r for r in stored.to_dicts()}
    assert by_code["A"][FETCHED_AT] == first and by_code["B"][FETCHED_AT] == later
    assert by_code["B"]["close"] == 9.0
    # nothing new: no file is rewritten
    assert commit(layout, LATEST, rows.with_columns(close=pl.Series([1.0, 9.0])), later).files == ()


def test_append_mode_refuses_stored_keys_and_writes_nothing(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    at = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    jan = pl.DataFrame(
        {"ts_code": ["A"], "trade_date": [dt.date(2024, 1, 2)], "close": [1.0], "flag": ["0"]},
        schema=SCHEMA,
    )
    commit(layout, LATEST, jan, at, mode="append")
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.parquet")}
    feb_and_jan = pl.concat(
        [
            jan.with_columns(trade_date=pl.lit(dt.date(2024, 2, 1))),
            jan.with_columns(close=pl.lit(5.0)),
        ]
    )
    with pytest.raises(AppendConflict, match="already stored"):
        commit(layout, LATEST, feb_and_jan, at, mode="append")
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.parquet")} == before


def test_empty_dataset_reads_as_a_typed_table_and_temporary_files_are_swept(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    assert scan_dataset(layout, "toy") is None
    assert summarize(layout, "toy", "trade_date").rows == 0
    write_empty(layout, LATEST)
    frame = read_dataset(layout, "toy")
    assert frame is not None and frame.height == 0
    assert frame.schema[FETCHED_AT] == pl.Datetime("us", "UTC")
    stray = layout.dataset_dir("raw", "toy") / "2024" / ".2024-01.parquet.999.tmp"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"half a file")
    state = layout.state_dir / "tasks" / ".toy.json.999.tmp"
    other = layout.state_dir / "tasks" / ".toy_other.json.999.tmp"  # another task's
    state.parent.mkdir(parents=True)
    state.write_bytes(b"{")
    other.write_bytes(b"{")
    assert sweep_temporary_files(layout, "toy") == 2 and not stray.exists()
    assert not state.exists() and other.exists()


def _day_rows(days: list[dt.date], close: float = 1.0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts_code": [c for _ in days for c in ("B", "A")],
            "trade_date": [d for d in days for _ in ("B", "A")],
            "close": [close] * (2 * len(days)),
            "flag": ["0"] * (2 * len(days)),
        },
        schema=SCHEMA,
    )


def test_closing_a_year_compacts_its_months_once_the_next_year_has_rows(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    folder = layout.dataset_dir("raw", "toy")
    at = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    commit(layout, LATEST, _day_rows([dt.date(2022, 11, 30), dt.date(2022, 12, 30)]), at)
    assert close_years(layout, LATEST) == []  # 2022 is the open year: months stay
    months = sorted(p.name for p in folder.rglob("*.parquet"))
    assert months == ["2022-11.parquet", "2022-12.parquet"]
    before = read_dataset(layout, "toy")
    commit(layout, LATEST, _day_rows([dt.date(2023, 1, 3)]), at)
    assert close_years(layout, LATEST) == [2022]
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    assert files == ["2022.parquet", "2023", "2023/2023-01.parquet"]
    year = pl.read_parquet(folder / "2022.parquet")
    assert year.select("ts_code", "trade_date").rows() == sorted(
        year.select("ts_code", "trade_date").rows()
    )
    assert before is not None and canon(year.to_dicts()) == canon(before.to_dicts())
    # a refetched December day lands in the yearly file, not a new month file
    later = dt.datetime(2024, 2, 1, tzinfo=dt.UTC)
    result = commit(layout, LATEST, _day_rows([dt.date(2022, 12, 30)], close=7.0), later)
    assert result.files == (folder / "2022.parquet",)
    assert not (folder / "2022").exists()
    assert close_years(layout, LATEST) == []


def test_months_a_killed_closing_left_beside_the_yearly_file_are_removed(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    folder = layout.dataset_dir("raw", "toy")
    at = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    commit(layout, LATEST, _day_rows([dt.date(2022, 12, 30), dt.date(2023, 1, 3)]), at)
    month = (folder / "2022" / "2022-12.parquet").read_bytes()

    class Killed(Exception):
        pass

    def kill(point: str) -> None:
        raise Killed(point)

    with pytest.raises(Killed):
        close_years(layout, LATEST, checkpoint=kill)
    # killed with the yearly file in place: nothing lost, the month is still there
    assert (folder / "2022.parquet").exists()
    assert (folder / "2022" / "2022-12.parquet").read_bytes() == month
    # a commit before the re-run goes to the yearly file only
    commit(layout, LATEST, _day_rows([dt.date(2022, 12, 30)], close=3.0), at)
    assert (folder / "2022" / "2022-12.parquet").read_bytes() == month
    assert close_years(layout, LATEST) == []  # already compacted: the leftovers go
    assert not (folder / "2022").exists()
    stored = read_dataset(layout, "toy")
    assert stored is not None and stored.height == 4
    assert stored.filter(pl.col("trade_date") == dt.date(2022, 12, 30))["close"].to_list() == [
        3.0,
        3.0,
    ]


def test_a_month_without_a_dataset_column_keeps_its_year_open(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    folder = layout.dataset_dir("raw", "toy")
    at = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    commit(layout, LATEST, _day_rows([dt.date(2022, 12, 30), dt.date(2023, 1, 3)]), at)
    old = folder / "2022" / "2022-12.parquet"
    pl.read_parquet(old).drop("flag").write_parquet(old)
    assert close_years(layout, LATEST) == []
    assert old.exists() and not (folder / "2022.parquet").exists()
