"""Pass 1 of an import, one case at a time (in a worker process): decode, hash, measure, encode."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from busforge.dataset.attributes import Measures, measure
from busforge.dataset.dedup import phash
from busforge.dataset.importers.base import Case, CaseError, load_case


@dataclass(frozen=True)
class Inspected:
    """What pass 1 learns about one case (small: no pixels)."""

    digest: str
    phash: int
    measures: Measures | None
    lesion_area: float
    size: float | None
    shape: dict[str, float | None] | None
    width: int
    height: int
    resized_from: tuple[int, int] | None
    merged_masks: int
    spool: tuple[int, int, int] = (0, 0, 0)  # offset, image PNG length, mask PNG length


def fit_ellipse(lesion: np.ndarray) -> dict[str, float | None] | None:
    """Moment-fitted ellipse of a lesion component (bool) in the `shape` column's terms."""
    from skimage.measure import regionprops

    if not lesion.any():
        return None
    rows, cols = np.flatnonzero(lesion.any(axis=1)), np.flatnonzero(lesion.any(axis=0))
    crop = lesion[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    props = regionprops(crop.astype(np.uint8))[0]  # moments only: cheap
    # skimage's orientation is the major axis' angle from the row axis; ours is from the x axis,
    # counter-clockwise on screen (rows grow downwards), in (-90, 90].
    angle = (math.degrees(props.orientation) + 90.0) % 180.0
    angle = angle - 180.0 if angle > 90.0 else angle
    cy, cx = props.centroid
    return {
        "a": float(props.axis_major_length / 2),
        "b": float(props.axis_minor_length / 2),
        "angle": float(angle),
        "cx": float(cx + cols[0]),
        "cy": float(cy + rows[0]),
        "sigma": None,
    }


def relative_size(lesion: np.ndarray) -> float | None:
    """Longest bounding-box side of the lesion / sqrt(H*W): the `size` statistic of
    busforge.shapes.stats, i.e. busforge.shapes.lesion.lesion_size (/ width) generalised to
    non-square images."""
    if not lesion.any():
        return None
    rows, cols = np.flatnonzero(lesion.any(axis=1)), np.flatnonzero(lesion.any(axis=0))
    longest = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    return float(longest / np.sqrt(lesion.size))


def file_digest(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def inspect_case(case: Case) -> tuple[Inspected, bytes, bytes] | str:
    """Pass 1 for one case: its record and PNGs, or the reason it must be skipped."""
    from busforge.executors.rows import encode_png
    from busforge.shapes.stats import largest_component

    try:
        loaded = load_case(case)
    except CaseError as err:
        return str(err)
    lesion = largest_component(loaded.mask) if loaded.mask.any() else loaded.mask
    info = Inspected(
        digest=file_digest((case.image, *case.masks)),
        phash=phash(loaded.image),
        measures=measure(loaded.image, loaded.mask),
        lesion_area=float(loaded.mask.mean()),
        size=relative_size(lesion),
        shape=fit_ellipse(lesion),
        width=loaded.image.shape[1],
        height=loaded.image.shape[0],
        resized_from=loaded.resized_from,
        merged_masks=loaded.merged_masks,
    )
    return info, encode_png(loaded.image), encode_png(loaded.mask.astype(np.uint8) * 255)
