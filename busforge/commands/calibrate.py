"""`busforge calibrate MASK_DIR... | DATASET`: fit a lesion shape prior on real masks, and from an
imported dataset also the appearance profile of its images (one JSON, usable as `shape_prior` and
as `renderer.profile`)."""

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
            "or any folder with --pathology; or one imported dataset (busforge import), which also "
            "gives the appearance profile."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Where to write the prior JSON (use it as shape_prior).")],
    pathology: Annotated[
        str | None, typer.Option(help="Pathology of every mask given (benign or malignant).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Name stored in the prior (default: OUT's stem).")] = None,
) -> None:
    """Fit a calibrated shape prior (per-pathology shape statistics) on real lesion masks; from an
    imported dataset also its appearance profile (fitted on every split but test)."""
    import json

    import numpy as np

    from busforge.dataset.manifest import MANIFEST
    from busforge.errors import BadInput
    from busforge.shapes.calibrate import fit_prior
    from busforge.vocab import PATHOLOGIES

    if pathology is not None and pathology not in PATHOLOGIES:
        raise BadInput(f"--pathology: {pathology!r} is not allowed; allowed: {', '.join(PATHOLOGIES)}")
    if len(mask_dirs) == 1 and (mask_dirs[0] / MANIFEST).is_file():
        prior = _fit_dataset(mask_dirs[0], name or out.stem)
    else:
        prior = fit_prior(mask_dirs, pathology=pathology, name=name or out.stem)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(prior, indent=1) + "\n")
    partial.replace(out)

    header = f"{'pathology':<10} {'masks':>5} " + " ".join(f"{title:>8}" for _, title, _ in _SUMMARY)
    typer.echo("median shape statistics (lengths as fractions of sqrt(image area))")
    typer.echo(header)
    for label, entry in prior["pathologies"].items():
        cells = " ".join(
            f"{fmt.format(float(np.median(entry['stats'][key]))):>8}" for key, _, fmt in _SUMMARY
        )
        typer.echo(f"{label:<10} {entry['count']:>5} {cells}")
    if "appearance" in prior:
        records = prior["appearance"]["records"]
        lesions = sum("lesion_percentile" in r for r in records)
        typer.echo(
            f"appearance profile: {len(records)} images ({lesions} with a lesion) of {prior['appearance']['source']}"
        )
    typer.echo(f"wrote {out}")


def _fit_dataset(dataset: Path, name: str) -> dict:
    """Shape prior (from the masks) and appearance profile (from the images) of an imported dataset."""
    from busforge.renderers.profile import dataset_cases, fit_dataset_profile, fitting_splits
    from busforge.shapes.calibrate import fit_prior_from_masks
    from busforge.vocab import PATHOLOGIES

    splits = fitting_splits(dataset)
    cases = dataset_cases(dataset, splits)
    masks = {
        label: [mask for _, mask, labels in cases if mask is not None and labels["pathology"] == label]
        for label in PATHOLOGIES
    }
    where = f"{dataset} ({', '.join(splits)})"
    prior = fit_prior_from_masks({k: v for k, v in masks.items() if v}, where, name)
    prior["appearance"] = fit_dataset_profile(dataset, name, splits, cases)
    return prior
