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
    """Write a PNG with up to `per_stratum` samples per (domain, pathology, echogenicity, boundary).

    Captions name the domain when the split holds several (a two-domain render's rows look alike
    otherwise). Returns the number of rows (strata) on the sheet.
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for path in sorted((dataset / "data").glob(f"{split}-*.parquet")):
        table = pq.read_table(
            path, columns=["image", "mask", "pathology", "echogenicity", "boundary", "size_bin", "domain"]
        )
        for row in table.to_pylist():
            key = (
                row["domain"] or "",
                pathology_name(row["pathology"]),
                row["echogenicity"] or "",
                row["boundary"] or "",
            )
            if len(groups[key]) < per_stratum:
                groups[key].append(row)
    if not groups:
        raise ValueError(f"{dataset}: no {split} rows to preview")
    several_domains = len({key[0] for key in groups}) > 1
    keys = sorted(groups)
    sheet = Image.new("RGB", (per_stratum * TILE, len(keys) * (TILE + CAPTION)), "black")
    for r, key in enumerate(keys):
        domain, pathology, echo, boundary = key
        for c, row in enumerate(groups[key]):
            where = f"{domain}: " if several_domains else ""
            caption = f"{where}{pathology}, {row['size_bin'] or ''}; {echo} echo; {boundary} boundary"
            sheet.paste(
                tile(row["image"]["bytes"], row["mask"]["bytes"], caption), (c * TILE, r * (TILE + CAPTION))
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return len(keys)
