"""Whether two caches hold the same data: every raw dataset, PIT table and factor table.

"Same" is what the issue's "incremental = full" asks: the same rows with the same
values, compared order-independently (a multiset: a duplicated row counts twice), and
the fetch time `_fetched_at` aside, which records when a row was fetched, not what it
says. DuckDB runs `EXCEPT ALL` both ways over each dataset's Parquet glob; what the
caches hold on one side only counts as different too. Each side is first reduced to
its row count and the sum of its rows' hashes (one streaming scan, order-independent);
only a dataset whose sums differ is compared row by row with `EXCEPT ALL`, which
builds a hash table of the whole dataset (memory bounded: DuckDB spills to a scratch
folder) and counts the rows on each side only.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb

from cache.layout import LAYERS, CacheLayout

IGNORED = ("_fetched_at",)
MEMORY_LIMIT = "1GB"


@dataclass(frozen=True)
class Difference:
    """One dataset (`layer/name`) and how it differs: rows on each side only (-1: the
    dataset is missing on that side), or other columns."""

    dataset: str
    left_only: int
    right_only: int
    columns: str = ""

    def text(self) -> str:
        """One line for the report."""
        if self.columns:
            return f"{self.dataset}: columns differ ({self.columns})"
        if self.left_only < 0 or self.right_only < 0:
            side = "left" if self.right_only < 0 else "right"
            return f"{self.dataset}: only in the {side} cache"
        return f"{self.dataset}: {self.left_only} rows only left, {self.right_only} only right"


def _columns(con: duckdb.DuckDBPyConnection, glob: str) -> list[str]:
    described = con.execute(
        "DESCRIBE SELECT * FROM read_parquet(?, union_by_name = true)", [glob]
    ).fetchall()
    return [row[0] for row in described if row[0] not in IGNORED]


def _fingerprint(con: duckdb.DuckDBPyConnection, columns: str, glob: str) -> tuple[int, int]:
    """(rows, sum of the rows' hashes): equal for the same multiset of rows, in one
    streaming scan (no hash table of the whole dataset)."""
    query = (
        f"SELECT count(*), coalesce(sum(hash({columns})::HUGEINT), 0) "
        "FROM read_parquet(?, union_by_name = true)"
    )
    row = con.execute(query, [glob]).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _except_count(con: duckdb.DuckDBPyConnection, columns: str, one: str, other: str) -> int:
    query = (
        f"SELECT count(*) FROM (SELECT {columns} FROM read_parquet(?, union_by_name = true) "
        f"EXCEPT ALL SELECT {columns} FROM read_parquet(?, union_by_name = true))"
    )
    row = con.execute(query, [one, other]).fetchone()
    return int(row[0]) if row else 0


def _compare(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    mine: set[str],
    yours: set[str],
    name: str,
    globs: tuple[str, str],
) -> list[Difference]:
    """How one dataset differs between the caches (empty: it does not)."""
    if name not in mine or name not in yours:
        return [Difference(dataset, 0 if name in mine else -1, 0 if name in yours else -1)]
    one, other = globs
    columns, others = _columns(con, one), _columns(con, other)
    if sorted(columns) != sorted(others):
        return [Difference(dataset, 0, 0, ", ".join(sorted(set(columns) ^ set(others))))]
    selected = ", ".join(f'"{c}"' for c in columns)
    if _fingerprint(con, selected, one) == _fingerprint(con, selected, other):
        return []
    left_only = _except_count(con, selected, one, other)
    right_only = _except_count(con, selected, other, one)
    return [Difference(dataset, left_only, right_only)] if left_only or right_only else []


def differences(left: Path, right: Path) -> tuple[int, list[Difference]]:
    """Compare every dataset of the two caches; (datasets compared, the differing ones)."""
    ours, theirs = CacheLayout(left), CacheLayout(right)
    found: list[Difference] = []
    compared = 0
    with tempfile.TemporaryDirectory(prefix="samecache-") as spill:
        con = duckdb.connect()
        try:
            con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
            con.execute(f"SET temp_directory = '{spill}'")
            con.execute("SET preserve_insertion_order = false")
            con.execute("SET enable_progress_bar = false")
            for layer in LAYERS:
                mine, yours = set(ours.datasets(layer)), set(theirs.datasets(layer))
                for name in sorted(mine | yours):
                    compared += 1
                    found += _compare(
                        con,
                        f"{layer}/{name}",
                        mine,
                        yours,
                        name,
                        (ours.glob(layer, name), theirs.glob(layer, name)),
                    )
        finally:
            con.close()
    return compared, found
