"""Appearance profiles: a scanner's look measured on real images, followed by the procedural renderer.

A profile keeps one record per real image (not one mean look), so the renderer draws a whole
record per sample and the rendered set inherits the real set's diversity. Each record holds:

- `quantiles`: the image's grey-level histogram as 21 quantiles (0, 5, ..., 100 %), in grey levels.
  It carries overall brightness, contrast, how much of the view is black (the dark band at the
  bottom, the frame around the sector) and how bright speckle highlights get.
- `depth`: mean grey level of 16 equal bands from top to bottom, divided by the image mean: the
  depth profile left by attenuation and time-gain compensation.
- `lesion_percentile` (lesions only): the share of tissue pixels (outside the lesion dilated by
  its ring width) darker than the lesion's mean grey level: lesion-to-tissue contrast that does
  not depend on gain.
- `posterior` (lesions only): log of (mean grey below the lesion / mean grey beside it at the same
  depth); > 0 posterior enhancement, < 0 shadowing. "Below" is the band of half the lesion's height
  under its lowest row, over the middle 60 % of its columns; "beside" is the same rows, half a
  lesion width to the left and right of its extent.
- `attributes` (lesions only, version 2): the importer's own measures of the lesion
  (`busforge.dataset.attributes`: echo_heterogeneity, boundary_contrast, boundary_sharpness). The
  renderer reads the contrast to tell an unclear record that is unclear by its sharpness (contrast
  above the threshold) from one unclear by its contrast.
- `attribute_thresholds` and `attribute_side` (per profile): the thresholds the importer fitted on the
  dataset, and the median shorter side of its images, where the renderer measures its own lesions.
- `pathology`, `echogenicity`, `boundary`: the record's labels (as imported), so the renderer draws
  a record of the sample's own pathology, echogenicity and boundary.

The renderer applies a record after image formation (`apply_profile`): it scales rows to the
record's depth profile, maps grey levels onto its quantiles, shifts the lesion to its percentile
and sets the posterior ratio. Profiles are JSON (`format: busforge-appearance-profile`), written by
`busforge calibrate DATASET` inside the shape prior file (key `appearance`) or alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from busforge.renderers.order_statistics import sorted_quantile, sorted_quantiles

PROFILE_FORMAT = "busforge-appearance-profile"
PROFILE_VERSION = 2
# How the renderer applies a profile (this module and renderers.attribute_look): in the fingerprint.
APPLY_VERSION = "apply-4"
SUPPORTED_VERSIONS = (1, 2)  # version 1 records carry no `attributes`
SHIPPED_PROFILES = ("busi", "busbra")
QUANTILE_LEVELS = tuple(round(float(q), 2) for q in np.linspace(0.0, 1.0, 21))
DEPTH_BANDS = 16
POSTERIOR_DEPTH = 0.5  # the band below a lesion, in lesion heights
MIN_RECORDS = 5
MAX_POSTERIOR_CHANGE = 0.7  # log-ratio a profile may add below a lesion (beyond it, bands look painted)
RECORD_KEYS = ("quantiles", "depth")
ATTRIBUTE_KEYS = ("echo_heterogeneity", "boundary_contrast", "boundary_sharpness")
FIT_PIXELS = 65536
APPLY_STEP = 2  # images larger than this are measured on a regular subsample for quantiles


# --------------------------------------------------------------------------- measuring


def depth_profile(image: np.ndarray) -> np.ndarray:
    """Mean grey level of DEPTH_BANDS equal bands from top to bottom, over the image mean."""
    pixels = np.asarray(image, dtype=np.float32)
    bands = np.array([band.mean() for band in np.array_split(pixels, DEPTH_BANDS, axis=0)])
    return bands / max(float(pixels.mean()), 1e-3)


def _tissue(mask: np.ndarray) -> np.ndarray:
    """Pixels beyond the lesion's ring width (the measures' rule, busforge.dataset.attributes)."""
    from busforge.dataset.attributes import lesion_geometry, tissue_beyond_ring

    return tissue_beyond_ring(lesion_geometry(mask), mask.shape)


def lesion_percentile(image: np.ndarray, mask: np.ndarray) -> float:
    """Share of tissue pixels (outside the dilated lesion) darker than the lesion's mean grey level."""
    pixels = np.asarray(image, dtype=np.float32)
    tissue = _tissue(mask)
    if not tissue.any():
        return 0.5
    return float(np.mean(pixels[tissue] < pixels[mask].mean()))


