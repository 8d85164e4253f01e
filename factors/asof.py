"""As-of joins: the value of a time-stamped table as known on each requested date.

A right-hand table holds rows (key, valid_from, values…) meaning "from valid_from on,
these are the values"; `as_of` returns, for each (key, date) on the left, the row with
the greatest valid_from <= date. Both sides are sorted explicitly by (key, date):
Polars cannot check sortedness inside `by` groups, so an unsorted input would give
silently wrong matches.
"""

from __future__ import annotations

import polars as pl

from foundation.errors import InternalError


def as_of(
    left: pl.DataFrame,
    right: pl.DataFrame,
    *,
    by: str | list[str],
    left_on: str,
    right_on: str,
) -> pl.DataFrame:
    """Left rows with the columns of the latest right row whose `right_on` <= `left_on`.

    Left rows without such a right row get nulls. The right's `right_on` column is kept
    (renamed only if it clashes) so callers can check what fed each row. Left row order
    is not preserved: the result is sorted by (`by`, `left_on`).
    """
    keys = [by] if isinstance(by, str) else list(by)
    if left.schema[left_on] != right.schema[right_on]:
        msg = (
            f"as_of: {left_on!r} is {left.schema[left_on]} but {right_on!r} is "
            f"{right.schema[right_on]}; cast one side first"
        )
        raise InternalError(msg)
    lhs = left.sort([*keys, left_on])
    rhs = right.sort([*keys, right_on])
    if right_on != left_on:
        return lhs.join_asof(
            rhs,
            left_on=left_on,
            right_on=right_on,
            by=keys,
            strategy="backward",
            check_sortedness=False,
        )
    marker = f"__{right_on}_right"
    rhs = rhs.with_columns(pl.col(right_on).alias(marker))
    return lhs.join_asof(
        rhs, on=left_on, by=keys, strategy="backward", check_sortedness=False
    ).rename({marker: f"{right_on}_right"})
