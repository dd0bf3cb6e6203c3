"""The plan: a pure function from a resolved recipe to one SampleSpec per synthetic sample.

Counts per stratum (pathology x domain x size bin x echogenicity x boundary) are allocated exactly
by largest remainder, level by level (pathology first, so its mix is met to the sample, then each
level within the one above); then the order is shuffled deterministically. Every sample's seed comes from
`SeedSequence(recipe.seed, spawn_key=(0, index))`, so it depends on nothing but its index.

Streams of a sample seed (documented once, used everywhere): `default_rng([seed, 0])` draws shape
parameters here, `[seed, 1]` the mask's elastic deformation, `[seed, 2]` the procedural renderer;
the diffusion renderer seeds a `torch.Generator` with the seed itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from busforge.allocation import largest_remainder
from busforge.prompts import make_prompt
from busforge.recipe import Recipe
from busforge.sample import SampleSpec
from busforge.vocab import BOUNDARIES, ECHOGENICITIES, PATHOLOGIES

SAMPLE_KEY = 0  # spawn_key prefix of per-sample seeds
SHUFFLE_KEY = 1  # spawn_key of the plan's shuffle


@dataclass(frozen=True)
class Stratum:
    pathology: str
    domain: str
    size_bin: str
    echogenicity: str
    boundary: str
    size_range: tuple[float, float]
    count: int


@dataclass(frozen=True)
class Plan:
    specs: list[SampleSpec]
    strata: list[Stratum]
    prior_identity: str

    def counts(self) -> dict[str, dict[str, int]]:
        """Planned counts per column value, as stored in the manifest and card."""
        out: dict[str, dict[str, int]] = {}
        for column in ("pathology", "size_bin", "echogenicity", "boundary", "domain"):
            out[column] = dict(sorted(Counter(getattr(s, column) for s in self.specs).items()))
        return out


def sample_seed(recipe_seed: int, index: int) -> int:
    state = np.random.SeedSequence(recipe_seed, spawn_key=(SAMPLE_KEY, index)).generate_state(2, np.uint64)
    return int(state[0] >> np.uint64(1))  # 63 bits: fits the int64 `seed` column


def resolve_size_bins(recipe: Recipe, prior) -> dict[str, dict[str, tuple[float, float]]]:
    """Per pathology: bin name -> lesion size range. `prior` bins are the prior's terciles."""
    if recipe.size_bins == "prior":
        return {p: prior.size_bins(p) for p in PATHOLOGIES}
    ranges = {name: tuple(b.range) for name, b in recipe.size_bins.items()}
    return dict.fromkeys(PATHOLOGIES, ranges)


def bin_weights(recipe: Recipe) -> dict[str, float]:
    if recipe.size_bins == "prior":
        return {"small": 1.0, "medium": 1.0, "large": 1.0}
    return {name: b.weight for name, b in recipe.size_bins.items()}


def make_plan(recipe: Recipe, pathology_weights: dict[str, float] | None = None) -> Plan:
    """Build the plan. `pathology_weights` replaces the recipe's mix (e.g. `match_real`)."""
    from busforge.shapes.priors import load_prior

    prior = load_prior(recipe.shape_prior)
    size_bins = resolve_size_bins(recipe, prior)
    weights = pathology_weights if pathology_weights is not None else recipe.pathology
    if not isinstance(weights, dict):
        raise ValueError("pathology: match_real must be resolved against the real dataset first")

    strata: list[Stratum] = []
    path_w = {p: weights.get(p, 0.0) for p in PATHOLOGIES}
    for pathology, n_path in largest_remainder(recipe.count, path_w).items():
        attrs = recipe.attributes[pathology]
        echo_w = {e: attrs.echogenicity.get(e, 0.0) for e in ECHOGENICITIES}
        bound_w = {b: attrs.boundary.get(b, 0.0) for b in BOUNDARIES}
        for domain, n_domain in largest_remainder(n_path, recipe.domain_weights).items():
            for size_bin, n_bin in largest_remainder(n_domain, bin_weights(recipe)).items():
                for echo, n_echo in largest_remainder(n_bin, echo_w).items():
                    for boundary, n in largest_remainder(n_echo, bound_w).items():
                        if n:
                            size_range = size_bins[pathology][size_bin]
                            strata.append(Stratum(pathology, domain, size_bin, echo, boundary, size_range, n))

    labels = [s for s in strata for _ in range(s.count)]
    shuffle_rng = np.random.default_rng(np.random.SeedSequence(recipe.seed, spawn_key=(SHUFFLE_KEY,)))
    order = shuffle_rng.permutation(len(labels))

    specs = []
    for index, label_index in enumerate(order):
        s = labels[label_index]
        seed = sample_seed(recipe.seed, index)
        shape = prior.sample(s.pathology, s.size_range, recipe.image_size, np.random.default_rng([seed, 0]))
        specs.append(
            SampleSpec(
                index=index,
                sample_id=f"{recipe.name}-{recipe.version}-{index:07d}",
                seed=seed,
                pathology=s.pathology,
                size_bin=s.size_bin,
                size_range=s.size_range,
                echogenicity=s.echogenicity,
                boundary=s.boundary,
                domain=s.domain,
                shape=shape,
                prompt=make_prompt(
                    recipe.prompt_template,
                    pathology=s.pathology,
                    echogenicity=s.echogenicity,
                    boundary=s.boundary,
                ),
            )
        )
    return Plan(specs=specs, strata=strata, prior_identity=prior.identity())
