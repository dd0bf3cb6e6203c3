"""Render a plan on this machine: skip finished shards, render the rest, finalize atomically.

Shards are fixed by the plan (`shard = index // rows_per_shard`); workers only change speed.
With `workers > 1`, batches of one shard are rendered by a process pool (each process loads the
renderer once) with a bounded number of batches in flight, and written in plan order by this
process, so memory stays flat and the bytes do not depend on the worker count.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from busforge.dataset.card import render_card
from busforge.dataset.features import dataset_features
from busforge.dataset.manifest import MANIFEST, build_manifest, read_manifest
from busforge.dataset.writer import ShardRecord, Staging, remove_leftovers
from busforge.errors import BadInput
from busforge.executors.rows import encode_rows, prepare_items, render_rows
from busforge.fingerprint import fingerprint
from busforge.plan import Plan, make_plan
from busforge.recipe import Recipe
from busforge.renderers.base import Renderer, make_renderer
from busforge.sample import SampleSpec

SPLIT = "train"


@dataclass(frozen=True)
class RenderOutcome:
    out_dir: Path
    fingerprint: str
    rows: int
    rendered_shards: int
    reused_shards: int
    up_to_date: bool = False


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
        self.batch_size = int(renderer.batch_size)
        self.pool: ProcessPoolExecutor | None = None
        if workers > 1 and not renderer.in_process:
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
    if not out_dir.is_dir():
        raise BadInput(f"{out_dir}: is a file; --out (or output.dir) must name a folder")
    if force:
        return False
    if not (out_dir / MANIFEST).exists():
        if any(out_dir.iterdir()):
            raise BadInput(
                f"{out_dir}: exists and is not a busforge dataset; choose another --out or pass --force"
            )
        return False
    existing = read_manifest(out_dir).get("fingerprint")
    if existing != fp:
        raise BadInput(
            f"{out_dir}: holds another dataset (fingerprint {existing}, this run gives {fp}); "
            "pass --force to replace it, or --out to write elsewhere"
        )
    remove_leftovers(out_dir)
    return True


@dataclass(frozen=True)
class ShardJob:
    """One output shard: which rows go in it. Synthetic shards hold a slice of the plan; real
    shards hold a slice of a real split, copied as imported."""

    split: str
    index: int
    total: int
    specs: list[SampleSpec] | None = None
    real_rows: tuple[int, int] | None = None  # [start, stop) within the real split

    @property
    def rows(self) -> int:
        if self.specs is not None:
            return len(self.specs)
        assert self.real_rows is not None
        return self.real_rows[1] - self.real_rows[0]


def shard_jobs(plan: Plan, per_shard: int, real_splits: dict[str, int]) -> list[ShardJob]:
    """The output's shards, fixed by the plan and the real data, never by the worker count.

    train = the real train rows (if any) followed by the synthetic rows; other splits are real.
    """
    real_train = real_splits.get("train", 0)
    n_real = math.ceil(real_train / per_shard)
    n_synth = math.ceil(len(plan.specs) / per_shard)
    total = max(1, n_real + n_synth)
    jobs = [
        ShardJob(SPLIT, i, total, real_rows=(i * per_shard, min(real_train, (i + 1) * per_shard)))
        for i in range(n_real)
    ]
    # Within a shard rows are ordered by (domain, index): batches then hold one domain (one LoRA
    # adapter) each, and the order is still a function of the plan alone.
    jobs += [
        ShardJob(
            SPLIT,
            n_real + k,
            total,
            specs=sorted(plan.specs[k * per_shard : (k + 1) * per_shard], key=lambda s: (s.domain, s.index)),
        )
        for k in range(n_synth)
    ]
    if not jobs:  # an empty dataset still has its (empty) train shard
        jobs.append(ShardJob(SPLIT, 0, 1, specs=[]))
    for split, rows in real_splits.items():
        if split != SPLIT and rows:
            n = math.ceil(rows / per_shard)
            jobs += [
                ShardJob(split, i, n, real_rows=(i * per_shard, min(rows, (i + 1) * per_shard)))
                for i in range(n)
            ]
    return jobs


@dataclass(frozen=True)
class Prepared:
    """Everything decided before the first pixel: resolved recipe, plan, renderer, shards, identity."""

    recipe: Recipe
    plan: Plan
    renderer: Renderer
    mix: Any  # busforge.dataset.mix.RealMix | None
    fingerprint: str
    jobs: list[ShardJob]


def limit_plan(plan: Plan, limit: int) -> Plan:
    """The first `limit` samples of a plan, with its strata counted over what is kept."""
    specs = plan.specs[:limit]
    kept = Counter((s.pathology, s.domain, s.size_bin, s.echogenicity, s.boundary) for s in specs)
    strata = [
        replace(s, count=kept[(s.pathology, s.domain, s.size_bin, s.echogenicity, s.boundary)])
        for s in plan.strata
    ]
    return replace(plan, specs=specs, strata=[s for s in strata if s.count])


def prepare(recipe: Recipe, limit: int | None = None) -> Prepared:
    """`limit` keeps only the first N planned samples (same seeds and pixels as the full plan)."""
    mix = None
    if recipe.real is not None:
        from busforge.dataset.mix import resolve_real

        try:
            mix = resolve_real(recipe)
        except BadInput as err:  # name the recipe that points at the real data
            raise BadInput(f"{recipe.source}: {err}") from None
    recipe, pathology_weights = apply_real_mix(recipe, mix)
    plan = make_plan(recipe, pathology_weights)
    if limit is not None and limit < len(plan.specs):
        plan = limit_plan(plan, limit)
        limited = {"limit": limit}
    else:
        limited = {}
    renderer = make_renderer(
        recipe.renderer.backend, recipe.renderer.options, recipe.image_size, recipe.source
    )
    try:  # the whole plan's domains, so a resumed run renders alike
        renderer.expect_domains({spec.domain for spec in plan.specs})
    except BadInput as err:
        raise err.with_source(recipe.source) from None
    real_identity = {"real": {"fingerprint": mix.fingerprint, "ratio": mix.ratio}} if mix else {}
    fp = fingerprint(
        recipe.content(), renderer.identity(), shape_prior=plan.prior_identity, **real_identity, **limited
    )
    jobs = shard_jobs(plan, recipe.output.rows_per_shard, real_rows_in_output(mix))
    return Prepared(recipe, plan, renderer, mix, fp, jobs)


def run_render(
    recipe: Recipe,
    *,
    out_dir: Path | None = None,
    workers: int = 1,
    force: bool = False,
    quiet: bool = False,
    limit: int | None = None,
) -> RenderOutcome:
    from tqdm import tqdm

    from busforge.dataset.mix import manifest_entry

    out_dir = Path(out_dir or recipe.output.dir)
    prepared = prepare(recipe, limit)
    recipe, plan, renderer, mix, fp, jobs = (
        prepared.recipe,
        prepared.plan,
        prepared.renderer,
        prepared.mix,
        prepared.fingerprint,
        prepared.jobs,
    )
    n_rows = sum(job.rows for job in jobs)
    if check_existing(out_dir, fp, force):
        return RenderOutcome(out_dir, fp, n_rows, 0, 0, up_to_date=True)

    staging = Staging(out_dir)
    staging.open(fp, force)
    schema = dataset_features().arrow_schema
    records: list[ShardRecord] = []
    todo: list[ShardJob] = []
    for job in jobs:
        record = staging.done(job.split, job.index, job.total)
        if record is not None:
            records.append(record)
        else:
            todo.append(job)

    progress = tqdm(
        total=n_rows, desc="render", unit="img", disable=quiet, initial=sum(r.rows for r in records)
    )
    source = RowSource(recipe, renderer, workers) if any(job.specs for job in todo) else None
    try:
        for job in todo:
            shard = staging.open_shard(
                job.split, job.index, job.total, schema, recipe.output.rows_per_row_group
            )
            try:
                for rows in job_rows(job, source, mix):
                    shard.add(rows)
                    progress.update(len(rows))
                shard.close()
            except BaseException:
                shard.abort()
                raise
            records.append(staging.mark_done(job.split, job.index, shard))
    finally:
        progress.close()
        if source is not None:
            source.close()

    manifest = build_manifest(
        name=recipe.name,
        version=recipe.version,
        fingerprint=fp,
        renderer=renderer.identity(),
        counts=plan.counts(),
        strata=[{**s.__dict__, "size_range": list(s.size_range)} for s in plan.strata],
        shards=sorted(records, key=lambda r: (r.split, r.index)),
        extra={"shape_prior": plan.prior_identity, **({"real": manifest_entry(mix)} if mix else {})},
    )
    content = recipe.content()
    staging.finalize(
        {
            MANIFEST: json.dumps(manifest, indent=2, sort_keys=True) + "\n",
            "recipe.yaml": yaml.safe_dump(content, sort_keys=False),
            "README.md": render_card(manifest, content, source_datasets=[str(mix.dataset)] if mix else None),
        },
        replace_existing=force,
    )
    return RenderOutcome(out_dir, fp, n_rows, len(todo), len(jobs) - len(todo))


def real_rows_in_output(mix) -> dict[str, int]:
    """Real rows per output split: the real train rows (none for "0:1") and all of the others."""
    if mix is None:
        return {}
    from busforge.dataset.mix import real_train_rows

    return {**mix.split_rows, "train": real_train_rows(mix)}


def apply_real_mix(recipe: Recipe, mix) -> tuple[Recipe, dict[str, float] | None]:
    """With real data: the synthetic count follows the ratio, the domain defaults to the real
    data's, and `pathology: match_real` takes the real train split's mix."""
    if mix is None:
        return recipe, None
    from busforge.dataset.mix import pathology_weights, synthetic_count

    update: dict[str, Any] = {"count": synthetic_count(mix)}
    if "domain" not in recipe.model_fields_set:
        update["domain"] = mix.domain
    resolved = recipe.model_copy(update=update)
    resolved._source = recipe.source
    weights = pathology_weights(mix) if recipe.pathology == "match_real" else None
    return resolved, weights


def job_rows(job: ShardJob, source: RowSource | None, mix) -> Iterator[list[dict[str, Any]]]:
    if job.specs is not None:
        assert source is not None or not job.specs
        if job.specs:
            yield from source.rows(job.specs)
        return
    from busforge.dataset.mix import real_row_batches

    start, stop = job.real_rows
    seen = 0
    for batch in real_row_batches(mix, job.split):
        lo, hi = max(start - seen, 0), min(stop - seen, len(batch))
        if lo < hi:
            yield batch[lo:hi]
        seen += len(batch)
        if seen >= stop:
            return
