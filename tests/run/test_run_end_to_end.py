"""`ah run` end to end on a small simulated market: DuckDB sink, then PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import adbc_driver_postgresql.dbapi as pgdb
import duckdb
import pytest

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
    with duckdb.connect(str(cache / "alphahome.duckdb"), read_only=True) as con:
        key = "calc_date, ts_code" if table.startswith("factors") else "all"
        return con.execute(f"select * from {table} order by {key}").fetchall()


def test_run_fills_every_stage_and_keeps_pit(duckdb_run: Path) -> None:
    for table in TABLES:
        assert duckdb_rows(duckdb_run, table), f"{table} is empty"
    with duckdb.connect(str(duckdb_run / "alphahome.duckdb"), read_only=True) as con:
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
    with pgdb.connect(pg_url) as conn, conn.cursor() as cur:
        for table in ("factors.p", "factors.g", "pit.indicators"):
            cur.execute(f"select count(*) from {table}")
            (count,) = cur.fetchone()
            assert count == len(duckdb_rows(duckdb_run, table)), table
        cur.execute("select sum(p_score), count(p_rank) from factors.p")
        pg_sum, pg_ranks = cur.fetchone()
    rows = duckdb_rows(duckdb_run, "factors.p")
    p_scores = [r[2] for r in rows if r[2] is not None]
    assert pg_ranks == len(p_scores)
    assert pg_sum == pytest.approx(sum(p_scores), rel=1e-12)
