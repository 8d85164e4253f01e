"""The column dictionary: every table and column described, the docs page current, the
same text as COMMENT ON in the DuckDB catalogue."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cache.catalogue.columns import column_dictionary, comment_text, describe, render_markdown
from cache.catalogue.datasets import datasets
from cache.layout import CacheLayout
from cache.views import open_catalog, rebuild_catalog
from foundation.errors import UsageError
from tests.cli_runner import ROOT, ah
from tests.sinks.helpers import codes, daily_frame, factor_frame, write_partition


def test_every_table_and_column_is_described() -> None:
    tables = column_dictionary()
    assert set(tables) == {spec.qualified for spec in datasets()}
    for spec in datasets():
        docs = tables[spec.qualified]
        assert [d.column for d in docs] == list(spec.stored_schema()), spec.qualified
        for d in docs:
            assert d.meaning.strip() and d.type and d.source, (spec.qualified, d.column)
            if d.type == "date":
                assert d.unit.startswith("DATE"), (spec.qualified, d.column)
    daily = {d.column: d for d in tables["raw.daily"]}
    assert daily["amount"].unit == "千元" and daily["vol"].unit == "手"  # from the catalogue
    assert "knowledge_date" in {d.column for d in tables["pit.income_quarterly"]}
    assert (
        "as known at t" in {d.column: d for d in tables["pit.indicators"]}["knowledge_date"].meaning
    )


def test_the_docs_page_is_current() -> None:
    page = (ROOT / "docs" / "columns.md").read_text(encoding="utf-8")
    assert page == render_markdown(), (
        "docs/columns.md is stale: run `.venv/bin/ah describe --markdown > docs/columns.md`"
    )


def test_ah_describe_prints_a_table_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    out = ah("describe", "factors.g", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for column in ("g_score", "em", "es", "rm", "pm", "rank_em", "ann_date"):
        assert f"\n  {column} " in out.stdout
    bad = ah("describe", "raw.nosuch", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nosuch" in bad.stderr
    assert "Traceback" not in bad.stderr
    with pytest.raises(UsageError):
        describe("pit.nosuch")
    assert describe("daily") == describe("raw.daily")


def test_catalogue_columns_carry_the_dictionary_as_comments(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path / "cache")
    write_partition(
        layout, "factors", "p", "2020.parquet", factor_frame([dt.date(2020, 1, 3)], codes(3), 1)
    )
    days = [dt.date(2024, 1, 2)]
    write_partition(layout, "raw", "daily", "2024/2024-01.parquet", daily_frame(days, codes(3), 2))
    rebuild_catalog(layout)
    expected = {
        (table, d.column): comment_text(d)
        for table, docs in column_dictionary().items()
        if table in ("raw.daily", "factors.p")
        for d in docs
    }
    with open_catalog(layout.duckdb_path) as con:
        rows = con.execute(
            "SELECT schema_name || '.' || table_name, column_name, comment FROM duckdb_columns() "
            "WHERE schema_name IN ('raw', 'factors')"
        ).fetchall()
    got = {(t, c): text for t, c, text in rows}
    assert len(got) >= 15  # every column of the small tables, each with its comment
    assert got == {key: expected[key] for key in got}
