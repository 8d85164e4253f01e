"""Rate limits and error classification, without a server: a fake clock drives the pacer."""

from __future__ import annotations

import anyio
import pytest

from pipeline.sources.tushare.errors import (
    AuthError,
    PermissionDenied,
    QuotaExhausted,
    RateLimited,
    RequestRejected,
    TransientError,
    classify,
)
from pipeline.sources.tushare.limits import RateLimiter, RateLimits, default_per_minute


class FakeClock:
    """Time that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def max_in_any_window(times: list[float], window: float) -> int:
    """The most sends inside any half-open window (t - window, t] (plain loops)."""
    best = 0
    for t in times:
        best = max(best, sum(1 for u in times if t - window < u <= t))
    return best


def test_even_pacing_never_exceeds_the_limit_in_any_sliding_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(30, clock=clock, sleep=clock.sleep)
    sent: list[float] = []

    async def main() -> None:
        for _ in range(100):
            await limiter.acquire()
            sent.append(clock.now)

    anyio.run(main)
    assert max_in_any_window(sent, 60.0) <= 30
    # and the pacing is not wasteful: 100 calls at 30/min take about 200 s
    assert 195 < sent[-1] - sent[0] < 210


def test_concurrent_callers_share_one_pace() -> None:
    clock = FakeClock()
    limiter = RateLimiter(20, clock=clock, sleep=clock.sleep)
    sent: list[float] = []

    async def caller() -> None:
        for _ in range(10):
            await limiter.acquire()
            sent.append(clock.now)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(caller)

    anyio.run(main)
    assert len(sent) == 50
    assert max_in_any_window(sent, 60.0) <= 20


def test_a_limit_answer_slows_the_pacer_and_waits_for_the_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)  # configured: unlimited
    sent: list[float] = []

    async def main() -> None:
        for _ in range(10):  # a burst the server would accept only partly
            await limiter.acquire()
            sent.append(clock.now)
        limiter.learn(8, "minute")
        for _ in range(20):
            await limiter.acquire()
            sent.append(clock.now)

    anyio.run(main)
    assert sent[9] == sent[0]  # the burst went out at once
    after = sent[10:]
    assert after[0] >= sent[0] + 60.0  # waited until the burst left the window
    assert max_in_any_window(after, 60.0) <= 8


def test_limits_by_points_and_configuration() -> None:
    assert default_per_minute("daily", 120) == 50
    assert default_per_minute("daily", 2000) == 200
    assert default_per_minute("income_vip", 5000) == 500
    assert default_per_minute("daily", 12000) == 1000
    assert default_per_minute("limit_list_d", 5000) == 200
    limits = RateLimits(5000, {"daily": 90, "income": 0})
    assert limits.per_minute("daily") == 90
    assert limits.per_minute("income_vip") is None  # configured 0 on the base name: unlimited
    assert limits.per_minute("weekly") == 500
    assert RateLimits(5000, {}, default=0).per_minute("daily") is None
    assert RateLimits(5000, {"daily": 7}, default=40).per_minute("daily") == 7
    assert limits.limiter("daily") is limits.limiter("daily")


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (40101, "您的token不对，请确认。", AuthError),
        (
            40203,
            "抱歉，您没有接口(fund_daily)访问权限，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。",
            PermissionDenied,
        ),
        (-2002, "抱歉，您没有访问该接口的权限", PermissionDenied),
        (
            40203,
            "抱歉，您每分钟最多访问该接口500次，权限的具体详情访问：https://tushare.pro/document/1?doc_id=108。",
            RateLimited,
        ),
        (40203, "抱歉，您每小时最多访问该接口2次，权限的具体详情访问：…", RateLimited),
        (40203, "抱歉，您每天最多访问该接口100000次，权限的具体详情访问：…", QuotaExhausted),
        (-2001, "接口trade_cal不包含字段exchange_id", RequestRejected),
        (-1, "系统内部错误", TransientError),
        (-1, "系统未知错误，欢迎上报！ 谢谢！request-id(abc)", TransientError),
        (-1, "请指定正确的接口名", RequestRejected),
    ],
)
def test_classification_by_message_text(code: int, message: str, expected: type) -> None:
    error = classify("daily", code, message, "rid-1")
    assert type(error) is expected
    assert error.code == code and error.request_id == "rid-1" and error.api == "daily"
    assert "rid-1" in str(error) and "daily" in str(error)


def test_limit_messages_carry_the_limit_and_window() -> None:
    minute = classify("daily", 40203, "抱歉，您每分钟最多访问该接口500次，…", None)
    hour = classify("daily", 40203, "抱歉，您每小时最多访问该接口2次，…", None)
    assert isinstance(minute, RateLimited) and (minute.limit, minute.per) == (500, "minute")
    assert isinstance(hour, RateLimited) and (hour.limit, hour.per) == (2, "hour")
