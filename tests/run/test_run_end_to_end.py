"""`ah run` end to end on a small simulated market: DuckDB sink, then PostgreSQL."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import adbc_driver_postgresql.dbapi as pgdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cache.views import open_catalog
from pipeline.run.demo import top_stock, try_commands
from tests.cli_runner import ROOT, ah, user_environment

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


def _shell_lines(markdown: str) -> list[str]:
    """The commands of the README's ```sh blocks that run on a built cache (those
    starting with `.venv/bin/`; `make demo` and `make test` build and test it)."""
    lines, inside = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```sh"
            continue
        if inside and line.startswith(".venv/bin/"):
            lines.append(line)
    return lines


def _run_printed(command: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """A printed command run by a shell as a user would paste it (no AH_ variables)."""
    return subprocess.run(
        command, shell=True, cwd=cwd, env=user_environment(None), input=stdin,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_every_readme_query_runs_as_printed(duckdb_run: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = _shell_lines(readme)
    assert len(commands) >= 4
    venv_bin = f"{Path(sys.executable).parent}/"
    for command in commands:
        out = _run_printed(command.replace(".venv/bin/", venv_bin, 1), duckdb_run.parent)
        assert out.returncode == 0, f"{command}\n{out.stderr}"
        assert out.stdout.strip(), command
        assert "600000.SH" not in command  # not a code of the simulated market
    csv = _run_printed(commands[1].replace(".venv/bin/", venv_bin, 1), duckdb_run.parent)
    rows = csv.stdout.strip().splitlines()
    assert rows[0] == "trade_date,open,close,vol" and len(rows) > 20
    assert rows[1].startswith("2024-01-")  # a DATE compared with DATE '2024-01-01'
    day = pl.read_parquet(duckdb_run.parent / "day.parquet")
    assert day["trade_date"].unique().to_list() == [dt.date(2024, 3, 29)] and day.height > 10


def test_every_demo_command_runs_as_printed(duckdb_run: Path) -> None:
    db = duckdb_run / "alphahome.duckdb"
    here = Path.cwd()  # where the demo printed them
    commands = try_commands(duckdb_run, top_stock(db))
    assert any(" shell" in c for c in commands) and any(" sql " in c for c in commands)
    for command in commands:
        out = _run_printed(command, here, stdin=".tables\nselect count(*) from factors.g;\n")
        assert out.returncode == 0, f"{command}\n{out.stderr}"
        assert out.stdout.strip(), command
        assert "duckdb -readonly" not in command and not command.startswith("python ")
    rows = _run_printed(commands[1], here).stdout.splitlines()
    assert rows[0] == "trade_date,close,vol" and len(rows) > 20
    shell = _run_printed(commands[2], here, stdin=".tables\nselect 40 + 2 as answer;\n")
    assert "factors.p" in shell.stdout and "raw.daily" in shell.stdout and "42" in shell.stdout
    assert "pit.universe_asof" not in shell.stdout  # .tables lists tables and views only
