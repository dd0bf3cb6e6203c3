"""Procedural B-mode renderer: the built-in default (CPU, offline, no weights).

A sample is drawn in two steps. First an anatomy of the breast as seen by a linear
probe is laid out as a scatterer reflectivity map: skin, subcutaneous fat with
lobules and Cooper's ligaments, fibroglandular tissue with fibrous strands,
retromammary fat and pectoral muscle with its striations, separated by gently curved
interfaces. The lesion is drawn into it from its mask (so many dB darker than the tissue
around it; homogeneous or heterogeneous interior; sharp or blurred and angular margin)
together with its attenuation (fluid lets more sound through: posterior enhancement; dense
malignant tissue absorbs it: shadowing), taken at its far wall. Then `bmode` turns the map
into an image: speckle, envelope, depth gain and log compression; part of the lesion's
contrast is applied after the envelope, so that a clear margin is as crisp as the display.
The lesion's ranges per label (CONTRAST_DB, CRISP_SHARE, TEXTURE, UNCLEAR_*) are tuned so
that the importer's measures read the labels back with BUSI's thresholds (docs/procedural.md).

Everything random comes from `np.random.default_rng([seed, 2])`; stream 2 of the
sample seed is reserved for the renderer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

from busforge.dataset.attributes import lesion_geometry, tissue_beyond_ring
from busforge.errors import BadInput
from busforge.executors.render_process import renders_as_busforge
from busforge.renderers.attribute_look import enforce_attributes_at_side
from busforge.renderers.base import BaseRenderer, parse_renderer_options
from busforge.renderers.bmode import (
    accumulated_attenuation,
    depth_gain_db,
    log_compress,
    reduce_speckle,
    speckle_envelope,
    upsample_lateral,
)
from busforge.renderers.profile import SHIPPED_PROFILES, Profile, apply_profile, load_profile
from busforge.vocab import BOUNDARIES, ECHOGENICITIES, PATHOLOGIES

if TYPE_CHECKING:
    from busforge.renderers.base import RenderItem

ALGORITHM_VERSION = "bmode-5"
RENDERER_STREAM = 2
POSTERIOR_FADE = 2.0  # profiled posterior effect fades over this many lesion heights below it
PROFILE_STREAM = 1  # [seed, RENDERER_STREAM, PROFILE_STREAM]: the profile record drawn per image


class ProceduralOptions(BaseModel):
    """What a recipe may set under `renderer:` when `backend: procedural`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    speckle_scale: Annotated[float, Field(ge=0.5, le=2.0, strict=True)] = 1.0  # PSF size multiplier
    # Lateral size of the tissue textures (2.0: bmode-4's; docs/procedural.md, "Texture scale").
    texture_scale: Annotated[float, Field(ge=0.5, le=2.0, strict=True)] = 1.0
    dynamic_range_db: Annotated[float, Field(ge=30.0, le=80.0, strict=True)] = 60.0
    # Appearance profile (busforge.renderers.profile): a shipped name or a JSON path; None: today's look.
    profile: Annotated[str, Field(min_length=1, strict=True)] | None = None


OPTION_DEFAULTS: dict[str, Any] = {n: f.default for n, f in ProceduralOptions.model_fields.items()}


def _describe(path: list[str], error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(ProceduralOptions.model_fields))
        return f"unknown option for the procedural renderer; allowed: {allowed}"
    if path[0] == "profile":
        return f"got {error.get('input')!r}; use busi, busbra or a path to a profile JSON"
    bounds = {type(m).__name__: m for m in ProceduralOptions.model_fields[path[0]].metadata}
    low, high = bounds["Ge"].ge, bounds["Le"].le
    return f"got {error.get('input')!r}; use a number from {low:g} to {high:g}"


# PSF at 512 px depth, in output pixels (about 0.3 mm axially, 0.8 mm laterally on a 4 cm view).
AXIAL_SIGMA_PX_AT_512 = 1.0
LATERAL_SIGMA_PX_AT_512 = 3.0
# Grey level of unit-reflectivity tissue, as a share of the dynamic range.
TISSUE_LEVEL = 0.58


