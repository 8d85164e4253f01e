"""The Tushare Pro client: one async client, per-API rate limits, typed errors."""

from foundation.exports import lazy_exports

_EXPORTS = {
    "TushareClient": "pipeline.sources.tushare.client",
    "RateLimits": "pipeline.sources.tushare.limits",
    "TushareError": "pipeline.sources.tushare.errors",
    "AuthError": "pipeline.sources.tushare.errors",
    "RateLimited": "pipeline.sources.tushare.errors",
    "TransientError": "pipeline.sources.tushare.errors",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
