"""Size each render process's numeric thread pools (BLAS, OpenMP, torch) to its share of the cores.

Every library defaults to one thread per core in every process. With one render process per core
that is cores² threads, and OpenBLAS threads spin while they wait, so two workers on two cores ran
slower than one. busforge knows how many processes render at once, so it sets the pools itself
(the user's environment needs no OMP_NUM_THREADS etc.). threadpoolctl only reaches libraries
already loaded: call `limit_threads` again after loading a renderer (which may load torch).
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any


def available_cores() -> int:
    """CPU cores this process may use (the affinity mask where the OS has one, e.g. in containers)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def pool_worker_threads(workers: int, cores: int | None = None) -> int:
    """Threads for each of `workers` render processes sharing the cores."""
    return max(1, (cores or available_cores()) // max(1, workers))


def in_process_threads(cores: int | None = None) -> int:
    """Threads for a renderer running in this process: one core is left to the threads that draw
    the next batch's masks and encode the last batch's PNGs beside it."""
    return max(1, (cores or available_cores()) - 1)


def limit_threads(threads: int) -> None:
    """BLAS to one thread, OpenMP and torch's intra-op pool to `threads`.

    BLAS stays at one thread whatever the share: OpenBLAS splits large products across threads
    and sums in another order, so the procedural renderer's bytes can change with the thread count
    (on bmode-1, 2 threads at 512² gave other shards than 1; bmode-5's products are small enough
    that 6 seeds at 256² and 512² came out the same, a one-off check); parallelism comes from processes instead."""
    import numpy  # noqa: F401 - threadpoolctl reaches loaded libraries only: numpy brings its BLAS
    from threadpoolctl import threadpool_limits

    # Both stay in force: the returned handles are never restored.
    threadpool_limits(limits=1, user_api="blas")
    threadpool_limits(limits=threads, user_api="openmp")
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@functools.lru_cache(maxsize=1)
def _controller() -> Any:
    """threadpoolctl's view of the loaded libraries, found once (numpy's BLAS is loaded by then)."""
    import numpy  # noqa: F401 - its BLAS must be loaded before the controller looks
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread() -> Any:
    """A context in which BLAS runs one thread, restored when it ends (about 10 µs): see
    `limit_threads`, the bytes can depend on BLAS's thread count."""
    return _controller().limit(limits=1, user_api="blas")