# --------------------------------------------------------------------------- smooth noise


@lru_cache(maxsize=64)
def _resampling_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out x n_in) Gaussian-weighted resampling, centre-aligned; rows sum to 1."""
    position = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    weights = np.exp(-0.5 * ((position[:, None] - np.arange(n_in)[None, :]) / 0.6) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights.astype(np.float32)


@lru_cache(maxsize=64)
def _resampling_moments(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """The resampling matrix's column means and Gram matrix (float64): what a field's mean and
    std need (`_SmoothField`)."""
    weights = _resampling_matrix(n_out, n_in).astype(np.float64)
    return weights.mean(axis=0), weights.T @ weights


def _upsample_where(coarse: np.ndarray, shape: tuple[int, int], where: np.ndarray) -> np.ndarray:
    """COARSE resampled to SHAPE (`_resampling_matrix` both ways) near WHERE's cells only, zero
    elsewhere: beyond the resampling's reach (3 cells = 5 of its sigmas) the rest contributes under
    1e-5 of a cell's value."""
    out = np.zeros(shape, np.float32)
    box = _support(where)
    if box is None:
        return out
    box = tuple(
        slice(max(b.start - 3, 0), min(b.stop + 3, n)) for b, n in zip(box, coarse.shape, strict=True)
    )
    rows = _resampling_matrix(shape[0], coarse.shape[0])[:, box[0]]
    cols = _resampling_matrix(shape[1], coarse.shape[1])[:, box[1]]
    fine = tuple(_span(matrix.max(axis=1) > 1e-5) for matrix in (rows, cols))
    out[fine] = rows[fine[0]] @ coarse[box].astype(np.float32) @ cols[fine[1]].T
    return out


def _span(where: np.ndarray) -> slice:
    """From the first to the last true entry of a 1-D WHERE."""
    index = np.flatnonzero(where)
    return slice(index[0], index[-1] + 1)


