"""The renderer's quantiles are numpy's to the bit (profile fitting and application depend on them)."""

from __future__ import annotations

import numpy as np

from busforge.renderers.order_statistics import sorted_quantile, sorted_quantiles
from busforge.renderers.profile import QUANTILE_LEVELS


def test_sorted_quantiles_equal_numpys():
    rng = np.random.default_rng(1)
    for case in range(300):
        values = (rng.standard_normal(int(rng.integers(1, 5000))) * 40 + 100).astype(np.float32)
        values = np.round(values) if case % 2 else values  # ties
        level = float(rng.uniform()) if case % 5 else float(rng.choice([0.0, 1.0]))
        assert sorted_quantile(values, level) == np.quantile(values, level), case
        assert np.array_equal(sorted_quantiles(values, QUANTILE_LEVELS), np.quantile(values, QUANTILE_LEVELS))
