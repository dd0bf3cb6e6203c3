"""Make docs/procedural_contact_sheet.png: the procedural renderer over its 8 conditions.

Rows: benign, malignant. Columns: homogeneous/heterogeneous x clear/unclear.
Masks are simple ellipses (lobulated for malignant), so the sheet does not depend on
the shape priors. Run: python benchmarks/contact_sheet.py [--out PATH] [--seed N]
"""

import argparse
from itertools import product
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from busforge.renderers.procedural import render_bmode

TILE = 256
CAPTION = 18


def ellipse_mask(
    size: int,
    centre: tuple[float, float],
    axes: tuple[float, float],
    angle_deg: float,
    lobulation: float = 0.0,
) -> np.ndarray:
    """Ellipse (fractions of the image), optionally lobulated, as an HxW bool mask."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32) / size
    dy, dx = rows - centre[1], cols - centre[0]
    theta = np.deg2rad(angle_deg)
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    radius = np.hypot(u / axes[0], v / axes[1])
    polar = np.arctan2(v, u)
    radius *= 1.0 + lobulation * (np.sin(5 * polar) + 0.6 * np.sin(9 * polar + 1.0))
    return radius <= 1.0


def make_sheet(seed: int, size: int = 512) -> Image.Image:
    conditions = list(product(("homogeneous", "heterogeneous"), ("clear", "unclear")))
    sheet = Image.new("L", (TILE * len(conditions), 2 * (TILE + CAPTION)), color=0)
    draw = ImageDraw.Draw(sheet)
    for row, pathology in enumerate(("benign", "malignant")):
        if pathology == "benign":
            mask = ellipse_mask(size, (0.5, 0.34), (0.2, 0.11), 8.0)
        else:
            mask = ellipse_mask(size, (0.48, 0.36), (0.2, 0.15), -12.0, lobulation=0.07)
        for col, (echogenicity, boundary) in enumerate(conditions):
            image = render_bmode(
                mask,
                pathology=pathology,
                echogenicity=echogenicity,
                boundary=boundary,
                seed=seed + 10 * row + col,
            )
            tile = Image.fromarray(image).resize((TILE, TILE), Image.Resampling.LANCZOS)
            top = row * (TILE + CAPTION)
            sheet.paste(tile, (col * TILE, top + CAPTION))
            draw.text((col * TILE + 4, top + 3), f"{pathology} / {echogenicity} / {boundary}", fill=255)
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "docs" / "procedural_contact_sheet.png",
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    make_sheet(args.seed).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
