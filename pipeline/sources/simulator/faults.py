"""Injected faults: deterministic, yet a retry of the same request can succeed.

Whether a request fails, and how, is a hash of (seed, how many times this exact body
was seen before, body); so the n-th sending of a given request always meets the same
fate, and the next sending draws again.
"""

from __future__ import annotations

import hashlib
import threading
from bisect import bisect_right
from collections import Counter
from enum import Enum
from itertools import accumulate


class Fault(Enum):
    """The kinds of trouble a request can meet."""

    BAD_GATEWAY = "http_502"  # nginx page, HTTP 502
    GATEWAY_TIMEOUT = "http_504"  # nginx page, HTTP 504
    INTERNAL = "internal_error"  # code != 0, 系统内部错误
    SLOW = "slow"  # the answer comes after slow_response_s
    TRUNCATED = "truncated"  # the JSON body is cut short


_WEIGHTS = (
    (Fault.BAD_GATEWAY, 20),
    (Fault.GATEWAY_TIMEOUT, 15),
    (Fault.INTERNAL, 25),
    (Fault.SLOW, 20),
    (Fault.TRUNCATED, 20),
)
_EDGES = tuple(accumulate(w for _, w in _WEIGHTS))


class FaultPlan:
    """Decides the fate of each request."""

    def __init__(self, seed: int, rate: float) -> None:
        self._seed = seed
        self._rate = rate
        self._seen: Counter[bytes] = Counter()
        self._lock = threading.Lock()

    def draw(self, body: bytes) -> Fault | None:
        """The fault this sending of `body` meets, or None."""
        key = hashlib.blake2b(body, digest_size=16).digest()
        with self._lock:
            attempt = self._seen[key]
            self._seen[key] += 1
        if self._rate <= 0:
            return None
        digest = hashlib.blake2b(f"{self._seed}|{attempt}|".encode() + key, digest_size=16).digest()
        if int.from_bytes(digest[:8]) / 2**64 >= self._rate:
            return None
        pick = int.from_bytes(digest[8:]) % _EDGES[-1]
        return _WEIGHTS[bisect_right(_EDGES, pick)][0]
