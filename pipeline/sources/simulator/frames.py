"""Typed result frames: every documented field of an API, in catalogue order.

Handlers fill the columns they know from numpy arrays or lists; the rest stay null.
Dates arrive as day ordinals (0 or later than 9999-01-01 mean null), numbers as floats
(NaN means null), so handlers never deal with polars types themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from cache.catalogue.apis import api_spec

_EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal()
_NULL_DATE_FROM = 3651695  # date(9999, 1, 1).toordinal(); NEVER and beyond are null


def dates(ordinals: Any) -> pl.Series:
    """Day ordinals as a DATE series (0 and 'never' as null)."""
    values = np.asarray(ordinals, dtype=np.int64)
    valid = (values > 0) & (values < _NULL_DATE_FROM)
    days = np.where(valid, values - _EPOCH_ORDINAL, np.nan)
    return pl.Series(days, nan_to_null=True).cast(pl.Int32).cast(pl.Date)


def build(api: str, height: int, columns: Mapping[str, Any]) -> pl.DataFrame:
    """A frame with every field of `api` (catalogue order and types); absent ones null."""
    spec = api_spec(api)
    out: list[pl.Series] = []
    for field in spec.fields:
        dtype = spec.polars_schema((field.name,))[field.name]
        value = columns.get(field.name)
        if value is None:
            out.append(pl.repeat(None, height, dtype=dtype, eager=True).alias(field.name))
        elif field.type == "date":
            out.append(dates(value).alias(field.name))
        elif field.type == "float":
            out.append(pl.Series(field.name, np.asarray(value, dtype=np.float64), nan_to_null=True))
        elif field.type == "int":
            out.append(pl.Series(field.name, value, dtype=pl.Int64, strict=False))
        else:
            out.append(_strings(field.name, value, height))
    return pl.DataFrame(out)


def _strings(name: str, value: Any, height: int) -> pl.Series:
    if isinstance(value, str):
        return pl.Series(name, [value] * height, dtype=pl.String)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return pl.Series(name, value, dtype=pl.String)


def empty(api: str) -> pl.DataFrame:
    """No rows, all fields."""
    return build(api, 0, {})


def concat(frames: Sequence[pl.DataFrame], api: str) -> pl.DataFrame:
    """Frames of one API stacked (an empty frame when there are none)."""
    frames = [f for f in frames if f.height]
    return pl.concat(frames, how="vertical") if frames else empty(api)
