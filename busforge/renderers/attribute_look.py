"""Put a rendered lesion on its labels' side of a dataset's attribute thresholds.

The importer labels real lesions by measuring them (`busforge.dataset.attributes`); a rendered
lesion should read back as its prompt under the same measures and the thresholds of the dataset
its profile was fitted on. After image formation and the profile, the renderer measures its own
lesion with that code and corrects what reads wrong, on the lesion's neighbourhood only,
re-measuring after each correction (at most PASSES times).

A measure is moved only where it reads on the wrong side of its threshold, or within MIN_MARGIN
of it, and then to MIN_MARGIN beyond it; a lesion that already reads as its labels keeps the look
the profile gave it. (Aiming every lesion at its record's own measures moved lesions that read
right too, and cost 9 FID points against BUSI's test split; their per-label values sat no closer to
BUSI's, docs/procedural.md.)

- contrast (tissue level minus lesion level: BUSI's lesions are darker than the tissue around
  them): the lesion's level moves, for a clear margin by a step exactly at the mask's edge, for an
  unclear one through its soft membership; a lesion is darkened to DARKEST at most (its texture
  would clip away below), and the tissue just around it brightens for the rest;
- echogenicity: the lesion's interior texture (its deviation from its mean level) is scaled until
  `echo_heterogeneity` is at its target (at most MAX_TEXTURE_GAIN x; pixels that clip make a gain
  show less, which the next pass accounts for);
- clear margin: the edge is crispened (a high-pass of the mask: darker just inside, brighter just
  outside, nothing a ring width away, so contrast stays) until `boundary_sharpness` reaches its
  target;
- unclear margin that reads clear: its edge zone (within a ring width of the edge) is blurred once;
  if it still reads clear, its contrast target drops below the threshold.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from busforge.dataset.attributes import (
    MIN_CONTRAST,
    LesionGeometry,
    at_side,
    contour_gradient,
    dynamic_range,
    lesion_geometry,
    measure_parts,
    resized,
    smoothed_core,
)
from busforge.renderers.order_statistics import lerp

MIN_MARGIN = 1.06  # a measure that needs moving is moved this far beyond its threshold
TOLERANCE = 0.05  # relative distance from a target that is left alone ...
SAFE_MARGIN = 1.03  # ... when at least this far beyond the threshold on the label's side
MIN_SOFT_REACH = 0.3  # floor of the share of a soft shift that changes the contrast (no overshoot)
MAX_TEXTURE_GAIN = 3.0
DARKEST = 12.0  # grey level a lesion's edge band is darkened to at most (its texture survives)
PASSES = 5
CRISP_WIDTH = 0.5  # the crispening's blur, in ring widths (0 a ring width away from the edge)


def _box(weight: np.ndarray, window: tuple[slice, slice]) -> tuple[slice, slice]:
    """The bounding box of the window and of where the soft membership is non-zero."""
    reached = weight > 1e-3
    rows, cols = np.flatnonzero(reached.any(axis=1)), np.flatnonzero(reached.any(axis=0))
    if rows.size == 0:
        return window
    return (
        slice(min(rows[0], window[0].start), max(rows[-1] + 1, window[0].stop)),
        slice(min(cols[0], window[1].start), max(cols[-1] + 1, window[1].stop)),
    )


class _SubsampleRange:
    """`dynamic_range(image[::STEP, ::STEP])`, again and again while only `image[changing]` changes.

    The same value, cheaper: the percentiles need only a few order statistics, and the fixed
    pixels' candidates for them (their smallest and largest few) are found once; each call then
    ranks those with the changing pixels. Interpolated as numpy's default ('linear') percentile does.
    """

    STEP = 2
    LEVELS = (0.01, 0.99)  # dynamic_range's 1st and 99th percentiles

    def __init__(self, image: np.ndarray, changing: np.ndarray):
        self.image = image
        self.changing = changing[:: self.STEP, :: self.STEP]
        subsample = image[:: self.STEP, :: self.STEP]
        self.count = subsample.size
        virtual = (self.count - 1) * np.asarray(self.LEVELS)
        self.below = np.floor(virtual).astype(np.intp)  # the order statistics interpolated between
        self.gamma = virtual - self.below
        fixed = subsample[~self.changing]
        lowest = int(self.below[0]) + 2  # ranks 0 .. below[0] + 1
        highest = self.count - int(self.below[1])  # ranks below[1] .. count - 1
        self.candidates = None
        if self.below[1] + 1 < self.count and lowest + highest <= fixed.size:
            ranked = np.partition(fixed, [lowest - 1, fixed.size - highest])
            self.candidates = (ranked[:lowest], ranked[fixed.size - highest :])

    def __call__(self) -> float:
        subsample = self.image[:: self.STEP, :: self.STEP]
        if self.candidates is None:
            return dynamic_range(subsample)
        lowest, highest = self.candidates
        pool = np.concatenate([lowest, subsample[self.changing], highest])
        # A rank counted from the top is the same in the pool as in the whole subsample.
        ranks = np.concatenate([self.below[:1], self.below[1:] - (self.count - pool.size)])
        ranked = np.partition(pool, np.concatenate([ranks, ranks + 1]))
        lo, hi = lerp(ranked[ranks], ranked[ranks + 1], self.gamma)
        return float(hi - lo) if hi > lo else 1.0


def _box_blur(field: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian-like blur: three box filters each way, of the odd width whose three passes come
    nearest SIGMA (their std is sqrt((width^2 - 1) / 4): 1.41 for any SIGMA below 2, then within
    half a pixel of it; the crispening's amount is calibrated on the result, only its width follows).
    Their cost does not grow with the width, a Gaussian's does: it was a fifth of the correction's
    time on large lesions."""
    size = 2 * round((np.sqrt(4.0 * sigma**2 + 1.0) - 1.0) / 2.0) + 1  # odd: centred; 3 boxes of it: ~sigma
    out = field
    for axis in (0, 1):
        for _ in range(3):
            out = ndimage.uniform_filter1d(out, size, axis=axis, mode="nearest")
    return out


