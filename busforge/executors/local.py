"""Render a plan on this machine: skip finished shards, render the rest, finalize atomically.

Shards are fixed by the plan (`shard = index // rows_per_shard`); workers only change speed.
With `workers > 1`, batches of one shard are rendered by a process pool (each process loads the
renderer once) with a bounded number of batches in flight, and written in plan order by this
process, so memory stays flat and the bytes do not depend on the worker count.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from busforge.dataset.card import render_card
from busforge.dataset.features import dataset_features
from busforge.dataset.manifest import MANIFEST, build_manifest, read_manifest
from busforge.dataset.writer import ShardRecord, Staging
from busforge.errors import BadInput
from busforge.executors.rows import encode_rows, prepare_items, render_rows
from busforge.fingerprint import fingerprint
from busforge.plan import Plan, SampleSpec, make_plan
from busforge.recipe import Recipe
from busforge.renderers.base import Renderer, make_renderer

SPLIT = "train"


@dataclass(frozen=True)
class RenderOutcome:
    out_dir: Path
    fingerprint: str
    rows: int
    rendered_shards: int
    reused_shards: int
    up_to_date: bool = False


def dataset_fingerprint(recipe: Recipe, renderer: Renderer, plan: Plan) -> str:
    return fingerprint(recipe.content(), renderer.identity(), shape_prior=plan.prior_identity)


def _batches(specs: list[SampleSpec], size: int) -> list[list[SampleSpec]]:
    return [specs[i : i + size] for i in range(0, len(specs), size)]


# Per-process renderer for the pool (loaded once per worker by the initializer).
_WORKER_RENDERER: Renderer | None = None
_WORKER_IMAGE_SIZE = 0


def _init_worker(backend: str, options: dict[str, Any], image_size: int) -> None:
    global _WORKER_RENDERER, _WORKER_IMAGE_SIZE
    _WORKER_RENDERER = make_renderer(backend, options, image_size)
    _WORKER_RENDERER.load()
    _WORKER_IMAGE_SIZE = image_size


def _render_in_worker(specs: list[SampleSpec]) -> list[dict[str, Any]]:
    assert _WORKER_RENDERER is not None
    return render_rows(_WORKER_RENDERER, specs, _WORKER_IMAGE_SIZE)


class RowSource:
    """Yields rendered rows for a list of specs, in order, in-process or through a pool."""

    def __init__(self, recipe: Recipe, renderer: Renderer, workers: int) -> None:
        self.recipe = recipe
        self.renderer = renderer
        self.batch_size = int(getattr(renderer, "batch_size", 8))
        self.pool: ProcessPoolExecutor | None = None
        if workers > 1 and not getattr(renderer, "in_process", False):
            import multiprocessing

            self.pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn" if sys.platform == "darwin" else "fork"),
                initializer=_init_worker,
                initargs=(recipe.renderer.backend, recipe.renderer.options, recipe.image_size),
            )
            self.in_flight = 2 * workers
        else:
            renderer.load()

    def rows(self, specs: list[SampleSpec]) -> Iterator[list[dict[str, Any]]]:
        batches = _batches(specs, self.batch_size)
        if self.pool is None:
            yield from self._rows_overlapped(batches)
            return
        pending: deque[Future] = deque()
        for batch in batches:
            pending.append(self.pool.submit(_render_in_worker, batch))
            if len(pending) >= self.in_flight:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

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
            self.pool.shutdown(cancel_futures=True)


def check_existing(out_dir: Path, fp: str, force: bool) -> bool:
    """True when `out_dir` already holds this exact dataset; refuse to clobber another one."""
    if not out_dir.exists():
        return False
    if not (out_dir / MANIFEST).exists():
        if any(out_dir.iterdir()) and not force:
            raise BadInput(
                f"{out_dir}: exists and is not a busforge dataset; choose another --out or pass --force"
            )
        return False
    existing = read_manifest(out_dir).get("fingerprint")
    if existing == fp and not force:
        return True
    if existing != fp and not force:
        raise BadInput(
            f"{out_dir}: holds another dataset (fingerprint {existing}, this recipe gives {fp}); "
            "pass --force to replace it, or --out to write elsewhere"
        )
    return False


def run_render(
    recipe: Recipe,
    *,
    out_dir: Path | None = None,
    workers: int = 1,
    force: bool = False,
    quiet: bool = False,
    plan: Plan | None = None,
) -> RenderOutcome:
    from tqdm import tqdm

    out_dir = Path(out_dir or recipe.output.dir)
    plan = plan or make_plan(recipe)
    renderer = make_renderer(
        recipe.renderer.backend, recipe.renderer.options, recipe.image_size, recipe.source
    )
    fp = dataset_fingerprint(recipe, renderer, plan)
    if check_existing(out_dir, fp, force):
        return RenderOutcome(out_dir, fp, len(plan.specs), 0, 0, up_to_date=True)

    staging = Staging(out_dir)
    staging.open(fp, force)
    per_shard = recipe.output.rows_per_shard
    total = max(1, math.ceil(len(plan.specs) / per_shard))
    schema = dataset_features().arrow_schema

    records: list[ShardRecord] = []
    todo: list[int] = []
    for index in range(total):
        record = staging.done(SPLIT, index, total)
        if record is not None:
            records.append(record)
        else:
            todo.append(index)

    progress = tqdm(
        total=len(plan.specs), desc="render", unit="img", disable=quiet, initial=sum(r.rows for r in records)
    )
    source = RowSource(recipe, renderer, workers) if todo else None
    try:
        for index in todo:
            specs = plan.specs[index * per_shard : (index + 1) * per_shard]
            shard = staging.open_shard(SPLIT, index, total, schema, recipe.output.rows_per_row_group)
            try:
                for rows in source.rows(specs):
                    shard.add(rows)
                    progress.update(len(rows))
                shard.close()
            except BaseException:
                shard.abort()
                raise
            records.append(staging.mark_done(SPLIT, index, shard))
    finally:
        progress.close()
        if source is not None:
            source.close()

    records.sort(key=lambda r: r.index)
    manifest = build_manifest(
        name=recipe.name,
        version=recipe.version,
        fingerprint=fp,
        renderer=renderer.identity(),
        counts=plan.counts(),
        strata=[{**s.__dict__, "size_range": list(s.size_range)} for s in plan.strata],
        shards=records,
        extra={"shape_prior": plan.prior_identity},
    )
    content = recipe.content()
    staging.finalize(
        {
            MANIFEST: _json(manifest),
            "recipe.yaml": yaml.safe_dump(content, sort_keys=False),
            "README.md": render_card(manifest, content),
        },
        replace_existing=force,
    )
    return RenderOutcome(out_dir, fp, len(plan.specs), len(todo), total - len(todo))


def _json(data: Any) -> str:
    import json

    return json.dumps(data, indent=2, sort_keys=True) + "\n"
