"""The Tushare API catalogue: params and fields of every API we know, read from apis.json.

`apis.json` (a copy of the shared one, checked equal by a test) is the single source
of field names, order, documented types and default-display flags; nothing else in
the project retypes a field list.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from typing import Any, Literal

import polars as pl

from foundation.errors import InternalError, UsageError

FieldType = Literal["str", "float", "int", "date"]

VIP_SUFFIX = "_vip"


class UnknownApiError(UsageError, KeyError):
    """Raised for an API name that the catalogue does not know.

    Also a `KeyError` (a lookup that found nothing), so `except KeyError` still catches it.
    """

    __str__ = Exception.__str__  # the message as given, not quoted as KeyError quotes it


class UnknownFieldError(UsageError):
    """Raised for a field name that an API of the catalogue does not document."""


@dataclass(frozen=True)
class FieldSpec:
    """One output column of an API: name, documented type and default-display flag."""

    name: str
    type: FieldType
    default: bool
    desc: str


@dataclass(frozen=True)
class ParamSpec:
    """One documented input parameter of an API."""

    name: str
    type: str
    required: bool
    desc: str


@dataclass(frozen=True)
class ApiSpec:
    """The documented shape of one Tushare API."""

    name: str
    doc_id: int | None
    title: str
    min_points: int | None
    rows_per_call: int | None
    vip_variant: str | None
    notes: str
    params: tuple[ParamSpec, ...]
    fields: tuple[FieldSpec, ...]
    primary_key: tuple[str, ...]

    @cached_property
    def field_names(self) -> tuple[str, ...]:
        """Every documented output field, in the documented order."""
        return tuple(f.name for f in self.fields)

    @cached_property
    def _by_name(self) -> dict[str, FieldSpec]:
        """The fields by name (every response column looks its type up here)."""
        return {f.name: f for f in self.fields}

    @property
    def default_field_names(self) -> tuple[str, ...]:
        """The fields returned when a request names none (default-display flag Y); every
        field when the page flags none (bc_otcqt, bc_bestotcqt, cn_pmi), as a request
        naming no fields must still get columns."""
        flagged = tuple(f.name for f in self.fields if f.default)
        return flagged or self.field_names

    @property
    def param_names(self) -> tuple[str, ...]:
        """Every documented input parameter name."""
        return tuple(p.name for p in self.params)

    def field(self, name: str) -> FieldSpec:
        """The spec of one field; `UnknownFieldError` naming the API when it is not documented."""
        found = self._by_name.get(name)
        if found is not None:
            return found
        msg = f"api {self.name} has no field {name!r}"
        raise UnknownFieldError(msg)

    def polars_schema(self, names: tuple[str, ...] | list[str] | None = None) -> dict[str, Any]:
        """Polars dtypes for `names` (default: all fields): DATE, DOUBLE, BIGINT or VARCHAR."""
        chosen = self.field_names if names is None else tuple(names)
        return {n: POLARS_TYPES[self.field(n).type] for n in chosen}


POLARS_TYPES: dict[str, Any] = {
    "str": pl.String,
    "float": pl.Float64,
    "int": pl.Int64,
    "date": pl.Date,
}


def _field_type(name: str, documented: str) -> FieldType:
    """Dates are documented as str; a str field whose name ends in 'date' is a DATE.

    A few fields are documented as `datetime`: one named like a date (stk_nineturn's
    trade_date) is a DATE, any other (report_rc's create_time) keeps the service's text.
    """
    if documented in ("str", "datetime") and name.endswith("date"):
        return "date"
    if documented == "datetime":
        return "str"
    if documented not in ("str", "float", "int"):
        msg = f"field {name!r} has an unknown documented type {documented!r}"
        raise InternalError(msg)
    return documented  # type: ignore[return-value]


def build_spec(name: str, raw: dict[str, Any]) -> ApiSpec:
    """One catalogue entry (its JSON object) as an `ApiSpec`."""
    return ApiSpec(
        name=name,
        doc_id=raw.get("doc_id"),
        title=raw.get("title", ""),
        min_points=raw.get("min_points"),
        rows_per_call=raw.get("rows_per_call"),
        vip_variant=raw.get("vip_variant"),
        notes=raw.get("notes", ""),
        params=tuple(
            ParamSpec(p["name"], p["type"], bool(p["required"]), p.get("desc", ""))
            for p in raw["params"]
        ),
        fields=tuple(
            FieldSpec(f["name"], _field_type(f["name"], f["type"]), bool(f["default"]), f["desc"])
            for f in raw["fields"]
        ),
        primary_key=tuple(raw.get("primary_key") or ()),
    )


@cache
def catalogue() -> dict[str, ApiSpec]:
    """Every documented API by name (base names; `*_vip` variants resolve via `api_spec`)."""
    text = resources.files("cache.catalogue").joinpath("apis.json").read_text("utf-8")
    return {name: build_spec(name, raw) for name, raw in json.loads(text)["apis"].items()}


def base_api(name: str) -> str:
    """The dataset an API lands in: `income_vip` -> `income`; other names unchanged."""
    if name.endswith(VIP_SUFFIX) and name[: -len(VIP_SUFFIX)] in catalogue():
        base = name[: -len(VIP_SUFFIX)]
        if catalogue()[base].vip_variant == name:
            return base
    return name


def api_spec(name: str) -> ApiSpec:
    """The spec of an API or of its `_vip` variant (same params and fields)."""
    spec = catalogue().get(base_api(name))
    if spec is None:
        msg = f"unknown api {name!r}"
        raise UnknownApiError(msg)
    return spec


def parse_date(value: Any) -> dt.date | None:
    """A Tushare date (`YYYYMMDD` string or int) as a date; None for null or empty."""
    if value is None or value == "":
        return None
    s = str(value)
    return dt.date(int(s[0:4]), int(s[4:6]), int(s[6:8]))


def format_date(value: dt.date | None) -> str | None:
    """A date in Tushare's `YYYYMMDD` form."""
    return None if value is None else value.strftime("%Y%m%d")


def to_frame(api: str, fields: list[str], items: list[list[Any]]) -> pl.DataFrame:
    """Rows of a response as a frame with the documented types.

    Numbers that arrive as ints where floats are documented become floats, numbers
    documented as str become their text, `YYYYMMDD` strings become DATE. A column whose
    values all have the documented JSON type is converted by Polars at once; any other
    goes value by value.
    """
    spec = api_spec(api)
    columns: dict[str, pl.Series] = {}
    transposed = list(zip(*items, strict=True)) if items else [() for _ in fields]
    for name, raw in zip(fields, transposed, strict=True):
        kind = spec.field(name).type
        series = _column_at_once(name, kind, raw)
        if series is None:
            series = _column_by_value(name, kind, raw)
        columns[name] = series
    return pl.DataFrame(columns, schema={n: POLARS_TYPES[spec.field(n).type] for n in fields})


def _column_at_once(name: str, kind: str, raw: Sequence[Any]) -> pl.Series | None:
    """A column converted by Polars in one go; None when a value is not of the plain
    JSON type the documented type expects (then `_column_by_value` converts it)."""
    try:
        if kind == "float":
            return pl.Series(name, raw, dtype=pl.Float64, strict=True)
        if kind == "int":
            return pl.Series(name, raw, dtype=pl.Int64, strict=True)
        text = pl.Series(name, raw, dtype=pl.String, strict=True)
        if kind == "date":
            return text.replace("", None).str.strptime(pl.Date, "%Y%m%d", strict=True)
        return text if kind == "str" else None
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
        return None


def _column_by_value(name: str, kind: str, raw: Sequence[Any]) -> pl.Series:
    """A column converted value by value (`int`, `float`, `str`, `parse_date`)."""
    if kind == "date":
        values: list[Any] = [parse_date(v) for v in raw]
    elif kind == "float":
        values = [None if v is None else float(v) for v in raw]
    elif kind == "int":
        values = [None if v is None else int(v) for v in raw]
    else:
        values = [None if v is None else str(v) for v in raw]
    return pl.Series(name, values, dtype=POLARS_TYPES[kind])
