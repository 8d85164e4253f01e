"""Response bodies in Tushare Pro's JSON shape, and the gateway's HTML error pages.

Rows are encoded column-wise by polars, several times faster than `json.dumps` on
lists: a full-market statement period has half a million cells. Dates go out as
"YYYYMMDD", NaN as null, and trade_cal's `is_open` as a number, as the real service
sends it.
"""

from __future__ import annotations

import json

import polars as pl

_AS_NUMBERS = {("trade_cal", "is_open")}
_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))
_GATEWAY_TITLES = {502: "502 Bad Gateway", 504: "504 Gateway Time-out", 404: "404 Not Found"}


def _cell(api: str, name: str, dtype: pl.DataType) -> pl.Expr:
    """A column as JSON literals: text for dates and strings, numbers left to the CSV writer."""
    col = pl.col(name)
    if dtype == pl.Date:
        return pl.concat_str([pl.lit('"'), col.dt.strftime("%Y%m%d"), pl.lit('"')])
    if dtype == pl.Float64:
        return pl.when(col.is_finite()).then(col).otherwise(None)
    if dtype == pl.Int64 or (api, name) in _AS_NUMBERS:
        return col
    escaped = col
    for raw, safe in _ESCAPES:
        escaped = escaped.str.replace_all(raw, safe, literal=True)
    return pl.concat_str([pl.lit('"'), escaped, pl.lit('"')])


def items_json(api: str, frame: pl.DataFrame) -> str:
    """The rows as a JSON array of arrays (columns in the frame's order).

    Cells become JSON literals, then polars' CSV writer lays them out with "," between
    cells and "],[" between rows (floats in shortest round-trip form, nulls as null).
    """
    if frame.height == 0:
        return "[]"
    if frame.width == 0:
        return "[" + ",".join(["[]"] * frame.height) + "]"
    cells = frame.select(
        [_cell(api, name, dtype).alias(name) for name, dtype in frame.schema.items()]
    )
    text = cells.write_csv(
        include_header=False, quote_style="never", null_value="null", line_terminator="],["
    )
    return "[[" + text[: -len("],[")] + "]]"


def success(request_id: str, api: str, frame: pl.DataFrame, has_more: bool) -> bytes:
    """A code-0 answer carrying the rows."""
    fields = json.dumps(frame.columns, ensure_ascii=False)
    head = (
        f'{{"request_id":{json.dumps(request_id)},"code":0,"msg":"",'
        f'"data":{{"fields":{fields},"items":'
    )
    tail = f',"has_more":{"true" if has_more else "false"},"count":{frame.height}}}}}'
    return (head + items_json(api, frame) + tail).encode("utf-8")


def failure(request_id: str, code: int, msg: str) -> bytes:
    """A code != 0 answer."""
    return json.dumps(
        {"request_id": request_id, "code": code, "msg": msg, "data": None}, ensure_ascii=False
    ).encode("utf-8")


def gateway_page(status: int) -> bytes:
    """The HTML an nginx front end sends for a gateway error."""
    title = _GATEWAY_TITLES.get(status, f"{status} Error")
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    ).encode()
