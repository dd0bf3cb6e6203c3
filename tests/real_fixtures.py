"""Generated real-data layouts for importer, split and mixing tests (no shared data needed).

Every image gets its own smooth random background so that unrelated images are far apart in
perceptual hash, and a dark elliptical lesion whose mask is returned.
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image
from scipy import ndimage


def scan_image(rng: np.random.Generator, width: int = 96, height: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """A grey uint8 'scan' with a dark lesion, and its bool mask."""
    background = ndimage.gaussian_filter(rng.normal(size=(height, width)), 8)
    background = (background - background.min()) / (np.ptp(background) + 1e-9)
    image = 60 + 140 * background + rng.normal(0, 6, size=(height, width))
    yy, xx = np.mgrid[:height, :width]
    cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.6) * height
    a, b = rng.uniform(0.1, 0.2) * width, rng.uniform(0.08, 0.15) * height
    mask = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1
    image[mask] = image[mask] * 0.35
    return np.clip(image, 0, 255).astype(np.uint8), mask


def save(path: Path, array: np.ndarray, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    img = Image.fromarray(array)
    if mode == "RGB":
        img = img.convert("RGB")
    elif mode == "RGBA":
        img = img.convert("RGBA")
    elif mode == "1":
        img = img.convert("1")
    img.save(path)
    return path


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    """A minimal one-sheet .xlsx: strings as shared strings, numbers as numbers."""
    strings: list[str] = []
    cells_xml = []
    for r, row in enumerate(rows, start=1):
        cells = []
        for c, value in enumerate(row):
            ref = f"{chr(ord('A') + c)}{r}"
            if isinstance(value, int | float):
                cells.append(f'<c r="{ref}"><v>{value}</v></c>')
            else:
                strings.append(str(value))
                cells.append(f'<c r="{ref}" t="s"><v>{len(strings) - 1}</v></c>')
        cells_xml.append(f'<row r="{r}">{"".join(cells)}</row>')
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    sheet = f'<worksheet xmlns="{main}"><sheetData>{"".join(cells_xml)}</sheetData></worksheet>'
    shared = f'<sst xmlns="{main}">' + "".join(f"<si><t>{escape(s)}</t></si>" for s in strings) + "</sst>"
    with zipfile.ZipFile(path, "w") as book:
        book.writestr("xl/worksheets/sheet1.xml", sheet)
        book.writestr("xl/sharedStrings.xml", shared)
    return path


def make_folder_dataset(
    root: Path, counts: dict[str, int], seed: int = 0, patients_every: int = 0
) -> dict[str, np.ndarray]:
    """The documented `folder` layout with labels.csv; returns name -> grey image."""
    rng = np.random.default_rng(seed)
    rows, images = [], {}
    for pathology, n in counts.items():
        for i in range(n):
            name = f"{pathology}_{i:03d}"
            image, mask = scan_image(rng)
            save(root / "images" / f"{name}.png", image)
            if pathology == "normal":
                mask = np.zeros_like(mask)
            save(root / "masks" / f"{name}.png", mask)
            patient = f"p{i // patients_every}-{pathology}" if patients_every else ""
            rows.append([f"{name}.png", pathology, patient])
            images[name] = image
    write_csv(root / "labels.csv", ["file", "pathology", "patient_id"], rows)
    return images
