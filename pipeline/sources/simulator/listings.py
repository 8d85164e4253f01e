"""Small universes beyond A-shares: funds, futures, options, convertibles, HK and US
listings, FX pairs, gold contracts, and which one each catalogued API's codes come from.

They are fixed lists (real-looking codes), so every API of an area serves rows for
the same codes its list API (fund_basic, fut_basic, hk_basic, ...) lists.
"""

from __future__ import annotations

from pipeline.sources.simulator.indexes import INDEXES

FUNDS = ("510300.SH", "510500.SH", "159915.SZ", "512880.SH", "588000.SH", "159919.SZ")
OTC_FUNDS = ("000001.OF", "110022.OF")
FUTURES = (
    "IF2412.CFX", "IC2412.CFX", "RB2501.SHF", "CU2501.SHF", "M2501.DCE", "SR2501.ZCE",
    "SC2501.INE", "SI2501.GFE",
)  # fmt: skip
OPTIONS = ("10007000.SH", "10007001.SH", "90003000.SZ", "IO2412-C-3500.CFX")
CONVERTIBLES = ("113050.SH", "127045.SZ", "123100.SZ", "110059.SH")
HK = ("00700.HK", "09988.HK", "00005.HK", "01299.HK")
US = ("AAPL", "MSFT", "NVDA", "BABA")
FX = ("USDCNH.FXCM", "EURUSD.FXCM", "USDJPY.FXCM")
GOLD = ("Au99.99", "Au(T+D)", "Ag(T+D)")
INDEX_CODES = tuple(i.code for i in INDEXES if i.market != "SW")

# Exchange of a futures contract by its suffix (fut_basic is asked per exchange).
FUTURES_EXCHANGE = {
    "CFX": "CFFEX", "SHF": "SHFE", "DCE": "DCE", "ZCE": "CZCE", "INE": "INE", "GFE": "GFEX",
}  # fmt: skip

# Where an API's ts_codes come from when it is not the A-share universe, by name prefix
# first, then by area; None: the A-share stocks.
_BY_PREFIX: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("fut_", FUTURES), ("ft_", FUTURES), ("opt_", OPTIONS), ("cb_", CONVERTIBLES),
    ("hk_", HK), ("rt_hk", HK), ("us_", US), ("fx_", FX), ("sge_", GOLD), ("fund_", FUNDS),
    ("etf_", FUNDS), ("rt_etf", FUNDS), ("ggt_", HK),
)  # fmt: skip
_BY_AREA: dict[str, tuple[str, ...]] = {
    "index": INDEX_CODES,
    "fund": FUNDS,
    "futures": FUTURES,
    "options": OPTIONS,
    "bond": CONVERTIBLES,
    "hk": HK,
    "us": US,
    "fx": FX,
    "other": GOLD,
}


def codes_for(api: str, area: str, market: str | None = None) -> tuple[str, ...] | None:
    """The codes `api` serves rows for; None for the A-share stock universe.

    fund_basic's `market` O lists the off-exchange funds, E (and none) the listed ones.
    """
    if api == "fund_basic" and market == "O":
        return OTC_FUNDS
    if api == "hk_hold":  # northbound holdings of A-shares
        return None
    for prefix, codes in _BY_PREFIX:
        if api.startswith(prefix):
            return codes
    return _BY_AREA.get(area)
