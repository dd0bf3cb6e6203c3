"""B-mode image formation: speckle from scatterers and a PSF, attenuation with TGC, log compression.

The model is the usual complex-baseband one: complex Gaussian scatterers, weighted by
a tissue reflectivity map, are convolved with a separable Gaussian point-spread function
(short axially, long laterally, so speckle grains are laterally elongated); the envelope
is the magnitude of the result (Rayleigh statistics in homogeneous tissue). Depth gain
(time-gain compensation minus cumulative attenuation) is added in decibels, then the
image is log-compressed into a fixed dynamic range.

Speckle is formed on a grid with half the lateral resolution of the output: the lateral
PSF is several pixels wide, so nothing visible is lost, and the work halves.
"""

from functools import lru_cache

import numpy as np
from scipy import ndimage


@lru_cache(maxsize=32)
def gaussian_kernel(sigma_px: float) -> np.ndarray:
    """Sampled Gaussian with unit energy, so that unit-variance scatterers keep unit variance."""
    radius = max(1, int(np.ceil(3.0 * sigma_px)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_px) ** 2)
    taps /= np.sqrt(np.sum(taps**2))
    return taps.astype(np.float32)


def speckle_envelope(
    reflectivity: np.ndarray, rng: np.random.Generator, axial_sigma_px: float, lateral_sigma_px: float
) -> np.ndarray:
    """Envelope of the echo from random scatterers weighted by `reflectivity`.

    Args:
        reflectivity: scatterer amplitude per grid cell (rows = depth), float32.
        rng: source of the scatterer phases and amplitudes.
        axial_sigma_px: PSF standard deviation along depth, in grid cells.
        lateral_sigma_px: PSF standard deviation across the beam, in grid cells.

    Returns:
        Envelope with the shape of `reflectivity`; mean about 1.25 * reflectivity where
        reflectivity varies slowly (Rayleigh mean for unit-variance components).
    """
    iq = rng.standard_normal((2, *reflectivity.shape), dtype=np.float32)
    iq *= reflectivity
    # In place is safe: ndimage filters each line through its own buffer.
    ndimage.correlate1d(iq, gaussian_kernel(axial_sigma_px), axis=1, output=iq, mode="reflect")
    ndimage.correlate1d(iq, gaussian_kernel(lateral_sigma_px), axis=2, output=iq, mode="reflect")
    return np.hypot(iq[0], iq[1])


def reduce_speckle(envelope: np.ndarray) -> np.ndarray:
    """Light [1, 2, 1] / 4 smoothing along both axes, as scanners' speckle-reduction filters do.

    It softens the deep Rayleigh nulls that log compression would show as black pits.
    """
    out = envelope * np.float32(0.5)
    out[1:] += np.float32(0.25) * envelope[:-1]
    out[:-1] += np.float32(0.25) * envelope[1:]
    out[0] += np.float32(0.25) * envelope[0]
    out[-1] += np.float32(0.25) * envelope[-1]
    smoothed = out * np.float32(0.5)
    smoothed[:, 1:] += np.float32(0.25) * out[:, :-1]
    smoothed[:, :-1] += np.float32(0.25) * out[:, 1:]
    smoothed[:, 0] += np.float32(0.25) * out[:, 0]
    smoothed[:, -1] += np.float32(0.25) * out[:, -1]
    return smoothed


def depth_gain_db(
    height: int,
    attenuation_db: float,
    tgc_compensation: float,
    extra_attenuation_per_row: np.ndarray | None = None,
) -> np.ndarray:
    """Round-trip gain in dB per row (and per column where extra attenuation is given).

    Args:
        height: number of rows (depth samples).
        attenuation_db: round-trip attenuation of background tissue over the full depth.
        tgc_compensation: share of that attenuation the TGC curve gives back (0..1);
            below 1 the deep region stays darker, as on real scanners.
        extra_attenuation_per_row: optional (height x width) attenuation in dB added by
            each row on top of background (negative inside fluid, positive inside
            shadowing tissue); it accumulates with depth, which is what produces
            posterior enhancement and shadowing.

    Returns:
        (height x 1) or (height x width) float32 gain in dB.
    """
    depth = (np.arange(height, dtype=np.float32) + 0.5) / height
    gain = (-(1.0 - tgc_compensation) * attenuation_db * depth)[:, None]
    if extra_attenuation_per_row is None:
        return gain
    # Only the columns the extra attenuation reaches accumulate any (elsewhere it adds exactly 0).
    out = np.repeat(gain, extra_attenuation_per_row.shape[1], axis=1)
    cols = np.flatnonzero(extra_attenuation_per_row.any(axis=0))
    if cols.size:
        band = slice(cols[0], cols[-1] + 1)
        out[:, band] -= np.cumsum(extra_attenuation_per_row[:, band], axis=0, dtype=np.float32)
    return out


def log_compress(
    envelope: np.ndarray, gain_db: np.ndarray, dynamic_range_db: float, white_db: float, clip: bool = True
) -> np.ndarray:
    """Map an envelope to display grey levels in [0, 255] (float32) by log compression.

    Args:
        envelope: echo envelope (linear).
        gain_db: gain added after detection (broadcastable to `envelope`).
        dynamic_range_db: span of decibels shown between black and white.
        white_db: level shown as white.
        clip: clip to [0, 255]; without, levels below black keep their speckle for a later
            grey-level map (an appearance profile) to bring into view.
    """
    level_db = 20.0 * np.log10(envelope + np.float32(1e-6))
    level_db += gain_db
    grey = (level_db - (white_db - dynamic_range_db)) * np.float32(255.0 / dynamic_range_db)
    return np.clip(grey, 0.0, 255.0, out=grey) if clip else grey


def upsample_lateral(image: np.ndarray, width: int) -> np.ndarray:
    """Double the number of columns by linear interpolation, cropped to `width`."""
    height, half = image.shape
    out = np.empty((height, 2 * half), dtype=image.dtype)
    out[:, 0::2] = image
    out[:, 1:-1:2] = image[:, :-1]
    out[:, 1:-1:2] += image[:, 1:]
    out[:, 1:-1:2] *= 0.5
    out[:, -1] = image[:, -1]
    return out[:, :width]
