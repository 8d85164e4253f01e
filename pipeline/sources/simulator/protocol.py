"""The Tushare Pro protocol: one HTTP request in, one reply out.

Order of checks for an API call (PROTOCOL.md): injected gateway faults, token,
API name, points, per-minute and per-day limits, fields, parameters; then the rows,
newest first, cut to `offset`/`limit` and the API's row cap (keeping the newest,
`has_more` set when rows remain). Texts and codes the real service is known to send
are reproduced; for cases PROTOCOL.md leaves open the simulator uses:
unknown API -> code -2001 `请指定正确的接口名`; malformed body, missing required
parameter or bad date -> code -2001 with a message naming it; per-day quota -> 40203
`抱歉，您每天最多访问该接口{N}次，…`; an unexpected server error -> code -1
`系统未知错误，欢迎上报！ 谢谢！request-id(…)`.

Admin endpoints (loopback clients only, 403 otherwise): POST /_sim/today with
{"today": "YYYYMMDD"} or {"advance": N} (or nothing) answers {"today": "YYYYMMDD"};
/_sim/calls answers the call counters.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from cache.catalogue.apis import api_spec
from foundation.errors import AlphahomeError
from pipeline.sources.simulator import wire
from pipeline.sources.simulator.apis import HANDLERS
from pipeline.sources.simulator.config import SimulatorConfig, SimulatorConfigError
from pipeline.sources.simulator.faults import Fault, FaultPlan
from pipeline.sources.simulator.limits import CallLimiter
from pipeline.sources.simulator.market import Market
from pipeline.sources.simulator.query import ParamError, normalise

TOKEN_CODE, TOKEN_MSG = 40101, "您的token不对，请确认。"
LIMIT_CODE = 40203
PERMISSION_MSG = "抱歉，您没有接口({api})访问权限，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。"
PER_MINUTE_MSG = "抱歉，您每分钟最多访问该接口{n}次，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。"
PER_DAY_MSG = "抱歉，您每天最多访问该接口{n}次，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。"
REQUEST_CODE = -2001
UNKNOWN_API_MSG = "请指定正确的接口名"
BAD_BODY_MSG = '请求内容必须是JSON对象：{"api_name", "token", "params", "fields"}'
UNKNOWN_FIELD_MSG = "接口{api}不包含字段{field}"
INTERNAL_CODE, INTERNAL_MSG = 50101, "系统内部错误"
CRASH_CODE, CRASH_MSG = -1, "系统未知错误，欢迎上报！ 谢谢！request-id({request_id})"
VIP_POINTS = 5000
log = logging.getLogger(__name__)
JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}
HTML_HEADERS = {"Content-Type": "text/html"}


@dataclass(frozen=True)
class Reply:
    """What goes back: status, headers, body, and how long to stall before sending it."""

    status: int
    headers: dict[str, str]
    body: bytes
    delay_s: float = 0.0


class Refused(AlphahomeError):
    """A request answered with code != 0 (caught by the service, which sends the answer)."""

    def __init__(self, code: int, msg: str, outcome: str) -> None:
        super().__init__(msg)
        self.code, self.msg, self.outcome = code, msg, outcome


@dataclass
class Counters:
    """Calls per API (every request) and per (API, outcome)."""

    calls: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        """The counters as plain JSON: {"calls": {api: n}, "outcomes": {api: {outcome: n}}}."""
        nested: dict[str, dict[str, int]] = {}
        for (api, outcome), n in sorted(self.outcomes.items()):
            nested.setdefault(api, {})[outcome] = n
        return {"calls": dict(sorted(self.calls.items())), "outcomes": nested}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8 and ::1 (anything unparsable is not)."""
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class Service:
    """Answers requests for one market; thread-safe."""

    def __init__(self, config: SimulatorConfig, market: Market, clock: Callable[[], float]) -> None:
        self.config = config
        self.market = market
        self.counters = Counters()
        self._lock = threading.Lock()
        self._limiter = CallLimiter(config, clock)
        self._faults = FaultPlan(config.seed, config.fault_rate)

    def reset_counters(self) -> None:
        """Forget every call counted so far."""
        with self._lock:
            self.counters = Counters()

    def respond(self, path: str, body: bytes, client_host: str) -> Reply:
        """The reply to one request (see the module docstring)."""
        route = "/" + path.split("?", 1)[0].strip("/")
        if route.startswith("/_sim/"):
            return self._admin(route, body, client_host)
        if route not in ("/", "/dataapi") and not route.startswith("/dataapi/"):
            return Reply(404, HTML_HEADERS, wire.gateway_page(404))
        request = _parse(body)
        path_api = route.removeprefix("/dataapi").strip("/")
        api = str(request.get("api_name") or path_api) if request is not None else path_api
        request_id = str(uuid.uuid4())
        fault = self._faults.draw(body)
        if fault in (Fault.BAD_GATEWAY, Fault.GATEWAY_TIMEOUT):
            status = 502 if fault is Fault.BAD_GATEWAY else 504
            self._count(api, fault.value)
            return Reply(status, HTML_HEADERS, wire.gateway_page(status))
        if fault is Fault.INTERNAL:
            self._count(api, fault.value)
            return Reply(200, JSON_HEADERS, wire.failure(request_id, INTERNAL_CODE, INTERNAL_MSG))
        reply, outcome = self._answer(request_id, api, request)
        self._count(api, outcome if fault is None else f"{outcome}+{fault.value}")
        if fault is Fault.SLOW:
            return Reply(reply.status, reply.headers, reply.body, self.config.slow_response_s)
        if fault is Fault.TRUNCATED:
            return Reply(reply.status, reply.headers, reply.body[: max(1, len(reply.body) // 2)])
        return reply

    def _count(self, api: str, outcome: str) -> None:
        with self._lock:
            self.counters.calls[api] += 1
            self.counters.outcomes[(api, outcome)] += 1

    def _answer(
        self, request_id: str, api: str, request: dict[str, Any] | None
    ) -> tuple[Reply, str]:
        try:
            frame, has_more = self._rows(api, request)
        except Refused as refusal:
            return Reply(
                200, JSON_HEADERS, wire.failure(request_id, refusal.code, refusal.msg)
            ), refusal.outcome
        except Exception:  # the service answers every request, as the real one does
            log.exception("simulator failed on %s (request %s)", api, request_id)
            msg = CRASH_MSG.format(request_id=request_id)
            return Reply(
                200, JSON_HEADERS, wire.failure(request_id, CRASH_CODE, msg)
            ), "server_error"
        return Reply(200, JSON_HEADERS, wire.success(request_id, api, frame, has_more)), "ok"

    def _rows(self, api: str, request: dict[str, Any] | None) -> tuple[pl.DataFrame, bool]:
        if request is None:
            raise Refused(REQUEST_CODE, BAD_BODY_MSG, "bad_request")
        token = str(request.get("token") or "")
        if token != self.config.token:
            raise Refused(TOKEN_CODE, TOKEN_MSG, "bad_token")
        forced = self.config.api_errors.get(api)
        if forced is not None:
            raise Refused(forced[0], forced[1], "forced_error")
        handler = HANDLERS.get(api)
        if handler is None:
            raise Refused(REQUEST_CODE, UNKNOWN_API_MSG, "unknown_api")
        spec = api_spec(api)
        needed = VIP_POINTS if api != spec.name else (spec.min_points or 0)
        if self.config.points < needed:
            raise Refused(LIMIT_CODE, PERMISSION_MSG.format(api=api), "no_permission")
        refusal = self._limiter.admit(token, api)
        if refusal is not None:
            kind, n = refusal
            text = PER_MINUTE_MSG if kind == "minute" else PER_DAY_MSG
            raise Refused(
                LIMIT_CODE,
                text.format(n=n),
                "rate_limited" if kind == "minute" else "quota_exceeded",
            )
        fields = _fields(api, request.get("fields"))
        try:
            params = normalise(
                request.get("params") if isinstance(request.get("params"), dict) else {}
            )
            for group in handler.required:
                if not any(name in params for name in group):
                    msg = f"必填参数{'或'.join(group)}不能为空"
                    raise ParamError(msg)
            offset, limit = _paging(params)
            cap = handler.row_cap(api)
            keep = min(x for x in (limit, cap, 10**12) if x is not None)
            budget = None if limit is None and cap is None else offset + keep + 1
            query = handler.query(api, params, self.market.today_ordinal, budget, offset)
            frame = handler.build(self.market, query)
        except ParamError as problem:
            raise Refused(REQUEST_CODE, str(problem), "bad_request") from None
        skipped = query.offset  # rows the handler already left out
        page = frame.slice(offset - skipped, keep)
        return page.select(fields), frame.height + skipped > offset + page.height

    def _admin(self, route: str, body: bytes, client_host: str) -> Reply:
        if not is_loopback(client_host):
            return Reply(
                403,
                JSON_HEADERS,
                json.dumps({"error": "admin endpoints answer loopback clients only"}).encode(),
            )
        if route == "/_sim/calls":
            with self._lock:
                return Reply(
                    200,
                    JSON_HEADERS,
                    json.dumps(self.counters.as_json(), ensure_ascii=False).encode(),
                )
        if route != "/_sim/today":
            return Reply(
                404, JSON_HEADERS, json.dumps({"error": f"no admin endpoint {route}"}).encode()
            )
        request = _parse(body) if body.strip() else {}
        try:
            if request is None:
                msg = "body must be a JSON object"
                raise ParamError(msg)
            if "today" in request:
                text = str(request["today"])
                self.market.today = dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
            elif "advance" in request:
                self.market.advance(int(request["advance"]))
        except (ParamError, SimulatorConfigError, ValueError, TypeError) as problem:
            return Reply(
                400, JSON_HEADERS, json.dumps({"error": str(problem)}, ensure_ascii=False).encode()
            )
        return Reply(
            200, JSON_HEADERS, json.dumps({"today": self.market.today.strftime("%Y%m%d")}).encode()
        )


def _parse(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _fields(api: str, requested: Any) -> list[str]:
    """The columns to send: the default-display ones unless named (comma string or list)."""
    spec = api_spec(api)
    if isinstance(requested, list | tuple):
        names = [str(f).strip() for f in requested]
    elif isinstance(requested, str):
        names = [f.strip() for f in requested.split(",")]
    else:
        names = []
    names = list(dict.fromkeys(n for n in names if n))
    if not names:
        return list(spec.default_field_names)
    for name in names:
        if name not in spec.field_names:
            raise Refused(
                REQUEST_CODE, UNKNOWN_FIELD_MSG.format(api=api, field=name), "unknown_field"
            )
    return names


def _paging(params: dict[str, str]) -> tuple[int, int | None]:
    """`offset` and `limit` (limit None when absent)."""
    values = []
    for name in ("offset", "limit"):
        text = params.get(name)
        if text is not None and not text.isdigit():
            msg = f"参数{name}必须是非负整数：{text}"
            raise ParamError(msg)
        values.append(None if text is None else int(text))
    return values[0] or 0, values[1]
