"""`busforge verify DIR`: re-hash shards and check counts, schema and manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def verify(dataset: Annotated[Path, typer.Argument(help="Dataset folder, e.g. data/out.")]) -> None:
    """Exit 0 when DATASET matches its manifest; otherwise name each mismatch and exit 1."""
    from busforge.dataset.verify import verify_dataset

    notes: list[str] = []
    problems = verify_dataset(dataset, notes)
    for problem in problems:
        typer.echo(f"{dataset}: {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{dataset}: ok ({'; '.join(notes)})" if notes else f"{dataset}: ok")
