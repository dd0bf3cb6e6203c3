"""Contact sheets: images with their mask outlines and prompts, grouped by stratum."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image, ImageDraw
from scipy import ndimage

from busforge.dataset.features import pathology_name

TILE = 192
CAPTION = 34


def mask_outline(mask: np.ndarray) -> np.ndarray:
    inside = mask > 0
    return inside & ~ndimage.binary_erosion(inside)


def tile(image_png: bytes, mask_png: bytes, caption: str) -> Image.Image:
    image = np.array(Image.open(io.BytesIO(image_png)).convert("L"))
    mask = np.array(Image.open(io.BytesIO(mask_png)).convert("L"))
    rgb = np.stack([image] * 3, axis=-1)
    edge = ndimage.binary_dilation(mask_outline(mask), iterations=max(1, image.shape[0] // 256))
    rgb[edge] = (255, 200, 0)
    out = Image.new("RGB", (TILE, TILE + CAPTION), "black")
    out.paste(Image.fromarray(rgb).resize((TILE, TILE), Image.BILINEAR), (0, 0))
    draw = ImageDraw.Draw(out)
    words, lines, line = caption.split(), [], ""
    for word in words:  # wrap to the tile width (default bitmap font, ~6 px per character)
        if len(line) + len(word) + 1 > TILE // 6:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    for i, text in enumerate(lines[:3]):
        draw.text((2, TILE + 1 + 11 * i), text, fill="white")
    return out


def contact_sheet(dataset: Path, out: Path, per_stratum: int = 4, split: str = "train") -> int:
    """Write a PNG with up to `per_stratum` samples per (pathology, echogenicity, boundary). Returns rows."""
    groups: dict[tuple, list[Image.Image]] = defaultdict(list)
    for path in sorted((dataset / "data").glob(f"{split}-*.parquet")):
        table = pq.read_table(
            path, columns=["image", "mask", "pathology", "echogenicity", "boundary", "size_bin"]
        )
        for row in table.to_pylist():
            key = (pathology_name(row["pathology"]), row["echogenicity"] or "", row["boundary"] or "")
            if len(groups[key]) < per_stratum:
                caption = f"{key[0]}, {row['size_bin'] or ''}; {key[1]} echo; {key[2]} boundary"
                groups[key].append(tile(row["image"]["bytes"], row["mask"]["bytes"], caption))
    if not groups:
        raise ValueError(f"{dataset}: no {split} rows to preview")
    keys = sorted(groups)
    sheet = Image.new("RGB", (per_stratum * TILE, len(keys) * (TILE + CAPTION)), "black")
    for r, key in enumerate(keys):
        for c, im in enumerate(groups[key]):
            sheet.paste(im, (c * TILE, r * (TILE + CAPTION)))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return len(keys)
