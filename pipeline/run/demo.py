"""`make demo`: the whole job on the built-in simulated market, then a short tour.

Runs `ah run --source sim` into a cache folder with the embedded DuckDB sink, and
prints where everything is, the latest top 10 by P and by G, and commands to paste
(`try_commands`: each runs as printed, with the environment's own `ah` and Python).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from cache.views import open_catalog
from foundation.config import DatabaseConfig, load_settings
from foundation.logs import start_logging
from pipeline.run.job import RunRequest, run_pipeline

TOP_SQL = """
select f.ts_code, b.name, f.calc_date, f.{score}, f.{rank}
from factors.{table} f left join raw.stock_basic b using (ts_code)
where f.calc_date = (select max(calc_date) from factors.{table}) and f.{rank} is not null
order by f.{rank}, f.ts_code limit 10
"""


def top10(db: Path, table: str) -> str:
    """The latest calc date's ten best stocks by one factor, as a text table."""
    score, rank = f"{table}_score", f"{table}_rank"
    with open_catalog(db) as con:
        return str(con.sql(TOP_SQL.format(table=table, score=score, rank=rank)))


def _shown(path: Path) -> str:
    """`path` as typed from the working directory: relative when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def try_commands(cache: Path, stock: str) -> list[str]:
    """Shell commands to paste after the demo, on the cache at `cache`: SQL through `ah
    sql` and `ah shell` (no DuckDB command line needed), and Polars with the Python that
    has it; `stock` is a code of the market."""
    bin_dir = Path(sys.executable).parent
    ah = f"{_shown(bin_dir / 'ah')} --cache-dir {_shown(cache)}"
    python = _shown(bin_dir / "python")
    glob = f"{_shown(cache)}/factors/g/**/*.parquet"
    return [
        f'{ah} sql "select calc_date, count(*), avg(p_score) from factors.p '
        'group by 1 order by 1 desc limit 5"',
        f"{ah} sql \"select trade_date, close, vol from raw.daily where ts_code = '{stock}' "
        "and trade_date >= DATE '2024-01-01' order by trade_date\" --format csv",
        f"{ah} shell",
        f'{python} -c "import polars as pl; '
        f"print(pl.scan_parquet('{glob}').sort('calc_date').tail(5).collect())\"",
    ]


def top_stock(db: Path) -> str:
    """The latest calc date's best stock by P (a code the market surely has)."""
    with open_catalog(db) as con:
        row = con.execute(TOP_SQL.format(table="p", score="p_score", rank="p_rank")).fetchone()
    return str(row[0]) if row else "000001.SZ"


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit status of the run."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.run.demo")
    parser.add_argument("--cache-dir", default="data")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    cache = Path(args.cache_dir).absolute()
    settings = load_settings(flags={"cache.dir": str(cache), "source.kind": "sim"})
    settings = dataclasses.replace(settings, database=DatabaseConfig(url=None))
    start_logging(settings)
    print(f"alphahome demo: simulated market of {settings.simulator.stocks} stocks, "
          f"{settings.simulator.start} to {settings.simulator.today}, cache {cache}")  # fmt: skip
    result = run_pipeline(settings, RunRequest(source="sim", workers=args.workers))
    for line in result.lines:
        print(line)
    db = cache / "alphahome.duckdb"
    print("\nWhere everything is:")
    for what, path in (
        ("raw Tushare datasets", cache / "raw"),
        ("point-in-time tables", cache / "pit"),
        ("factor scores", cache / "factors"),
        ("DuckDB catalogue (views)", db),
        ("run reports (JSON + HTML)", cache / "reports"),
        ("metrics", cache / "metrics" / "alphahome.prom"),
    ):
        print(f"  {what:<28} {path}")
    print("\nLatest top 10 by P:")
    print(top10(db, "p"))
    print("Latest top 10 by G:")
    print(top10(db, "g"))
    print("Try it yourself (dates are DATE values: DATE '2024-01-02', not '20240102'):")
    for command in try_commands(cache, top_stock(db)):
        print(f"  {command}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
