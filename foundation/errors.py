"""The product's one error tree: every error alphahome raises is an `AlphahomeError`.

An `AlphahomeError` is a problem explained in one line; `ah` prints that line on stderr
and exits with the class's `exit_code`, never with a traceback. This module is the only
home of those exit codes (`cli.py` reads `exit_code`; nothing else spells them). Anything
outside the tree reaching `ah` is a bug: "unexpected ...", exit 1, traceback in the log.

The kinds, with their exit codes, and the classes of each kind (where they live):

    AlphahomeError                  1  a run that failed (the root)
    ├── UsageError                  2  bad input: a flag, an argument, a config value
    │   ├── ConfigError                  foundation.config (every config problem)
    │   ├── ExecutorSpecError            pipeline.executor (--executor)
    │   ├── PitRequestError              pipeline.pit.step (--target, --mode); a PitBuildError
    │   ├── SimulatorConfigError         pipeline.sources.simulator.config (ah sim serve)
    │   ├── ParamError                   pipeline.sources.simulator.query
    │   ├── UnknownApiError              cache.catalogue.apis (also a KeyError)
    │   ├── UnknownFieldError            cache.catalogue.apis
    │   ├── UnknownDatasetError          cache.catalogue.datasets
    │   ├── StaleLayoutError             cache.store (a raw file older than its columns)
    │   └── RenameRefusedError           sinks.admin
    ├── AuthenticationError         3  a credential was refused
    │   └── AuthError                    pipeline.sources.tushare.errors (bad token)
    ├── AlreadyRunningError         4  another process holds the lock of the work
    │   └── LockHeld                     cache.locks (raised by sinks.pg_state too)
    ├── InternalError               1  alphahome broke one of its own rules: a bug
    ├── StorageError                1  a file could not be written or read (disk full,
    │                                  permission, a file where a folder should be)
    ├── TushareError                     pipeline.sources.tushare.errors; AuthError too, and
    │                                    PermissionDenied, RateLimited, QuotaExhausted,
    │                                    TransientError, RequestRejected, DeadlineExceeded
    ├── Refused                          pipeline.sources.simulator.protocol (code != 0)
    ├── SimulatorUnreachableError        pipeline.sources.simulator.admin (ah sim advance)
    ├── CannotSplit                      pipeline.sync.plan
    ├── AppendConflict                   cache.store
    ├── PitBuildError                    pipeline.pit.step (no raw data)
    ├── FactorInputError                 pipeline.factor_step
    ├── BackupError                      pipeline.ops.backup
    ├── TableDefinitionError             sinks.ddl
    ├── ParentGoneError                  foundation.lifeline (a pool worker's parent died)
    ├── DatabaseUnavailableError         sinks.postgres
    └── LoadError                        sinks.postgres

A class takes the exit code of its kind by inheritance; it never sets `exit_code`
itself. `tests/foundation/test_error_tree.py` checks that every `raise` of the product
raises a class of this tree.
"""

from __future__ import annotations

import errno

__all__ = [
    "AlphahomeError",
    "AlreadyRunningError",
    "AuthenticationError",
    "InternalError",
    "StorageError",
    "UsageError",
]


class AlphahomeError(Exception):
    """A problem with a clear one-line explanation; `exit_code` is the process exit status.

    Raised as such (or by a subclass of no other kind) it means the run failed: exit 1.
    """

    exit_code = 1


class UsageError(AlphahomeError):
    """Bad input on the command line or in a file (configuration errors too): exit 2."""

    exit_code = 2


class AuthenticationError(AlphahomeError):
    """A credential (the Tushare token) was refused, so nothing can be fetched: exit 3."""

    exit_code = 3


class AlreadyRunningError(AlphahomeError):
    """Another process holds the lock of the same work (a sync of the task): exit 4."""

    exit_code = 4


class InternalError(AlphahomeError):
    """A function was called in a way it refuses, or an invariant failed: a bug, exit 1.

    Not the user's input: the message names the value so the bug can be reported.
    """


# What the user can do about the commonest refusals of the operating system.
_OS_HINTS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
    errno.EFBIG: "the file size limit is reached",
    errno.ENOTDIR: "a file stands where a folder should be",
    errno.EISDIR: "a folder stands where a file should be",
}


class StorageError(AlphahomeError):
    """A file or folder of alphahome's (cache, state, logs, reports) could not be written
    or read: exit 1. The message names the path and the reason, and what was there
    before stays intact (writes are atomic)."""

    @classmethod
    def from_os_error(
        cls, exc: OSError, path: object = None, action: str = "write"
    ) -> StorageError:
        """The one line for an `OSError`: "cannot write PATH: reason (strerror)"."""
        where = path if path is not None else exc.filename
        reason = _OS_HINTS.get(exc.errno or 0) or exc.strerror or str(exc) or type(exc).__name__
        detail = f" ({exc.strerror})" if exc.strerror and reason != exc.strerror.lower() else ""
        target = f" {where}" if where is not None else ""
        return cls(f"cannot {action}{target}: {reason}{detail}")
