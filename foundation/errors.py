"""Errors the user can act on: shown as one line, with an exit code, never a traceback."""

from __future__ import annotations


class AlphahomeError(Exception):
    """A problem with a clear one-line explanation; `exit_code` is the process exit status."""

    exit_code = 1


class UsageError(AlphahomeError):
    """Bad input on the command line or in a file (exit code 2)."""

    exit_code = 2
