"""What every importer produces: cases (files + labels), skipped files with reasons, and loading.

An importer only *scans* a source folder: it pairs images with masks and labels and says which
files it cannot use and why. Decoding, mask merging and resizing are shared here so that every
kind treats bad files the same way: a `CaseError` with a one-line reason, never a traceback.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from busforge.errors import BadInput
from busforge.imagefiles import UnreadableImage, read_image, to_binary, to_grey

# A mask whose aspect ratio differs from its image's by more than this cannot be a resized copy.
ASPECT_TOLERANCE = 0.02
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Case:
    """One image of a source dataset with its lesion mask file(s) and the labels the source has.

    Attributes:
        sample_id: `<kind>/<name>`, unique within the import (e.g. `busi/benign (12)`).
        image: the image file.
        masks: mask files; several for multi-lesion cases (their union is the lesion mask), none
            for a normal case that has no mask file (an empty mask).
        pathology: normal, benign, malignant, or None where the source does not say.
        original_file: the image's path relative to the source folder.
    """

    sample_id: str
    image: Path
    masks: tuple[Path, ...]
    pathology: str | None
    original_file: str
    patient_id: str | None = None
    birads: str | None = None
    device: str | None = None
    histology: str | None = None


@dataclass(frozen=True)
class Skip:
    """A file (or folder) the import could not use, and why."""

    file: str
    reason: str


@dataclass
class Scan:
    """What an importer found in a source folder."""

    cases: list[Case] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


def add_case(result: Scan, root: Path, image: Path, masks: tuple[Path, ...], **labels: str | None) -> None:
    """Add the case of an image with its mask files, or skip the image when it has none.

    Args:
        root: the folder `original_file` (and the skip's file) is relative to.
        labels: `sample_id`, `pathology` and any other `Case` fields.
    """
    rel = str(image.relative_to(root))
    if not masks:
        result.skipped.append(Skip(rel, "image without a mask"))
        return
    result.cases.append(Case(image=image, masks=masks, original_file=rel, **labels))


class CaseError(Exception):
    """A case that cannot be imported (unreadable file, irreconcilable mask size): skipped."""


@dataclass(frozen=True)
class LoadedCase:
    image: np.ndarray  # uint8 HxW grey
    mask: np.ndarray  # bool HxW
    resized_from: tuple[int, int] | None  # (width, height) of a mask resized to the image
    merged_masks: int  # number of mask files merged


def reconcile(mask: np.ndarray, size: tuple[int, int], name: str) -> tuple[np.ndarray, bool]:
    """Bring a mask to the image's (width, height): nearest-neighbour resize when only the scale
    differs; a CaseError when the shapes cannot be a resized copy of each other."""
    height, width = mask.shape
    if (width, height) == size:
        return mask, False
    image_aspect = size[0] / size[1]
    if abs(width / height - image_aspect) / image_aspect > ASPECT_TOLERANCE:
        raise CaseError(
            f"{name}: mask is {width}x{height} but its image is {size[0]}x{size[1]} "
            "(different aspect ratio, not a resized copy)"
        )
    from PIL import Image

    resized = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
    return np.asarray(resized) > 127, True


def load_case(case: Case) -> LoadedCase:
    """Decode a case: grey image and the union of its masks at the image's size."""
    try:
        return _load_case(case)
    except UnreadableImage as err:
        raise CaseError(str(err)) from None


def _load_case(case: Case) -> LoadedCase:
    img = read_image(case.image)
    image = to_grey(img)
    size = (image.shape[1], image.shape[0])
    mask = np.zeros(image.shape, dtype=bool)
    resized_from = None
    for path in case.masks:
        part = to_binary(read_image(path))
        original = (part.shape[1], part.shape[0])
        part, was_resized = reconcile(part, size, path.name)
        if was_resized:
            resized_from = original
        mask |= part
    if case.pathology in ("benign", "malignant") and not mask.any():
        # A lesion case without lesion pixels would enter the data with lesion_area 0.
        names = ", ".join(p.name for p in case.masks)
        raise CaseError(f"{names}: {case.pathology} case with an all-black mask (no lesion pixels)")
    return LoadedCase(image=image, mask=mask, resized_from=resized_from, merged_masks=len(case.masks))


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV with stripped, lower-cased header names (a BOM is tolerated)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames:
                raise BadInput(f"{path}: empty CSV; expected a header row")
            return [
                {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
                for row in reader
            ]
    except UnicodeDecodeError as err:
        raise BadInput(f"{path}: not a UTF-8 CSV ({err.reason}); export it as CSV UTF-8") from None


def pick_column(path: Path, header: list[str], wanted: tuple[str, ...], what: str) -> str:
    """The first header name among `wanted` (lower-case), or BadInput naming what is allowed."""
    for name in wanted:
        if name in header:
            return name
    raise BadInput(
        f"{path}: no {what} column; expected one of: {', '.join(wanted)} (found: {', '.join(header)})"
    )


PATHOLOGY_WORDS = {
    "normal": "normal",
    "benign": "benign",
    "b": "benign",
    "malignant": "malignant",
    "m": "malignant",
}


def parse_pathology(value: str) -> str | None:
    """'Benign', 'MALIGNANT', 'b', 'm', 'normal' -> canonical name; None if not recognised."""
    return PATHOLOGY_WORDS.get(value.strip().lower())


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise BadInput(f"{path}: no such folder; {what}")
    return path
