"""BUS-BRA (Gómez-Flores et al. 2023): `Images/bus_XXXX-s.png`, `Masks/mask_XXXX-s.png` and
`bus_data.csv` (ID, Case = patient, Histology, Pathology, BIRADS, Device)."""

from __future__ import annotations

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
from busforge.errors import BadInput

DEFAULT_SPLIT = {"train": 0.7, "validation": 0.1, "test": 0.2}


def find_root(src: Path) -> Path:
    inner = src / "BUSBRA"
    return inner if inner.is_dir() else src


def scan(src: Path, labels: Path | None = None) -> Scan:
    root = find_root(src)
    images_dir = require_dir(root / "Images", "BUS-BRA needs Images/, Masks/ and bus_data.csv")
    masks_dir = require_dir(root / "Masks", "BUS-BRA needs Images/, Masks/ and bus_data.csv")
    csv_path = labels or root / "bus_data.csv"
    if not csv_path.is_file():
        raise BadInput(f"{csv_path}: missing; BUS-BRA's labels come from bus_data.csv (or pass --labels)")
    rows = read_csv_rows(csv_path)
    header = list(rows[0]) if rows else []
    id_col = pick_column(csv_path, header, ("id",), "image id")
    path_col = pick_column(csv_path, header, ("pathology",), "pathology")
    table = {row[id_col]: row for row in rows}

    result = Scan()
    images = {p.stem: p for p in images_dir.iterdir() if is_image_file(p)}
    masks = {p.stem.removeprefix("mask_"): p for p in masks_dir.iterdir() if is_image_file(p)}
    for path in sorted(images_dir.iterdir()):
        if not path.name.startswith(".") and not is_image_file(path):
            result.skipped.append(Skip(str(path.relative_to(root)), "not an image file"))
    for key, path in sorted(masks.items()):
        if f"bus_{key}" not in images:
            result.skipped.append(Skip(str(path.relative_to(root)), "mask without an image"))
    for stem, image in sorted(images.items()):
        rel = str(image.relative_to(root))
        mask = masks.get(stem.removeprefix("bus_"))
        row = table.get(stem)
        if mask is None:
            result.skipped.append(Skip(rel, "image without a mask"))
        elif row is None:
            result.skipped.append(Skip(rel, f"no row with ID {stem} in {csv_path.name}"))
        elif parse_pathology(row.get(path_col, "")) is None:
            result.skipped.append(Skip(rel, f"pathology {row.get(path_col)!r} is not benign or malignant"))
        else:
            result.cases.append(
                Case(
                    sample_id=f"busbra/{stem}",
                    image=image,
                    masks=(mask,),
                    pathology=parse_pathology(row[path_col]),
                    original_file=rel,
                    patient_id=row.get("case") or None,
                    birads=row.get("birads") or None,
                    device=row.get("device") or None,
                    histology=row.get("histology") or None,
                )
            )
    for key in sorted(set(table) - set(images)):
        result.skipped.append(Skip(f"{csv_path.name}:{key}", "label row without an image"))
    return result
