"""numpy's quantiles (its default 'linear' method), to the bit, computed the way that is cheapest here.

`np.quantile` partitions its input around both neighbours of every level asked for, which for the
21 levels of a profile's histogram costs several times a plain sort; the renderer asks for them on
every image. The interpolation between neighbouring order statistics is numpy's own
(`numpy.lib._function_base_impl._lerp`), so the values are the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def lerp(below: np.ndarray, above: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """numpy's interpolation between neighbouring order statistics, GAMMA of the way from BELOW."""
    step = above - below
    return np.where(gamma >= 0.5, above - step * (1.0 - gamma), below + step * gamma)


def sorted_quantiles(values: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """`np.quantile(values, levels)` (all of VALUES, levels in 0..1), from one sort."""
    ordered = np.sort(values, axis=None)
    virtual = (ordered.size - 1) * np.asarray(levels, dtype=np.float64)
    below = np.floor(virtual).astype(np.intp)
    return lerp(ordered[below], ordered[np.minimum(below + 1, ordered.size - 1)], virtual - below)


def sorted_quantile(values: np.ndarray, level: float) -> float:
    """`np.quantile(values, level)` for one level given as a Python float (numpy then interpolates
    in the values' own precision), from one sort."""
    ordered = np.sort(values, axis=None)
    virtual = (ordered.size - 1) * level
    below = int(np.floor(virtual))
    return float(lerp(ordered[below], ordered[min(below + 1, ordered.size - 1)], float(virtual - below)))
