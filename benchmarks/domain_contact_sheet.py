"""Make docs/domain_contact_sheet.png: real BUSI cases beside procedural renders of the same masks.

Row 1: real BUSI images (the shared sample); row 2: the procedural renderer with the shipped `busi`
profile, given each case's own lesion mask (and its pathology), so a reader can judge by eye;
row 3: the same masks without a profile. Labels for the renders alternate over the four
echogenicity x boundary combinations.

Run: python benchmarks/domain_contact_sheet.py [--busi ../shared/data/busi_odd_256/Dataset_BUSI_with_GT]
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from busforge.renderers.procedural import render_bmode
from busforge.renderers.profile import load_profile

TILE = 192
CAPTION = 16
CASES = {"benign": (3, 25, 61, 143), "malignant": (7, 31, 89, 151)}  # BUSI case numbers
LABELS = (
    ("homogeneous", "clear"),
    ("heterogeneous", "clear"),
    ("homogeneous", "unclear"),
    ("heterogeneous", "unclear"),
)


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--busi", type=Path, default=repo.parent / "shared/data/busi_odd_256/Dataset_BUSI_with_GT"
    )
    parser.add_argument("--out", type=Path, default=repo / "docs" / "domain_contact_sheet.png")
    args = parser.parse_args()
    profile = load_profile("busi")
    cases = [(pathology, n) for pathology, numbers in CASES.items() for n in numbers]
    rows = ("real BUSI", "procedural, busi profile", "procedural, no profile")
    sheet = Image.new("L", (TILE * len(cases), len(rows) * (TILE + CAPTION)), color=0)
    draw = ImageDraw.Draw(sheet)
    for col, (pathology, number) in enumerate(cases):
        stem = args.busi / pathology / f"{pathology} ({number})"
        real = Image.open(f"{stem}.png").convert("L")
        mask = np.asarray(
            Image.open(f"{stem}_mask.png").convert("L").resize((256, 256), Image.Resampling.NEAREST)
        )
        echogenicity, boundary = LABELS[col % len(LABELS)]
        tiles = [real]
        for used in (profile, None):
            image = render_bmode(
                mask > 127,
                pathology=pathology,
                echogenicity=echogenicity,
                boundary=boundary,
                seed=100 + col,
                profile=used,
            )
            tiles.append(Image.fromarray(image))
        for row, tile in enumerate(tiles):
            top = row * (TILE + CAPTION)
            sheet.paste(tile.resize((TILE, TILE), Image.Resampling.LANCZOS), (col * TILE, top + CAPTION))
            caption = (
                f"{rows[row]}: {pathology}" if row == 0 else f"{pathology[:3]}/{echogenicity[:6]}/{boundary}"
            )
            draw.text((col * TILE + 3, top + 2), caption, fill=255)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
