"""Logging: secrets scrubbed from every record, rotation bounded, slow operations noted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from foundation.logs import register_secrets, setup_logging, slow_operation


@pytest.fixture
def logger(tmp_path: Path) -> logging.Logger:
    register_secrets(["sekret-token-123", "dbpassw0rd"])
    return setup_logging("INFO", tmp_path / "logs", json_lines=True)


def read_logs(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in sorted((tmp_path / "logs").iterdir()))


def test_secrets_scrubbed_from_message_args_and_traceback(
    logger: logging.Logger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logger.info("token is sekret-token-123")
    logger.warning("url %s", "postgresql://u:dbpassw0rd@h/db")
    try:
        raise RuntimeError("failed with sekret-token-123")
    except RuntimeError:
        logger.exception("boom")
    for handler in logger.handlers:
        handler.flush()
    text = read_logs(tmp_path) + capsys.readouterr().err
    assert "sekret-token-123" not in text and "dbpassw0rd" not in text
    assert text.count("***") >= 4
    assert "RuntimeError" in text


def test_json_lines_are_json(logger: logging.Logger, tmp_path: Path) -> None:
    logger.info("hello %s", "world", extra={"task": "daily"})
    for handler in logger.handlers:
        handler.flush()
    lines = (tmp_path / "logs" / "alphahome.jsonl").read_text().splitlines()
    record = json.loads(lines[-1])
    assert record["message"] == "hello world" and record["task"] == "daily"


def test_rotation_is_bounded(tmp_path: Path) -> None:
    log = setup_logging("ERROR", tmp_path / "logs", max_bytes=2_000, backups=3)
    for i in range(2_000):
        log.debug("line %05d %s", i, "x" * 50)
    files = sorted((tmp_path / "logs").iterdir())
    assert [p.name for p in files] == [
        "alphahome.log",
        "alphahome.log.1",
        "alphahome.log.2",
        "alphahome.log.3",
    ]
    assert all(p.stat().st_size <= 2_000 + 200 for p in files)
    assert "line 01999" in files[0].read_text()


def test_slow_operation_logged_only_when_slow(logger: logging.Logger, tmp_path: Path) -> None:
    with slow_operation("fast thing", threshold_s=60, logger=logger):
        pass
    with slow_operation("slow thing", threshold_s=0.0, logger=logger):
        pass
    for handler in logger.handlers:
        handler.flush()
    text = read_logs(tmp_path)
    assert "slow operation: slow thing took" in text
    assert "fast thing" not in text


def test_console_lines_carry_no_traceback_and_a_full_log_file_says_so_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import resource

    logger = setup_logging("INFO", tmp_path / "logs")
    try:
        raise ValueError("deep inside")
    except ValueError:
        logger.error("task failed (ValueError: deep inside)", exc_info=True)
    err = capsys.readouterr().err
    assert "task failed (ValueError: deep inside)" in err and "Traceback" not in err
    assert "Traceback" in read_logs(tmp_path)  # the file keeps it
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    size = (tmp_path / "logs" / "alphahome.log").stat().st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 10, hard))
    try:
        for i in range(3):
            logger.warning("a long line %d %s", i, "x" * 200)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("warning: cannot write ") and "alphahome.log" in lines[0]
    assert "file size limit" in lines[0]
