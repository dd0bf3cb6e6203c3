"""Held-out shape fidelity: a prior fitted on half of BUSI's masks against the other half."""

from __future__ import annotations

import numpy as np
import pytest

from busforge.evaluate.shape_holdout import split_halves


def test_halves_are_disjoint_seeded_and_cover_every_case():
    masks = {
        "benign": [np.full((4, 4), i) for i in range(9)],
        "malignant": [np.full((4, 4), i) for i in range(5)],
    }
    first, second = split_halves(masks)
    again, _ = split_halves(masks)
    for pathology, cases in masks.items():
        ids = sorted(int(m[0, 0]) for m in first[pathology] + second[pathology])
        assert ids == list(range(len(cases)))
        assert [int(m[0, 0]) for m in first[pathology]] == [int(m[0, 0]) for m in again[pathology]]
    assert len(first["benign"]) == 4 and len(second["benign"]) == 5


def _stats_population(count: int, seed: int) -> list:
    from busforge.shapes.stats import STAT_NAMES, ShapeStats

    values = np.random.default_rng(seed).random((count, len(STAT_NAMES)))
    return [ShapeStats(*map(float, row)) for row in values]


def test_perfect_sampler_ks_follows_the_ks_null_distribution():
    """Seven independent continuous statistics, both ways round: the worst of 14 KS is below a
    bar with probability P(KS < bar)^14 (Kolmogorov's limit). The bar sits where that is about a
    half, so a KS computed too small or too large moves the rate well outside the tolerance; each
    way draws its own held-out size, and smaller held-out halves pass less."""
    from scipy.special import kolmogorov

    from busforge.evaluate.shape_holdout import same_distribution_ks

    population = {"benign": _stats_population(20000, 0)}
    draws, held_out, bar = 500, 200, 0.112

    def expected(size: int) -> float:
        return (1 - kolmogorov(bar * np.sqrt(draws * size / (draws + size)))) ** 7

    ks = same_distribution_ks(population, {"benign": (held_out, held_out)}, draws, replicates=400)["benign"]
    assert ks.shape == (400, 2, 7)
    both = float(np.mean(ks.max(axis=(1, 2)) < bar))
    assert abs(both - expected(held_out) ** 2) < 0.1, (both, expected(held_out) ** 2)
    ks = same_distribution_ks(population, {"benign": (held_out, 50)}, draws, replicates=400)["benign"]
    by_way = ks.max(axis=2) < bar
    assert abs(by_way[:, 0].mean() - expected(held_out)) < 0.1
    assert abs(by_way[:, 1].mean() - expected(50)) < 0.1
    assert by_way[:, 1].mean() < by_way[:, 0].mean() - 0.3


def test_perfect_sampler_keeps_a_lesions_statistics_together_and_the_ways_apart():
    from busforge.evaluate.shape_holdout import same_distribution_ks
    from busforge.shapes.stats import STAT_NAMES, ShapeStats

    values = np.random.default_rng(1).random(500)
    population = {"malignant": [ShapeStats(*([float(v)] * len(STAT_NAMES))) for v in values]}
    ks = same_distribution_ks(population, {"malignant": (60, 60)}, 200, replicates=50)["malignant"]
    assert np.all(ks == ks[:, :, :1])  # one lesion's statistics are drawn as one row
    assert np.mean(ks[:, 0, 0] != ks[:, 1, 0]) > 0.8  # each way its own draws


def test_ks_statistic_equals_scipys_with_ties():
    from scipy.stats import ks_2samp

    from busforge.evaluate.shape_holdout import _ks

    rng = np.random.default_rng(3)
    for _ in range(20):
        first, second = rng.integers(0, 30, size=500) / 7.0, rng.integers(0, 30, size=52) / 7.0
        assert abs(_ks(first, second) - ks_2samp(first, second).statistic) < 1e-12


def test_prior_fitted_on_half_of_busi_is_as_close_to_the_other_half_as_a_perfect_sampler(shared_data):
    """Fit on one half of BUSI's masks, draw 500 at 512², KS of every statistic against the other
    half, both pathologies, both ways round (benchmarks/shape_holdout.py's table): its worst cell
    may not be beyond what a sampler drawing from the real lesions themselves reaches in 95 % of
    replicates at the same sizes. (Issue 13's 0.12 bar is out of reach on this sample for any
    sampler: docs/procedural.md.)"""
    from busforge.evaluate.shape_holdout import held_out_ks, real_stats, same_distribution_ks, worst
    from busforge.shapes.calibrate import _case_masks, collect_masks

    source = shared_data / "busi_masks_calib"
    if not source.is_dir():
        pytest.skip(f"{source} not present")
    files = collect_masks([source])
    masks = {p: [m for m in _case_masks(f) if m.any()] for p, f in files.items() if p != "normal"}
    table = held_out_ks(masks, draws=500, image_size=512)
    assert set(table) == {"fit A, test B", "fit B, test A"}
    assert all(set(per_pathology) == {"benign", "malignant"} for per_pathology in table.values())
    first, second = split_halves(masks)
    noise = same_distribution_ks(
        {p: real_stats(cases) for p, cases in masks.items()},
        {p: (len(second[p]), len(first[p])) for p in masks},
        draws=500,
    )
    perfect_worst = np.max([ks.max(axis=(1, 2)) for ks in noise.values()], axis=0)
    value, where = worst(table)
    assert value <= np.quantile(perfect_worst, 0.95), (value, where, np.quantile(perfect_worst, 0.95))
