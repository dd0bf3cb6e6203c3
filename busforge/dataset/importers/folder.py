"""A generic layout for in-house data (documented in docs/real_data.md):

    SRC/images/<name>.png            grey or RGB; .png .jpg .jpeg .bmp .tif .tiff
    SRC/masks/<name>.png             or <name>_mask.png; extra lesions <name>_mask_1.png, ... (union)
    SRC/labels.csv                   optional (or --labels): file,pathology[,patient_id,birads,device,histology]

`pathology` is normal, benign or malignant; a normal image may have no mask (empty mask). Without a
labels CSV every pathology is unknown (null). With one, an image without a row is skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

from busforge.dataset.importers.base import (
    Case,
    Scan,
    Skip,
    is_image_file,
    parse_pathology,
    pick_column,
    read_csv_rows,
    require_dir,
)

MASK_NAME = re.compile(r"^(?P<stem>.+?)(?:_mask(?:_(?P<n>\d+))?)?$")
DEFAULT_SPLIT = {"train": 0.7, "validation": 0.1, "test": 0.2}
EXTRA_COLUMNS = ("patient_id", "birads", "device", "histology")


def scan(src: Path, labels: Path | None = None) -> Scan:
    images_dir = require_dir(
        src / "images", "the folder layout needs images/ and masks/ (see docs/real_data.md)"
    )
    masks_dir = require_dir(
        src / "masks", "the folder layout needs images/ and masks/ (see docs/real_data.md)"
    )
    labels_path = labels or (src / "labels.csv" if (src / "labels.csv").is_file() else None)
    table: dict[str, dict[str, str]] | None = None
    file_col = path_col = None
    if labels_path is not None:
        rows = read_csv_rows(labels_path)
        header = list(rows[0]) if rows else []
        file_col = pick_column(labels_path, header, ("file", "image", "filename", "name"), "image file")
        path_col = pick_column(labels_path, header, ("pathology", "label", "class"), "pathology")
        table = {Path(row[file_col]).stem: row for row in rows if row.get(file_col)}

    result = Scan()
    images: dict[str, Path] = {}
    masks: dict[str, list[tuple[int, Path]]] = {}
    for folder in (images_dir, masks_dir):
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                continue
            if not is_image_file(path):
                result.skipped.append(Skip(str(path.relative_to(src)), "not an image file"))
            elif folder is images_dir:
                images[path.stem] = path
            else:
                match = MASK_NAME.match(path.stem)
                masks.setdefault(match["stem"], []).append((int(match["n"] or 0), path))
    for stem, files in sorted(masks.items()):
        if stem not in images:
            for _, path in files:
                result.skipped.append(Skip(str(path.relative_to(src)), "mask without an image"))
    for stem, image in sorted(images.items()):
        rel = str(image.relative_to(src))
        row = table.get(stem) if table is not None else {}
        if row is None:
            result.skipped.append(Skip(rel, f"no row for it in {labels_path.name}"))
            continue
        pathology = None
        if table is not None:
            pathology = parse_pathology(row.get(path_col, ""))
            if pathology is None:
                result.skipped.append(
                    Skip(rel, f"pathology {row.get(path_col)!r} is not normal, benign or malignant")
                )
                continue
        if stem not in masks and pathology != "normal":
            result.skipped.append(Skip(rel, "image without a mask (only normal images may have none)"))
            continue
        result.cases.append(
            Case(
                sample_id=f"folder/{stem}",
                image=image,
                masks=tuple(path for _, path in sorted(masks.get(stem, []))),
                pathology=pathology,
                original_file=rel,
                **{col: (row.get(col) or None) for col in EXTRA_COLUMNS},
            )
        )
    if table is not None:
        for stem in sorted(set(table) - set(images)):
            result.skipped.append(Skip(f"{labels_path.name}:{stem}", "label row without an image"))
    return result
