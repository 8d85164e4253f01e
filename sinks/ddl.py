"""Table definitions for the PostgreSQL sink: keys per dataset, types, DDL text (DESIGN 8).

Pure: no connection, no I/O. `table_spec(layer, name)` says how a cache dataset is
keyed and loaded; `pg_type` maps an Arrow type to one of the six column types the sink
uses (DATE, DOUBLE PRECISION, BIGINT, BOOLEAN, TEXT, TIMESTAMPTZ; never NUMERIC, which
ADBC has corrupted in the past); the `*_sql` functions build the statements.

Keys come from the dataset catalogue (`cache.catalogue.datasets`), the one home of
every dataset's key, nullable key columns and partition scope:
- raw `latest` datasets (market, reference, ...): the catalogue key, with `trade_date` /
  `cal_date` / `end_date` moved first, because those datasets are cached (and loaded)
  date partition by date partition and COPY into a key that matches the input order
  is much faster. Loaded by upsert: the cache never deletes a raw row, so neither does
  the sink.
- raw `versions` datasets (the statements) are version logs: every distinct row is
  kept, so the true key is "all columns" (more than the 32 an index may hold). The
  table gets a computed `row_hash` (md5 of the row's non-null values other than
  `_fetched_at`, in a canonical text form, computed by PostgreSQL at load time:
  `row_hash_sql`) and the primary key (end_date, ts_code, row_hash). The hash alone
  decides identity; ann_date, f_ann_date, update_flag and report_type are left out of
  the key because they may be null (a primary key column may not) and the hash
  already covers them. Nulls are skipped in the hash so a column added later (null in
  old rows) leaves the old rows' hashes, and so their keys, unchanged. Rows equal but
  for `_fetched_at` are one version.
- PIT and factor tables: the catalogue key as it is. A load replaces whole values of
  their `scope` column. A factor file owns its calc dates wholly, so rows of those
  dates no longer in the file are deleted. A PIT stock table's stock may span files
  (its bucket file and delta files: `spans_files`), so a changed stock's rows are
  replaced by its rows in every file of the table.
A key column that may be null gets a UNIQUE index with NULLS NOT DISTINCT (PostgreSQL
15+) instead of a primary key, so a null is a value of its own and no sentinel is stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from cache.catalogue.datasets import DatasetSpec, UnknownDatasetError, dataset
from foundation.errors import AlphahomeError

SCHEMAS: tuple[str, ...] = ("raw", "pit", "factors", "ops")

ROW_HASH = "row_hash"
FETCHED_AT = "_fetched_at"

# Date columns that go first in a raw key (the datasets are partitioned by them).
DATE_LEAD_COLUMNS: tuple[str, ...] = ("trade_date", "cal_date", "end_date")
# The key of a version log: its period and stock, then the hash of the whole row.
VERSION_LOG_KEY: tuple[str, ...] = ("end_date", "ts_code", ROW_HASH)


class TableDefinitionError(AlphahomeError):
    """A dataset the sink cannot key or a column type it cannot store."""


@dataclass(frozen=True)
class TableSpec:
    """How one cache dataset is stored in PostgreSQL.

    `key` is the unique key in index order; `nullable_key` the key columns that may be
    null (then a NULLS NOT DISTINCT unique index replaces the primary key); `scope` the
    column whose values a load replaces whole (None: upsert only, never delete);
    `spans_files` whether a scope value's rows may be spread over several partition
    files (else each partition owns its scope values wholly); `row_hash` whether the key
    ends with the computed hash of a version-log row.
    """

    schema: str
    name: str
    key: tuple[str, ...]
    nullable_key: frozenset[str] = frozenset()
    scope: str | None = None
    row_hash: bool = False
    spans_files: bool = False

    @property
    def qualified(self) -> str:
        """`schema.name`, as in the cache (`factors.p`)."""
        return f"{self.schema}.{self.name}"

    @property
    def sql_name(self) -> str:
        """The quoted, schema-qualified name for SQL text."""
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"

    @property
    def lead(self) -> str:
        """The first key column: loads restrict the table to the partition's values of it."""
        return self.key[0]

    @property
    def data_key(self) -> tuple[str, ...]:
        """Key columns that come from the cache (all but the computed row_hash)."""
        return tuple(c for c in self.key if c != ROW_HASH)

    @property
    def slice_column(self) -> str:
        """The column whose partition values select the table rows a load compares with."""
        return self.scope or self.lead


def table_spec(layer: str, name: str) -> TableSpec:
    """The storage definition of dataset `name` of cache layer `layer`."""
    try:
        spec = dataset(layer, name)
    except UnknownDatasetError as exc:
        msg = f"no table definition for {layer}.{name}: {exc}"
        raise TableDefinitionError(msg) from None
    if spec.layer == "raw":
        return _raw_spec(spec)
    return TableSpec(
        spec.layer, spec.name, spec.key, spec.nullable_key, spec.scope,
        spans_files=spec.scope_spans_files,
    )  # fmt: skip