def posterior_log_ratio(image: np.ndarray, mask: np.ndarray) -> float | None:
    """log(mean grey below the lesion / beside it at the same depth); None where no room below or beside."""
    pixels = np.asarray(image, dtype=np.float32)
    height, width = pixels.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    depth = max(2, round(POSTERIOR_DEPTH * (bottom - top)))
    below = slice(bottom, min(bottom + depth, height))
    span = right - left
    inner = slice(left + round(0.2 * span), right - round(0.2 * span))
    side = max(2, span // 2)
    if below.stop - below.start < 2 or inner.stop - inner.start < 1:
        return None
    beside = np.concatenate(
        [pixels[below, max(0, left - side) : left].ravel(), pixels[below, right : right + side].ravel()]
    )
    if beside.size < 4:
        return None
    under = pixels[below, inner]
    return float(np.log((under.mean() + 1.0) / (beside.mean() + 1.0)))


def image_record(image: np.ndarray, mask: np.ndarray | None, labels: dict[str, str]) -> dict[str, Any]:
    """One profile record (module docstring) of a grey image and its lesion mask (None: no lesion)."""
    from busforge.dataset.attributes import measure

    pixels = np.asarray(image, dtype=np.float32)
    step = max(1, int(np.sqrt(pixels.size / FIT_PIXELS)))
    record: dict[str, Any] = {
        **labels,
        "quantiles": sorted_quantiles(pixels[::step, ::step], QUANTILE_LEVELS).round(2).tolist(),
        "depth": depth_profile(pixels).round(4).tolist(),
    }
    if mask is not None and mask.any():
        record["lesion_percentile"] = round(lesion_percentile(pixels, mask), 4)
        ratio = posterior_log_ratio(pixels, mask)
        record["posterior"] = None if ratio is None else round(ratio, 4)
        record["attributes"] = {k: round(v, 4) for k, v in measure(image, mask).as_dict().items()}
    return record


def fit_profile(
    records: list[dict[str, Any]],
    name: str,
    source: str,
    thresholds: dict[str, float] | None = None,
    thresholds_side: int | None = None,
) -> dict[str, Any]:
    """A profile from image records (`image_record`); BadInput when there are too few.
    THRESHOLDS_SIDE: the median shorter side of the images the thresholds were fitted on."""
    from busforge.errors import BadInput

    lesions = [r for r in records if "lesion_percentile" in r]
    if len(records) < MIN_RECORDS or len(lesions) < MIN_RECORDS:
        raise BadInput(
            f"{source}: {len(records)} images, {len(lesions)} with a lesion; an appearance profile needs "
            f"at least {MIN_RECORDS} of each"
        )
    return {
        "format": PROFILE_FORMAT,
        "version": PROFILE_VERSION,
        "name": name,
        "source": source,
        "quantile_levels": list(QUANTILE_LEVELS),
        "depth_bands": DEPTH_BANDS,
        **({"attribute_thresholds": thresholds} if thresholds else {}),
        **({"attribute_side": thresholds_side} if thresholds and thresholds_side else {}),
        "records": records,
    }


def fitting_splits(dataset: Path) -> list[str]:
    """The splits a profile is fitted on: every split but `test`, which stays held out for evaluation."""
    from busforge.dataset.manifest import read_manifest

    names = sorted(read_manifest(dataset)["splits"])
    return [s for s in names if s != "test"] or names


def dataset_cases(dataset: Path, splits: list[str]) -> list[tuple[np.ndarray, np.ndarray | None, dict]]:
    """(grey image, lesion mask or None, labels) of every row of an imported dataset's SPLITS."""
    import io

    import pyarrow.parquet as pq
    from PIL import Image

    from busforge.dataset.features import pathology_name
    from busforge.dataset.manifest import read_manifest

    manifest = read_manifest(dataset)
    columns = ["image", "mask", "pathology", "echogenicity", "boundary"]
    cases = []
    for split in splits:
        for shard in manifest["splits"][split]["shards"]:
            for row in pq.read_table(dataset / shard["file"], columns=columns).to_pylist():
                image = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])).convert("L"))
                mask = np.asarray(Image.open(io.BytesIO(row["mask"]["bytes"])).convert("L")) > 127
                labels = {
                    "pathology": pathology_name(row["pathology"]),
                    "echogenicity": row["echogenicity"] or "",
                    "boundary": row["boundary"] or "",
                }
                usable = mask.shape == image.shape and mask.any()
                cases.append((image, mask if usable else None, labels))
    return cases


