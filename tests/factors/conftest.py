"""Fixtures of the factor tests: small synthetic markets."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.factors.synthetic import Market, synthetic_market

SMALL_FIRST = dt.date(2018, 1, 1)
SMALL_LAST = dt.date(2021, 6, 30)


@pytest.fixture(scope="session")
def small_market() -> Market:
    """12 stocks over 3.5 years: listings, delistings, restatements, financials, gaps."""
    return synthetic_market(12, SMALL_FIRST, SMALL_LAST, seed=3)
