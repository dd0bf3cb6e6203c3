"""Shape statistics of one binary lesion mask (the quantities the calibrated prior matches)."""

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

STAT_NAMES = ("area", "aspect", "solidity", "circularity", "cx", "cy", "size")


@dataclass(frozen=True)
class ShapeStats:
    """Statistics of a lesion's largest connected component.

    Lengths are fractions of sqrt(H*W) so that area and aspect carry over unchanged
    from a non-square real image to a square render (on a square image they are
    plain fractions of the width).

    Attributes:
        area: lesion pixels / image pixels.
        aspect: bounding-box width / height (> 1 means wider than tall).
        solidity: area / convex-hull area.
        circularity: 4*pi*area / perimeter**2.
        cx: horizontal centre of the bounding box, fraction of the width.
        cy: vertical centre of the bounding box, fraction of the height.
        size: longest bounding-box side / sqrt(H*W) (= `lesion_size` on square masks).
    """

    area: float
    aspect: float
    solidity: float
    circularity: float
    cx: float
    cy: float
    size: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of `mask`, with its holes filled."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return np.zeros(mask.shape, dtype=bool)
    if count > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        keep = labels == int(np.argmax(sizes))
    else:
        keep = labels > 0
    # Holes = background pieces (4-connected) that do not reach the padded border.
    background, _ = ndimage.label(~np.pad(keep, 1))
    return (background != background[0, 0])[1:-1, 1:-1]


def shape_stats(mask: np.ndarray) -> ShapeStats | None:
    """Statistics of the largest component of a binary mask, or None if it is empty."""
    from skimage.measure import perimeter, regionprops

    lesion = largest_component(np.asarray(mask) > 0)
    if not lesion.any():
        return None
    height, width = lesion.shape
    rows = np.flatnonzero(lesion.any(axis=1))
    cols = np.flatnonzero(lesion.any(axis=0))
    box_h = rows[-1] - rows[0] + 1
    box_w = cols[-1] - cols[0] + 1
    area = float(lesion.sum())
    crop = lesion[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    padded = np.pad(crop, 1)
    props = regionprops(padded.astype(np.uint8))[0]
    edge = perimeter(padded)
    circularity = 4.0 * np.pi * area / edge**2 if edge > 0 else 1.0
    scale = float(np.sqrt(height * width))
    return ShapeStats(
        area=area / (height * width),
        aspect=box_w / box_h,
        solidity=float(props.solidity),
        circularity=float(min(circularity, 1.0)),
        cx=(cols[0] + cols[-1] + 1) / 2 / width,
        cy=(rows[0] + rows[-1] + 1) / 2 / height,
        size=max(box_w, box_h) / scale,
    )
