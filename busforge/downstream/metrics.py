"""Per-image Dice and the AUC, the two numbers of Table 3."""

from __future__ import annotations

import numpy as np


def dice_per_image(pred, target):
    """Dice of boolean masks (N, H, W) -> (N,) floats; an image where both masks are empty scores 1."""
    import torch

    pred, target = pred.bool().flatten(1), target.bool().flatten(1)
    inter = (pred & target).sum(1).double()
    total = (pred.sum(1) + target.sum(1)).double()
    return torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))


def auc(labels: np.ndarray, scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Area under the ROC curve of SCORES for binary LABELS (1 = positive), along AXIS, ties counted
    half (the Mann-Whitney U statistic); NaN where only one class is present. Vectorised so that the
    bootstrap scores thousands of resamples at once."""
    from scipy.stats import rankdata

    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    labels, scores = np.broadcast_arrays(labels, scores)
    ranks = rankdata(scores, axis=axis)
    positives = labels.sum(axis=axis)
    negatives = labels.shape[axis] - positives
    rank_sum = np.where(labels, ranks, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
    return np.where((positives > 0) & (negatives > 0), value, np.nan)
