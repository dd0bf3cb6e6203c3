"""The plan: exact allocation, per-index seeds, determinism."""

from __future__ import annotations

from collections import Counter

import pytest

from busforge.allocation import largest_remainder
from busforge.recipe import recipe_from_dict
from busforge.sample_plan import make_plan, resolve_size_bins, sample_seed
from busforge.shapes.priors import load_prior

BASE = {"name": "p", "count": 1000, "seed": 7, "shape_prior": "birads"}


def test_largest_remainder_is_exact_and_stable():
    assert largest_remainder(1000, {"benign": 0.7, "malignant": 0.3}) == {"benign": 700, "malignant": 300}
    assert largest_remainder(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert largest_remainder(7, {"a": 0.0, "b": 2.0}) == {"a": 0, "b": 7}
    for total in range(0, 50):
        assert sum(largest_remainder(total, {"x": 0.13, "y": 0.5, "z": 0.37}).values()) == total


def test_marginals_are_exact():
    recipe = recipe_from_dict(
        {
            **BASE,
            "pathology": {"benign": 0.7, "malignant": 0.3},
            "attributes": {"malignant": {"echogenicity": {"heterogeneous": 1, "homogeneous": 0}}},
        }
    )
    plan = make_plan(recipe)
    counts = Counter(s.pathology for s in plan.specs)
    assert counts == {"benign": 700, "malignant": 300}
    assert all(s.echogenicity == "heterogeneous" for s in plan.specs if s.pathology == "malignant")
    assert sum(s.count for s in plan.strata) == 1000
    by_bin = Counter((s.pathology, s.size_bin) for s in plan.specs)
    assert by_bin[("malignant", "small")] == 100  # equal default bin weights: 300 / 3 exactly


def test_plan_is_deterministic_and_shuffled():
    recipe = recipe_from_dict(BASE)
    a, b = make_plan(recipe), make_plan(recipe)
    assert a.specs == b.specs
    labels = [s.pathology for s in a.specs]
    assert labels != sorted(labels)  # not grouped by stratum
    assert [s.index for s in a.specs] == list(range(1000))
    assert len({s.seed for s in a.specs}) == 1000


def test_seed_depends_only_on_recipe_seed_and_index():
    small = make_plan(recipe_from_dict({**BASE, "count": 10}))
    assert [s.seed for s in small.specs] == [sample_seed(7, i) for i in range(10)]
    other = make_plan(recipe_from_dict({**BASE, "count": 10, "seed": 8}))
    assert not {s.seed for s in small.specs} & {s.seed for s in other.specs}


def test_prompts_follow_attributes():
    plan = make_plan(recipe_from_dict({**BASE, "count": 20}))
    for s in plan.specs:
        assert s.prompt == (
            f"breast ultrasound image of {s.pathology} tumor with {s.echogenicity} echogenicity "
            f"and {s.boundary} boundary."
        )


def test_custom_prompt_template():
    recipe = recipe_from_dict(
        {**BASE, "count": 3, "prompt_template": "{pathology} lesion, {boundary} margin"}
    )
    assert all(s.prompt.endswith("margin") for s in make_plan(recipe).specs)


@pytest.mark.parametrize("prior", ["birads", "busi"])
def test_shape_params_are_planned_within_the_image(prior):
    plan = make_plan(recipe_from_dict({**BASE, "count": 50, "shape_prior": prior}))
    for s in plan.specs:
        assert 0 < s.shape.cx < 512 and 0 < s.shape.cy < 512
        assert s.shape.a > 0 and s.shape.b > 0


def test_prior_size_bins_are_terciles():
    recipe = recipe_from_dict({**BASE, "count": 30, "shape_prior": "busi", "size_bins": "prior"})
    plan = make_plan(recipe)
    assert {s.size_bin for s in plan.specs} == {"small", "medium", "large"}
    for pathology, bins in resolve_size_bins(recipe, load_prior(recipe.shape_prior)).items():
        assert bins["small"][1] <= bins["medium"][1] <= bins["large"][1], pathology


def test_several_domains_are_allocated_within_each_pathology():
    recipe = recipe_from_dict({**BASE, "count": 101, "domain": {"busi": 1, "udiat": 1}})
    plan = make_plan(recipe)
    by_pathology = Counter(s.pathology for s in plan.specs)
    assert by_pathology == largest_remainder(101, {"benign": 0.6, "malignant": 0.4})
    for pathology, n in by_pathology.items():
        domains = Counter(s.domain for s in plan.specs if s.pathology == pathology)
        assert domains == largest_remainder(n, {"busi": 1, "udiat": 1})
    assert {s.domain for s in plan.strata} == {"busi", "udiat"}
