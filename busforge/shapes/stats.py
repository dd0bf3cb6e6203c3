"""Shape statistics of one binary lesion mask (the quantities the calibrated prior matches)."""

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

# Bump when a statistic is computed differently: calibrated tables depend on it.
STATS_VERSION = 2
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


def _convex_area(lesion: np.ndarray) -> float:
    """Area of the convex hull of the lesion's pixel squares (corners of each row's end pixels)."""
    from scipy.spatial import ConvexHull

    rows = np.flatnonzero(lesion.any(axis=1))
    filled = lesion[rows]
    left = filled.argmax(axis=1)
    right = filled.shape[1] - filled[:, ::-1].argmax(axis=1)
    points = np.concatenate(
        [
            np.stack([rows, left], axis=1),
            np.stack([rows + 1, left], axis=1),
            np.stack([rows, right], axis=1),
            np.stack([rows + 1, right], axis=1),
        ]
    ).astype(float)
    return float(ConvexHull(points).volume)


def shape_stats(mask: np.ndarray) -> ShapeStats | None:
    """Statistics of the largest component of a binary mask, or None if it is empty."""
    from skimage.measure import perimeter

    mask = np.asarray(mask) > 0
    height, width = mask.shape
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    # Work on the lesion's neighbourhood only; offsets bring positions back.
    lesion = largest_component(np.pad(mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 1))
    top, left = rows[0] - 1, cols[0] - 1
    rows = np.flatnonzero(lesion.any(axis=1))
    cols = np.flatnonzero(lesion.any(axis=0))
    box_h = rows[-1] - rows[0] + 1
    box_w = cols[-1] - cols[0] + 1
    area = float(lesion.sum())
    edge = perimeter(lesion)
    circularity = 4.0 * np.pi * area / edge**2 if edge > 0 else 1.0
    scale = float(np.sqrt(height * width))
    return ShapeStats(
        area=area / (height * width),
        aspect=float(box_w / box_h),
        solidity=min(area / _convex_area(lesion), 1.0),
        circularity=float(min(circularity, 1.0)),
        cx=float((left + (cols[0] + cols[-1] + 1) / 2) / width),
        cy=float((top + (rows[0] + rows[-1] + 1) / 2) / height),
        size=float(max(box_w, box_h) / scale),
    )
