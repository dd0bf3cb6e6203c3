"""UDIAT Dataset B (Yap et al. 2018): `original/*.png`, `GT/*.png` and the benign/malignant labels
from its spreadsheet `DatasetB.xlsx` (or a CSV exported from it, passed with --labels)."""

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
from busforge.dataset.importers.xlsx import read_xlsx_rows
from busforge.errors import BadInput

# The paper's UDIAT split: 130 train / 33 test (no validation split).
DEFAULT_SPLIT = {"train": 130, "test": 33}
NAME_COLUMNS = ("image", "name", "file", "filename", "image name", "id")
LABEL_COLUMNS = ("type", "pathology", "class", "label", "diagnosis")
HISTOLOGY_COLUMNS = ("tumor type", "histology", "tumour type", "subtype")


def key_of(name: str) -> str:
    """'000012.png', '000012', '12' -> '12': spreadsheets drop leading zeros."""
    stem = Path(name).stem if Path(name).suffix.lower() in (".png", ".jpg", ".bmp") else name
    return str(int(stem)) if stem.isdigit() else stem.lower()


def find_labels(root: Path) -> Path:
    for name in ("DatasetB.xlsx", "DatasetB.csv"):
        if (root / name).is_file():
            return root / name
    found = sorted(root.glob("*.xlsx")) + sorted(root.glob("*.csv"))
    if len(found) == 1:
        return found[0]
    raise BadInput(
        f"{root}: no DatasetB.xlsx; UDIAT's benign/malignant labels come from it (or a CSV exported "
        "from it, passed with --labels)"
    )


def read_labels(path: Path) -> list[dict[str, str]]:
    if path.suffix.lower() == ".xlsx":
        table = read_xlsx_rows(path)
        if not table:
            raise BadInput(f"{path}: empty spreadsheet; expected a header row with Image and Type")
        header = [h.strip().lower() for h in table[0]]
        return [dict(zip(header, row + [""] * (len(header) - len(row)), strict=False)) for row in table[1:]]
    return read_csv_rows(path)


def scan(src: Path, labels: Path | None = None) -> Scan:
    root = src / "DatasetB" if (src / "DatasetB").is_dir() else src
    images_dir = require_dir(root / "original", "UDIAT Dataset B needs original/ and GT/ folders")
    masks_dir = require_dir(root / "GT", "UDIAT Dataset B needs original/ and GT/ folders")
    labels_path = labels or find_labels(root)
    rows = read_labels(labels_path)
    header = list(rows[0]) if rows else []
    name_col = pick_column(labels_path, header, NAME_COLUMNS, "image name")
    label_col = pick_column(labels_path, header, LABEL_COLUMNS, "benign/malignant")
    histology_col = next((c for c in HISTOLOGY_COLUMNS if c in header), None)
    table = {key_of(row[name_col]): row for row in rows if row.get(name_col)}

    result = Scan()
    images, masks = {}, {}
    for folder, found in ((images_dir, images), (masks_dir, masks)):
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                continue
            if is_image_file(path):
                found[key_of(path.stem)] = path
            else:
                result.skipped.append(Skip(str(path.relative_to(root)), "not an image file"))
    for key, path in sorted(masks.items()):
        if key not in images:
            result.skipped.append(Skip(str(path.relative_to(root)), "mask without an image"))
    for key, image in sorted(images.items(), key=lambda kv: (len(kv[0]), kv[0])):
        rel = str(image.relative_to(root))
        row = table.get(key)
        if key not in masks:
            result.skipped.append(Skip(rel, "image without a mask"))
        elif row is None:
            result.skipped.append(Skip(rel, f"no label row for it in {labels_path.name}"))
        elif parse_pathology(row.get(label_col, "")) not in ("benign", "malignant"):
            result.skipped.append(Skip(rel, f"label {row.get(label_col)!r} is not benign or malignant"))
        else:
            result.cases.append(
                Case(
                    sample_id=f"udiat/{image.stem}",
                    image=image,
                    masks=(masks[key],),
                    pathology=parse_pathology(row[label_col]),
                    original_file=rel,
                    histology=(row.get(histology_col) or None) if histology_col else None,
                )
            )
    return result