class _SmoothField:
    """A zero-mean, unit-std smooth random field on `shape` with `cells` independent cells, drawn
    now and evaluated later on the rows and columns that are needed.

    Its mean and std over the whole field come from the coarse cells and the resampling matrices
    (mean = r'Ck, mean square = sum(C * (R'R C K'K)) / HW), so a block is normalised exactly as
    the whole field would be, without computing the rest of it.
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]):
        self.coarse = rng.standard_normal(cells, dtype=np.float32)
        self.row_weights = _resampling_matrix(shape[0], cells[0])
        self.col_weights = _resampling_matrix(shape[1], cells[1])
        (row_mean, row_gram), (col_mean, col_gram) = (
            _resampling_moments(shape[0], cells[0]),
            _resampling_moments(shape[1], cells[1]),
        )
        coarse = self.coarse.astype(np.float64)
        mean = row_mean @ coarse @ col_mean
        mean_square = np.sum(coarse * (row_gram @ coarse @ col_gram)) / (shape[0] * shape[1])
        self.mean = np.float32(mean)
        self.scale = np.float32(1.0 / (np.sqrt(max(mean_square - mean**2, 0.0)) + 1e-6))

    def rows(self, band: slice, columns: slice = slice(None)) -> np.ndarray:
        field = self.row_weights[band] @ self.coarse @ self.col_weights[columns].T
        field -= self.mean
        field *= self.scale
        return field


def _ridges(field: np.ndarray, width: float) -> np.ndarray:
    """Thin curved lines along the zero crossings of a smooth field (fibres, septa, fascicles)."""
    return np.exp(-np.square(field * (1.0 / width)))


def _interface(rng: np.random.Generator, width: int, depth: float, waviness: float) -> np.ndarray:
    """A gently curved tissue interface: normalised depth per column (1 x width)."""
    u = np.linspace(0.0, 1.0, width, dtype=np.float32)
    curve = np.full(width, depth, dtype=np.float32)
    for harmonic in (1, 2, 3):
        amplitude = waviness * rng.uniform(0.3, 1.0) / harmonic
        curve += amplitude * np.sin(2 * np.pi * (harmonic * 0.6 * u + rng.uniform()))
    return curve[None, :]


def _below(depth: np.ndarray, interface: np.ndarray, softness: float) -> np.ndarray:
    """Soft indicator of being below an interface (0 above, 1 below)."""
    # Rows more than two softnesses clear of the interface are exactly 0 or 1: the ramp is only
    # computed on the rows it crosses.
    rows = depth[:, 0]
    start = int(np.searchsorted(rows, float(interface.min()) - 2 * softness))
    stop = int(np.searchsorted(rows, float(interface.max()) + 2 * softness, side="right"))
    out = np.empty((rows.size, interface.shape[1]), np.float32)
    out[:start] = 0.0
    out[stop:] = 1.0
    out[start:stop] = np.clip((depth[start:stop] - interface) * (1.0 / softness) + 0.5, 0.0, 1.0)
    return out


# --------------------------------------------------------------------------- anatomy


def _tissue_reflectivity(
    rng: np.random.Generator, shape: tuple[int, int], texture_scale: float
) -> np.ndarray:
    """Scatterer reflectivity of the breast without lesion, on the speckle grid; TEXTURE_SCALE
    multiplies the textures' lateral cell width."""
    height, width = shape

    def across(cells_per_width: int) -> int:
        """Cells across the width: WIDTH // CELLS_PER_WIDTH at texture_scale 1."""
        return max(3, int(width / (cells_per_width * texture_scale)))

    depth = ((np.arange(height, dtype=np.float32) + 0.5) / height)[:, None]
    soft = 2.0 / height

    skin_top = rng.uniform(0.0, 0.012)
    skin_bottom = skin_top + rng.uniform(0.02, 0.04)
    fat_bottom = skin_bottom + rng.uniform(0.08, 0.25)
    gland_bottom = min(fat_bottom + rng.uniform(0.25, 0.45), 0.86)
    muscle_top = gland_bottom + rng.uniform(0.02, 0.05)

    skin = _interface(rng, width, skin_top, 0.002)
    dermis = _interface(rng, width, skin_bottom, 0.004) + (skin - skin_top)
    fat = _interface(rng, width, fat_bottom, 0.03)
    gland = _interface(rng, width, gland_bottom, 0.03)
    muscle = gland + (muscle_top - gland_bottom) + _interface(rng, width, 0.0, 0.008)

    # Textures: laterally elongated smooth fields (log-normal echo levels), and thin
    # bright lines along zero crossings (septa, fibrous strands, muscle fascicles). Their cells
    # across are half as wide as in bmode-4: the coarser textures were the largest gap to real
    # images by FID (docs/procedural.md, "Texture scale").
    lobules = _SmoothField(rng, shape, (max(4, height // 34), across(15)))
    bands = _SmoothField(rng, shape, (max(4, height // 16), across(20)))
    islands = _SmoothField(rng, shape, (max(4, height // 24), across(12)))
    strands = _SmoothField(rng, shape, (max(4, height // 7), across(14)))
    fibres = _SmoothField(rng, shape, (max(4, height // 10), across(24)))

    fat_level = rng.uniform(0.22, 0.35)
    gland_level = rng.uniform(0.8, 1.1)
    muscle_level = rng.uniform(0.35, 0.5)

    def fat_map(band: slice) -> np.ndarray:
        field = lobules.rows(band)
        return fat_level * np.exp(0.5 * field) + 0.8 * _ridges(field, 0.12)

    def gland_map(band: slice) -> np.ndarray:
        fatty_islands = np.clip(islands.rows(band) * -1.5 - 0.9, 0.0, 1.0)  # fat lobules inside the gland
        return gland_level * np.exp(bands.rows(band)) * (1.0 - 0.6 * fatty_islands) + 2.0 * _ridges(
            strands.rows(band), 0.22
        )

    def muscle_map(band: slice) -> np.ndarray:
        field = fibres.rows(band)
        return muscle_level * np.exp(0.35 * field) + 0.5 * _ridges(field, 0.2)

    reflectivity = np.full(shape, 0.03, dtype=np.float32)  # coupling gel above the skin
    layers = [
        (lambda band: np.float32(3.5), skin),
        (fat_map, dermis),
        (gland_map, fat),
        (lambda band: np.float32(0.3), gland),
        (muscle_map, muscle),
    ]
    rows = depth[:, 0]
    for index, (level_map, interface) in enumerate(layers):
        # A layer shows from where its interface's ramp starts down to where the next layer covers
        # every column: its texture is computed on those rows only.
        start = int(np.searchsorted(rows, float(interface.min()) - soft))
        below_next = layers[index + 1][1] if index + 1 < len(layers) else None
        stop = height if below_next is None else int(np.searchsorted(rows, float(below_next.max()) + soft))
        if stop <= start:
            continue
        band = slice(start, stop)
        weight = _below(depth[band], interface, soft)
        reflectivity[band] += weight * (level_map(band) - reflectivity[band])
    # Bright fascia line on top of the muscle: exactly 0 in float32 beyond 10.2 line widths, so
    # only the rows within 12 of them are computed.
    reach = 12 * 2.5 / height
    line = slice(
        int(np.searchsorted(depth[:, 0], float(muscle.min()) - reach)),
        int(np.searchsorted(depth[:, 0], float(muscle.max()) + reach, side="right")),
    )
    reflectivity[line] += 1.4 * np.exp(-np.square((depth[line] - muscle) * (height / 2.5)))
    return reflectivity


@dataclass(frozen=True)
class _LesionLook:
    box: tuple[slice, slice]  # where the membership is not 0 (speckle grid)
    interior: np.ndarray  # reflectivity inside the lesion, on the box
    weight: np.ndarray  # 0 outside .. 1 inside (speckle grid), soft for unclear margins
    step_db: float  # share of the lesion's contrast drawn after the envelope, through `weight`
    attenuation_factor: float  # lesion attenuation relative to background tissue


# Lesion look per label, tuned so that the importer's measures (dataset/attributes.py) read each
# label back with BUSI's thresholds and spread as BUSI's lesions do (docs/procedural.md).
# Contrast: dB below the tissue around the lesion.
CONTRAST_DB = {
    ("benign", "clear"): (11.0, 24.0),
    ("malignant", "clear"): (13.0, 24.0),  # the shadow below darkens its outer band
    ("benign", "unclear"): (4.0, 12.0),
    ("malignant", "unclear"): (6.0, 15.0),
}
# Share of the contrast drawn as a step through the membership after the envelope rather than
# through the scatterers (where the PSF blurs it): a clear margin is as crisp as the display.
CRISP_SHARE = {"clear": (0.2, 0.8), "unclear": (0.0, 1.0)}
# Log-amplitude of the interior texture: homogeneous lesions are nearly even, heterogeneous ones
# patchy. Under an unclear margin the tissue blends into the lesion's edge zone, which reads as
# texture, and dilutes the lesion's own: less texture for homogeneous, more for heterogeneous.
TEXTURE = {
    ("homogeneous", "clear"): (0.2, 0.5),
    ("homogeneous", "unclear"): (0.1, 0.3),
    ("heterogeneous", "clear"): (0.95, 1.4),
    ("heterogeneous", "unclear"): (0.92, 1.38),
}
PATCH_MIN = 6  # texture cells across the lesion at least (a small lesion still shows its patches)
# Lesion attenuation relative to the tissue's: fluid lets more sound through (posterior
# enhancement), dense stroma less (shadowing).
ATTENUATION = {"benign": (-0.9, -0.4), "malignant": (0.6, 1.8)}
UNCLEAR_BLUR = (0.03, 0.045)  # margin blur, share of the image height
UNCLEAR_EDGE = (0.4, 0.65)  # membership at the mask's edge (a half: the blurred margin centred on it)
UNCLEAR_FLOOR = 0.1875  # blurred mask level below which the membership is 0 (the lesion's reach)
INNER_FADE = 0.75  # blurred mask level inside which the margin noise is gone


def _lesion_weight(
    rng: np.random.Generator, mask: np.ndarray, grid: tuple[int, int], boundary: str
) -> np.ndarray:
    """Lesion membership on the speckle grid: sharp for clear margins, blurred and angular otherwise."""
    height, width = mask.shape
    half = mask.astype(np.float32)
    if width % 2:
        half = np.pad(half, ((0, 0), (0, 1)), mode="edge")
    half = 0.5 * (half[:, 0::2] + half[:, 1::2])
    if boundary == "clear":
        return half
    factor = max(1, height // 64)
    coarse_shape = (height // factor, (width // factor))
    coarse = mask[: coarse_shape[0] * factor, : coarse_shape[1] * factor].astype(np.float32)
    coarse = coarse.reshape(coarse_shape[0], factor, coarse_shape[1], factor).mean(axis=(1, 3))
    blur_px = rng.uniform(*UNCLEAR_BLUR) * height / factor
    coarse = ndimage.gaussian_filter(coarse, blur_px, mode="nearest")
    # A small lesion blurred this much never reaches full membership: scaled so that its centre
    # does, the interior is lesion, not a blend with the tissue's strands.
    coarse *= np.float32(1.0 / max(float(coarse.max()), 0.5))
    level = _upsample_where(coarse, grid, coarse > 1e-6)
    # Angular, ill-defined margin: perturb the level set with fine noise, near the margin only
    # (`_margin_zone`: the noise alone dotted 5-12 % of the tissue far from the lesion with
    # lesion-like dark blobs, and inside the lesion it read as texture).
    jagged = _SmoothField(rng, grid, (max(4, grid[0] // 10), max(4, grid[1] // 6)))
    amplitude = rng.uniform(0.12, 0.22)
    # Only where the level is above 1e-3: below, the noise (|jagged| < 5) cannot lift it anywhere
    # near the 0.19 at which the membership below starts, so it is computed on that box alone.
    box = _support(level > 1e-3)
    if box is not None:
        near = level[box]
        near += amplitude * jagged.rows(*box) * _margin_zone(near)
    # Membership rises from 0 at level UNCLEAR_FLOOR to EDGE at the mask's edge (level 0.5) and is
    # full a little inside it: the transition straddles the mask's edge, more of it inside or
    # outside from lesion to lesion.
    edge = rng.uniform(*UNCLEAR_EDGE)
    return np.clip((level - UNCLEAR_FLOOR) * (edge / (0.5 - UNCLEAR_FLOOR)), 0.0, 1.0)


def _margin_zone(level: np.ndarray) -> np.ndarray:
    """Where an unclear margin's noise acts, by blurred-mask level: 4 l (1 - l) (1 on the edge, 0 far
    outside) outside the mask; inside it fades out by level INNER_FADE, so the lesion's interior
    keeps its own texture (the noise there read as heterogeneity)."""
    outside = 4.0 * level * (1.0 - level)
    inside = np.clip(1.0 - (level - 0.5) * (1.0 / (INNER_FADE - 0.5)), 0.0, 1.0)
    return np.where(level <= 0.5, outside, inside)


def _support(where: np.ndarray) -> tuple[slice, slice] | None:
    """The bounding box of WHERE's true pixels (None when there are none)."""
    rows, cols = np.flatnonzero(where.any(axis=1)), np.flatnonzero(where.any(axis=0))
    if rows.size == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _tissue_level(reflectivity: np.ndarray, weight: np.ndarray, box: tuple[slice, slice]) -> float:
    """Geometric mean reflectivity of the tissue around the lesion: its contrast is relative to it."""
    grow_r, grow_c = (box[0].stop - box[0].start) // 3 + 2, (box[1].stop - box[1].start) // 3 + 2
    around = (
        slice(max(box[0].start - grow_r, 0), box[0].stop + grow_r),
        slice(max(box[1].start - grow_c, 0), box[1].stop + grow_c),
    )
    # Every other row and column: the level of a smooth neighbourhood, at a quarter of the logs.
    sparse = (slice(around[0].start, around[0].stop, 2), slice(around[1].start, around[1].stop, 2))
    tissue = reflectivity[sparse][weight[sparse] < 0.05]
    if tissue.size < 16:
        tissue = reflectivity
    return float(np.exp(np.log(np.maximum(tissue, 1e-3)).mean()))


def _lesion_look(
    rng: np.random.Generator,
    mask: np.ndarray,
    reflectivity: np.ndarray,
    pathology: str,
    echogenicity: str,
    boundary: str,
) -> _LesionLook:
    weight = _lesion_weight(rng, mask, reflectivity.shape, boundary)
    box = _support(weight > 0)
    contrast_db = rng.uniform(*CONTRAST_DB[(pathology, boundary)])
    step_db = contrast_db * rng.uniform(*CRISP_SHARE[boundary])
    attenuation_factor = rng.uniform(*ATTENUATION[pathology])
    level = _tissue_level(reflectivity, weight, box) * 10.0 ** (-(contrast_db - step_db) / 20.0)
    shape = (box[0].stop - box[0].start, box[1].stop - box[1].start)
    # Texture cells of about the same size at any lesion size, at least PATCH_MIN across it.
    patches = _SmoothField(rng, shape, (max(PATCH_MIN, shape[0] // 14), max(PATCH_MIN, shape[1] // 8)))
    amplitude = np.float32(rng.uniform(*TEXTURE[(echogenicity, boundary)]))
    interior = np.float32(level) * np.exp(amplitude * patches.rows(slice(None)))
    if echogenicity == "heterogeneous" and pathology == "malignant":
        # Microcalcifications: a few bright point reflectors inside the lesion.
        inside = np.flatnonzero(weight[box] > 0.9)
        if inside.size:
            spots = rng.choice(inside, size=min(inside.size, int(rng.integers(1, 6))), replace=False)
            interior.flat[spots] = 40.0 * level  # ~32 dB above the interior
    return _LesionLook(box, interior, weight, float(step_db), float(attenuation_factor))


# --------------------------------------------------------------------------- rendering


@renders_as_busforge  # whoever calls it gets busforge render's bytes and memory behaviour
def render_bmode(
    mask: np.ndarray,
    *,
    pathology: str,
    echogenicity: str,
    boundary: str,
    seed: int,
    speckle_scale: float = OPTION_DEFAULTS["speckle_scale"],
    texture_scale: float = OPTION_DEFAULTS["texture_scale"],
    dynamic_range_db: float = OPTION_DEFAULTS["dynamic_range_db"],
    profile: Profile | None = None,
) -> np.ndarray:
    """Render one B-mode image with a lesion where `mask` is set.

    Args:
        mask: HxW bool lesion mask (rows = depth); may be empty (no lesion).
        pathology: "benign" (posterior enhancement) or "malignant" (shadowing).
        echogenicity: "homogeneous" or "heterogeneous" lesion interior.
        boundary: "clear" (sharp) or "unclear" (blurred, angular) margin.
        seed: the sample's seed; the renderer uses its stream 2.
        speckle_scale: PSF size multiplier (grain size).
        texture_scale: lateral size multiplier of the tissue textures.
        dynamic_range_db: log-compression dynamic range.
        profile: appearance profile to follow; each image draws one of its records (from its own
            random stream, so the image before the profile is the same as without one).

    Returns:
        HxW uint8 grey image; identical bytes for identical arguments.
    """
    _check_choice("pathology", pathology, PATHOLOGIES)
    _check_choice("echogenicity", echogenicity, ECHOGENICITIES)
    _check_choice("boundary", boundary, BOUNDARIES)
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or min(mask.shape) < 16:
        raise ValueError(f"mask must be a 2-D array of at least 16x16, got shape {mask.shape}")

    rng = np.random.default_rng([seed, RENDERER_STREAM])
    height, width = mask.shape
    grid = (height, (width + 1) // 2)  # speckle grid: half lateral resolution

    reflectivity = _tissue_reflectivity(rng, grid, texture_scale)
    attenuation_db = rng.uniform(35.0, 50.0)
    tgc_compensation = rng.uniform(0.65, 0.82)
    accumulated = shaded = None  # the lesion's extra attenuation, accumulated with depth (dB); its columns
    lesion = None
    if mask.any():
        lesion = _lesion_look(rng, mask, reflectivity, pathology, echogenicity, boundary)
        box = lesion.box
        reflectivity[box] += lesion.weight[box] * (lesion.interior - reflectivity[box])
        extra_attenuation, band = _posterior_attenuation(
            lesion, np.float32(lesion.attenuation_factor * attenuation_db / height)
        )
        # The beam is wider than a column: soften the sides of the shadow / enhancement (on the
        # rows that add any: elsewhere the per-row attenuation is 0).
        extra_attenuation[band] = ndimage.uniform_filter1d(
            extra_attenuation[band], size=max(3, grid[1] // 32) | 1, axis=1, mode="nearest"
        )
        accumulated, shaded = accumulated_attenuation(extra_attenuation)

    axial_sigma_px, lateral_sigma_px = psf_sigmas(height, speckle_scale)
    envelope = speckle_envelope(reflectivity, rng, axial_sigma_px, lateral_sigma_px)
    envelope = reduce_speckle(envelope)
    gain = depth_gain_db(height, attenuation_db, tgc_compensation, accumulated)
    # Mean log-envelope of unit-reflectivity tissue is about 0.5 dB (Rayleigh).
    white_db = 0.5 + (1.0 - TISSUE_LEVEL) * dynamic_range_db
    grey = log_compress(envelope, gain, dynamic_range_db, white_db, clip=False)
    if lesion is not None:
        grey[lesion.box] -= np.float32(lesion.step_db * 255.0 / dynamic_range_db) * lesion.weight[lesion.box]
    if profile is None:
        np.clip(grey, 0.0, 255.0, out=grey)
    else:
        record = profile.draw(
            np.random.default_rng([seed, RENDERER_STREAM, PROFILE_STREAM]),
            pathology,
            echogenicity,
            boundary,
            lesion is not None,
        )
        posterior_shape = geometry = tissue = None
        if accumulated is not None:
            posterior_shape = _posterior_shape(accumulated, shaded, mask)
            # The measures' bands (computed once, shared by the profile and the attribute checks).
            geometry = lesion_geometry(mask)
            tissue = tissue_beyond_ring(geometry, mask.shape)[:, ::2]  # on the speckle grid
        grey = apply_profile(
            grey, record, None if lesion is None else lesion.weight, posterior_shape, tissue=tissue
        )
        if lesion is not None and profile.attribute_thresholds:
            full = upsample_lateral(grey, width)
            weight = _upsample_support(lesion.weight, width)
            full = enforce_attributes_at_side(
                full,
                weight,
                mask,
                geometry,
                profile.attribute_side,
                echogenicity,
                boundary,
                profile.attribute_thresholds,
                (record.get("attributes") or {}).get("boundary_contrast"),
            )
            return full.round().astype(np.uint8)
    return upsample_lateral(grey, width).round().astype(np.uint8)


def _posterior_attenuation(lesion: _LesionLook, per_cell: np.float32) -> tuple[np.ndarray, slice]:
    """Extra attenuation per cell (dB, speckle grid) of the sound crossing the lesion, all of it
    taken at the lesion's far wall: below the lesion each column has lost PER_CELL times the
    lesion's thickness in it, as if attenuated inside, but the interior keeps an even level (the
    gradient the measures would read as texture is not drawn). Also the rows that add any."""
    out = np.zeros(lesion.weight.shape, np.float32)
    # The box and the row below it (membership 0 there, so the whole loss is reached in every
    # column); further down the rows add nothing and the accumulation carries the loss.
    rows = slice(lesion.box[0].start, min(lesion.box[0].stop + 1, out.shape[0]))
    cols = lesion.box[1]
    weight = lesion.weight[rows, cols]
    through = np.cumsum(weight, axis=0, dtype=np.float32)  # lesion crossed so far, per column
    thickness = through[-1]
    lost = np.float32(1.0) - weight
    lost *= thickness * per_cell
    lost[through <= 0.5 * thickness] = 0.0  # not yet past the lesion's middle in that column
    block = out[rows, cols]
    block[0] = lost[0]
    np.subtract(lost[1:], lost[:-1], out=block[1:])
    return out, rows


def _upsample_support(weight: np.ndarray, width: int) -> np.ndarray:
    """`upsample_lateral(weight, width)` computed on the lesion's support only (zero elsewhere)."""
    out = np.zeros((weight.shape[0], width), np.float32)
    box = _support(weight != 0)
    if box is None:
        return out
    rows, cols = box
    # One zero column each side, so the block's edge columns interpolate as the whole image's do.
    start, stop = max(cols.start - 1, 0), min(cols.stop + 1, weight.shape[1])
    block = upsample_lateral(weight[rows, start:stop], 2 * (stop - start))
    end = min(2 * stop, width)
    out[rows, 2 * start : end] = block[:, : end - 2 * start]
    return out


def psf_sigmas(height: int, speckle_scale: float) -> tuple[float, float]:
    """The PSF's (axial, lateral) standard deviations on the speckle grid, in cells."""
    size_scale = speckle_scale * height / 512.0
    return (
        max(0.6, AXIAL_SIGMA_PX_AT_512 * size_scale),
        max(0.6, LATERAL_SIGMA_PX_AT_512 * size_scale / 2.0),  # the grid has half the columns
    )


def _posterior_shape(accumulated: np.ndarray, band: slice | None, mask: np.ndarray) -> np.ndarray:
    """Where the lesion's attenuation acts (0..1 on the speckle grid): its effect accumulated with
    depth, fading below the lesion as scattered sound fills in. Zero outside the BAND of columns it
    reaches."""
    height = accumulated.shape[0]
    shape = np.zeros(accumulated.shape, np.float32)
    if band is None:
        return shape
    reach = np.abs(accumulated[:, band])
    rows = np.flatnonzero(mask.any(axis=1))
    below = np.maximum(np.arange(height, dtype=np.float32) - rows[-1], 0.0)
    fade = np.exp(-below / (POSTERIOR_FADE * (rows[-1] - rows[0] + 1)))[:, None]
    shape[:, band] = reach * fade / max(float(reach.max()), 1e-12)
    return shape


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


# --------------------------------------------------------------------------- renderer


class ProceduralRenderer(BaseRenderer):
    """The built-in renderer: physically motivated B-mode simulation on CPU."""

    name = "procedural"

    def __init__(self, options: dict[str, Any], image_size: int):
        parsed = parse_renderer_options(ProceduralOptions, options or {}, _describe)
        self.options = parsed.model_dump(exclude={"profile"})
        self.profile = None
        self._profile_spec = parsed.profile
        if parsed.profile is not None:
            try:
                self.profile = load_profile(parsed.profile)
            except BadInput as err:
                raise BadInput(err.message, key="renderer.profile") from None
        self.image_size = image_size

    def identity(self) -> dict[str, Any]:
        """What decides the pixels: goes into the dataset fingerprint (and the `renderer` column)."""
        profile = {} if self.profile is None else self.profile.identity()
        return {"backend": "procedural", "version": ALGORITHM_VERSION, **self.options, **profile}

    def input_locations(self) -> list[tuple[str, ...]]:
        """A profile given as a path: its sha256 is in the identity."""
        return [] if self.profile is None or self._profile_spec in SHIPPED_PROFILES else [("profile",)]

    def render(self, items: list[RenderItem]) -> list[np.ndarray]:
        images = []
        for item in items:
            if item.mask.shape != (self.image_size, self.image_size):
                raise ValueError(f"mask shape {item.mask.shape} does not match image size {self.image_size}")
            spec = item.spec
            images.append(
                render_bmode(
                    item.mask,
                    pathology=spec.pathology,
                    echogenicity=spec.echogenicity,
                    boundary=spec.boundary,
                    seed=spec.seed,
                    profile=self.profile,
                    **self.options,
                )
            )
        return images
