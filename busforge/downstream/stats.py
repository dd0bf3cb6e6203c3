"""Uncertainty of a Table 3 cell: mean ± sd over seeds, a 95% bootstrap CI over test images, and a
paired bootstrap of the difference to the baseline arm (same test images resampled for both).

A cell's statistic is the seed-mean of the metric on a resample of the test images: the mean
per-image Dice, or the AUC of each seed's scores. Resampling and percentile CIs come from
`scipy.stats.bootstrap` (paired, so every seed and arm sees the same resampled images).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from busforge.downstream.metrics import auc

CONFIDENCE = 0.95


def seed_summary(values: list[float]) -> tuple[float, float]:
    """Mean and sample sd (0 for one seed) of the per-seed metric."""
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(v)), float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0


def cell_statistic(task: str, labels: np.ndarray | None) -> Callable:
    """statistic(*per_seed_values, axis) for scipy.stats.bootstrap; LABELS ride along as the first sample."""
    if task == "seg":

        def mean_dice(*per_seed, axis=-1):
            return np.mean(np.stack(per_seed), axis=(0, axis if axis < 0 else axis + 1))

        return mean_dice

    def mean_auc(labels, *per_seed, axis=-1):
        return np.nanmean(np.stack([auc(labels, s, axis=axis) for s in per_seed]), axis=0)

    return mean_auc


def _distribution(samples: tuple[np.ndarray, ...], statistic: Callable, n_resamples: int, seed: int):
    from scipy.stats import bootstrap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate (constant) samples are valid here: the CI is a point
        result = bootstrap(
            samples,
            statistic,
            paired=True,
            vectorized=True,
            n_resamples=n_resamples,
            method="percentile",
            confidence_level=CONFIDENCE,
            rng=np.random.default_rng(seed),
            batch=500,
        )
    return np.asarray(result.bootstrap_distribution, dtype=np.float64)


def _interval(distribution: np.ndarray) -> tuple[float, float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    finite = distribution[np.isfinite(distribution)]
    if not len(finite):
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def _samples(task: str, per_seed: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, ...]:
    rows = tuple(np.asarray(r, dtype=np.float64) for r in per_seed)
    return rows if task == "seg" else (np.asarray(labels, dtype=np.float64), *rows)


def bootstrap_ci(
    task: str, per_seed: np.ndarray, labels: np.ndarray | None, n_resamples: int, seed: int = 0
) -> tuple[float, float]:
    """95% percentile CI of the cell statistic; PER_SEED is (seeds, images) of Dice or scores."""
    if per_seed.shape[-1] < 2:
        return float("nan"), float("nan")
    return _interval(
        _distribution(_samples(task, per_seed, labels), cell_statistic(task, labels), n_resamples, seed)
    )


def paired_difference(
    task: str,
    arm: np.ndarray,
    baseline: np.ndarray,
    labels: np.ndarray | None,
    n_resamples: int,
    seed: int = 0,
) -> dict[str, float]:
    """Arm minus baseline on the same test images: the difference, its 95% CI and a two-sided
    bootstrap p-value (twice the share of resampled differences on the far side of zero)."""
    statistic = cell_statistic(task, labels)
    k = arm.shape[0]
    if task == "seg":
        samples = (*_samples(task, arm, None), *_samples(task, baseline, None))

        def difference(*values, axis=-1):
            return statistic(*values[:k], axis=axis) - statistic(*values[k:], axis=axis)
    else:
        samples = (*_samples(task, arm, labels), *_samples("seg", baseline, None))

        def difference(labels, *values, axis=-1):
            return statistic(labels, *values[:k], axis=axis) - statistic(labels, *values[k:], axis=axis)

    point = float(difference(*samples))
    if arm.shape[-1] < 2:
        return {"diff": point, "ci_low": float("nan"), "ci_high": float("nan"), "p": float("nan")}
    distribution = _distribution(samples, difference, n_resamples, seed)
    finite = distribution[np.isfinite(distribution)]
    low, high = _interval(distribution)
    if not len(finite):
        p = float("nan")
    elif np.all(finite == 0):
        p = 1.0
    else:
        # (count + 1) / (n + 1): a bootstrap p-value is never exactly 0.
        tail = min(np.sum(finite <= 0), np.sum(finite >= 0))
        p = float(min(1.0, 2 * (tail + 1) / (len(finite) + 1)))
    return {"diff": point, "ci_low": low, "ci_high": high, "p": p}
