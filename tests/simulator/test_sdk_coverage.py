"""Every catalogued API through the official tushare SDK against `ah sim serve`: the
documented default columns (and the others when named), rows for nearly all."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cache.catalogue.apis import api_spec, catalogue
from cache.catalogue.coverage import DEFAULT_APIS, FILLS, SNAPSHOT_PARAMS, coverage
from pipeline.sources.simulator.apis import HANDLERS

pytest.importorskip("tushare")
from tushare.pro.client import DataApi

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "alphahome-sim"
DAY, PERIOD, MONTH = "20240628", "20240331", "202406"
# The list each kind of code is read from (first code listed).
LISTS = {
    "fund": ("fund_basic", {}),
    "bond": ("cb_basic", {}),
    "hk": ("hk_basic", {}),
    "us": ("us_basic", {}),
    "futures": ("fut_basic", {"exchange": "CFFEX"}),
    "options": ("opt_basic", {}),
    "stock": ("stock_basic", {}),
}


@pytest.fixture(scope="module")
def pro(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataApi]:
    """The SDK pointed at `ah sim serve` (a small market, an account with every point)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AH_", "TUSHARE"))}
    args = ["sim", "serve", "--port", "0", "--stocks", "12", "--start", "20240301"]
    args += ["--today", "20240628", "--points", "20000"]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), *args],
        cwd=tmp_path_factory.mktemp("serve"),
        env=clean,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = re.search(r"http://[\d.:]+", proc.stdout.readline())
        assert url is not None
        api = DataApi(TOKEN, timeout=60)
        api._DataApi__http_url = f"{url.group(0)}/dataapi"  # type: ignore[attr-defined]
        yield api
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _area(api: str) -> str:
    return "stock" if api in DEFAULT_APIS else coverage(api).area


def _required(api: str) -> list[str]:
    """Documented required params, and one of each group the service insists on."""
    documented = [p.name for p in api_spec(api).params if p.required]
    insisted = [group[0] for group in HANDLERS[api].required]
    return list(dict.fromkeys([*documented, *insisted]))


def _params(api: str, codes: dict[str, str]) -> dict[str, Any]:
    fixed = dict(FILLS.get(api, ())) | dict(SNAPSHOT_PARAMS.get(api, ((),))[0])
    params: dict[str, Any] = {}
    for name in _required(api):
        if name == "ts_code":
            params[name] = codes.get(_area(api), "000300.SH")
        elif name == "index_code":
            params[name] = "000300.SH"
        elif name in ("trade_date", "date", "ann_date"):
            params[name] = DAY
        elif name in ("period", "end_date"):
            params[name] = PERIOD
        elif name in ("month", "m"):
            params[name] = MONTH
        else:
            params[name] = fixed[name]
    return params


def test_every_catalogued_api_answers_the_sdk_with_its_documented_columns(pro: DataApi) -> None:
    codes = {
        area: str(pro.query(name, **p)["ts_code"].iloc[0]) for area, (name, p) in LISTS.items()
    }
    with_rows = []
    for api in catalogue():
        spec = api_spec(api)
        params = _params(api, codes)
        frame = pro.query(api, **params)
        assert list(frame.columns) == list(spec.default_field_names), api
        if len(frame):
            with_rows.append(api)
    assert len(catalogue()) == 212
    assert len(with_rows) >= 0.9 * len(catalogue()), sorted(set(catalogue()) - set(with_rows))


def test_fields_not_shown_by_default_come_when_named(pro: DataApi) -> None:
    for api in ("fut_daily", "cb_basic", "us_basic", "stk_holdertrade"):
        spec = api_spec(api)
        hidden = [f for f in spec.field_names if f not in spec.default_field_names]
        assert hidden, api
        named = [*reversed(spec.field_names)]
        frame = pro.query(api, fields=",".join(named), **_params(api, {}))
        assert list(frame.columns) == named, api
        assert len(frame) > 0, api
        assert frame[hidden].notna().any().any(), api
