"""Exact integer allocation: split a count into parts proportional to weights."""

from __future__ import annotations

import numpy as np


def largest_remainder(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split `total` into integers proportional to `weights`, exactly; ties go to the earlier key."""
    names = list(weights)
    w = np.array([weights[n] for n in names], dtype=float)
    if total == 0 or w.sum() <= 0:
        return dict.fromkeys(names, 0)
    quotas = total * w / w.sum()
    counts = np.floor(quotas).astype(int)
    remainder = total - int(counts.sum())
    # Stable sort on the negated fractional part: largest first, ties in key order.
    order = np.argsort(-(quotas - counts), kind="stable")
    counts[order[:remainder]] += 1
    return {n: int(c) for n, c in zip(names, counts, strict=True)}