def _edge_gradient_of(field: np.ndarray, geometry: LesionGeometry) -> float:
    """Mean gradient magnitude on the contour after the measure's smoothing (as attributes.measure)."""
    return contour_gradient(smoothed_core(field, geometry), geometry)


def enforce_attributes_at_side(
    image: np.ndarray,
    weight: np.ndarray,
    mask: np.ndarray,
    geometry: LesionGeometry,
    side: int | None,
    echogenicity: str,
    boundary: str,
    thresholds: dict[str, float],
    record_contrast: float | None = None,
) -> np.ndarray:
    """`enforce_attributes` measured where the thresholds were fitted: at SIDE (their images' shorter
    side; None: as is), as `busforge evaluate` measures. The measures are in pixels (the smoothing,
    the sharpness in 1/px), so a 512² render measured as is reads other values than the same image
    at 256²: the loop then corrected what did not need it and missed what did. Off that side, the
    corrections are made on the image resized to SIDE, and what they changed is resized back and
    added (GEOMETRY: `lesion_geometry(MASK)`, used as is at SIDE)."""
    if side is None or min(mask.shape) == side:
        return enforce_attributes(
            image, weight, geometry, echogenicity, boundary, thresholds, record_contrast
        )
    small, small_mask = at_side(image, mask, side)
    small_geometry = lesion_geometry(small_mask)  # at_side keeps a lesion at least a pixel
    size = (small.shape[1], small.shape[0])
    before = small.copy()
    corrected = enforce_attributes(
        small, resized(weight, size), small_geometry, echogenicity, boundary, thresholds, record_contrast
    )
    image += resized(corrected - before, (image.shape[1], image.shape[0]))
    return np.clip(image, 0.0, 255.0, out=image)


