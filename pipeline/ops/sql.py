"""`ah sql` and `ah shell`: SQL on the cache's DuckDB catalogue, read-only.

Both open `<cache>/alphahome.duckdb` through `cache.views.open_catalog`, so its views
read the cache wherever it lives, and neither can change the catalogue. `ah sql`
prints one query's result as a text table, CSV or JSON, or writes it to a file (Parquet
needs `--output`); `ah shell` is a small interactive loop over the same connection, for
machines without the DuckDB command line.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, TextIO, get_args

import duckdb
import polars as pl

from cache.layout import CacheLayout
from cache.views import open_catalog
from foundation.errors import UsageError

Format = Literal["table", "csv", "json", "parquet"]
FORMATS: tuple[str, ...] = get_args(Format)
SHELL_HELP = """Statements end with ';'. Commands:
  .tables            every schema.table of the catalogue
  .mode FORMAT       table (default), csv or json
  .help              this text
  .quit              leave (or Ctrl-D)"""


def connect(layout: CacheLayout) -> duckdb.DuckDBPyConnection:
    """The catalogue of the cache, read-only; a missing one is a usage error."""
    path = layout.duckdb_path
    if not path.exists():
        msg = f"no DuckDB catalogue at {path}: run `ah run` or `ah load` to build it"
        raise UsageError(msg)
    return open_catalog(path)


def check_format(fmt: str, output: Path | None) -> Format:
    """`fmt` as a known format; Parquet is binary and needs an output file."""
    if fmt not in FORMATS:
        msg = f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}"
        raise UsageError(msg)
    if fmt == "parquet" and output is None:
        msg = "--format parquet writes a file: add --output PATH"
        raise UsageError(msg)
    return fmt  # type: ignore[return-value]


def fetch(con: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame | None:
    """Run `sql` (one or more statements); the last one's rows, None when it returns none."""
    try:
        relation = con.sql(sql)
        return None if relation is None else pl.from_arrow(relation.to_arrow_table())  # type: ignore[return-value]
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = f"query failed: {first}"
        raise UsageError(msg) from exc


def render(frame: pl.DataFrame, fmt: Format) -> str:
    """A result as text: an aligned table (every row), CSV with a header, or a JSON
    array of objects (dates as ISO strings)."""
    if fmt == "csv":
        return frame.write_csv()
    if fmt == "json":
        rows = json.loads(frame.write_json())
        return json.dumps(rows, ensure_ascii=False, indent=1) + "\n"
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=200,
        fmt_str_lengths=60,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=False,
        tbl_hide_dtype_separator=True,
    ):
        rows = "1 row" if frame.height == 1 else f"{frame.height:,} rows"
        return f"{frame}\n({rows})\n"


def write_result(frame: pl.DataFrame, fmt: Format, output: Path) -> str:
    """Write a result to `output` in `fmt`; the line saying so."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        frame.write_parquet(output, compression="zstd")
    else:
        output.write_text(render(frame, fmt), encoding="utf-8")
    return f"wrote {frame.height:,} rows to {output} ({fmt})"


def run_sql(layout: CacheLayout, sql: str, fmt: str = "table", output: Path | None = None) -> str:
    """`ah sql`: run `sql` on the catalogue; the result as text, or the line saying
    where it was written."""
    chosen = check_format(fmt, output)
    with connect(layout) as con:
        frame = fetch(con, sql)
    if frame is None:
        return "ok (no rows returned)\n"
    if output is not None:
        return write_result(frame, chosen, output) + "\n"
    return render(frame, chosen)


def _tables(con: duckdb.DuckDBPyConnection) -> str:
    rows = con.execute(
        "SELECT schema_name || '.' || view_name FROM duckdb_views() WHERE NOT internal "
        "UNION ALL SELECT schema_name || '.' || table_name FROM duckdb_tables() ORDER BY 1"
    ).fetchall()
    return "\n".join(name for (name,) in rows) + "\n"


def statements(lines: Iterable[str]) -> Iterable[str]:
    """Group input lines into dot commands (one line each) and SQL statements (up to a
    line ending with ';')."""
    pending: list[str] = []
    for line in lines:
        text = line.rstrip("\n")
        if not pending and text.strip().startswith("."):
            yield text.strip()
            continue
        if not text.strip() and not pending:
            continue
        pending.append(text)
        if text.rstrip().endswith(";"):
            yield "\n".join(pending)
            pending = []
    if pending and "\n".join(pending).strip():
        yield "\n".join(pending)


def _prompted(stdin: TextIO, interactive: bool) -> Iterable[str]:
    """Input lines; a person typing gets a prompt, line editing and history."""
    if not interactive:
        yield from stdin
        return
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing for input())
    while True:
        try:
            yield input("ah> ") + "\n"
        except EOFError:
            return


def shell(layout: CacheLayout, stdin: TextIO, stdout: TextIO, interactive: bool) -> int:
    """`ah shell`: read statements from `stdin` and print each result; a failed
    statement prints one error line and the loop goes on. Exit status 0, or 1 when a
    statement failed and the input was not typed (a script)."""
    mode: Format = "table"
    failed = False
    if interactive:
        stdout.write(f"alphahome catalogue {layout.duckdb_path} (read-only). .help for help\n")
    with connect(layout) as con:
        for item in statements(_prompted(stdin, interactive)):
            if item.startswith("."):
                command, _, argument = item.partition(" ")
                if command in (".quit", ".exit"):
                    break
                if command == ".tables":
                    stdout.write(_tables(con))
                elif command == ".mode" and argument.strip() in ("table", "csv", "json"):
                    mode = argument.strip()  # type: ignore[assignment]
                elif command == ".help":
                    stdout.write(SHELL_HELP + "\n")
                else:
                    stdout.write(f"error: unknown command {item!r} (.help lists them)\n")
                    failed = True
                continue
            try:
                frame = fetch(con, item)
            except UsageError as exc:
                stdout.write(f"error: {exc}\n")
                failed = True
                continue
            stdout.write(render(frame, mode) if frame is not None else "ok\n")
            stdout.flush()
    return 1 if failed and not interactive else 0
