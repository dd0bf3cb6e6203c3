"""What busforge does to a process before it renders, in one place: the executors call it for every
render process (pool workers, in-process rendering, Ray actors through `RowSource`), and the
benchmarks call it too, so that they time what `busforge render` runs, not a set-up of their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from busforge.executors.allocator import retain_freed_memory
from busforge.executors.threads import available_cores, limit_threads, pool_worker_threads

if TYPE_CHECKING:
    from busforge.renderers.base import Renderer


def prepare_render_process(threads: int, renderer: Renderer | None = None) -> None:
    """Keep freed memory, size the thread pools to THREADS, load RENDERER (which may bring in
    torch) and size the pools again for what loading brought in."""
    retain_freed_memory()
    limit_threads(threads)
    if renderer is not None:
        renderer.load()
        limit_threads(threads)


def default_worker_threads() -> int:
    """Threads of each render process of a plain `busforge render` (`--workers` 0: one process per
    core): the share a per-core figure is measured at."""
    return pool_worker_threads(available_cores())
