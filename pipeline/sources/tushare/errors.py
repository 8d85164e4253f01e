"""Typed errors of the Tushare service, classified from the answer (PROTOCOL.md, Errors).

Every error carries the API, the service's code and message and the request id, never
the token. 40203 covers both "no permission" and "rate limited", so the class is chosen
by the message text; what a caller does next depends only on the class:

- `AuthError`: a bad token, stops the whole run;
- `PermissionDenied`: the account may not call this API (points too low), permanent;
- `RateLimited`: a per-minute or per-hour limit, retried after waiting, never a failure;
- `QuotaExhausted`: the per-day quota, the API is done for this run;
- `TransientError`: HTTP 5xx, a non-JSON or truncated body, a timeout, 系统内部错误: retried;
- `RequestRejected`: anything else the service refused (unknown field or API, bad params).
"""

from __future__ import annotations

import re

from foundation.errors import AlphahomeError, AuthenticationError

_LIMIT = re.compile(r"每(分钟|小时|天)最多访问该接口\s*(\d+)\s*次")
_PERIODS = {"分钟": "minute", "小时": "hour"}


class TushareError(AlphahomeError):
    """An error answer of the service (or of the way to it), phrased as one line."""

    def __init__(
        self, api: str, message: str, code: int | None = None, request_id: str | None = None
    ) -> None:
        self.api = api
        self.message = message
        self.code = code
        self.request_id = request_id
        detail = ", ".join(
            part
            for part in (
                f"code {code}" if code is not None else "",
                f"request {request_id}" if request_id else "",
            )
            if part
        )
        super().__init__(f"tushare {api}: {message}" + (f" ({detail})" if detail else ""))


class AuthError(TushareError, AuthenticationError):
    """The token was refused: nothing can be fetched with it (an authentication error)."""


class PermissionDenied(TushareError):
    """The account may not call this API (too few points or no grant)."""


class RateLimited(TushareError):
    """A per-minute or per-hour limit was hit: `limit` calls per `per` (minute or hour)."""

    def __init__(
        self,
        api: str,
        message: str,
        code: int | None = None,
        request_id: str | None = None,
        *,
        limit: int | None = None,
        per: str = "minute",
    ) -> None:
        super().__init__(api, message, code, request_id)
        self.limit = limit
        self.per = per


class QuotaExhausted(TushareError):
    """The per-day quota of this API is used up; it cannot be called again today."""


class TransientError(TushareError):
    """A failure worth retrying: server trouble, a broken body, a timeout."""


class RequestRejected(TushareError):
    """The service refused the request itself (unknown field, API or parameter)."""


_TRANSIENT_TEXT = ("系统内部错误", "系统未知错误")


def classify(
    api: str, code: int | None, message: str | None, request_id: str | None
) -> TushareError:
    """The typed error for an answer with `code != 0` (the message text decides 40203)."""
    text = message or ""
    limit = _LIMIT.search(text)
    if limit:
        period, count = limit.group(1), int(limit.group(2))
        if period == "天":
            return QuotaExhausted(api, text, code, request_id)
        return RateLimited(api, text, code, request_id, limit=count, per=_PERIODS[period])
    if "token" in text.lower() or code == 40101:
        return AuthError(api, text or "token refused", code, request_id)
    if "没有接口" in text or "访问权限" in text or code == -2002:
        return PermissionDenied(api, text, code, request_id)
    if any(marker in text for marker in _TRANSIENT_TEXT):
        return TransientError(api, text, code, request_id)
    return RequestRejected(api, text or f"error code {code}", code, request_id)
