"""Lesion shape parameters and mask drawing (paper Eq. 6-7).

A lesion is an ellipse (semi-axes a, b, rotation, centre) elastically deformed with
`elasticdeform`: random displacements on a coarse grid, interpolated to every pixel.
Only the lesion's neighbourhood is deformed, with the grid laid over that crop, so the
deformation scales with the lesion (the shape statistics do not depend on its size or
position) and a mask costs a small fraction of a full-frame deformation.
"""

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from busforge.errors import BadInput
from busforge.shapes.stats import largest_component

GRID_POINTS = 7  # control points per axis of the displacement grid over the lesion crop
MARGIN_FACTOR = 1.25  # crop margin / largest grid displacement (spline overshoot)
FINE_POINTS = 13  # control points per axis of the finer roughness grid
FINE_STRENGTH = 1.0  # roughness displacement / lobe displacement
ROUGHNESS = 0.3  # edge jitter on the deformation lattice (< 0.5, soft-mask units)
WORK_RES = 96  # most lattice samples a side where the deformation is computed
MAX_ATTEMPTS = 12  # rescale attempts to bring the lesion size into range
# Everything above that changes which mask a (params, seed) gives: calibrated priors
# record it, so their simulated sigma table is recomputed when it changes.
SHAPE_MODEL = (
    f"ellipse-elastic-v1:grid{GRID_POINTS}:fine{FINE_POINTS}x{FINE_STRENGTH}:rough{ROUGHNESS}"
    f":lattice{WORK_RES}:margin{MARGIN_FACTOR}"
)


@dataclass(frozen=True)
class ShapeParams:
    """Generating parameters of one lesion mask, in pixels of the square render.

    Attributes:
        a: horizontal semi-axis before rotation.
        b: vertical semi-axis before rotation.
        angle: rotation in degrees (counter-clockwise on screen).
        cx: centre column.
        cy: centre row.
        sigma: std of the elastic displacement grid, in pixels.
    """

    a: float
    b: float
    angle: float
    cx: float
    cy: float
    sigma: float

    def as_row(self) -> dict[str, float]:
        """The parameters as the dataset's `shape` struct column."""
        return {key: float(value) for key, value in asdict(self).items()}


def half_extents(a: float, b: float, angle: float) -> tuple[float, float]:
    """Half width and half height of the bounding box of a rotated ellipse."""
    theta = math.radians(angle)
    cos, sin = math.cos(theta), math.sin(theta)
    return math.hypot(a * cos, b * sin), math.hypot(a * sin, b * cos)


def lesion_size(mask: np.ndarray) -> float:
    """Longest side of the lesion's bounding box / image width (clinical 'largest diameter')."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return 0.0
    longest = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    return float(longest) / mask.shape[1]


def _interpolate_rows(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of `values` along axis 0 at fractional row positions.

    Element-wise on purpose: a BLAS product would be as short but stalls on busy machines.
    """
    if values.shape[0] == 1:
        return np.repeat(values, positions.size, axis=0)
    top = np.clip(positions.astype(np.int64), 0, values.shape[0] - 2)
    weight = (positions - top).astype(np.float32)[:, None]
    return values[top] * (1.0 - weight) + values[top + 1] * weight


def _soft_ellipse(xs: np.ndarray, ys: np.ndarray, params: ShapeParams, ramp: float) -> np.ndarray:
    """Ellipse sampled at (ys x xs) with an anti-aliased edge `ramp` pixels wide."""
    theta = math.radians(params.angle)
    cos, sin = np.float32(math.cos(theta)), np.float32(math.sin(theta))
    # Rotate screen coordinates into the ellipse frame (rows grow downwards).
    u = xs[None, :] * cos - ys[:, None] * sin
    v = xs[None, :] * sin + ys[:, None] * cos
    ua = u / np.float32(params.a**2)
    vb = v / np.float32(params.b**2)
    radius = np.sqrt(u * ua + v * vb)
    # First-order distance to the edge: (r - 1) / |grad r|.
    gradient = np.sqrt(ua * ua + vb * vb) / np.maximum(radius, np.float32(1e-6))
    distance = (radius - 1.0) / np.maximum(gradient, np.float32(1e-6))
    return np.clip(0.5 - distance / np.float32(ramp), 0.0, 1.0)


