"""A render run before and after its pixels, whatever the executor: `prepare` resolves the recipe
against the real data, plans, builds the renderer and fixes the shards and the fingerprint;
`shard_batches` gives a shard's rows; `finish` writes the manifest and card and renames the
dataset into place.

The shards are fixed by the plan and the real data (`shard = index // rows_per_shard`), never by
the worker count, so any executor writes the same bytes. An executor takes `Prepared.jobs`,
opens the run with `open_run` (which skips the shards already done), has each of the rest
written by `write_shard`, then calls `finish`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from busforge.dataset.writer import ShardRecord, Staging
from busforge.errors import BadInput
from busforge.fingerprint import fingerprint, without_locations
from busforge.recipe import Recipe
from busforge.renderers.base import Renderer, make_renderer
from busforge.sample import SampleSpec
from busforge.sample_plan import Plan, make_plan

SPLIT = "train"  # the split synthetic rows go to


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


@dataclass(frozen=True)
class PlanHints:
    """What a renderer is told of the plan it renders: its domains and its size."""

    domains: frozenset[str]
    samples: int

    @classmethod
    def of(cls, plan: Plan) -> PlanHints:
        return cls(frozenset(spec.domain for spec in plan.specs), len(plan.specs))


@dataclass(frozen=True)
class Prepared:
    """Everything decided before the first pixel: resolved recipe, plan, renderer, shards, identity."""

    recipe: Recipe
    plan: Plan
    renderer: Renderer
    mix: Any  # busforge.dataset.mix.RealMix | None
    fingerprint: str
    jobs: list[ShardJob]
    hints: PlanHints

    @property
    def rows(self) -> int:
        return sum(job.rows for job in self.jobs)


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


def limit_plan(plan: Plan, limit: int) -> Plan:
    """The first `limit` samples of a plan, with its strata counted over what is kept."""
    specs = plan.specs[:limit]
    kept = Counter((s.pathology, s.domain, s.size_bin, s.echogenicity, s.boundary) for s in specs)
    strata = [
        replace(s, count=kept[(s.pathology, s.domain, s.size_bin, s.echogenicity, s.boundary)])
        for s in plan.strata
    ]
    return replace(plan, specs=specs, strata=[s for s in strata if s.count])


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


def prepare(recipe: Recipe, limit: int | None = None) -> Prepared:
    """`limit` keeps only the first N planned samples (same seeds and pixels as the full plan)."""
    mix = None
    if recipe.real is not None:
        from busforge.dataset.mix import resolve_real

        try:
            mix = resolve_real(recipe)
        except BadInput as err:  # name the recipe that points at the real data
            raise BadInput(str(err), source=recipe.source) from None
    recipe, pathology_weights = apply_real_mix(recipe, mix)
    try:
        plan = make_plan(recipe, pathology_weights)
    except BadInput as err:
        raise err.with_source(recipe.source) from None
    if limit is not None and limit < len(plan.specs):
        plan = limit_plan(plan, limit)
        limited = {"limit": limit}
    else:
        limited = {}
    hints = PlanHints.of(plan)
    renderer = build_renderer(recipe, hints)
    real_identity = {"real": {"fingerprint": mix.fingerprint, "ratio": mix.ratio}} if mix else {}
    content = without_locations(recipe.content(), input_locations(recipe, renderer, mix))
    fp = fingerprint(
        content, renderer.identity(), shape_prior=plan.prior_identity, **real_identity, **limited
    )
    jobs = shard_jobs(plan, recipe.output.rows_per_shard, real_rows_in_output(mix))
    return Prepared(recipe, plan, renderer, mix, fp, jobs, hints)


def build_renderer(recipe: Recipe, hints: PlanHints) -> Renderer:
    """The recipe's renderer, told the plan's domains and size. Every engine builds it this way
    (the Ray actors too), so all decide alike (e.g. `compile: auto`) and refuse alike."""
    renderer = make_renderer(
        recipe.renderer.backend,
        recipe.renderer.options,
        recipe.image_size,
        recipe.source,
        domains=set(hints.domains),
        samples=hints.samples,
    )
    try:  # the whole plan's domains, so a resumed run renders alike
        renderer.expect_domains(set(hints.domains))
    except BadInput as err:
        raise err.with_source(recipe.source) from None
    return renderer


def input_locations(recipe: Recipe, renderer, mix) -> list[tuple[str, ...]]:
    """Recipe keys that name a local input whose content the fingerprint already holds by hash."""
    from busforge.shapes.priors import is_named_prior

    locations = [("renderer", *key) for key in renderer.input_locations()]
    if not is_named_prior(recipe.shape_prior):
        locations.append(("shape_prior",))  # its digest is `shape_prior=` in the fingerprint
    if mix is not None:
        locations.append(("real", "dataset"))  # its fingerprint is `real=`
    return locations


def real_batches(job: ShardJob, mix) -> Iterator[list[dict[str, Any]]]:
    """The rows of a real shard: its slice of the real split, exactly as imported."""
    from busforge.dataset.mix import real_row_batches

    assert job.real_rows is not None
    start, stop = job.real_rows
    seen = 0
    for batch in real_row_batches(mix, job.split):
        lo, hi = max(start - seen, 0), min(stop - seen, len(batch))
        if lo < hi:
            yield batch[lo:hi]
        seen += len(batch)
        if seen >= stop:
            return


def finish(
    prepared: Prepared, staging: Staging, records: Iterable[ShardRecord], replace_existing: bool
) -> None:
    """Manifest, recipe and card of a finished render; the dataset moves into place."""
    from busforge.dataset.card import render_card
    from busforge.dataset.manifest import build_manifest
    from busforge.dataset.mix import manifest_entry
    from busforge.dataset.output import finalize

    recipe, plan, mix = prepared.recipe, prepared.plan, prepared.mix
    manifest = build_manifest(
        name=recipe.name,
        version=recipe.version,
        fingerprint=prepared.fingerprint,
        renderer=prepared.renderer.identity(),
        counts=plan.counts(),
        strata=[{**s.__dict__, "size_range": list(s.size_range)} for s in plan.strata],
        shards=sorted(records, key=lambda r: (r.split, r.index)),
        extra={"shape_prior": plan.prior_identity, **({"real": manifest_entry(mix)} if mix else {})},
    )
    content = recipe.content()
    card = render_card(manifest, content)
    finalize(staging, manifest, content, card, replace_existing=replace_existing)