def _raw_spec(spec: DatasetSpec) -> TableSpec:
    if spec.storage == "versions":
        return TableSpec("raw", spec.name, VERSION_LOG_KEY, row_hash=True)
    key = list(spec.key)
    lead = next((c for c in DATE_LEAD_COLUMNS if c in key), None)
    if lead is not None:
        key.remove(lead)
        key.insert(0, lead)
    return TableSpec("raw", spec.name, tuple(key), spec.nullable_key)


# ------------------------------------------------------------------------------ types

PG_DATE = "date"
PG_DOUBLE = "double precision"
PG_BIGINT = "bigint"
PG_BOOLEAN = "boolean"
PG_TEXT = "text"
PG_TIMESTAMPTZ = "timestamp with time zone"

# The Arrow type sent for each PostgreSQL type (binary COPY needs them to match exactly).
ARROW_FOR_PG: dict[str, pa.DataType] = {
    PG_DATE: pa.date32(),
    PG_DOUBLE: pa.float64(),
    PG_BIGINT: pa.int64(),
    PG_BOOLEAN: pa.bool_(),
    PG_TEXT: pa.large_string(),
    PG_TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),
}


def pg_type(arrow_type: pa.DataType, column: str = "?") -> str | None:
    """The PostgreSQL type storing `arrow_type`; None for the null type (no values yet).

    Naive timestamps are taken as UTC. Decimals, unsigned 64-bit integers, nested and
    binary types are refused with an error naming the column.
    """
    t = arrow_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_null(t):
        return None
    if pa.types.is_date(t):
        return PG_DATE
    if pa.types.is_floating(t):
        return PG_DOUBLE
    if pa.types.is_integer(t) and t != pa.uint64():
        return PG_BIGINT
    if pa.types.is_boolean(t):
        return PG_BOOLEAN
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return PG_TEXT
    if pa.types.is_timestamp(t):
        return PG_TIMESTAMPTZ
    msg = (
        f"column {column!r} has Arrow type {arrow_type}, which the PostgreSQL sink does not "
        "store (it uses DATE, DOUBLE PRECISION, BIGINT, BOOLEAN, TEXT, TIMESTAMPTZ)"
    )
    raise TableDefinitionError(msg)


# ------------------------------------------------------------------------------ SQL text


