"""Run independent shards of work in-process, on a process pool, or on a dask cluster.

Every compute step (PIT by stock, factors by year) maps one picklable function over
shards through `map_shards`, so the same code runs on one core, on a local process
pool (spawn context, each worker with a bounded Polars thread count and bound to its
parent by `foundation.lifeline`, so a killed run leaves no worker behind) or on a
`dask.distributed` scheduler given as `dask://HOST:PORT` or `local-dask`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, TypeVar

from foundation.crashpoints import crash_point
from foundation.errors import UsageError
from foundation.lifeline import bind_to_parent

T = TypeVar("T")
R = TypeVar("R")

POLARS_THREADS_PER_WORKER = "1"


class ExecutorSpecError(UsageError):
    """Raised for an executor spec that is not inline, process, local-dask or dask://HOST:PORT."""


class InlineExecutor(Executor):
    """Runs each submitted call at once in this process (the reference for the others)."""

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        future: Future[R] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def _init_worker(threads: str) -> None:
    """A pool worker's start: bound to its parent (it dies with it), Polars threads capped."""
    bind_to_parent()
    os.environ["POLARS_MAX_THREADS"] = threads


def validate_executor_spec(spec: str) -> str:
    """Return `spec` if it names a known executor, else raise `ExecutorSpecError`."""
    if spec in ("inline", "process", "local-dask") or spec.startswith("dask://"):
        return spec
    msg = f"unknown executor {spec!r}; expected inline, process, local-dask or dask://HOST:PORT"
    raise ExecutorSpecError(msg)


@contextlib.contextmanager
def open_executor(spec: str = "process", workers: int = 1) -> Iterator[Executor]:
    """An executor for `spec`; `workers` bounds the local pool and the local dask cluster.

    `process` with one worker still uses a separate process, so results never depend on
    the pool size; use `inline` to stay in this process.
    """
    validate_executor_spec(spec)
    if spec == "inline":
        yield InlineExecutor()
        return
    if spec == "process":
        saved = os.environ.get("POLARS_MAX_THREADS")
        os.environ["POLARS_MAX_THREADS"] = POLARS_THREADS_PER_WORKER
        try:
            with ProcessPoolExecutor(
                max_workers=max(1, workers),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(POLARS_THREADS_PER_WORKER,),
            ) as pool:
                try:
                    yield pool
                except BaseException:  # a stop (timeout, Ctrl-C): drop the queued shards
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
        finally:
            if saved is None:
                os.environ.pop("POLARS_MAX_THREADS", None)
            else:
                os.environ["POLARS_MAX_THREADS"] = saved
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:
        msg = f"executor {spec!r} needs the cluster extra: pip install 'alphahome[cluster]'"
        raise ExecutorSpecError(msg) from exc
    if spec == "local-dask":
        with (
            LocalCluster(
                n_workers=max(1, workers),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                env={"POLARS_MAX_THREADS": POLARS_THREADS_PER_WORKER},
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client.get_executor()
        return
    with Client(f"tcp://{spec.removeprefix('dask://')}") as client:
        yield client.get_executor()


def map_shards(
    fn: Callable[[T], R],
    shards: Sequence[T] | Iterable[T],
    executor: Executor,
    on_done: Callable[[int, int], None] | None = None,
) -> list[R]:
    """Apply `fn` to every shard on `executor`; results in shard order.

    `on_done(done, total)` is called as shards finish (for progress display). The first
    failing shard's exception is raised after the others are cancelled.
    """
    items = list(shards)
    futures = [executor.submit(fn, item) for item in items]
    results: list[R] = []
    try:
        for i, future in enumerate(futures):
            results.append(future.result())
            crash_point("shard")
            if on_done is not None:
                on_done(i + 1, len(items))
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    return results