def fit_dataset_profile(
    dataset: Path, name: str, splits: list[str] | None = None, cases: list | None = None
) -> dict[str, Any]:
    """Fit a profile on an imported dataset's images: SPLITS (default: `fitting_splits`), whose
    `dataset_cases` are CASES when the caller has read them already."""
    names = splits or fitting_splits(dataset)
    cases = dataset_cases(dataset, names) if cases is None else cases
    records = [image_record(image, mask, labels) for image, mask, labels in cases]
    side = int(round(float(np.median([min(image.shape) for image, _, _ in cases])))) if cases else None
    return fit_profile(
        records, name, f"{dataset.name} ({', '.join(names)})", dataset_thresholds(dataset), side
    )


def dataset_thresholds(dataset: Path) -> dict[str, float] | None:
    """The attribute thresholds the importer fitted on DATASET (its manifest), if any."""
    from busforge.dataset.manifest import read_manifest

    return (read_manifest(dataset).get("real") or {}).get("attribute_thresholds")


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Profile:
    """A loaded appearance profile: its records and the sha256 of its file's bytes."""

    name: str
    digest: str
    records: tuple[dict[str, Any], ...]
    attribute_thresholds: dict[str, float] | None = None  # the fitted dataset's (dataset.attributes)
    attribute_side: int | None = None  # the shorter side the thresholds were fitted at (None: unknown)
    # The records `draw` chooses from, per (pathology, echogenicity, boundary, lesion): found once.
    _pools: dict[tuple, tuple[dict[str, Any], ...]] = field(default_factory=dict, compare=False, repr=False)

    def identity(self) -> dict[str, str]:
        return {"profile": self.name, "profile_sha256": self.digest, "profile_algorithm": APPLY_VERSION}

    def draw(
        self, rng: np.random.Generator, pathology: str, echogenicity: str, boundary: str, lesion: bool
    ) -> dict:
        """One record: of the same pathology, echogenicity and boundary where at least MIN_RECORDS exist."""
        key = (pathology, echogenicity, boundary, lesion)
        if key not in self._pools:
            self._pools[key] = self._pool(pathology, echogenicity, boundary, lesion)
        pool = self._pools[key]
        return pool[int(rng.integers(len(pool)))]

    def _pool(self, pathology: str, echogenicity: str, boundary: str, lesion: bool) -> tuple[dict, ...]:
        pool: list[dict[str, Any]] = list(self.records)
        if lesion:
            wanted = [r for r in pool if "lesion_percentile" in r]
            for key, value in (
                ("pathology", pathology),
                ("echogenicity", echogenicity),
                ("boundary", boundary),
            ):
                narrower = [r for r in wanted if r.get(key) == value]
                if len(narrower) >= MIN_RECORDS:
                    wanted = narrower
            pool = wanted
        else:
            normal = [r for r in pool if "lesion_percentile" not in r]
            pool = normal if len(normal) >= MIN_RECORDS else pool
        return tuple(pool)


