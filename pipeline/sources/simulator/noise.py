"""Counter-based randomness: every number is a pure function of (seed, tag, keys).

Nothing here keeps state, so a value never depends on what else was generated before
it: the price of stock 17 on a day is the same whether the whole market or that one
stock was asked for, and whatever the order of requests. Keys are integers (stock
index, day ordinal, quarter id, ...) and broadcast like numpy arrays.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.typing import ArrayLike, NDArray

from foundation.errors import InternalError

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_KEY_MULTIPLIERS = tuple(
    np.uint64(int.from_bytes(hashlib.blake2b(f"key{i}".encode(), digest_size=8).digest()) | 1)
    for i in range(8)
)


def _mix(z: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """The splitmix64 finaliser: a bijection of uint64 that scrambles every bit."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def _base(seed: int, tag: str) -> np.uint64:
    digest = hashlib.blake2b(f"{seed}:{tag}".encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest))


def hash64(seed: int, tag: str, *keys: ArrayLike) -> NDArray[np.uint64]:
    """A well-mixed 64-bit hash of (seed, tag, keys), broadcast over the keys."""
    if len(keys) > len(_KEY_MULTIPLIERS):
        msg = f"at most {len(_KEY_MULTIPLIERS)} keys are supported, got {len(keys)}"
        raise InternalError(msg)
    with np.errstate(over="ignore"):
        arrays = np.broadcast_arrays(*(np.asarray(k, dtype=np.int64) for k in keys)) if keys else []
        shape = arrays[0].shape if arrays else ()
        z = np.full(shape, _base(seed, tag), dtype=np.uint64)
        for key, multiplier in zip(arrays, _KEY_MULTIPLIERS, strict=False):
            z = z + key.astype(np.uint64) * multiplier
        return _mix(_mix(z) + _GOLDEN)


def uniform(seed: int, tag: str, *keys: ArrayLike) -> NDArray[np.float64]:
    """Uniform numbers in [0, 1)."""
    return (hash64(seed, tag, *keys) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def normal(seed: int, tag: str, *keys: ArrayLike) -> NDArray[np.float64]:
    """Standard normal numbers (Box-Muller on the two 32-bit halves of one hash)."""
    h = hash64(seed, tag, *keys)
    u1 = ((h >> np.uint64(32)).astype(np.float64) + 1.0) * (1.0 / 4294967297.0)
    u2 = (h & np.uint64(0xFFFFFFFF)).astype(np.float64) * (1.0 / 4294967296.0)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def choice(seed: int, tag: str, weights: ArrayLike, *keys: ArrayLike) -> NDArray[np.int64]:
    """Indexes drawn with the given (unnormalised) weights."""
    w = np.asarray(weights, dtype=np.float64)
    edges = np.cumsum(w) / w.sum()
    return np.minimum(np.searchsorted(edges, uniform(seed, tag, *keys), side="right"), len(w) - 1)


def between(
    seed: int, tag: str, low: ArrayLike, high: ArrayLike, *keys: ArrayLike
) -> NDArray[np.float64]:
    """Uniform numbers in [low, high)."""
    lo = np.asarray(low, dtype=np.float64)
    return lo + (np.asarray(high, dtype=np.float64) - lo) * uniform(seed, tag, *keys)


def stream(seed: int, tag: str, index: int) -> np.random.Generator:
    """A numpy generator for one entity (e.g. one stock's daily shocks).

    Drawing n numbers gives the first k of them whatever n >= k, so a longer horizon
    extends a stream without changing its beginning. Use one stream per quantity.
    """
    return np.random.default_rng(
        [seed, int.from_bytes(hashlib.blake2b(tag.encode(), digest_size=4).digest()), index]
    )
