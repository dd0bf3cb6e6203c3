"""BUSI (Al-Dhabyani et al. 2020): `Dataset_BUSI_with_GT/<class>/<class> (N).png` beside
`<class> (N)_mask.png` and, for cases with several lesions, `_mask_1.png`, `_mask_2.png`."""

from __future__ import annotations

import re
from pathlib import Path

from busforge.dataset.importers.base import Scan, Skip, add_case, is_image_file, require_dir
from busforge.imagefiles import BUSI_MASK_NAME
from busforge.vocab import NORMAL, PATHOLOGIES

CLASSES = (*PATHOLOGIES, NORMAL)
# The paper's BUSI split (benign + malignant cases; normal cases follow the same proportions).
DEFAULT_SPLIT = {"train": 396, "validation": 54, "test": 197}


def natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def find_root(src: Path) -> Path:
    inner = src / "Dataset_BUSI_with_GT"
    return inner if inner.is_dir() else src


def scan(src: Path, labels: Path | None = None) -> Scan:
    root = require_dir(
        find_root(src), "give the BUSI folder holding Dataset_BUSI_with_GT/ or its class folders"
    )
    result = Scan()
    for entry in sorted(root.iterdir(), key=lambda p: natural_key(p.name)):
        if entry.name.startswith("."):
            continue
        rel = str(entry.relative_to(root))
        if not entry.is_dir():
            result.skipped.append(Skip(rel, "not inside a class folder (benign/, malignant/, normal/)"))
        elif entry.name.lower() not in CLASSES:
            result.skipped.append(Skip(rel + "/", f"unknown class folder; expected {', '.join(CLASSES)}"))
        else:
            scan_class(root, entry, entry.name.lower(), result)
    result.cases.sort(key=lambda c: natural_key(c.sample_id))
    return result


def scan_class(root: Path, folder: Path, pathology: str, result: Scan) -> None:
    images: dict[str, Path] = {}
    masks: dict[str, list[tuple[int, Path]]] = {}
    for path in folder.iterdir():
        if path.name.startswith("."):
            continue
        if not is_image_file(path):
            result.skipped.append(Skip(str(path.relative_to(root)), "not an image file"))
            continue
        match = BUSI_MASK_NAME.match(path.stem)
        if match:
            masks.setdefault(match["stem"], []).append((int(match["n"] or 0), path))
        else:
            images[path.stem] = path
    for stem, files in masks.items():
        if stem not in images:
            for _, path in files:
                result.skipped.append(Skip(str(path.relative_to(root)), "mask without an image"))
    for stem, image in images.items():
        lesions = tuple(path for _, path in sorted(masks.get(stem, [])))
        add_case(result, root, image, lesions, sample_id=f"busi/{stem}", pathology=pathology)
