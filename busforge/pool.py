"""One bounded process pool, shared by render and import: results in order, few tasks in flight,
so memory stays flat however long the input is."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any


def process_context():
    # fork is cheap and keeps imported modules; macOS only supports spawn safely.
    return multiprocessing.get_context("spawn" if sys.platform == "darwin" else "fork")


class OrderedPool:
    """A process pool whose `map` yields results in input order with at most `in_flight` pending."""

    def __init__(
        self,
        workers: int,
        in_flight: int,
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        from busforge.parent_watch import worker_initializer

        self.in_flight = in_flight
        # Workers exit when this process dies (kill -9 included) instead of living on as orphans.
        self.executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=process_context(),
            initializer=worker_initializer,
            initargs=(os.getpid(), initializer, initargs),
        )

    def map(self, function: Callable, items: Iterable) -> Iterator:
        pending: deque[Future] = deque()
        for item in items:
            pending.append(self.executor.submit(function, item))
            if len(pending) >= self.in_flight:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        self.executor.shutdown(cancel_futures=True)

    def __enter__(self) -> OrderedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ordered_map(function: Callable, items: Iterable, workers: int, in_flight: int = 0) -> Iterator:
    """`map` in order; with `workers > 1` through an OrderedPool (default 4 tasks per worker in flight)."""
    if workers <= 1:
        yield from map(function, items)
        return
    with OrderedPool(workers, in_flight or 4 * workers) as pool:
        yield from pool.map(function, items)