def enforce_attributes(
    image: np.ndarray,
    weight: np.ndarray,
    geometry: LesionGeometry,
    echogenicity: str,
    boundary: str,
    thresholds: dict[str, float],
    record_contrast: float | None = None,
) -> np.ndarray:
    """Make the lesion read as its labels under a dataset's attribute thresholds (module docstring).

    Args:
        image: HxW float32 grey image (0..255), changed in place and returned.
        weight: HxW lesion membership 0..1 (soft at unclear margins).
        geometry: `lesion_geometry` of the HxW lesion mask the measures use.
        echogenicity, boundary: the sample's labels.
        thresholds: `echo_heterogeneity`, `boundary_contrast`, `boundary_sharpness` of the dataset.
        record_contrast: the drawn record's own `boundary_contrast`, or None. An unclear record
            above the contrast threshold is unclear by its sharpness: its contrast is left alone.
    """
    window = geometry.window
    box = _box(weight, window)
    # Window coordinates inside the box (the box contains the window).
    inner_window = (
        slice(window[0].start - box[0].start, window[0].stop - box[0].start),
        slice(window[1].start - box[1].start, window[1].stop - box[1].start),
    )
    region = image[box]
    soft = weight[box].astype(np.float32)
    inside = soft > 0.5
    # Tissue just around the lesion (moved when the lesion itself cannot move further).
    near = np.clip(3.0 - geometry.depth_out / geometry.ring, 0.0, 1.0)
    clear = boundary == "clear"
    crisp_gain = step_gain = 0.0
    if clear:
        # The lesion's level moves by a step at the mask's edge, and the tissue around it alike.
        shift_field = np.zeros(region.shape, np.float32)
        shift_field[inner_window] = geometry.lesion
        tissue_field = np.zeros(region.shape, np.float32)
        tissue_field[inner_window] = near * (~geometry.lesion)
        reach = 1.0
        # The crispening field: +1 just inside the edge fading to 0 a ring width away, -1 just outside.
        lesion = geometry.lesion.astype(np.float32)
        crispen = np.zeros(region.shape, np.float32)
        crispen[inner_window] = lesion - _box_blur(lesion, max(1.0, CRISP_WIDTH * geometry.ring))
        crisp_gain = _edge_gradient_of(crispen[inner_window], geometry)
        step_gain = _edge_gradient_of(lesion, geometry)  # the same for a unit step at the edge
    else:
        # An unclear lesion moves through its soft membership, the tissue around it outside that.
        shift_field = soft
        tissue_field = np.zeros(region.shape, np.float32)
        tissue_field[inner_window] = near
        tissue_field *= 1.0 - soft
        # How much of a soft-membership shift reaches the inner band rather than the outer one.
        soft_window = soft[inner_window]
        reach = float(soft_window[geometry.inner].mean()) - (
            float(soft_window[geometry.outer].mean()) if geometry.outer.any() else 0.0
        )
        reach = max(reach, MIN_SOFT_REACH)
        # The edge zone an unclear margin is blurred in (nothing of it reaches the contrast's bands).
        distance = np.where(geometry.lesion, geometry.depth_in, geometry.depth_out)
        edge_zone = np.clip(1.0 - distance / geometry.ring, 0.0, 1.0).astype(np.float32)

    # An unclear margin reads unclear by its contrast unless its record is unclear by sharpness.
    by_sharpness = (
        not clear and record_contrast is not None and record_contrast >= thresholds["boundary_contrast"]
    )
    sharp_wanted = MIN_MARGIN * thresholds["boundary_sharpness"]
    blurred = False
    last_echo = last_gain = None
    efficiency = 1.0  # how much of a texture gain shows in the measure (less where pixels clip)
    # The dynamic range (the measures' unit) from a regular subsample: 4x cheaper, close enough.
    # Only the window and the soft membership's pixels change (the image is already in 0..255).
    changing = np.zeros(image.shape, bool)
    changing[box] = soft != 0
    changing[window] = True
    subsample_range = _SubsampleRange(image, changing)
    for attempt in range(PASSES):
        parts = measure_parts(image, geometry, subsample_range())
        measures, scale = parts.measures, parts.scale
        changed = False
        reads_clear = (
            measures.boundary_contrast >= thresholds["boundary_contrast"] / MIN_MARGIN
            and measures.boundary_sharpness >= thresholds["boundary_sharpness"] / MIN_MARGIN
        )  # or nearly
        if boundary == "unclear" and reads_clear and (blurred or attempt >= PASSES - 2):
            # Blurring its edge was not enough (or no passes are left to try): the margin
            # becomes unclear by contrast.
            by_sharpness = False
        # Contrast, signed: lesions are darker than the tissue around them (all of BUSI's clear ones,
        # 97 % of its unclear ones), so the target is the tissue's level minus the lesion's.
        outer = parts.outer_level if parts.outer_level is not None else parts.inner_level
        contrast = outer - parts.inner_level
        high_contrast = clear or by_sharpness
        contrast_wanted = _contrast_target(
            contrast, thresholds["boundary_contrast"], high_contrast, record_contrast
        )
        darken = 0.0  # how much darker the lesion (or brighter its surroundings) gets, grey levels
        if _off(contrast, contrast_wanted, thresholds["boundary_contrast"], high_contrast):
            darken = (contrast_wanted - contrast) * scale
            changed = True
            # The lesion darkens down to DARKEST (below, its texture would clip away); the rest of
            # the contrast comes from brightening the tissue just around it.
            room = max(parts.inner_level * scale - DARKEST, 0.0)
            lesion_shift = darken / reach if darken < 0 else min(darken / reach, room)
            tissue_shift = (darken - lesion_shift * reach) / reach
            region -= shift_field * np.float32(lesion_shift)
            if tissue_shift > 0:
                region += tissue_field * np.float32(tissue_shift)
        np.clip(region, 0.0, 255.0, out=region)
        echo = measures.echo_heterogeneity
        if last_gain is not None and last_echo > 0 and abs(np.log(last_gain)) > 1e-3:
            efficiency = float(np.clip(np.log(max(echo, 1e-6) / last_echo) / np.log(last_gain), 0.5, 1.0))
        last_echo = last_gain = None
        above = echogenicity == "heterogeneous"
        echo_wanted = _beyond(echo, thresholds["echo_heterogeneity"], above)
        if _off(echo, echo_wanted, thresholds["echo_heterogeneity"], above) and inside.any():
            gain = (echo_wanted / max(echo, 1e-4)) ** (1.0 / efficiency)
            gain = float(np.clip(gain, 1.0 / MAX_TEXTURE_GAIN, MAX_TEXTURE_GAIN))
            level = float(region[inside].mean())
            region += soft * np.float32(gain - 1.0) * (region - np.float32(level))
            np.clip(region, 0.0, 255.0, out=region)  # what clips is lost
            last_echo, last_gain = echo, gain
            changed = True
        if clear:
            # A step of D at the edge adds about (its contour gradient) * D: expected edge gradient.
            edge = parts.edge_gradient + step_gain * darken / scale
            wanted_edge = sharp_wanted * max(contrast + darken / scale, MIN_CONTRAST)
            deficit = wanted_edge - edge
            # Within the tolerance of its target already: left (tiny crispenings kept the loop going).
            if deficit > TOLERANCE * wanted_edge and crisp_gain > 0:
                region -= crispen * np.float32(deficit / crisp_gain * scale)
                changed = True
        elif reads_clear and not blurred:  # an unclear margin that reads clear: blur its edge
            local = region[inner_window]
            local += edge_zone * (ndimage.gaussian_filter(local, max(1.0, geometry.ring / 2)) - local)
            blurred = changed = True
        np.clip(region, 0.0, 255.0, out=region)
        if not changed:
            break
    return image