def parse_profile(text: str, source: str) -> Profile:
    """A profile from JSON text: a bare profile, or a calibrate file holding one under `appearance`."""
    from busforge.errors import BadInput

    fix = "write one with `busforge calibrate DATASET --out FILE` (an imported dataset)"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadInput(f"{source}: not valid JSON ({error}); {fix}") from None
    if isinstance(data, dict) and "appearance" in data:
        data = data["appearance"]
    if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
        raise BadInput(f"{source}: format: not a busforge appearance profile; {fix}")
    if data.get("version") not in SUPPORTED_VERSIONS:
        allowed = ", ".join(map(str, SUPPORTED_VERSIONS))
        raise BadInput(f"{source}: version: {data.get('version')!r} is not supported; allowed: {allowed}")
    records = data.get("records")
    if not isinstance(records, list) or len(records) < MIN_RECORDS:
        raise BadInput(f"{source}: records: missing or fewer than {MIN_RECORDS}; {fix}")
    for index, record in enumerate(records):
        try:
            quantiles = np.asarray(record["quantiles"], dtype=float)
            depth = np.asarray(record["depth"], dtype=float)
            ok = (
                quantiles.shape == (len(QUANTILE_LEVELS),)
                and np.all(np.diff(quantiles) >= 0)
                and depth.shape == (DEPTH_BANDS,)
                and np.all(np.isfinite(depth))
                and np.all(depth >= 0)
                and 0 <= float(record.get("lesion_percentile", 0.5)) <= 1
                and _attributes_ok(record.get("attributes"))
            )
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise BadInput(
                f"{source}: records[{index}]: missing or malformed quantiles/depth/attributes; {fix}"
            )
    name = str(data.get("name") or Path(source).stem)
    thresholds = data.get("attribute_thresholds")
    if thresholds is not None:
        try:
            thresholds = {key: float(thresholds[key]) for key in ATTRIBUTE_KEYS}
        except (KeyError, TypeError, ValueError):
            raise BadInput(
                f"{source}: attribute_thresholds: needs numbers {', '.join(ATTRIBUTE_KEYS)}; {fix}"
            ) from None
    side = data.get("attribute_side")
    if side is not None and (isinstance(side, bool) or not isinstance(side, int) or side < 16):
        raise BadInput(f"{source}: attribute_side: got {side!r}, needs a whole number of pixels >= 16; {fix}")
    return Profile(name, hashlib.sha256(text.encode()).hexdigest(), tuple(records), thresholds, side)


def _attributes_ok(attributes: Any) -> bool:
    """A record's `attributes`: absent, or the three measures as finite non-negative numbers."""
    if attributes is None:
        return True
    values = [attributes[key] for key in ATTRIBUTE_KEYS]  # KeyError/TypeError: malformed
    return all(isinstance(v, int | float) and np.isfinite(v) and v >= 0 for v in values)


def load_profile(spec: str) -> Profile:
    """Resolve `renderer.profile`: a shipped name (busi, busbra) or a path to a JSON file."""
    from busforge.errors import BadInput

    if spec in SHIPPED_PROFILES:
        text = resources.files("busforge.renderers").joinpath("profiles", f"{spec}.json").read_text()
        return parse_profile(text, f"busforge/renderers/profiles/{spec}.json")
    path = Path(spec)
    if not path.is_file():
        raise BadInput(
            f"{spec}: not found; use {', '.join(SHIPPED_PROFILES)} or a path to a JSON "
            "written by busforge calibrate"
        )
    return parse_profile(path.read_text(), str(path))


# --------------------------------------------------------------------------- applying


def _band_curve(values: np.ndarray, height: int) -> np.ndarray:
    """Per-row curve through DEPTH_BANDS band values (linear between band centres)."""
    centres = (np.arange(DEPTH_BANDS) + 0.5) * height / DEPTH_BANDS
    return np.interp(np.arange(height) + 0.5, centres, values).astype(np.float32)


MAP_NODES = 4097  # the grey-level map's table: nodes a range/4096 apart


