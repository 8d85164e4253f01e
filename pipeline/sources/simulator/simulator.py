"""The simulator: a market, the service answering for it, and three ways to reach it."""

from __future__ import annotations

import collections
import datetime as dt
import signal
import time
from collections.abc import Callable
from typing import Any

import polars as pl

from cache.catalogue.apis import UnknownApiError
from pipeline.sources.simulator.apis import HANDLERS
from pipeline.sources.simulator.config import SimulatorConfig
from pipeline.sources.simulator.market import Market
from pipeline.sources.simulator.protocol import Service
from pipeline.sources.simulator.query import normalise
from pipeline.sources.simulator.server import SimulatorServer
from pipeline.sources.simulator.transport import SimulatorTransport

DEFAULT_CONFIG = SimulatorConfig()


class Simulator:
    """A deterministic synthetic A-share market behind a Tushare Pro compatible service.

    `clock` (seconds) drives the rate limits and daily quotas; tests pass a fake one.
    """

    def __init__(
        self, config: SimulatorConfig = DEFAULT_CONFIG, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self._market = Market(config)
        self._service = Service(config, self._market, clock)

    @property
    def today(self) -> dt.date:
        """The simulated today: nothing traded or announced after it exists."""
        return self._market.today

    def set_today(self, day: dt.date) -> None:
        """Move today (forward or back) to `day`."""
        self._market.today = day

    def advance(self, trading_days: int) -> dt.date:
        """Move today forward by `trading_days` open days of the SSE calendar; the new today."""
        return self._market.advance(trading_days)

    @property
    def calls(self) -> collections.Counter[str]:
        """Requests per API name (all of them, refused and faulted included)."""
        return self._service.counters.calls

    @property
    def outcomes(self) -> collections.Counter[tuple[str, str]]:
        """Requests per (API, outcome): ok, bad_token, rate_limited, http_502, ..."""
        return self._service.counters.outcomes

    def reset_calls(self) -> None:
        """Zero the counters."""
        self._service.reset_counters()

    def handle(
        self, path: str, body: bytes, client_host: str = "127.0.0.1"
    ) -> tuple[int, dict[str, str], bytes]:
        """The whole protocol for one HTTP request: (status, headers, body).

        A "slow" fault stalls here for `slow_response_s` before answering.
        """
        reply = self._service.respond(path, body, client_host)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        return reply.status, reply.headers, reply.body

    def transport(self) -> SimulatorTransport:
        """An httpx transport (sync and async) answering in-process, without a socket."""
        return SimulatorTransport(self._service)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> SimulatorServer:
        """Start a threaded HTTP server in the background (port 0: a free port)."""
        return SimulatorServer(self._service.respond, host, port).start()

    def ground_truth(self, api: str, **params: Any) -> pl.DataFrame:
        """Every row `api` would return as of today for `params`: all fields, no row cap,
        no faults, no limits, not counted. Without params: the whole dataset (every
        statement version, every list status, current and past industry members)."""
        handler = HANDLERS.get(api)
        if handler is None:
            msg = f"unknown api {api!r}"
            raise UnknownApiError(msg)
        given = normalise(params)
        query = handler.query(api, given, self._market.today_ordinal, defaults=bool(given))
        return handler.build(self._market, query)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def serve_forever(config: SimulatorConfig, host: str, port: int) -> None:
    """Run the simulator's HTTP server in the foreground until Ctrl-C or SIGTERM (`ah sim serve`).

    Both signals get a handler here, because a process started from a script or cron
    inherits SIGINT ignored and would otherwise never stop on it.
    """
    simulator = Simulator(config)
    stop = signal.default_int_handler  # raises KeyboardInterrupt
    previous = {number: signal.signal(number, stop) for number in _STOP_SIGNALS}
    server = simulator.serve(host, port)
    try:
        print(
            f"Tushare Pro simulator listening on {server.url} (also {server.url}/dataapi)",
            flush=True,
        )
        print(
            f"token: {config.token}   today: {config.today:%Y-%m-%d}   "
            f"stocks: {config.stocks}   seed: {config.seed}",
            flush=True,
        )
        print(
            f"move today: ah sim advance --url {server.url} [--to YYYY-MM-DD | --days N]",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("simulator stopped", flush=True)
    finally:
        server.stop()
        for number, handler in previous.items():
            signal.signal(number, handler)
