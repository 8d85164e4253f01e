"""`make demo`: the whole job on the built-in simulated market, then a short tour.

Runs `ah run --source sim` into a cache folder with the embedded DuckDB sink, and
prints where everything is, the latest top 10 by P and by G, commands to paste
(`try_commands`: each runs as printed, with the environment's own `ah` and Python),
and how to run again one simulated day later.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
from pathlib import Path

from cache.views import open_catalog
from foundation.config import DatabaseConfig, Settings, load_settings
from foundation.logs import start_logging
from pipeline.run.job import RunRequest, run_pipeline
from pipeline.sources import simulator_config
from pipeline.sources.simulator import Simulator

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


def _ah(cache: Path) -> str:
    """This environment's `ah` on the cache at `cache`, as typed from here."""
    return f"{_shown(Path(sys.executable).parent / 'ah')} --cache-dir {_shown(cache)}"


def try_commands(cache: Path, stock: str) -> list[str]:
    """Shell commands to paste after the demo, on the cache at `cache`: SQL through `ah
    sql` and `ah shell` (no DuckDB command line needed), and Polars with the Python that
    has it; `stock` is a code of the market."""
    ah = _ah(cache)
    python = _shown(Path(sys.executable).parent / "python")
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
    print("Run again tomorrow (the same market one open day on; only the new day is fetched):")
    print(f"  AH_SIMULATOR_TODAY={next_open_day(settings)} {_ah(cache)} run --source sim")
    return result.exit_code


def next_open_day(settings: Settings) -> dt.date:
    """The simulated market's next open day after its configured today."""
    return Simulator(simulator_config(settings)).advance(1)


if __name__ == "__main__":
    sys.exit(main())
