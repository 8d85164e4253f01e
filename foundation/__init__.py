"""The foundation every layer may import, and which imports no layer.

Errors (one tree, each class with its exit code), configuration, logging with secret
scrubbing, progress, and the lazy package surfaces the other packages use.
"""

from foundation.exports import lazy_exports

_EXPORTS = {
    "AlphahomeError": "foundation.errors",
    "AlreadyRunningError": "foundation.errors",
    "AuthenticationError": "foundation.errors",
    "InternalError": "foundation.errors",
    "Settings": "foundation.config",
    "UsageError": "foundation.errors",
    "get_logger": "foundation.logs",
    "load_settings": "foundation.config",
    "start_logging": "foundation.logs",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
