"""The foundation every layer may import, and which imports no layer.

Errors (one tree, each class with its exit code), configuration, logging with secret
scrubbing, progress, and the lazy package surfaces the other packages use.
"""

from foundation.config import Settings, load_settings
from foundation.errors import (
    AlphahomeError,
    AlreadyRunningError,
    AuthenticationError,
    InternalError,
    UsageError,
)
from foundation.logs import get_logger, start_logging

__all__ = [
    "AlphahomeError",
    "AlreadyRunningError",
    "AuthenticationError",
    "InternalError",
    "Settings",
    "UsageError",
    "get_logger",
    "load_settings",
    "start_logging",
]
