"""Render a prepared run on this machine: skip finished shards, render the rest, finalize.

With `workers > 1`, batches of one shard are rendered by a process pool (each process loads the
renderer once) with a bounded number of batches in flight, and written in plan order by this
process, so memory stays flat and the bytes do not depend on the worker count. Planning, the
shard writer and the finalize are shared with any other executor (busforge.planning,
busforge.dataset.output); this file only decides how the rows of each shard are rendered.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from busforge.dataset.lock import hold_output
from busforge.dataset.output import open_run, write_shard
from busforge.dataset.output_path import check_output_dir
from busforge.executors.render_process import prepare_render_process
from busforge.executors.rows import batches_of, encode_rows, prepare_items, render_rows
from busforge.executors.threads import in_process_threads, pool_worker_threads
from busforge.planning import ShardJob, finish, prepare, real_batches
from busforge.pool import OrderedPool
from busforge.recipe import Recipe
from busforge.renderers.base import Renderer, make_renderer
from busforge.sample import SampleSpec


@dataclass(frozen=True)
class RenderOutcome:
    out_dir: Path
    fingerprint: str
    rows: int
    rendered_shards: int
    reused_shards: int
    up_to_date: bool = False

    def summary(self) -> str:
        """The line `busforge render` prints."""
        if self.up_to_date:
            return f"{self.out_dir}: already up to date (fingerprint {self.fingerprint}); nothing to do"
        resumed = f", {self.reused_shards} reused from an interrupted run" if self.reused_shards else ""
        return (
            f"{self.out_dir}: {self.rows} rows, {self.rendered_shards} shard(s) rendered{resumed}; "
            f"fingerprint {self.fingerprint}"
        )

    def load(self, **kwargs: Any):
        """The dataset as a `datasets.DatasetDict`: `datasets.load_dataset(out_dir, **kwargs)`."""
        from datasets import load_dataset

        return load_dataset(str(self.out_dir), **kwargs)


# Per-process renderer for the pool (loaded once per worker by the initializer).
_WORKER_RENDERER: Renderer | None = None
_WORKER_IMAGE_SIZE = 0


def _init_worker(backend: str, options: dict[str, Any], image_size: int, threads: int) -> None:
    global _WORKER_RENDERER, _WORKER_IMAGE_SIZE
    _WORKER_RENDERER = make_renderer(backend, options, image_size)
    prepare_render_process(threads, _WORKER_RENDERER)
    _WORKER_IMAGE_SIZE = image_size


def _render_in_worker(specs: list[SampleSpec]) -> list[dict[str, Any]]:
    assert _WORKER_RENDERER is not None
    return render_rows(_WORKER_RENDERER, specs, _WORKER_IMAGE_SIZE)


class RowSource:
    """Yields rendered rows for a list of specs, in order, in-process or through a pool."""

    def __init__(self, recipe: Recipe, renderer: Renderer, workers: int, threads: int | None = None) -> None:
        """`threads`: this process's share of the cores when it renders in-process (default: all
        but one, left to the mask and PNG threads)."""
        self.recipe = recipe
        self.renderer = renderer
        self.batch_size = int(renderer.batch_size)
        self.pool: OrderedPool | None = None
        if workers > 1 and not renderer.in_process:
            self.pool = OrderedPool(
                workers,
                in_flight=2 * workers,
                initializer=_init_worker,
                initargs=(
                    recipe.renderer.backend,
                    recipe.renderer.options,
                    recipe.image_size,
                    pool_worker_threads(workers),
                ),
            )
        else:
            prepare_render_process(threads or in_process_threads(), renderer)

    def rows(self, specs: list[SampleSpec]) -> Iterator[list[dict[str, Any]]]:
        batches = batches_of(specs, self.batch_size)
        if self.pool is None:
            yield from self._rows_overlapped(batches)
            return
        yield from self.pool.map(_render_in_worker, batches)

    def _rows_overlapped(self, batches: list[list[SampleSpec]]) -> Iterator[list[dict[str, Any]]]:
        """In-process rendering (e.g. on a GPU) with the CPU work beside it: the next batch's masks
        are drawn and the last batch's PNGs encoded in threads while `render` runs. At most one
        batch waits on each side, so a slow consumer cannot make memory grow."""
        if not batches:
            return
        size = self.recipe.image_size
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="busforge-cpu") as threads:
            upcoming = threads.submit(prepare_items, batches[0], size)
            encoding: deque[Future] = deque()
            for i in range(len(batches)):
                items, shapes = upcoming.result()
                if i + 1 < len(batches):
                    upcoming = threads.submit(prepare_items, batches[i + 1], size)
                images = self.renderer.render(items)
                encoding.append(threads.submit(encode_rows, self.renderer, items, shapes, images))
                if len(encoding) > 1:
                    yield encoding.popleft().result()
            while encoding:
                yield encoding.popleft().result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def run_render(
    recipe: Recipe,
    *,
    out_dir: Path | None = None,
    workers: int = 1,
    force: bool = False,
    quiet: bool = False,
    limit: int | None = None,
) -> RenderOutcome:

    out_dir = Path(out_dir or recipe.output.dir)
    resolved_out = check_output_dir(out_dir, Path(recipe.source) if Path(recipe.source).is_file() else None)
    prepared = prepare(recipe, limit)
    with hold_output(out_dir, "render"):  # one run per output, from this check to the final rename
        return _render(prepared, out_dir, resolved_out, workers=workers, force=force, quiet=quiet)


def _render(prepared, out_dir: Path, resolved_out: Path, *, workers: int, force: bool, quiet: bool):
    from tqdm import tqdm

    recipe = prepared.recipe
    run = open_run(out_dir, prepared.fingerprint, prepared.jobs, force)
    if run is None:
        return RenderOutcome(out_dir, prepared.fingerprint, prepared.rows, 0, 0, up_to_date=True)
    staging, records, todo = run.staging, run.records, run.todo

    if not quiet:  # output.dir may be relative or point anywhere: say where this goes
        print(f"render: writing {resolved_out}", file=sys.stderr)
    progress = tqdm(
        total=prepared.rows, desc="render", unit="img", disable=quiet, initial=sum(r.rows for r in records)
    )
    source = RowSource(recipe, prepared.renderer, workers) if any(job.specs for job in todo) else None
    try:
        for job in todo:
            batches = job_rows(job, source, prepared.mix)
            records.append(
                write_shard(staging, job, batches, recipe.output.rows_per_row_group, progress.update)
            )
    finally:
        progress.close()
        if source is not None:
            source.close()
    finish(prepared, staging, records, replace_existing=force)
    return RenderOutcome(
        out_dir, prepared.fingerprint, prepared.rows, len(todo), len(prepared.jobs) - len(todo)
    )


def job_rows(job: ShardJob, source: RowSource | None, mix) -> Iterator[list[dict[str, Any]]]:
    if job.specs is None:
        yield from real_batches(job, mix)
    elif job.specs:
        assert source is not None
        yield from source.rows(job.specs)