def quote_ident(identifier: str) -> str:
    """`identifier` as a quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """`text` as a SQL string literal (standard_conforming_strings on)."""
    return "'" + text.replace("'", "''") + "'"


def _column_sql(spec: TableSpec, name: str, pgtype: str) -> str:
    collate = ' COLLATE "C"' if pgtype == PG_TEXT and name in spec.key else ""
    not_null = " NOT NULL" if name in spec.key and name not in spec.nullable_key else ""
    return f"{quote_ident(name)} {pgtype}{collate}{not_null}"


def create_table_sql(
    spec: TableSpec, columns: Sequence[tuple[str, str]], with_key: bool = True
) -> list[str]:
    """CREATE TABLE (+ key index) statements for `spec` with `columns` (name, pg type).

    Text key columns use the "C" collation: byte order is the order rows are sent in
    (Arrow sorts bytes), and it compares faster than a linguistic collation. Without
    `with_key` the table is created bare: `key_sql` adds the key and its indexes once
    the rows are in (one sorted build instead of an index insert per row).
    """
    names = [c for c, _ in columns]
    missing = [c for c in spec.key if c not in names]
    if missing:
        msg = f"{spec.qualified}: key column(s) {', '.join(missing)} missing from the data"
        raise TableDefinitionError(msg)
    body = [_column_sql(spec, c, t) for c, t in columns]
    if not with_key:
        return [f"CREATE TABLE {spec.sql_name} ({', '.join(body)})"]
    if not spec.nullable_key:
        body.append(_primary_key(spec))
    statements = [f"CREATE TABLE {spec.sql_name} ({', '.join(body)})"]
    return statements + _key_indexes(spec)


def key_sql(spec: TableSpec) -> list[str]:
    """The statements that give a bare table of `spec` (`create_table_sql` without
    `with_key`) its key (primary key, or a unique index whose nulls are not distinct)
    and its scope index."""
    if spec.nullable_key:
        return _key_indexes(spec)
    return [f"ALTER TABLE {spec.sql_name} ADD {_primary_key(spec)}", *_key_indexes(spec)]


def index_sql(spec: TableSpec, columns: Iterable[str]) -> list[str]:
    """Every index of a bare table of `spec` with `columns`, one CREATE INDEX each (so
    that several connections can build them at once): the key's unique index, named as
    the primary key (`primary_key_using_index_sql` then makes it the key), or the
    unique index of a nullable key; the scope index; the history index."""
    statements = []
    if not spec.nullable_key:
        key_list = ", ".join(quote_ident(c) for c in spec.key)
        statements.append(
            f"CREATE UNIQUE INDEX {quote_ident(spec.name + '_pkey')} ON {spec.sql_name} "
            f"({key_list})"
        )
    statements += _key_indexes(spec)
    history = history_index_sql(spec, columns)
    return statements + ([history] if history else [])


def primary_key_using_index_sql(spec: TableSpec, index: str) -> str | None:
    """The statement that makes the unique index `index` (built by `index_sql`) the
    table's primary key, renamed as `create_table_sql` names it; None for a nullable
    key (its unique index is the key)."""
    if spec.nullable_key:
        return None
    return (
        f"ALTER TABLE {spec.sql_name} ADD CONSTRAINT {quote_ident(spec.name + '_pkey')} "
        f"PRIMARY KEY USING INDEX {quote_ident(index)}"
    )


def _primary_key(spec: TableSpec) -> str:
    key_list = ", ".join(quote_ident(c) for c in spec.key)
    return f"CONSTRAINT {quote_ident(spec.name + '_pkey')} PRIMARY KEY ({key_list})"


def _key_indexes(spec: TableSpec) -> list[str]:
    """The unique index of a nullable key, and the scope index."""
    statements = []
    if spec.nullable_key:
        key_list = ", ".join(quote_ident(c) for c in spec.key)
        statements.append(
            f"CREATE UNIQUE INDEX {quote_ident(spec.name + '_key')} ON {spec.sql_name} "
            f"({key_list}) NULLS NOT DISTINCT"
        )
    if spec.scope is not None and spec.scope != spec.lead:
        statements.append(
            f"CREATE INDEX {quote_ident(spec.name + '_' + spec.scope)} ON {spec.sql_name} "
            f"({quote_ident(spec.scope)})"
        )
    return statements


def history_index_sql(spec: TableSpec, columns: Iterable[str]) -> str | None:
    """The index that serves one stock's history (`WHERE ts_code = …`) when the key
    does not lead with ts_code (raw market tables lead with the date, factors with
    calc_date): (ts_code, the key's first column). None when the key already serves it
    or the table has no ts_code. When those two columns are the whole key, no two
    entries are equal, so the index is built without B-tree deduplication, which would
    only look for duplicates (a tenth of the build's time on a full-market daily)."""
    if "ts_code" not in set(columns) or spec.lead == "ts_code":
        return None
    indexed = tuple(dict.fromkeys(("ts_code", spec.lead)))
    cols = ", ".join(quote_ident(c) for c in indexed)
    unique = set(spec.key) <= set(indexed) and not spec.nullable_key
    return (
        f"CREATE INDEX IF NOT EXISTS {quote_ident(spec.name + '_ts_code')} "
        f"ON {spec.sql_name} ({cols})" + (" WITH (deduplicate_items = off)" if unique else "")
    )


def comment_sql(spec: TableSpec, comments: dict[str, str], columns: Iterable[str]) -> list[str]:
    """COMMENT ON COLUMN statements for the table's `columns` that have a comment."""
    return [
        f"COMMENT ON COLUMN {spec.sql_name}.{quote_ident(c)} IS {quote_literal(comments[c])}"
        for c in columns
        if c in comments
    ]


def add_columns_sql(spec: TableSpec, columns: Iterable[tuple[str, str]]) -> list[str]:
    """ALTER TABLE … ADD COLUMN statements for columns new in the cache (schema drift)."""
    return [f"ALTER TABLE {spec.sql_name} ADD COLUMN {quote_ident(c)} {t}" for c, t in columns]


def row_hash_sql(relation: str, columns: Iterable[str]) -> str:
    """SQL computing the version hash of each row of `relation` (an alias) from `columns`.

    md5 of `name='value'` for every non-null column but `_fetched_at`, in name order,
    comma-separated; values are quoted (`quote_literal`), so no value can imitate a
    separator. Text forms are fixed by the settings the load pins for its transaction
    (DateStyle ISO, TimeZone UTC, extra_float_digits = 1: shortest exact floats). Nulls
    are skipped, so the hash depends neither on column order nor on columns that are
    null (a column added to the cache later leaves old rows' hashes unchanged).

    PostgreSQL passes at most 100 arguments to a function, so wide tables (the balance
    sheet has more than 150 columns) join their parts in groups first; an all-null
    group is skipped (NULLIF), so the text hashed, and the hash, are the same as one
    flat concat_ws would give.
    """
    parts = [
        f"{quote_literal(c + '=')} || quote_literal({relation}.{quote_ident(c)})"
        for c in sorted(columns)
        if c not in (FETCHED_AT, ROW_HASH)
    ]
    if len(parts) > _MAX_JOINED:
        groups = [parts[i : i + _MAX_JOINED] for i in range(0, len(parts), _MAX_JOINED)]
        parts = [f"NULLIF(concat_ws(',', {', '.join(g)}), '')" for g in groups]
    return f"md5(concat_ws(',', {', '.join(parts)}))"


# Parts one concat_ws joins: its separator plus these stay under PostgreSQL's 100 arguments.
_MAX_JOINED = 90
