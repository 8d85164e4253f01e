"""Keys, types and DDL text of the PostgreSQL sink (pure, no server)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from sinks.ddl import (
    PG_BIGINT,
    PG_DATE,
    PG_DOUBLE,
    PG_TEXT,
    PG_TIMESTAMPTZ,
    TableDefinitionError,
    create_table_sql,
    history_index_sql,
    pg_type,
    row_hash_sql,
    table_spec,
)
from sinks.pg_span import span_changes


def test_raw_market_key_is_the_api_key_with_the_trade_date_first() -> None:
    spec = table_spec("raw", "daily")
    assert spec.key == ("trade_date", "ts_code")
    assert spec.scope is None and not spec.row_hash and not spec.nullable_key


def test_raw_key_columns_tushare_leaves_null_are_nullable() -> None:
    spec = table_spec("raw", "namechange")
    assert set(spec.key) == {"ts_code", "name", "ann_date"}
    assert spec.nullable_key == {"ann_date"}


@pytest.mark.parametrize(
    "name", ["income", "balancesheet", "cashflow", "fina_indicator", "express", "forecast"]
)
def test_statement_datasets_are_keyed_by_version_hash(name: str) -> None:
    spec = table_spec("raw", name)
    assert spec.row_hash and spec.key == ("end_date", "ts_code", "row_hash")
    assert spec.data_key == ("end_date", "ts_code")


def test_derived_tables_keys_and_scopes() -> None:
    assert table_spec("factors", "p").key == ("calc_date", "ts_code")
    assert table_spec("factors", "g").scope == "calc_date"
    industry = table_spec("pit", "industry")
    assert industry.key == ("ts_code", "l3_code", "in_date")
    assert industry.nullable_key == {"in_date"} and industry.scope == "ts_code"
    assert table_spec("pit", "industry_monthly").slice_column == "ts_code"
    assert table_spec("pit", "indicators").slice_column == "ts_code"
    # a PIT stock table's stock spans its bucket and delta files; other files own theirs
    spanning = {"statement_versions", "income_quarterly", "balance", "indicators"}
    for layer, names in (
        ("pit", [*spanning, "industry", "industry_monthly"]),
        ("factors", ["p", "g"]),
    ):
        for name in names:
            assert table_spec(layer, name).spans_files == (name in spanning), name
    assert not table_spec("raw", "daily").spans_files


def test_span_changes_tell_added_stocks_from_rewritten_ones() -> None:
    recorded = {"A": "1", "B": "2", "C": "3"}
    fresh = {"A": "1", "B": "9", "D": "4"}  # B changed, C left the file, D came
    assert span_changes(fresh, recorded) == ({"B", "C"}, {"D"})
    assert span_changes(fresh, None) == (set(), {"A", "B", "D"})  # a new file adds
    assert span_changes(recorded, recorded) == (set(), set())


def test_unknown_tables_are_refused_with_the_name() -> None:
    with pytest.raises(TableDefinitionError, match=r"pit\.nosuch"):
        table_spec("pit", "nosuch")
    with pytest.raises(TableDefinitionError, match="nosuch_api"):
        table_spec("raw", "nosuch_api")


@pytest.mark.parametrize(
    ("arrow", "expected"),
    [
        (pa.date32(), PG_DATE),
        (pa.float32(), PG_DOUBLE),
        (pa.float64(), PG_DOUBLE),
        (pa.int32(), PG_BIGINT),
        (pa.uint32(), PG_BIGINT),
        (pa.large_string(), PG_TEXT),
        (pa.string_view(), PG_TEXT),
        (pa.dictionary(pa.int32(), pa.string()), PG_TEXT),
        (pa.timestamp("us", tz="UTC"), PG_TIMESTAMPTZ),
        (pa.timestamp("ns"), PG_TIMESTAMPTZ),
        (pa.null(), None),
    ],
)
def test_arrow_types_map_to_the_six_sink_types(arrow: pa.DataType, expected: str | None) -> None:
    assert pg_type(arrow) == expected


@pytest.mark.parametrize("arrow", [pa.decimal128(10, 2), pa.uint64(), pa.list_(pa.int64())])
def test_types_the_sink_does_not_store_are_refused(arrow: pa.DataType) -> None:
    with pytest.raises(TableDefinitionError, match="'amount'"):
        pg_type(arrow, "amount")


def test_ddl_primary_key_unique_index_and_scope_index() -> None:
    p = create_table_sql(
        table_spec("factors", "p"),
        [("ts_code", PG_TEXT), ("calc_date", PG_DATE), ("p_score", PG_DOUBLE)],
    )
    assert len(p) == 1
    assert '"ts_code" text COLLATE "C" NOT NULL' in p[0]
    assert 'PRIMARY KEY ("calc_date", "ts_code")' in p[0]
    assert "NUMERIC" not in p[0].upper()

    industry = create_table_sql(
        table_spec("pit", "industry"),
        [("ts_code", PG_TEXT), ("l3_code", PG_TEXT), ("in_date", PG_DATE), ("out_date", PG_DATE)],
    )
    assert "PRIMARY KEY" not in industry[0]
    assert '"in_date" date,' in industry[0] or '"in_date" date)' in industry[0]
    assert industry[1].endswith("NULLS NOT DISTINCT")

    monthly = create_table_sql(
        table_spec("pit", "industry_monthly"), [("month_end", PG_DATE), ("ts_code", PG_TEXT)]
    )
    assert any('("ts_code")' in sql and "CREATE INDEX" in sql for sql in monthly)


def test_history_index_skips_deduplication_only_when_its_entries_are_unique() -> None:
    daily = history_index_sql(table_spec("raw", "daily"), ["trade_date", "ts_code", "close"])
    assert daily is not None and '("ts_code", "trade_date")' in daily
    assert daily.endswith("WITH (deduplicate_items = off)")  # the key, reordered
    # (ts_code, trade_date) repeats across a top-list stock's reasons: deduplication stays
    top_list = history_index_sql(table_spec("raw", "top_list"), ["trade_date", "ts_code", "reason"])
    assert top_list is not None and "deduplicate_items" not in top_list
    income = history_index_sql(table_spec("raw", "income"), ["end_date", "ts_code"])
    assert income is not None and "deduplicate_items" not in income  # one row per version
    assert history_index_sql(table_spec("raw", "trade_cal"), ["cal_date", "exchange"]) is None


def test_ddl_refuses_data_without_its_key_columns() -> None:
    with pytest.raises(TableDefinitionError, match="calc_date"):
        create_table_sql(table_spec("factors", "p"), [("ts_code", PG_TEXT)])


def test_row_hash_of_a_wide_table_passes_at_most_100_arguments_per_call() -> None:
    narrow = row_hash_sql("s", ["b", "a", "_fetched_at"])
    assert narrow == (
        "md5(concat_ws(',', 'a=' || quote_literal(s.\"a\"), 'b=' || quote_literal(s.\"b\")))"
    )
    wide = row_hash_sql("s", [f"c{i:03d}" for i in range(250)])
    calls = wide.split("concat_ws(")[1:]
    assert len(calls) == 1 + 3  # the outer call and three groups
    for call in calls:
        depth, args = 0, 1
        for ch in call.replace("','", "''"):  # the separator literal is no argument break
            if ch == "(":
                depth += 1
            elif ch == ")":
                if depth == 0:
                    break
                depth -= 1
            elif ch == "," and depth == 0:
                args += 1
        assert args <= 100
    assert all(f's."c{i:03d}"' in wide for i in range(250))