def _beyond(value: float, threshold: float, above: bool) -> float:
    """The target of a measure whose label is ABOVE (or below) THRESHOLD: VALUE itself where it is
    at least MIN_MARGIN beyond the threshold on that side, else that margin."""
    return max(value, MIN_MARGIN * threshold) if above else min(value, threshold / MIN_MARGIN)


def _contrast_target(contrast: float, threshold: float, high_contrast: bool, record: float | None) -> float:
    """The signed contrast (tissue minus lesion) to aim at. A HIGH_CONTRAST lesion (a clear margin,
    or an unclear one unclear by its sharpness) is held beyond the threshold
    (`_beyond`); one unclear by contrast below it, and no brighter than the tissue around it unless
    its record's lesion was (BUSI's lesions are darker than their surroundings: all clear ones, 97 %
    of unclear ones). Either way a lesion the profile made brighter than its surroundings is darkened."""
    if high_contrast:
        return _beyond(contrast, threshold, above=True)
    floor = min(record, 0.0) if record is not None else 0.0
    return max(_beyond(contrast, threshold, above=False), floor)


def _off(value: float, wanted: float, threshold: float, above: bool) -> bool:
    """Whether VALUE needs moving: off its target by more than TOLERANCE, or, when the target is on
    the label's side of the threshold, too near the threshold. (An unclear margin's contrast may lie
    above the contrast threshold, the margin being unclear by its sharpness: that contrast is its own
    target, and is left alone.)"""
    if above:
        near = wanted > threshold and value < SAFE_MARGIN * threshold
    else:
        near = wanted < threshold and value > threshold / SAFE_MARGIN
    return near or abs(value - wanted) > TOLERANCE * wanted
