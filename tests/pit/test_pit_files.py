"""What a PIT delta holds (per-stock multiset comparison) and how deltas are named."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.pit.files import delta_files, new_delta_path, split_stored


def _rows(*rows: tuple[str, int, float | None]) -> pl.DataFrame:
    schema = {"ts_code": pl.String, "end": pl.Int64, "value": pl.Float64}
    return pl.DataFrame(list(rows), schema=schema, orient="row")


def test_a_delta_holds_the_new_rows_of_growing_stocks_and_all_rows_of_replaced_ones() -> None:
    stored = _rows(("A", 1, 1.0), ("A", 2, None), ("B", 1, 5.0), ("C", 1, 7.0), ("C", 1, 7.0))
    fresh = _rows(
        ("A", 1, 1.0), ("A", 2, None), ("A", 3, 2.0),  # A grows by one row (null equal)
        ("B", 1, 6.0), ("B", 2, 6.5),  # B's stored row was rewritten: replaced
        ("C", 1, 7.0),  # C stored its row twice, a multiset the fresh one lacks: replaced
        ("D", 1, 9.0),  # D is new
        ("E", 1, 3.0),
    )  # fmt: skip
    rows, replaced = split_stored(pl.concat([stored, _rows(("E", 1, 3.0))]), fresh)
    assert replaced == ["B", "C"]
    expected = _rows(("A", 3, 2.0), ("B", 1, 6.0), ("B", 2, 6.5), ("C", 1, 7.0), ("D", 1, 9.0))
    assert rows.equals(expected)  # E is stored as computed: nothing


def test_a_delta_name_is_never_one_a_file_has(tmp_path: Path) -> None:
    first = new_delta_path(tmp_path, 7, 1)
    assert first.name == "delta-000007-01-00.parquet"
    _rows(("A", 1, 1.0)).write_parquet(first)
    (tmp_path / "delta-000007-02-00.parquet").write_bytes(first.read_bytes())
    assert new_delta_path(tmp_path, 7, 1).name == "delta-000007-01-01.parquet"
    assert new_delta_path(tmp_path, 8, 1).name == "delta-000008-01-00.parquet"
    assert [p.name for p in delta_files(tmp_path)] == [
        "delta-000007-01-00.parquet",
        "delta-000007-02-00.parquet",
    ]
