"""What busforge does to a process that renders, in one place.

The executors call `prepare_render_process` for every render process (pool workers, in-process
rendering, Ray actors through `RowSource`): it sizes the thread pools to the process's share of the
cores. A renderer's entry point carries `renders_as_busforge`, which does the rest of the set-up
itself, so a notebook or a benchmark that calls the renderer directly renders (same bytes, same
memory behaviour) as `busforge render`'s processes do, with nothing set up by hand.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from busforge.executors.allocator import retain_freed_memory
from busforge.executors.threads import limit_threads, one_blas_thread

Function = TypeVar("Function", bound=Callable[..., Any])

if TYPE_CHECKING:
    from busforge.renderers.base import Renderer


_keep_freed_memory = functools.cache(retain_freed_memory)  # once per process


def prepare_render_process(threads: int, renderer: Renderer | None = None) -> None:
    """Keep freed memory, size the thread pools to THREADS, load RENDERER (which may bring in
    torch) and size the pools again for what loading brought in."""
    _keep_freed_memory()
    limit_threads(threads)
    if renderer is not None:
        renderer.load()
        limit_threads(threads)


def renders_as_busforge(function: Function) -> Function:
    """Decorator for a renderer's entry point: freed memory kept (once per process, see
    executors.allocator) and BLAS on one thread for the call (threads.one_blas_thread)."""

    @functools.wraps(function)
    def rendering(*args: Any, **kwargs: Any) -> Any:
        _keep_freed_memory()
        with one_blas_thread():
            return function(*args, **kwargs)

    return rendering  # type: ignore[return-value]
