"""The async Tushare Pro client: one POST per call, typed errors, pacing and retries.

A call is `POST {base_url}` with `{"api_name", "token", "params", "fields"}` in the body
(the root path and `/dataapi` both accept it). Answers become frames with the documented
types (`catalogue.to_frame`). Each call waits for its API's pacer; a rate-limit answer
is waited out and retried without counting as a failure; transient failures are retried
with exponential backoff and jitter up to `max_retries`; everything else is raised as a
typed error (errors.py). All of that is bounded by a deadline per call (waits, retries
and answers together), after which the call fails with `DeadlineExceeded`. The token
appears in request bodies only.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import polars as pl

from cache.catalogue.apis import api_spec, to_frame
from foundation.config import mask_url
from foundation.logs import get_logger
from pipeline.sources.tushare.errors import (
    DeadlineExceeded,
    QuotaExhausted,
    RateLimited,
    RequestRejected,
    TransientError,
    TushareError,
    classify,
)
from pipeline.sources.tushare.limits import RateLimits

MAX_BACKOFF_S = 60.0
MAX_LIMIT_WAITS = 20
DEFAULT_CALL_DEADLINE_S = 300.0  # the config's default too (tushare.call_deadline_s)

log = get_logger("tushare")


@dataclass(frozen=True)
class Page:
    """One answer: the rows (documented types) and whether the service cut it short."""

    frame: pl.DataFrame
    has_more: bool
    request_id: str | None
    row_cap: int | None

    @property
    def truncated(self) -> bool:
        """True when rows may be missing: `has_more`, or the documented row cap reached."""
        return self.has_more or (self.row_cap is not None and self.frame.height >= self.row_cap)


@dataclass
class CallStats:
    """What the client did, by API called and by tag (the task a call was made for):
    calls sent, retries of transient failures, limit answers waited out, errors, rows."""

    calls: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    rate_limited: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    rows: Counter[str] = field(default_factory=Counter)

    def count(self, what: str, api: str, tag: str | None, n: int = 1) -> None:
        """Add `n` to counter `what` under the API and, when given, under the tag."""
        counter: Counter[str] = getattr(self, what)
        counter[api] += n
        if tag:
            counter[f"task:{tag}"] += n

    def for_tag(self, what: str, tag: str) -> int:
        """The counter `what` of one tag."""
        counter: Counter[str] = getattr(self, what)
        return counter[f"task:{tag}"]

    def by_api(self, what: str) -> dict[str, int]:
        """The counter `what` per API (tags left out)."""
        counter: Counter[str] = getattr(self, what)
        return {k: v for k, v in sorted(counter.items()) if not k.startswith("task:")}


class TushareClient:
    """Calls Tushare Pro (or anything speaking its protocol) for a whole run.

    Use as an async context manager. `transport` lets the in-process simulator answer
    without a socket.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        limits: RateLimits,
        timeout_s: float = 30.0,
        max_retries: int = 5,
        retry_delay_s: float = 1.0,
        call_deadline_s: float = DEFAULT_CALL_DEADLINE_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self._shown_url = mask_url(base_url)
        self.call_deadline_s = call_deadline_s
        self._token = token
        self.limits = limits
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.retry_delay_s = retry_delay_s
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._exhausted: dict[str, QuotaExhausted] = {}
        self.stats = CallStats()

    async def __aenter__(self) -> TushareClient:
        self._http = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(self.timeout_s),
            headers={"Content-Type": "application/json"},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def query(
        self,
        api: str,
        params: Mapping[str, Any] | None = None,
        fields: Sequence[str] | None = None,
        *,
        max_retries: int | None = None,
        tag: str | None = None,
    ) -> Page:
        """One call of `api` (retried as needed); `fields` default to every documented one.

        `tag` names what the call is for (a task) in the statistics.
        """
        spec = api_spec(api)
        names = list(fields) if fields is not None else list(spec.field_names)
        body = {
            "api_name": api,
            "token": self._token,
            "params": {k: str(v) for k, v in (params or {}).items() if v is not None and v != ""},
            "fields": ",".join(names),
        }
        retries = self.max_retries if max_retries is None else max_retries
        last: list[TushareError] = []  # what the call met before its deadline
        with anyio.move_on_after(self.call_deadline_s) as deadline:
            return await self._attempts(api, body, retries, tag, last)
        assert deadline.cancelled_caught
        self.stats.count("errors", api, tag)
        met = f"; last answer: {last[-1].message}" if last else ""
        msg = f"no result within {self.call_deadline_s:g} s (tushare.call_deadline_s){met}"
        raise DeadlineExceeded(api, msg)

    async def _attempts(
        self, api: str, body: dict[str, Any], retries: int, tag: str | None, last: list[Any]
    ) -> Page:
        """Send the call until it is answered, waiting out limits and retrying failures."""
        attempt = limit_waits = 0
        limiter = self.limits.limiter(api)
        while True:
            spent = self._exhausted.get(api)
            if spent is not None:  # the quota of the day is gone: say so again, without a call
                raise QuotaExhausted(api, spent.message, spent.code, spent.request_id)
            await limiter.acquire()
            self.stats.count("calls", api, tag)
            try:
                page = await self._post(api, body)
            except RateLimited as exc:
                last.append(exc)
                self.stats.count("rate_limited", api, tag)
                limit_waits += 1
                if limit_waits > MAX_LIMIT_WAITS:
                    raise
                limiter.learn(exc.limit, exc.per)
                log.info("%s: limit reached (%s); waiting for the window", api, exc.message)
                continue
            except TransientError as exc:
                last.append(exc)
                attempt += 1
                if attempt > retries:
                    self.stats.count("errors", api, tag)
                    raise
                self.stats.count("retries", api, tag)
                delay = min(MAX_BACKOFF_S, self.retry_delay_s * 2 ** (attempt - 1))
                delay *= random.uniform(0.5, 1.5)
                log.debug("%s: %s; retry %d in %.2f s", api, exc, attempt, delay)
                await anyio.sleep(delay)
                continue
            except QuotaExhausted as exc:
                self._exhausted[api] = exc
                self.stats.count("errors", api, tag)
                raise
            except TushareError:
                self.stats.count("errors", api, tag)
                raise
            self.stats.count("rows", api, tag, page.frame.height)
            return page

    async def _post(self, api: str, body: dict[str, Any]) -> Page:
        assert self._http is not None, "use the client as an async context manager"
        try:
            response = await self._http.post(self.base_url, json=body)
        except httpx.TimeoutException:
            msg = f"no answer within {self.timeout_s:g} s"
            raise TransientError(api, msg) from None
        except httpx.TransportError as exc:
            msg = f"connection failed ({type(exc).__name__})"
            raise TransientError(api, msg) from None
        try:
            payload = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            payload = None
        if response.status_code >= 500 or (payload is None and response.status_code < 400):
            what = (
                f"HTTP {response.status_code}" if response.status_code >= 500 else "non-JSON body"
            )
            raise TransientError(api, f"{what} from {self._shown_url}")
        if not isinstance(payload, dict) or "code" not in payload:
            msg = f"HTTP {response.status_code} from {self._shown_url} without a Tushare answer"
            raise RequestRejected(api, msg)
        request_id = payload.get("request_id")
        if payload["code"] != 0:
            raise classify(api, payload["code"], payload.get("msg"), request_id)
        data: Any = payload.get("data")  # decoded JSON: its shape is checked by the reads below
        try:
            frame = to_frame(api, list(data["fields"]), list(data["items"]))
        except (TypeError, KeyError, IndexError, ValueError) as exc:
            msg = f"malformed data in the answer ({type(exc).__name__})"
            raise TransientError(api, msg, payload["code"], request_id) from None
        return Page(
            frame=frame,
            has_more=bool(data.get("has_more")),
            request_id=request_id,
            row_cap=api_spec(api).rows_per_call,
        )