def _deformed_crop(params: ShapeParams, grid: np.ndarray, seed: int) -> tuple[np.ndarray, int, int]:
    """The deformed lesion in a crop around it.

    The crop holds the ellipse plus the largest displacement of the grid, so nothing
    can be pushed out of it. Large crops are deformed on a coarser lattice of at most
    WORK_RES samples a side (the displacement field is smooth at that scale) and
    interpolated back to pixels before thresholding, so the cost hardly grows with
    the lesion.

    Returns:
        The boolean crop and the (row, col) of the crop pixel that sits on the
        integer part of the centre (may lie outside the crop).
    """
    import elasticdeform

    hx, hy = half_extents(params.a, params.b, params.angle)
    reach = np.abs(grid).reshape(2, -1).max(axis=1) * params.sigma * MARGIN_FACTOR
    half_h = math.ceil(hy + reach[0] + 2.0)
    half_w = math.ceil(hx + reach[1] + 2.0)
    full_w, full_h = 2 * half_w + 1, 2 * half_h + 1
    stride = max(1.0, max(full_w, full_h) / WORK_RES)
    low_w = min(full_w, math.ceil((full_w - 1) / stride) + 1)
    low_h = min(full_h, math.ceil((full_h - 1) / stride) + 1)
    step_x = (full_w - 1) / (low_w - 1)
    step_y = (full_h - 1) / (low_h - 1)
    # Sample coordinates relative to the exact (sub-pixel) centre.
    frac_x = np.float32(params.cx - math.floor(params.cx))
    frac_y = np.float32(params.cy - math.floor(params.cy))
    xs = np.arange(low_w, dtype=np.float32) * np.float32(step_x) - np.float32(half_w) - frac_x
    ys = np.arange(low_h, dtype=np.float32) * np.float32(step_y) - np.float32(half_h) - frac_y
    soft = _soft_ellipse(xs, ys, params, ramp=max(step_x, step_y))
    if params.sigma > 0:
        scale = np.array([params.sigma / step_y, params.sigma / step_x], dtype=np.float32)
        soft = elasticdeform.deform_grid(
            soft, grid * scale[:, None, None], order=1, mode="constant", cval=0.0, prefilter=False
        )
    if ROUGHNESS > 0:
        # Lattice-scale edge jitter: traced outlines are rougher than any smooth
        # deformation. Bounded below 0.5, so it can only move the edge, never punch
        # holes or islands.
        jitter = np.random.default_rng((seed, 1)).uniform(-ROUGHNESS, ROUGHNESS, soft.shape)
        soft = soft + jitter.astype(np.float32)
    if low_w == full_w and low_h == full_h:
        return soft >= 0.5, half_h, half_w
    # Interpolate back only around the lesion: a pixel can reach 0.5 only next to a
    # lattice sample that does.
    inside = soft >= 0.5
    rows = np.flatnonzero(inside.any(axis=1))
    cols = np.flatnonzero(inside.any(axis=0))
    if rows.size == 0:
        return np.zeros((1, 1), dtype=bool), half_h, half_w
    row0, row1 = max(rows[0] - 1, 0), min(rows[-1] + 1, low_h - 1)
    col0, col1 = max(cols[0] - 1, 0), min(cols[-1] + 1, low_w - 1)
    pix_row0 = math.ceil(row0 * step_y)
    pix_col0 = math.ceil(col0 * step_x)
    pix_rows = np.arange(pix_row0, math.floor(row1 * step_y) + 1, dtype=np.float32) / np.float32(step_y)
    pix_cols = np.arange(pix_col0, math.floor(col1 * step_x) + 1, dtype=np.float32) / np.float32(step_x)
    window = soft[row0 : row1 + 1, col0 : col1 + 1]
    upsampled = _interpolate_rows(window, pix_rows - row0)
    upsampled = _interpolate_rows(upsampled.T, pix_cols - col0).T
    return upsampled >= 0.5, half_h - pix_row0, half_w - pix_col0


