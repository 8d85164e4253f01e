"""`ah run` end to end on a small simulated market: DuckDB sink, then PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import adbc_driver_postgresql.dbapi as pgdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cache.views import open_catalog
from tests.cli_runner import ah

TABLES = ("pit.indicators", "pit.income_quarterly", "pit.balance", "factors.p", "factors.g")
CONFIG = """
[simulator]
stocks = 40
start = 2021-01-01
today = 2024-03-29
[run]
workers = 2
"""


@pytest.fixture(scope="module")
def duckdb_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("run-duckdb")
    (work / "alphahome.toml").write_text(CONFIG)
    out = ah("run", "--source", "sim", cwd=work, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "no database configured" in out.stdout
    return work / "data"


def duckdb_rows(cache: Path, table: str) -> list[tuple]:
    with open_catalog(cache / "alphahome.duckdb") as con:
        key = "calc_date, ts_code" if table.startswith("factors") else "all"
        return con.execute(f"select * from {table} order by {key}").fetchall()


# The natural key of each compared table (DESIGN 6, 7), written here: rows are put in
# this order on both sides before they are compared whole.
KEYS = {
    "pit.indicators": ("ts_code", "knowledge_date"),
    "pit.income_quarterly": ("ts_code", "end_date", "knowledge_date"),
    "pit.balance": ("ts_code", "end_date", "vis_date"),
    "factors.p": ("calc_date", "ts_code"),
    "factors.g": ("calc_date", "ts_code"),
}


def pg_frame(url: str, table: str, key: tuple[str, ...]) -> pl.DataFrame:
    """A PostgreSQL table ordered by `key`, columns by name."""
    with pgdb.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"select * from {table} order by {', '.join(key)}")
        frame = pl.from_arrow(cur.fetch_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.select(sorted(frame.columns))


def duckdb_frame(cache: Path, table: str, key: tuple[str, ...]) -> pl.DataFrame:
    """The DuckDB catalogue's table ordered by `key`, columns by name."""
    with open_catalog(cache / "alphahome.duckdb") as con:
        arrow = con.sql(f"select * from {table} order by {', '.join(key)}").to_arrow_table()
    frame = pl.from_arrow(arrow)
    assert isinstance(frame, pl.DataFrame)
    return frame.select(sorted(frame.columns))


def test_run_fills_every_stage_and_keeps_pit(duckdb_run: Path) -> None:
    for table in TABLES:
        assert duckdb_rows(duckdb_run, table), f"{table} is empty"
    with open_catalog(duckdb_run / "alphahome.duckdb") as con:
        bad = con.execute("select count(*) from factors.p where ann_date > calc_date").fetchone()
        assert bad == (0,)
        ranked = con.execute(
            "select count(*) from factors.p where p_score is not null and "
            "(p_score < 0 or p_score > 100 or p_rank < 1)"
        ).fetchone()
        assert ranked == (0,)
        latest = con.execute("select max(calc_date) from factors.g").fetchone()[0]
        assert str(latest) <= "2024-03-29"
    assert (duckdb_run / "reports" / "latest.html").exists()
    assert (duckdb_run / "metrics" / "alphahome.prom").read_text().count("alphahome_") > 10


def test_second_run_is_incremental_and_changes_nothing(duckdb_run: Path) -> None:
    before = {t: duckdb_rows(duckdb_run, t) for t in TABLES}
    out = ah("run", "--source", "sim", cwd=duckdb_run.parent, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert {t: duckdb_rows(duckdb_run, t) for t in TABLES} == before


@pytest.mark.postgres
def test_postgres_sink_gets_the_same_rows(duckdb_run: Path, pg_url: str, tmp_path: Path) -> None:
    (tmp_path / "alphahome.toml").write_text(CONFIG)
    out = ah("run", "--source", "sim", cwd=tmp_path, env={"DATABASE_URL": pg_url}, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    password = pg_url.split(":")[2].split("@")[0]
    assert password not in out.stdout + out.stderr
    for table, key in KEYS.items():
        pg = pg_frame(pg_url, table, key)
        local = duckdb_frame(duckdb_run, table, key)
        assert pg.height > 0 and pg.columns == local.columns, table
        # every row, every column: the same values (NaN equal to NaN, never to null)
        assert_frame_equal(pg, local, check_exact=True, check_dtypes=False)
        assert pg.schema == local.schema, table