def _piecewise_linear(values: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """`np.interp(values, xp, fp)` as float32, read from a fine table of it with linear steps between
    its nodes: 4x cheaper than np.interp's search per pixel. It differs only in the table cells that
    hold a knot of XP, by at most a quarter of the slope change times the cell width (a few hundredths
    of a grey level)."""
    lo, hi = float(xp[0]), float(xp[-1])
    table = np.interp(np.linspace(lo, hi, MAP_NODES), xp, fp).astype(np.float32)
    position = (values - np.float32(lo)) * np.float32((MAP_NODES - 1) / max(hi - lo, 1e-12))
    np.clip(position, 0.0, MAP_NODES - 1, out=position)
    cell = np.minimum(position.astype(np.int32), MAP_NODES - 2)
    position -= cell  # now the fraction of the way through the cell
    below = table[cell]
    return below + (table[cell + 1] - below) * position


def apply_profile(
    grey: np.ndarray,
    record: dict[str, Any],
    lesion_weight: np.ndarray | None,
    posterior_shape: np.ndarray | None,
    tissue: np.ndarray | None = None,
) -> np.ndarray:
    """Make a rendered grey image (float, 0..255) follow one profile record.

    Args:
        grey: HxW float32 grey image before quantisation.
        record: a profile record (module docstring).
        lesion_weight: HxW lesion membership 0..1 (soft at unclear margins), or None.
        posterior_shape: HxW 0..1 map of the region the lesion's attenuation acts on (1 well below
            the lesion, 0 beside it), or None.
        tissue: HxW bool tissue (outside the lesion dilated by its ring width), when the caller
            has it; else computed from `lesion_weight > 0.5`.

    Returns:
        The adjusted HxW float32 image, clipped to 0..255.
    """
    height = grey.shape[0]
    out = grey.astype(np.float32, copy=True)
    # 1. Depth profile: scale rows so band means follow the record's.
    current = depth_profile(np.maximum(out, 0.0))  # as displayed (below black reads as black)
    target = np.asarray(record["depth"], dtype=np.float32)
    out *= _band_curve(target / np.maximum(current, 1e-3), height)[:, None]
    # 2. Grey-level histogram: monotone map of the image's quantiles onto the record's
    # (measured on every APPLY_STEP-th pixel each way: as accurate, and 4x cheaper).
    source_q = sorted_quantiles(out[::APPLY_STEP, ::APPLY_STEP], QUANTILE_LEVELS)
    source_q = np.maximum.accumulate(source_q + np.arange(len(source_q)) * 1e-4)  # strictly increasing
    out = _piecewise_linear(out, source_q, np.asarray(record["quantiles"], dtype=np.float64))
    if lesion_weight is None or "lesion_percentile" not in record:
        return np.clip(out, 0.0, 255.0, out=out)
    lesion = lesion_weight > 0.5
    if lesion.sum() < 4:
        return np.clip(out, 0.0, 255.0, out=out)
    # 3. Lesion-to-tissue contrast: shift the lesion to the record's tissue percentile.
    tissue = _tissue(lesion) if tissue is None else tissue
    sub = (slice(None, None, APPLY_STEP), slice(None, None, APPLY_STEP))
    if tissue[sub].any():
        wanted = sorted_quantile(out[sub][tissue[sub]], float(record["lesion_percentile"]))
        out += lesion_weight * np.float32(wanted - float(out[lesion].mean()))
        np.clip(out, 0.0, 255.0, out=out)
    # 4. Posterior enhancement / shadowing: set the below/beside ratio to the record's.
    wanted_ratio = record.get("posterior")
    if posterior_shape is not None and wanted_ratio is not None:
        ratio = posterior_log_ratio(out, lesion)
        if ratio is not None:
            change = np.clip(float(wanted_ratio) - ratio, -MAX_POSTERIOR_CHANGE, MAX_POSTERIOR_CHANGE)
            # Only where the shape is non-zero: below the lesion's top, in the columns it shades.
            cols = np.flatnonzero(posterior_shape[-1] > 0)
            if cols.size:
                window = (
                    slice(int(np.flatnonzero(lesion.any(axis=1))[0]), None),
                    slice(cols[0], cols[-1] + 1),
                )
                out[window] *= np.exp(np.float32(change) * posterior_shape[window])
    return np.clip(out, 0.0, 255.0, out=out)
