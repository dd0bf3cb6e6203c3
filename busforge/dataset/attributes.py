"""Clinical text attributes of real lesions (echogenicity, boundary) computed from image + mask.

No public dataset labels them, so they are measured, and the measures are stored beside the labels
(columns `echo_heterogeneity`, `boundary_contrast`, `boundary_sharpness`) for users to re-threshold.
Intensities are in units of the image's dynamic range (its 99th minus 1st percentile), so the
measures do not depend on gain. The image is smoothed (Gaussian, sigma 1.5 px) first so that
speckle, which every lesion has, does not count as texture.

- echo_heterogeneity: standard deviation of the smoothed intensity inside the lesion (eroded by the
  ring width, so that the edge does not count), in dynamic-range units. A homogeneous lesion is
  evenly dark or bright inside; a heterogeneous one mixes bright and dark regions.
- boundary_contrast: |mean intensity of the tissue around the lesion - mean inside it|, in
  dynamic-range units, both taken in bands one to two ring widths away from the mask's edge (so
  that a blurred margin does not lower them). Ring width: max(2 px, 15% of the lesion's
  equivalent radius).
- boundary_sharpness: mean gradient magnitude on the mask's contour divided by that contrast, in
  1/px: about 1/(edge width). A crisp edge concentrates the intensity change in a pixel or two; an
  indistinct (unclear) margin spreads it out.

Labels: `heterogeneous` when echo_heterogeneity > its threshold; `clear` when both
boundary_contrast and boundary_sharpness reach theirs. Thresholds are chosen per dataset
(`choose_thresholds`): the echo threshold is the median of the dataset's lesions, the two boundary
thresholds are the same quantile of their measures, the quantile chosen so that half of the
lesions are clear. They are saved in the import report and the manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

SMOOTH_SIGMA = 1.5
RING_FRACTION = 0.15
MIN_RING = 2
MIN_CONTRAST = 0.02  # floor of the sharpness denominator (a boundary with no contrast is not sharp)


@dataclass(frozen=True)
class _PerMeasure:
    """One value for each of the three measures (module docstring)."""

    echo_heterogeneity: float
    boundary_contrast: float
    boundary_sharpness: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class Measures(_PerMeasure):
    """The measures of one lesion."""

    def as_row(self) -> dict[str, float]:
        return self.as_dict()


class Thresholds(_PerMeasure):
    """Per-dataset thresholds, one per measure (`classify`, `choose_thresholds`)."""


@dataclass(frozen=True)
class LesionGeometry:
    """What the measures take from the mask alone (the lesion's neighbourhood window and its bands).

    Computed once per mask, so that a caller measuring the same lesion several times (the
    procedural renderer while it puts a lesion on its labels' side) pays for the distance
    transforms once.
    """

    window: tuple[slice, slice]  # the lesion's neighbourhood in the image
    ring: int  # ring width, px
    lesion: np.ndarray  # the mask inside the window
    depth_in: np.ndarray  # distance to the outside, px (0 outside the lesion)
    depth_out: np.ndarray  # distance to the lesion, px (0 inside it)
    inner: np.ndarray  # band one to two ring widths inside the edge
    outer: np.ndarray  # band one to two ring widths outside the edge
    # The smoothed field is needed on the lesion and its contour only: `core` (inside the window)
    # is the lesion's bounding box grown by the smoothing's reach, `core_interior` the echo pixels
    # in it, and `contour_taps` the flat indices (in the core) of each contour pixel's 3x3
    # neighbourhood, clamped at the core's edges as the filters' reflect mode does.
    core: tuple[slice, slice]
    core_interior: np.ndarray
    contour_taps: np.ndarray  # 3 x 3 x contour pixels


@dataclass(frozen=True)
class MeasureParts:
    """A lesion's measures with the levels they are made of, in dynamic-range units."""

    measures: Measures
    scale: float  # the image's dynamic range (99th - 1st percentile), grey levels
    inner_level: float  # mean of the inner band
    outer_level: float | None  # mean of the outer band (None when the window has none)
    edge_gradient: float  # mean smoothed gradient magnitude on the contour


# Gaussian smoothing's radius (scipy: truncate 4) plus the Sobel's pixel plus the outer contour pixel.
_CORE_MARGIN = int(4.0 * SMOOTH_SIGMA + 0.5) + 2


def _grown(box: tuple[slice, slice], by: int, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """BOX grown by BY pixels on each side, inside an array of SHAPE."""
    return tuple(slice(max(s.start - by, 0), min(s.stop + by, n)) for s, n in zip(box, shape, strict=True))


def _distance_inside(lesion: np.ndarray, box: tuple[slice, slice]) -> np.ndarray:
    """`distance_transform_edt(lesion)`, computed on the lesion's bounding box BOX grown by one pixel.

    The nearest outside pixel of a lesion pixel is never beyond that ring (the ring is outside,
    and a pixel beyond it projects onto it at no greater distance), so the values are the same.
    """
    depth = np.zeros(lesion.shape, np.float64)
    crop = _grown(box, 1, lesion.shape)
    depth[crop] = ndimage.distance_transform_edt(lesion[crop])
    return depth


def lesion_geometry(mask: np.ndarray) -> LesionGeometry | None:
    """The lesion's window and bands (module docstring), or None when the mask is empty."""
    mask = np.asarray(mask, dtype=bool)
    area = int(mask.sum())
    if area == 0:
        return None
    ring = max(MIN_RING, round(RING_FRACTION * np.sqrt(area / np.pi)))
    # Work on the lesion's neighbourhood only: the cost does not grow with the image.
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    margin = 2 * ring + 4
    top, left = max(rows[0] - margin, 0), max(cols[0] - margin, 0)
    window = (slice(top, rows[-1] + margin + 1), slice(left, cols[-1] + margin + 1))
    lesion = mask[window]
    box = (slice(rows[0] - top, rows[-1] + 1 - top), slice(cols[0] - left, cols[-1] + 1 - left))
    depth_in = _distance_inside(lesion, box)
    depth_out = ndimage.distance_transform_edt(~lesion)
    interior = depth_in > ring
    interior = interior if interior.sum() >= 16 else lesion
    # Tissue levels a ring away from the edge on both sides, so a blurred margin does not lower them.
    inner = (depth_in > ring) & (depth_in <= 2 * ring)
    inner = inner if inner.any() else lesion
    outer = (depth_out > ring) & (depth_out <= 2 * ring)
    contour = (depth_in == 1) | (depth_out == 1)
    core = _grown(box, _CORE_MARGIN, lesion.shape)
    core_shape = (core[0].stop - core[0].start, core[1].stop - core[1].start)
    at_rows, at_cols = np.nonzero(contour[core])  # row-major: the order boolean indexing gives
    steps = np.array([-1, 0, 1])
    tap_rows = np.clip(at_rows[None, None, :] + steps[:, None, None], 0, core_shape[0] - 1)
    tap_cols = np.clip(at_cols[None, None, :] + steps[None, :, None], 0, core_shape[1] - 1)
    contour_taps = tap_rows * core_shape[1] + tap_cols
    return LesionGeometry(
        window, ring, lesion, depth_in, depth_out, inner, outer, core, interior[core], contour_taps,
    )  # fmt: skip


def tissue_beyond_ring(geometry: LesionGeometry, shape: tuple[int, int]) -> np.ndarray:
    """The image's pixels farther than one ring width from the lesion: the tissue it is compared with."""
    tissue = np.ones(shape, dtype=bool)
    tissue[geometry.window] = geometry.depth_out > geometry.ring
    return tissue


def smoothed_core(field: np.ndarray, geometry: LesionGeometry) -> np.ndarray:
    """The measures' smoothing of a window-sized FIELD, on the geometry's core only.

    The same values as smoothing the whole window where the measures read them: the core reaches
    the smoothing's radius beyond them, or the window's edge, where the filter reflects alike.
    """
    return ndimage.gaussian_filter(field[geometry.core], SMOOTH_SIGMA)


def contour_gradient(smooth: np.ndarray, geometry: LesionGeometry) -> float:
    """Mean Sobel gradient magnitude (/8) of a `smoothed_core` field over the contour pixels.

    The same arithmetic as `ndimage.sobel` (the derivative rounded to the field's dtype, then its
    [1, 2, 1] sum in double), taken at the contour pixels only.
    """
    taps = smooth.ravel()[geometry.contour_taps]  # [row step, column step, pixel]
    down = (taps[2] - taps[0]).astype(np.float64)  # derivative along rows, per column step
    across = (taps[:, 2] - taps[:, 0]).astype(np.float64)  # along columns, per row step
    along_rows = (2.0 * down[1] + (down[0] + down[2])).astype(smooth.dtype)
    along_cols = (2.0 * across[1] + (across[0] + across[2])).astype(smooth.dtype)
    return float((np.hypot(along_rows, along_cols) / 8.0).mean())


def dynamic_range(image: np.ndarray) -> float:
    """The image's 99th minus 1st percentile (1.0 for a flat image): the measures' unit."""
    lo, hi = np.percentile(np.asarray(image), [1, 99])
    return float(hi - lo) if hi > lo else 1.0


def measure_parts(image: np.ndarray, geometry: LesionGeometry, scale: float | None = None) -> MeasureParts:
    """The measures of IMAGE's lesion described by GEOMETRY, with their levels.

    SCALE: the image's `dynamic_range` when the caller already knows it.
    """
    scale = dynamic_range(image) if scale is None else scale
    raw = np.asarray(image)[geometry.window].astype(np.float32) / scale
    smooth = smoothed_core(raw, geometry)
    echo = float(smooth[geometry.core_interior].std())
    inner = float(raw[geometry.inner].mean())
    outer = float(raw[geometry.outer].mean()) if geometry.outer.any() else None
    contrast = float(abs(outer - inner)) if outer is not None else 0.0
    edge = contour_gradient(smooth, geometry)
    sharpness = edge / max(contrast, MIN_CONTRAST)
    return MeasureParts(Measures(echo, contrast, sharpness), scale, inner, outer, edge)


def measure(image: np.ndarray, mask: np.ndarray) -> Measures | None:
    """The three measures of a grey image's lesion, or None when the mask is empty."""
    geometry = lesion_geometry(mask)
    return None if geometry is None else measure_parts(image, geometry).measures


def classify(measures: Measures, thresholds: Thresholds) -> tuple[str, str]:
    """(echogenicity, boundary) from measures and thresholds."""
    echo = "heterogeneous" if measures.echo_heterogeneity > thresholds.echo_heterogeneity else "homogeneous"
    clear = (
        measures.boundary_contrast >= thresholds.boundary_contrast
        and measures.boundary_sharpness >= thresholds.boundary_sharpness
    )
    return echo, "clear" if clear else "unclear"


def resized(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """ARRAY (uint8 or float32, HxW) resampled bilinearly to SIZE = (width, height), antialiased
    when it shrinks (PIL widens the filter)."""
    from PIL import Image

    return np.array(Image.fromarray(array).resize(size, Image.Resampling.BILINEAR))  # writable


def at_side(image: np.ndarray, mask: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """IMAGE and MASK resized so that their shorter side is SIDE (as they are when it already is):
    the measures are in pixels (the 1.5 px smoothing, the sharpness in 1/px), so an image is
    measured at the resolution its thresholds were fitted at."""
    height, width = mask.shape
    if min(height, width) == side:
        return image, mask
    scale = side / min(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # The mask as a grey level, resampled alike and cut at half: its edge stays where the image's is.
    lesion = resized(mask.astype(np.uint8) * 255, size) > 127
    if mask.any() and not lesion.any():
        # A lesion smaller than a pixel at SIDE keeps that pixel rather than vanishing from the count.
        rows, cols = np.nonzero(mask)
        lesion = lesion.copy()
        lesion[
            min(int(rows.mean() * size[1] / height), size[1] - 1),
            min(int(cols.mean() * size[0] / width), size[0] - 1),
        ] = True
    return resized(image, size), lesion


def choose_thresholds(measures: list[Measures]) -> Thresholds:
    """Per-dataset thresholds: echo at the median; boundary at a common quantile giving ~half clear."""
    if not measures:
        return Thresholds(0.0, 0.0, 0.0)
    echo = np.array([m.echo_heterogeneity for m in measures])
    contrast = np.array([m.boundary_contrast for m in measures])
    sharp = np.array([m.boundary_sharpness for m in measures])
    best_q, best_gap = 0.5, np.inf
    for q in np.linspace(0.0, 0.5, 51):  # q = 0.5 -> both above their medians (<= half clear)
        share = np.mean((contrast >= np.quantile(contrast, q)) & (sharp >= np.quantile(sharp, q)))
        if abs(share - 0.5) < best_gap - 1e-12:
            best_q, best_gap = float(q), abs(share - 0.5)
    return Thresholds(
        float(np.median(echo)), float(np.quantile(contrast, best_q)), float(np.quantile(sharp, best_q))
    )
