"""Mask drawing: invariants over many seeds and both priors, determinism, statistics."""

import numpy as np
import pytest
from scipy import ndimage

from busforge.errors import BadInput
from busforge.shapes.lesion import ShapeParams, draw_mask, lesion_size
from busforge.shapes.priors import load_prior
from busforge.shapes.stats import shape_stats

IMAGE_SIZE = 512
BINS = [(0.08, 0.18), (0.18, 0.30), (0.30, 0.50)]


def _check_invariants(mask: np.ndarray, size_range: tuple[float, float]) -> None:
    assert mask.shape == (IMAGE_SIZE, IMAGE_SIZE) and mask.dtype == bool
    _, components = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    assert components == 1
    assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
    assert size_range[0] <= lesion_size(mask) <= size_range[1]
    assert np.array_equal(ndimage.binary_fill_holes(mask), mask)


@pytest.mark.parametrize("prior_name", ["birads", "busi"])
@pytest.mark.parametrize("pathology", ["benign", "malignant"])
def test_masks_keep_invariants_over_many_seeds(prior_name, pathology):
    prior = load_prior(prior_name)
    rng = np.random.default_rng(11)
    for size_range in BINS:
        for seed in range(25):
            params = prior.sample(pathology, size_range, IMAGE_SIZE, rng)
            mask, used = draw_mask(params, IMAGE_SIZE, seed, size_range)
            _check_invariants(mask, size_range)
            assert used.as_row().keys() == {"a", "b", "angle", "cx", "cy", "sigma"}


@pytest.mark.parametrize(("pathology", "wider"), [("benign", True), ("malignant", False)])
def test_birads_masks_follow_the_aspect_rule(pathology, wider):
    prior = load_prior("birads")
    rng = np.random.default_rng(3)
    for index in range(120):
        size_range = BINS[index % len(BINS)]
        mask, _ = draw_mask(
            prior.sample(pathology, size_range, IMAGE_SIZE, rng), IMAGE_SIZE, index, size_range
        )
        aspect = shape_stats(mask).aspect
        assert (aspect > 1) if wider else (aspect < 1), (index, aspect)


def test_birads_malignant_is_less_convex_than_benign():
    prior = load_prior("birads")
    rng = np.random.default_rng(5)
    solidity = {}
    for pathology in ("benign", "malignant"):
        values = []
        for seed in range(40):
            mask, _ = draw_mask(prior.sample(pathology, BINS[1], IMAGE_SIZE, rng), IMAGE_SIZE, seed, BINS[1])
            values.append(shape_stats(mask).solidity)
        solidity[pathology] = np.median(values)
    assert solidity["malignant"] < solidity["benign"] - 0.05


def test_same_inputs_give_the_same_mask_and_other_seeds_differ():
    params = ShapeParams(a=60.0, b=40.0, angle=5.0, cx=250.3, cy=180.7, sigma=8.0)
    first, used_first = draw_mask(params, IMAGE_SIZE, 7, BINS[1])
    second, used_second = draw_mask(params, IMAGE_SIZE, 7, BINS[1])
    other, _ = draw_mask(params, IMAGE_SIZE, 8, BINS[1])
    assert np.array_equal(first, second) and used_first == used_second
    assert not np.array_equal(first, other)


def test_redrawing_with_the_returned_params_gives_the_same_mask():
    # Too large for its bin and too close to the corner: rescaled and shifted.
    params = ShapeParams(a=150.0, b=90.0, angle=0.0, cx=20.0, cy=500.0, sigma=10.0)
    mask, used = draw_mask(params, IMAGE_SIZE, 3, BINS[0])
    _check_invariants(mask, BINS[0])
    assert used.a < params.a and used.sigma < params.sigma
    assert (used.cx, used.cy) != (params.cx, params.cy)
    again, used_again = draw_mask(used, IMAGE_SIZE, 3, BINS[0])
    assert np.array_equal(mask, again) and used_again == used


def test_undeformed_ellipse_has_the_requested_box():
    params = ShapeParams(a=80.0, b=40.0, angle=0.0, cx=256.0, cy=256.0, sigma=0.0)
    mask, used = draw_mask(params, IMAGE_SIZE, 0, (0.1, 0.9))
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    assert used == params
    assert abs((cols[-1] - cols[0] + 1) - 160) <= 2 and abs((rows[-1] - rows[0] + 1) - 80) <= 2
    assert abs(mask.sum() - np.pi * 80 * 40) / (np.pi * 80 * 40) < 0.02


@pytest.mark.parametrize("size_range", [(0.0, 0.2), (0.3, 0.2), (0.2, 0.2005), (0.999, 1.0)])
def test_impossible_size_ranges_are_bad_input(size_range):
    params = ShapeParams(a=40.0, b=30.0, angle=0.0, cx=256.0, cy=256.0, sigma=3.0)
    with pytest.raises(BadInput, match="size_range"):
        draw_mask(params, IMAGE_SIZE, 0, size_range)


def test_lesion_size_is_the_longest_box_side_over_the_width():
    mask = np.zeros((100, 100), dtype=bool)
    mask[10:30, 40:45] = True
    assert lesion_size(mask) == pytest.approx(0.2)
    assert lesion_size(np.zeros((8, 8), dtype=bool)) == 0.0


def test_shape_stats_of_a_rectangle_and_of_an_empty_mask():
    mask = np.zeros((200, 400), dtype=bool)
    mask[50:90, 100:180] = True  # 80 wide, 40 tall
    mask[5, 5] = True  # a speck: only the largest component counts
    stats = shape_stats(mask)
    assert stats.area == pytest.approx(3200 / 80000)
    assert stats.aspect == pytest.approx(2.0)
    assert stats.solidity == pytest.approx(1.0)
    assert stats.circularity < 0.8  # a 2:1 rectangle is far from a disc
    assert stats.cx == pytest.approx(140 / 400) and stats.cy == pytest.approx(70 / 200)
    assert stats.size == pytest.approx(80 / np.sqrt(80000))
    assert shape_stats(np.zeros((10, 10), dtype=bool)) is None


def test_shape_stats_fill_holes_and_see_concavity():
    ring = np.zeros((100, 100), dtype=bool)
    ring[20:80, 20:80] = True
    ring[40:60, 40:60] = False
    assert shape_stats(ring).area == pytest.approx(3600 / 10000)
    letter_c = np.zeros((100, 100), dtype=bool)
    letter_c[20:80, 20:80] = True
    letter_c[35:65, 40:80] = False
    assert shape_stats(letter_c).solidity < 0.75
