"""Pure parts of the PostgreSQL sink: preparing rows, URLs, error lines (no server)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from sinks.ddl import PG_DATE, PG_TEXT, table_spec
from sinks.postgres import (
    LoadError,
    describe_url,
    error_reason,
    fit_rows,
    prepare_rows,
    slice_fingerprints,
    with_database,
    with_password,
)


def test_rows_are_typed_and_sorted_by_the_table_key() -> None:
    rows = pa.table(
        {
            "ts_code": pa.array(["b", "a", "b", "a"]).dictionary_encode(),
            "calc_date": [
                dt.date(2024, 1, 5),
                dt.date(2024, 1, 12),
                dt.date(2024, 1, 12),
                dt.date(2024, 1, 5),
            ],
            "p_rank": pa.array([4, 3, 2, 1], pa.int32()),
            "score": pa.array([1.5, None, float("nan"), 2.5], pa.float32()),
            "note": pa.array([None, None, None, None], pa.null()),
        }
    )
    ready = prepare_rows(rows, table_spec("factors", "p"), "2024.parquet")
    assert ready.column("ts_code").to_pylist() == ["a", "b", "a", "b"]
    assert ready.column("calc_date").to_pylist() == [
        dt.date(2024, 1, 5),
        dt.date(2024, 1, 5),
        dt.date(2024, 1, 12),
        dt.date(2024, 1, 12),
    ]
    assert ready.column("p_rank").to_pylist() == [1, 4, 3, 2]
    assert ready.schema.field("ts_code").type == pa.large_string()
    assert ready.schema.field("p_rank").type == pa.int64()
    score = ready.column("score").to_pylist()
    assert score[0] == 2.5 and score[1] == 1.5 and score[2] is None and score[3] != score[3]
    assert ready.schema.field("note").type == pa.null()

    fitted = fit_rows(ready, {"ts_code": PG_TEXT, "calc_date": PG_DATE, "note": PG_TEXT})
    assert fitted.column_names == ["ts_code", "calc_date", "note"]
    assert fitted.schema.field("note").type == pa.large_string()


def test_nulls_sort_last_in_a_nullable_key() -> None:
    rows = pa.table(
        {
            "ts_code": ["x", "x", "x"],
            "l3_code": ["c", "c", "c"],
            "in_date": [None, dt.date(2020, 1, 1), dt.date(2019, 1, 1)],
        }
    )
    ready = prepare_rows(rows, table_spec("pit", "industry"), "all.parquet")
    assert ready.column("in_date").to_pylist() == [dt.date(2019, 1, 1), dt.date(2020, 1, 1), None]


def test_two_nulls_in_a_nullable_key_are_a_duplicate() -> None:
    rows = pa.table(
        {
            "ts_code": ["x", "x"],
            "l3_code": ["c", "c"],
            "in_date": pa.array([None, None], pa.date32()),
        }
    )
    with pytest.raises(LoadError, match="1 duplicate key"):
        prepare_rows(rows, table_spec("pit", "industry"), "all.parquet")


def test_missing_key_columns_and_unstorable_types_are_refused() -> None:
    spec = table_spec("factors", "g")
    with pytest.raises(LoadError, match="key column 'calc_date' is missing"):
        prepare_rows(pa.table({"ts_code": ["a"]}), spec, "2024.parquet")
    money = pa.table(
        {
            "ts_code": ["a"],
            "calc_date": [dt.date(2024, 1, 5)],
            "amount": pa.array([1], pa.decimal128(10, 2)),
        }
    )
    with pytest.raises(LoadError, match=r"factors\.g, partition 2024\.parquet: column 'amount'"):
        prepare_rows(money, spec, "2024.parquet")


def test_urls_never_show_the_password() -> None:
    url = "postgresql://alpha:s3cret@db.example:6543/research?sslmode=require"
    assert describe_url(url) == "alpha@db.example:6543/research"
    assert describe_url("postgresql://db.example/x") == "db.example:5432/x"
    assert with_database(url, "postgres").startswith(
        "postgresql://alpha:s3cret@db.example:6543/postgres"
    )
    typed = with_password("postgresql://alpha@db.example/x", "p@ss:w/rd")
    assert typed == "postgresql://alpha:p%40ss%3Aw%2Frd@db.example/x"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            'IO: [libpq] Failed to connect: connection to server at "127.0.0.1", port 1 failed: '
            "Connection refused\n\tIs the server running on that host?",
            "Connection refused",
        ),
        (
            'IO: [libpq] Failed to connect: connection to server at "h", port 5 failed: FATAL:  '
            'password authentication failed for user "alpha"\n',
            'password authentication failed for user "alpha"',
        ),
        (
            "ALREADY_EXISTS: [libpq] Failed to execute query 'CREATE TABLE x (a int)': "
            'ERROR:  relation "x" already exists\n',
            'relation "x" already exists',
        ),
    ],
)
def test_driver_errors_become_one_short_line(message: str, reason: str) -> None:
    assert error_reason(RuntimeError(message)) == reason


def test_slice_fingerprints_follow_the_rows_not_their_order() -> None:
    rows = pa.table(
        {
            "calc_date": [dt.date(2024, 1, 5)] * 3 + [dt.date(2024, 1, 12)] * 2,
            "ts_code": ["a", "b", "c", "a", "b"],
            "score": [1.0, float("nan"), None, 2.0, 3.0],
        }
    )
    base = slice_fingerprints(rows, "calc_date")
    assert base["value"].to_pylist() == ["2024-01-05", "2024-01-12"]
    shuffled = rows.take([4, 2, 0, 3, 1])
    assert slice_fingerprints(shuffled, "calc_date").equals(base)

    def fingerprints_with(score: list[float | None]) -> list[str]:
        changed = rows.set_column(2, "score", pa.array(score, pa.float64()))
        return slice_fingerprints(changed, "calc_date")["fingerprint"].to_pylist()

    first, second = base["fingerprint"].to_pylist()
    nan_to_null = fingerprints_with([1.0, None, None, 2.0, 3.0])
    assert nan_to_null[0] != first and nan_to_null[1] == second
    other_slice = fingerprints_with([1.0, float("nan"), None, 2.0, 3.5])
    assert other_slice[0] == first and other_slice[1] != second
    renamed = rows.rename_columns(["calc_date", "ts_code", "p_score"])
    assert not set(slice_fingerprints(renamed, "calc_date")["fingerprint"].to_pylist()) & {
        first,
        second,
    }