def displacement_grid(seed: int) -> np.ndarray:
    """Unit displacement grid of a seed: smooth lobes plus finer boundary roughness.

    The coarse GRID_POINTS grid is refined to FINE_POINTS by linear interpolation and
    a finer random grid of relative strength FINE_STRENGTH is added, because real
    lesion outlines are rougher (lower circularity) than smooth lobes of the same
    solidity.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((2, GRID_POINTS, GRID_POINTS))
    fine = rng.standard_normal((2, FINE_POINTS, FINE_POINTS))
    positions = np.linspace(0, GRID_POINTS - 1, FINE_POINTS)
    refine = np.stack(
        [np.interp(positions, np.arange(GRID_POINTS), np.eye(GRID_POINTS)[i]) for i in range(GRID_POINTS)],
        axis=1,
    )  # (FINE_POINTS, GRID_POINTS) linear interpolation weights
    smooth = np.einsum("fi,aij,gj->afg", refine, coarse, refine)
    return (smooth + FINE_STRENGTH * fine).astype(np.float32)


def _pixel_range(size_range: tuple[float, float], image_size: int) -> tuple[int, int]:
    """Longest lesion sides in pixels that satisfy the size range and leave a free border."""
    low, high = size_range
    low_px = max(math.ceil(low * image_size - 1e-9), 1)
    high_px = math.floor(min(high * image_size, image_size - 2) + 1e-9)
    if not 0 < low <= high or low_px > high_px:
        raise BadInput(
            f"size_range: {list(size_range)}: no lesion size fits at image_size {image_size}; "
            f"give 0 < low <= high with at least one whole pixel in between "
            f"(step {1 / image_size:.4f}) and low below {(image_size - 2) / image_size:.3f}"
        )
    return low_px, high_px


def draw_mask(
    params: ShapeParams, image_size: int, seed: int, size_range: tuple[float, float]
) -> tuple[np.ndarray, ShapeParams]:
    """Draw one lesion mask.

    Deterministic from the arguments. The mask holds exactly one 8-connected component
    without holes, touches no border row or column, and its `lesion_size` lies in
    `size_range`. When the deformation breaks a guarantee, the lesion is rescaled (a, b
    and sigma together, same displacement grid) or shifted, and the parameters finally
    used are returned: drawing again with them gives the same mask.

    Args:
        params: requested shape.
        image_size: side of the square mask in pixels.
        seed: seed of the displacement grid.
        size_range: inclusive bounds of `lesion_size`.

    Returns:
        The (image_size, image_size) boolean mask and the parameters used.
    """
    low_px, high_px = _pixel_range(size_range, image_size)
    inset = min(0.25 * (high_px - low_px), 2.0)
    if params.a <= 0 or params.b <= 0 or params.sigma < 0:
        raise BadInput(f"shape: {params}: a and b must be > 0 and sigma >= 0")
    grid = displacement_grid(seed)
    for _ in range(MAX_ATTEMPTS):
        crop, centre_row, centre_col = _deformed_crop(params, grid, seed)
        lesion = largest_component(crop)
        rows = np.flatnonzero(lesion.any(axis=1))
        cols = np.flatnonzero(lesion.any(axis=0))
        longest = 0 if rows.size == 0 else max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
        if low_px <= longest <= high_px:
            return _place(lesion, rows, cols, centre_row, centre_col, params, image_size)
        scale = 2.0 if longest == 0 else min(max(longest, low_px + inset), high_px - inset) / longest
        params = replace(params, a=params.a * scale, b=params.b * scale, sigma=params.sigma * scale)
    raise BadInput(
        f"size_range: {size_range}: could not draw a lesion of that size from {params} "
        f"in {MAX_ATTEMPTS} attempts; widen the size range"
    )


def _place(
    lesion: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    centre_row: int,
    centre_col: int,
    params: ShapeParams,
    image_size: int,
) -> tuple[np.ndarray, ShapeParams]:
    """Paste the crop at the centre, shifted by whole pixels to keep it off the border."""
    top = math.floor(params.cy) - centre_row + rows[0]
    left = math.floor(params.cx) - centre_col + cols[0]
    height = rows[-1] - rows[0] + 1
    width = cols[-1] - cols[0] + 1
    shift_y = min(max(top, 1), image_size - 1 - height) - top
    shift_x = min(max(left, 1), image_size - 1 - width) - left
    top += shift_y
    left += shift_x
    mask = np.zeros((image_size, image_size), dtype=bool)
    mask[top : top + height, left : left + width] = lesion[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    used = replace(params, cx=params.cx + shift_x, cy=params.cy + shift_y)
    return mask, used
