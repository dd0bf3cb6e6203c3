"""Attribute adherence: does the image say what the prompt says?

Each lesion's echogenicity and boundary are measured with the importer's own code
(`busforge.dataset.attributes.measure`) and classified with one dataset's thresholds; adherence is
the share of rows whose measured attribute equals its label. It works the same for any dataset
(procedural, diffusion, real), since it reads only the image, the mask and the labels.

The thresholds are those of the reference dataset when it has them (its importer fitted them on
its own lesions), otherwise BUSI's, as shipped with the `busi` appearance profile. Beside each
adherence the measured values are summarised per label (quartiles), for the generated rows and for
the reference's rows, so a reader sees where the generated lesions sit relative to the real ones.

The measures are in pixels of the images they were fitted on (the smoothing is 1.5 px, the
sharpness is in 1/px), so each generated row is measured at the thresholds' resolution: resized
(image and mask, antialiased; the mask thresholded at half) so that its shorter side is the
reference's median shorter side, or 256 px for BUSI's shipped thresholds (fitted on BUSI imported
at 256²). Measured as is, a 512² render's edges read about 0.7x as sharp (0.119 vs 0.167, docs/procedural.md).
"""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Any

import numpy as np
from PIL import Image

from busforge.dataset.attributes import Measures, Thresholds, at_side, classify, measure

# attribute -> the measures that decide it (busforge.dataset.attributes)
ATTRIBUTES = {
    "echogenicity": ("echo_heterogeneity",),
    "boundary": ("boundary_contrast", "boundary_sharpness"),
}
DEFAULT_THRESHOLDS_FROM = "busi (shipped busi profile: the thresholds the importer fitted on BUSI)"
DEFAULT_THRESHOLDS_SIDE = 256  # the shipped thresholds' resolution: busi_odd_256, imported at 256²


def _grey(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"))


class AttributeSamples:
    """Labels and measures of the lesions of a set of rows, filled row by row.

    SIDE: measure each row resized to this shorter side (the thresholds' resolution); None: as is.
    """

    def __init__(self, side: int | None = None) -> None:
        self.side = side
        self.labels: list[dict[str, str]] = []
        self.measures: list[Measures] = []

    def add(self, image_png: bytes, mask_png: bytes, labels: dict[str, str | None]) -> None:
        """Measure one row; rows without a lesion (normal, empty mask) are skipped."""
        mask = _grey(mask_png) > 127
        if not mask.any():
            return
        image = _grey(image_png)
        if image.shape != mask.shape:
            return
        if self.side is not None:
            image, mask = at_side(image, mask, self.side)
        measures = measure(image, mask)
        if measures is None:
            return
        self.labels.append({key: labels.get(key) or "" for key in ATTRIBUTES})
        self.measures.append(measures)

    def __len__(self) -> int:
        return len(self.measures)


def _imported(reference_manifest: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, float] | None]:
    """The reference's import record and the attribute thresholds its importer fitted (or None)."""
    real = (reference_manifest or {}).get("real") or {}
    return real, real.get("attribute_thresholds") or None


def resolve_thresholds(reference_manifest: dict[str, Any] | None) -> tuple[Thresholds, str]:
    """The thresholds to classify with and where they come from (module docstring)."""
    real, fitted = _imported(reference_manifest)
    if fitted:
        return Thresholds(**{k: float(fitted[k]) for k in Thresholds.__dataclass_fields__}), (
            f"the reference's importer ({real.get('kind', 'real')}, fitted on its own lesions)"
        )
    from busforge.renderers.profile import load_profile

    shipped = load_profile("busi").attribute_thresholds
    return Thresholds(**shipped), DEFAULT_THRESHOLDS_FROM


def measuring_side(reference_manifest: dict[str, Any] | None, reference_sides: list[int]) -> int:
    """The shorter side the generated rows are measured at: that of the images the thresholds were
    fitted on (module docstring). REFERENCE_SIDES: the reference rows' shorter sides."""
    _, fitted = _imported(reference_manifest)
    if fitted and reference_sides:
        return int(round(float(np.median(reference_sides))))
    return DEFAULT_THRESHOLDS_SIDE


def _quartiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    q1, median, q3 = np.quantile(np.asarray(values, dtype=np.float64), [0.25, 0.5, 0.75])
    return {"n": len(values), "q1": float(q1), "median": float(median), "q3": float(q3)}


def _by_label(samples: AttributeSamples, attribute: str, name: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for labels, measures in zip(samples.labels, samples.measures, strict=True):
        if labels[attribute]:
            out[labels[attribute]].append(getattr(measures, name))
    return out


def adherence(
    generated: AttributeSamples,
    reference: AttributeSamples | None,
    thresholds: Thresholds,
    thresholds_from: str,
) -> dict[str, Any]:
    """Adherence per attribute, confusion counts, and measured values per label beside the reference's.

    Returns:
        {"thresholds": {...}, "thresholds_from": str, "measured_at_side": px or None,
         ATTRIBUTE: {"adherence": share or None, "n": rows, "confusion": {label: {measured: n}}},
         "measures": {MEASURE: {label: {"generated": quartiles, "reference": quartiles}}}}
    """
    out: dict[str, Any] = {
        "thresholds": thresholds.as_dict(),
        "thresholds_from": thresholds_from,
        "measured_at_side": generated.side,
    }
    measured = [dict(zip(ATTRIBUTES, classify(m, thresholds), strict=True)) for m in generated.measures]
    for attribute in ATTRIBUTES:
        confusion: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for labels, reading in zip(generated.labels, measured, strict=True):
            if labels[attribute]:
                confusion[labels[attribute]][reading[attribute]] += 1
        n = sum(sum(row.values()) for row in confusion.values())
        hits = sum(row.get(label, 0) for label, row in confusion.items())
        out[attribute] = {
            "adherence": hits / n if n else None,
            "n": n,
            "confusion": {label: dict(row) for label, row in sorted(confusion.items())},
        }
    out["measures"] = {}
    for attribute, names in ATTRIBUTES.items():
        for name in names:
            gen = _by_label(generated, attribute, name)
            ref = _by_label(reference, attribute, name) if reference is not None else {}
            out["measures"][name] = {
                label: {
                    "generated": _quartiles(gen.get(label, [])),
                    "reference": _quartiles(ref.get(label, [])),
                }
                for label in sorted(set(gen) | set(ref))
            }
    return out
