"""One planned synthetic sample: the data type that flows from the plan to the renderers."""

from __future__ import annotations

from dataclasses import dataclass

from busforge.shapes.lesion import ShapeParams


@dataclass(frozen=True)
class SampleSpec:
    index: int
    sample_id: str
    seed: int
    pathology: str
    size_bin: str
    size_range: tuple[float, float]
    echogenicity: str
    boundary: str
    domain: str
    shape: ShapeParams
    prompt: str
