"""Decoded splits held in memory: each split's PNGs are decoded once, resized to the profile's size and
cached as uint8 arrays (keyed by the dataset's fingerprint, the split and the size) under busforge's
cache folder, so training reads arrays and never decodes an image per step.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from busforge.dataset.manifest import read_manifest
from busforge.errors import BadInput
from busforge.vocab import PATHOLOGY_NAMES, SOURCE_NAMES

CACHE_FORMAT = 1
COLUMNS = ["image", "mask", "pathology", "source", "sample_id"]
UNLABELLED = -1  # pathology of rows without a label (e.g. STU)
COLOUR_MODES = ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV")


@dataclass
class SplitArrays:
    """One split at one size: images (N, C, S, S) uint8, masks (N, S, S) uint8 in {0, 1},
    pathology (N,) int8 (index into PATHOLOGY_NAMES, -1 unlabelled), source (N,) int8, ids (N,) str."""

    images: np.ndarray
    masks: np.ndarray
    pathology: np.ndarray
    source: np.ndarray
    ids: np.ndarray

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, keep: np.ndarray) -> SplitArrays:
        return SplitArrays(
            *(a[keep] for a in (self.images, self.masks, self.pathology, self.source, self.ids))
        )

    def synthetic_share(self) -> float:
        return float((self.source == SOURCE_NAMES.index("synthetic")).mean()) if len(self) else 0.0


def split_files(dataset: Path, split: str) -> list[Path]:
    """The parquet shards of SPLIT, from the manifest; a missing split is bad input naming the fix."""
    manifest = read_manifest(dataset)
    splits = manifest.get("splits", {})
    if split not in splits:
        raise BadInput(
            f"{dataset}: has no {split!r} split (it has {', '.join(sorted(splits)) or 'none'}); "
            "render it with a `real:` block or import real data so that it has train, validation and test"
        )
    return [dataset / shard["file"] for shard in splits[split]["shards"]]


def decode_rows(rows: list[dict], size: int, colour: bool | None = None) -> tuple[list, bool]:
    """PIL-decode and resize rows (image bilinear, mask nearest). Returns (decoded, any colour image)."""
    from PIL import Image

    decoded = []
    any_colour = False
    for row in rows:
        image = Image.open(io.BytesIO(row["image"]["bytes"]))
        any_colour |= image.mode in COLOUR_MODES
        mask = Image.open(io.BytesIO(row["mask"]["bytes"])).convert("L")
        decoded.append(
            (
                image.resize((size, size), Image.Resampling.BILINEAR)
                if image.size != (size, size)
                else image,
                mask.resize((size, size), Image.Resampling.NEAREST) if mask.size != (size, size) else mask,
            )
        )
    return decoded, any_colour if colour is None else colour


def stack(decoded: list, colour: bool) -> tuple[np.ndarray, np.ndarray]:
    mode = "RGB" if colour else "L"
    images = np.stack([np.asarray(image.convert(mode)) for image, _ in decoded])
    images = images.transpose(0, 3, 1, 2) if colour else images[:, None]
    masks = np.stack([(np.asarray(mask) > 127).astype(np.uint8) for _, mask in decoded])
    return np.ascontiguousarray(images), masks


def decode_split(dataset: Path, split: str, size: int) -> SplitArrays:
    """Every row of SPLIT decoded at SIZE (grey unless some image is in colour, then all RGB)."""
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for path in split_files(dataset, split):
        rows.extend(pq.read_table(path, columns=COLUMNS).to_pylist())
    decoded, colour = decode_rows(rows, size)
    if not rows:
        empty = np.zeros((0, 1, size, size), np.uint8)
        return SplitArrays(empty, empty[:, 0], *(np.zeros(0, np.int8) for _ in range(2)), np.zeros(0, str))
    images, masks = stack(decoded, colour)
    pathology = np.array([UNLABELLED if r["pathology"] is None else r["pathology"] for r in rows], np.int8)
    source = np.array([r["source"] for r in rows], np.int8)
    ids = np.array([r["sample_id"] for r in rows])
    return SplitArrays(images, masks, pathology, source, ids)


def cache_path(dataset: Path, split: str, size: int) -> Path:
    """The cache file of SPLIT at SIZE: the dataset's fingerprint plus a hash of the split's shard
    hashes (from the manifest), so a dataset whose files changed never reads a stale cache."""
    import hashlib

    from busforge.cache import cache_dir

    manifest = read_manifest(dataset)
    shards = manifest.get("splits", {}).get(split, {}).get("shards", [])
    content = hashlib.sha256("".join(str(s.get("sha256")) for s in shards).encode()).hexdigest()[:12]
    name = f"{manifest['fingerprint']}-{split}-{content}-{size}-v{CACHE_FORMAT}.npz"
    return cache_dir() / "downstream" / name


def load_split(dataset: Path, split: str, size: int, *, use_cache: bool = True) -> SplitArrays:
    """SPLIT of DATASET at SIZE, from the array cache when it holds this fingerprint, else decoded
    (and cached: written to a temporary file and renamed, so a killed run never leaves half a cache)."""
    path = cache_path(dataset, split, size)
    if use_cache and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return SplitArrays(*(data[k] for k in ("images", "masks", "pathology", "source", "ids")))
    arrays = decode_split(dataset, split, size)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(
                    handle,
                    images=arrays.images,
                    masks=arrays.masks,
                    pathology=arrays.pathology,
                    source=arrays.source,
                    ids=arrays.ids,
                )
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return arrays


def labelled_for(task: str, arrays: SplitArrays, include_normal: bool = False) -> tuple[np.ndarray, str]:
    """Which rows a task uses, and a sentence on what it left out.

    Classification: benign vs malignant (normal and unlabelled rows left out). Segmentation: rows
    with a lesion in their mask (normal images as empty masks too with INCLUDE_NORMAL)."""
    benign, malignant = PATHOLOGY_NAMES.index("benign"), PATHOLOGY_NAMES.index("malignant")
    if task == "cls":
        keep = np.isin(arrays.pathology, (benign, malignant))
        left = len(arrays) - int(keep.sum())
        return keep, f"{left} normal or unlabelled rows left out"
    has_lesion = arrays.masks.reshape(len(arrays), -1).any(axis=1) if len(arrays) else np.zeros(0, bool)
    keep = has_lesion | (include_normal & (arrays.pathology == PATHOLOGY_NAMES.index("normal")))
    left = len(arrays) - int(keep.sum())
    return keep, f"{left} rows without a lesion mask left out"
