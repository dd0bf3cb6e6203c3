"""`busforge preview DIR --out PNG`: a contact sheet per stratum, mask outlines and prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def preview(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("preview.png"),
    per_stratum: Annotated[int, typer.Option(min=1, max=16, help="Samples per stratum.")] = 4,
    split: Annotated[str, typer.Option(help="Split to show.")] = "train",
) -> None:
    """Write a contact sheet of DATASET: one row per pathology x echogenicity x boundary (x domain when several)."""
    from busforge.dataset.manifest import read_manifest
    from busforge.evaluate.preview import contact_sheet

    read_manifest(dataset)  # a clear error when DATASET is not a dataset
    rows = contact_sheet(dataset, out, per_stratum=per_stratum, split=split)
    typer.echo(f"{out}: {rows} strata")
