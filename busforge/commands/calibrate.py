"""`busforge calibrate MASK_DIR...`: fit a lesion shape prior on real masks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# Columns of the summary table: (statistic, header, format).
_SUMMARY = (
    ("area", "area", "{:.3f}"),
    ("aspect", "w/h", "{:.2f}"),
    ("solidity", "solidity", "{:.3f}"),
    ("circularity", "circ.", "{:.3f}"),
    ("cx", "cx", "{:.2f}"),
    ("cy", "cy", "{:.2f}"),
    ("size", "size", "{:.3f}"),
)


def calibrate(
    mask_dirs: Annotated[
        list[Path],
        typer.Argument(
            help="Folders of lesion mask PNGs: named benign/malignant, holding such subfolders, "
            "or any folder with --pathology."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Where to write the prior JSON (use it as shape_prior).")],
    pathology: Annotated[
        str | None, typer.Option(help="Pathology of every mask given (benign or malignant).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Name stored in the prior (default: OUT's stem).")] = None,
) -> None:
    """Fit a calibrated shape prior (per-pathology shape statistics) on real lesion masks."""
    import json

    import numpy as np

    from busforge.errors import BadInput
    from busforge.shapes.calibrate import fit_prior
    from busforge.vocab import PATHOLOGIES

    if pathology is not None and pathology not in PATHOLOGIES:
        raise BadInput(f"--pathology: {pathology!r} is not allowed; allowed: {', '.join(PATHOLOGIES)}")
    prior = fit_prior(mask_dirs, pathology=pathology, name=name or out.stem)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(prior, indent=1) + "\n")

    header = f"{'pathology':<10} {'masks':>5} " + " ".join(f"{title:>8}" for _, title, _ in _SUMMARY)
    typer.echo("median shape statistics (lengths as fractions of sqrt(image area))")
    typer.echo(header)
    for label, entry in prior["pathologies"].items():
        cells = " ".join(
            f"{fmt.format(float(np.median(entry['stats'][key]))):>8}" for key, _, fmt in _SUMMARY
        )
        typer.echo(f"{label:<10} {entry['count']:>5} {cells}")
    typer.echo(f"wrote {out}")
