"""Progress: counted in calls with an ETA, log lines under cron, a board that fits 80×24."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import anyio
import pytest
from rich.console import Console

from foundation import progress
from foundation.progress import ProgressBoard, format_eta, stage_progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def records() -> Iterator[list[str]]:
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("alphahome.progress")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_eta_text() -> None:
    assert [format_eta(s) for s in (None, 4.4, 245, 3720)] == ["?", "4s", "4m05s", "1h02m"]


def test_a_per_stock_task_moves_by_calls_with_rate_and_eta() -> None:
    clock = Clock()
    board = ProgressBoard(False, clock=clock)
    board.update("daily_basic", 0, 2736)  # one call per stock: no unit completes early
    board.update("weekly", 0, 264)
    assert board.line() == "sync progress: 0/3000 calls (0%), ETA ?"
    clock.now += 60
    board.update("daily_basic", 500, 2736)
    board.update("weekly", 100, 264)
    assert board.line() == (
        "sync progress: 600/3000 calls (20%), 10.0 calls/s, ETA 4m00s; "
        "running: daily_basic 500/2736, weekly 100/264"
    )
    board.finish("weekly")
    assert board.totals() == (764, 3000) and board.running() == ["daily_basic"]
    board.finish("monthly")  # skipped: never started, so not a task of the board
    assert board.totals() == (764, 3000) and "monthly" not in board.line()
    assert board._aggregate_label() == "sync: 1/2 tasks"
    board.update("income", 7, 3)  # more calls than estimated: the total follows
    assert board.totals() == (771, 3007)


def test_off_a_terminal_the_board_logs_periodically(
    records: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "BOARD_LOG_EVERY_S", 0.02)
    board = ProgressBoard(False)
    board.update("daily", 3, 10)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(board.log_periodically)
            await anyio.sleep(0.15)
            group.cancel_scope.cancel()

    anyio.run(main)
    assert len(records) >= 2
    assert all(r.startswith("sync progress: 3/10 calls (30%)") for r in records)
    assert records[0].endswith("running: daily 3/10")


def test_off_a_terminal_a_stage_logs_done_total_and_eta(records: list[str]) -> None:
    with stage_progress("pit", tty=False) as on_progress:
        on_progress(1, 4)  # the first call is within LOG_EVERY_S of the start: quiet
        on_progress(4, 4)
    assert records == ["pit: 4/4 shards, ETA 0s"]


def test_26_tasks_fit_an_80_by_24_terminal() -> None:
    screen = Console(file=io.StringIO(), width=80, height=24, force_terminal=True)
    names = [f"task_{i:02d}_with_a_longish_name" for i in range(26)]
    with ProgressBoard(True, console=screen) as board:
        for name in names:
            board.update(name, 0, 100)
        for i, name in enumerate(names[:-2]):
            board.update(name, 10 + i, 100)  # 24 running, 2 waiting
        board.finish(names[0])
        recorder = Console(record=True, width=80, height=24, file=io.StringIO())
        recorder.print(board.renderable())
    lines = recorder.export_text().rstrip("\n").splitlines()
    assert len(lines) <= 24 - progress.RESERVED_ROWS + 1  # the aggregate and what fits
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].startswith("sync: 1/26 tasks") and "calls" in lines[0]
    shown = [line.split()[0] for line in lines[1:]]
    assert shown == names[1 : 1 + len(lines) - 1]  # the running tasks, in start order
    assert names[0] not in shown and names[-1] not in shown  # finished, waiting: hidden
    assert all("ETA" in line for line in lines)
