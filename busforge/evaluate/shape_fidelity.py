"""Shape fidelity: mask statistics of generated vs reference lesions, per pathology, as KS statistics."""

from __future__ import annotations

import io
from collections import defaultdict

import numpy as np
from PIL import Image

from busforge.shapes.stats import ShapeStats, shape_stats

# The statistics compared (busforge.shapes.stats names), with what they mean in the report.
COMPARED = {
    "area": "lesion area / image area",
    "aspect": "bounding-box width / height",
    "solidity": "area / convex-hull area",
    "circularity": "4 pi area / perimeter^2",
    "cx": "centre x / width",
    "cy": "centre y / height",
}


def mask_shape(mask_png: bytes) -> ShapeStats | None:
    """Statistics of one mask's largest lesion, or None for an empty (normal) mask."""
    return shape_stats(np.asarray(Image.open(io.BytesIO(mask_png)).convert("L")))


class ShapeSamples:
    """Per-pathology lists of statistic values, filled row by row."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    def add(self, pathology: str, stats: ShapeStats | None) -> None:
        if stats is None:
            return
        for name in COMPARED:
            self.values[pathology][name].append(getattr(stats, name))

    def count(self, pathology: str) -> int:
        return len(self.values[pathology]["area"]) if pathology in self.values else 0

    def pathologies(self) -> list[str]:
        return sorted(self.values)


def shape_fidelity(
    generated: ShapeSamples, reference: ShapeSamples
) -> dict[str, dict[str, dict[str, float]]]:
    """Two-sample KS statistic and p-value of each mask statistic, per pathology present on both sides.

    Returns:
        {pathology: {statistic: {"ks": D, "p_value": p, "n_generated": n, "n_reference": m}}}
    """
    from scipy.stats import ks_2samp

    out: dict[str, dict[str, dict[str, float]]] = {}
    for pathology in generated.pathologies():
        if reference.count(pathology) == 0 or generated.count(pathology) == 0:
            continue
        per_stat = {}
        for name in COMPARED:
            gen = generated.values[pathology][name]
            ref = reference.values[pathology][name]
            result = ks_2samp(gen, ref)
            per_stat[name] = {
                "ks": float(result.statistic),
                "p_value": float(result.pvalue),
                "n_generated": len(gen),
                "n_reference": len(ref),
            }
        out[pathology] = per_stat
    return out
