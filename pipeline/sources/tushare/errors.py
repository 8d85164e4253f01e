"""Typed errors of the Tushare service, classified from the answer (PROTOCOL.md, Errors).

Every error carries the API, the service's code and message and the request id, never
the token, and a message capped to one short line. The class is decided by the code;
40203 covers both "no permission" and "rate limited", so for it the message's documented
shape decides. What a caller does next depends only on the class:

- `AuthError`: a bad token, stops the whole run;
- `PermissionDenied`: the account may not call this API (points too low), permanent;
- `RateLimited`: a per-minute or per-hour limit, retried after waiting, never a failure;
- `QuotaExhausted`: the per-day quota, the API is done for this run;
- `TransientError`: HTTP 5xx, a non-JSON or truncated body, a timeout, 系统内部错误: retried;
- `DeadlineExceeded`: no result within the call's deadline (the item fails);
- `RequestRejected`: anything else the service refused (unknown field or API, bad params).
"""

from __future__ import annotations

import re

from foundation.errors import AlphahomeError, AuthenticationError

MAX_MESSAGE_CHARS = 300  # of a message of the service, in errors, logs and reports
_LIMIT = re.compile(r"每(分钟|小时|天)最多访问该接口\s*(\d+)\s*次")
_PERIODS = {"分钟": "minute", "小时": "hour"}


def cap_message(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """The service's message on one line and at most `limit` characters (a misbehaving
    server may send megabytes), saying how much was left out."""
    text = " ".join(str(message).split())
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


class TushareError(AlphahomeError):
    """An error answer of the service (or of the way to it), phrased as one line."""

    def __init__(
        self, api: str, message: str, code: int | None = None, request_id: str | None = None
    ) -> None:
        self.api = api
        self.message = cap_message(message)
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
        super().__init__(f"tushare {api}: {self.message}" + (f" ({detail})" if detail else ""))


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


class DeadlineExceeded(TushareError):
    """A call got no result within its deadline (limits waited out, retries, slow
    answers together): the item fails, the task and the run go on."""


class TransientError(TushareError):
    """A failure worth retrying: server trouble, a broken body, a timeout."""


class RequestRejected(TushareError):
    """The service refused the request itself (unknown field, API or parameter)."""


# The codes of the service (PROTOCOL.md, Errors): they decide the class. Only 40203 needs
# its message too, which says whether it is a limit (with its period) or no permission.
TOKEN_CODES = frozenset({40101})
TOKEN_MESSAGE = "您的token不对"  # its code is unconfirmed: the documented text alone counts
LIMIT_OR_PERMISSION_CODES = frozenset({40203})
PERMISSION_CODES = frozenset({-2002})
REQUEST_CODES = frozenset({-2001})
# Server trouble comes with various codes; these documented texts mark it.
_TRANSIENT_TEXT = ("系统内部错误", "系统未知错误")


def classify(
    api: str, code: int | None, message: str | None, request_id: str | None
) -> TushareError:
    """The typed error for an answer with `code != 0`, decided by the code; the message
    tells apart what one code covers (40203: limit or no permission) and marks server
    trouble under unlisted codes. Words alone (a "token" in the text) decide nothing."""
    text = cap_message(message or "")
    if code in TOKEN_CODES or text.startswith(TOKEN_MESSAGE):
        return AuthError(api, text or "token refused", code, request_id)
    if code in LIMIT_OR_PERMISSION_CODES:
        limit = _LIMIT.search(text)
        if limit is None:
            return PermissionDenied(api, text or "no permission", code, request_id)
        period, count = limit.group(1), int(limit.group(2))
        if period == "天":
            return QuotaExhausted(api, text, code, request_id)
        return RateLimited(api, text, code, request_id, limit=count, per=_PERIODS[period])
    if code in PERMISSION_CODES:
        return PermissionDenied(api, text or "no permission", code, request_id)
    if code not in REQUEST_CODES and any(marker in text for marker in _TRANSIENT_TEXT):
        return TransientError(api, text, code, request_id)
    return RequestRejected(api, text or f"error code {code}", code, request_id)
