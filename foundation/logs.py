"""Logging: a human console, a size-bounded rotating file, optional JSON lines.

Every handler carries `SecretFilter`, so a token or password that slips into a message,
an argument or a traceback is replaced by *** before anything is written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from foundation.config import MASK, Settings
from foundation.errors import StorageError

LOGGER_NAME = "alphahome"
LOG_FILE = "alphahome.log"
JSON_LOG_FILE = "alphahome.jsonl"
MAX_LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5

_secrets: set[str] = set()


def register_secrets(values: Iterable[str | None]) -> None:
    """Add values (token, passwords) that must never reach a log record."""
    _secrets.update(v for v in values if v and len(v) >= 4)


def scrub(text: str) -> str:
    """`text` with every registered secret replaced by ***."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class SecretFilter(logging.Filter):
    """Rewrites a record's message (args merged in) and exception text without secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            record.msg = scrub(record.getMessage())
            record.args = None
            if record.exc_info:
                formatter = logging.Formatter()
                record.exc_text = scrub(formatter.formatException(record.exc_info))
                record.exc_info = None
            if record.exc_text:
                record.exc_text = scrub(record.exc_text)
        return True


class JsonLinesFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and any `extra` fields."""

    _standard = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update({k: v for k, v in vars(record).items() if k not in self._standard})
        if record.exc_text:
            payload["exc"] = record.exc_text
        return json.dumps(payload, ensure_ascii=False, default=str)


class _ConsoleFormatter(logging.Formatter):
    """Console lines without tracebacks: those go to the log files only (DEBUG there),
    so a failure reads as one line on the console."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


class _LogFile(logging.handlers.RotatingFileHandler):
    """A rotating log file that, when the disk refuses a write (full, read-only), says so
    in one line on stderr once and stops writing, instead of a traceback per record."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        try:
            super().__init__(path, **kwargs)
        except OSError as exc:
            raise StorageError.from_os_error(exc, path, "open the log file") from None
        self.failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if self.failed or not isinstance(error, OSError):
            return super().handleError(record)
        self.failed = True
        line = StorageError.from_os_error(error, self.baseFilename)
        sys.stderr.write(f"warning: {line}; logging to this file stops\n")


def setup_logging(
    level: str = "INFO",
    log_dir: Path | None = None,
    json_lines: bool = False,
    max_bytes: int = MAX_LOG_BYTES,
    backups: int = LOG_BACKUPS,
) -> logging.Logger:
    """Configure the `alphahome` logger: console at `level`, files at DEBUG under `log_dir`."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    console = logging.StreamHandler()
    console.setLevel(level)
    console.setFormatter(_ConsoleFormatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    handlers: list[logging.Handler] = [console]
    if log_dir is not None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError.from_os_error(exc, log_dir, "create the log folder") from None
        text = _LogFile(
            log_dir / LOG_FILE, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        text.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s %(process)d %(message)s")
        )
        handlers.append(text)
        if json_lines:
            jsonl = _LogFile(
                log_dir / JSON_LOG_FILE, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
            )
            jsonl.setFormatter(JsonLinesFormatter())
            handlers.append(jsonl)
    for handler in handlers:
        handler.addFilter(SecretFilter())
        logger.addHandler(handler)
    return logger


def start_logging(settings: Settings) -> None:
    """Logging for a command: the console plus rotating files under the cache's logs/."""
    setup_logging(
        settings.run.log_level,
        Path(settings.cache.dir).absolute() / "logs",
        json_lines=settings.run.log_json,
    )


def get_logger(name: str | None = None) -> logging.Logger:
    """The project logger, or a child of it (`alphahome.<name>`)."""
    return logging.getLogger(LOGGER_NAME if not name else f"{LOGGER_NAME}.{name}")


@contextlib.contextmanager
def slow_operation(
    what: str, threshold_s: float, logger: logging.Logger | None = None
) -> Iterator[None]:
    """Log `what` with its duration at WARNING when it takes longer than `threshold_s`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        if elapsed >= threshold_s:
            (logger or get_logger()).warning(
                "slow operation: %s took %.2f s (threshold %.2f s)",
                what,
                elapsed,
                threshold_s,
                extra={"operation": what, "duration_s": round(elapsed, 3)},
            )
