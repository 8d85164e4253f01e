"""The raw mechanism the load is compared with: PostgreSQL binary COPY of Arrow rows.

`encode` turns a batch into the COPY BINARY wire format with numpy, column by column
(no per-row Python): each column becomes an (n, 4 + width) byte block (big-endian
length, then the value, padded to the column's widest value in the batch), the blocks
are laid side by side, and a mask of the real bytes (nulls carry no value bytes,
strings only their own length) compresses the padded matrix, in row-major order, into
the stream. `write_copy_file` encodes rows ahead of time into a file; `copy_file` then
streams it through psycopg's `cursor.copy(... FORMAT BINARY)`: nothing but the COPY
itself (wire and server), the floor any loader of the same rows can approach.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
BATCH_ROWS = 65_536
READ_CHUNK = 1 << 20
PG_EPOCH_DAYS = 10_957  # 2000-01-01 - 1970-01-01
PG_EPOCH_US = PG_EPOCH_DAYS * 86_400 * 1_000_000


def _lengths(valid: np.ndarray, width: np.ndarray | int) -> np.ndarray:
    """The big-endian length prefix: the value's width, or -1 for a null."""
    return np.where(valid, width, -1).astype(">i4")


def _block(prefix: np.ndarray, values: np.ndarray, used: np.ndarray) -> tuple[np.ndarray, ...]:
    """(bytes block (n, 4 + w), mask of the bytes to send) of one column."""
    n = len(prefix)
    block = np.empty((n, 4 + values.shape[1]), np.uint8)
    block[:, :4] = prefix.view(np.uint8).reshape(n, 4)
    block[:, 4:] = values
    mask = np.arange(block.shape[1]) < (4 + used)[:, None]
    return block, mask


def _fixed(column: pa.Array, dtype: str) -> tuple[np.ndarray, ...]:
    """A fixed-width column: dates, timestamps, floats, integers, booleans."""
    n = len(column)
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_date32(column.type):
        raw = column.cast(pa.int32()).fill_null(0).to_numpy() - PG_EPOCH_DAYS
    elif pa.types.is_timestamp(column.type):
        micros = column.cast(pa.timestamp("us", column.type.tz)).cast(pa.int64())
        raw = micros.fill_null(0).to_numpy() - PG_EPOCH_US
    elif pa.types.is_boolean(column.type):
        raw = column.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint8)
    else:
        raw = column.fill_null(0).to_numpy()
    values = np.ascontiguousarray(raw.astype(dtype)).view(np.uint8).reshape(n, -1)
    width = values.shape[1]
    used = np.where(valid, width, 0)
    return _block(_lengths(valid, width), values, used)


def _text(column: pa.Array) -> tuple[np.ndarray, ...]:
    """A string column, each value padded to the longest of the batch."""
    n = len(column)
    column = column.cast(pa.large_string())
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    sizes = pc.binary_length(column).fill_null(0).to_numpy().astype(np.int64)
    offsets = np.frombuffer(column.buffers()[1], np.int64)[column.offset : column.offset + n]
    data = np.frombuffer(column.buffers()[2] or b"\0", np.uint8)
    widest = int(sizes.max()) if n else 0
    index = offsets[:, None] + np.arange(widest)
    values = data[np.minimum(index, len(data) - 1)] if widest else np.empty((n, 0), np.uint8)
    return _block(_lengths(valid, sizes), values, np.where(valid, sizes, 0))


def _column(column: pa.Array) -> tuple[np.ndarray, ...]:
    t = column.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _text(column)
    if pa.types.is_floating(t):
        return _fixed(column.cast(pa.float64()), ">f8")
    if pa.types.is_integer(t) or pa.types.is_timestamp(t):
        return _fixed(column, ">i8")
    if pa.types.is_date32(t):
        return _fixed(column, ">i4")
    if pa.types.is_boolean(t):
        return _fixed(column, "u1")
    msg = f"no binary COPY encoding for Arrow type {t}"
    raise TypeError(msg)


def encode(batch: pa.RecordBatch) -> bytes:
    """The tuples of `batch` in COPY BINARY format (no signature, no trailer)."""
    n = batch.num_rows
    count = np.full(n, batch.num_columns, ">i2").view(np.uint8).reshape(n, 2)
    blocks, masks = [count], [np.ones((n, 2), bool)]
    for column in batch.columns:
        block, mask = _column(column)
        blocks.append(block)
        masks.append(mask)
    return np.hstack(blocks)[np.hstack(masks)].tobytes()


def write_copy_file(tables: Iterable[pa.Table], path: Path) -> int:
    """Encode `tables`, in order, as one COPY BINARY stream into `path`; rows written."""
    rows = 0
    with open(path, "wb") as out:
        out.write(SIGNATURE)
        for table in tables:
            for batch in table.to_batches(BATCH_ROWS):
                out.write(encode(batch))
            rows += table.num_rows
        out.write(TRAILER)
    return rows


def copy_file(cursor: psycopg.Cursor[Any], table: str, columns: Iterable[str], path: Path) -> None:
    """Stream a `write_copy_file` file into `table` (quoted, schema-qualified) by COPY."""
    names = ", ".join('"' + name.replace('"', '""') + '"' for name in columns)
    with (
        open(path, "rb") as stream,
        cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        while chunk := stream.read(READ_CHUNK):
            copy.write(chunk)
