"""`busforge import KIND SRC --out data/real/NAME`: a real dataset in busforge's format."""

from __future__ import annotations

from pathlib import Path

import typer


def import_(
    kind: str = typer.Argument(..., help="Source layout: busi, udiat, stu, busbra or folder."),
    src: Path = typer.Argument(..., help="Folder of the downloaded dataset."),
    out: Path = typer.Option(..., "--out", help="Output dataset folder, e.g. data/real/busi."),
    strict: bool = typer.Option(
        False, "--strict", help="Stop at the first unusable file instead of skipping it."
    ),
    domain: str | None = typer.Option(None, "--domain", help="Domain label (default: the dataset's kind)."),
    labels: Path | None = typer.Option(None, "--labels", help="Labels CSV (udiat, busbra, folder)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the split assignment."),
    workers: int = typer.Option(0, "--workers", min=0, help="Decoding processes (0: up to 2)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing dataset at --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Import a real breast-ultrasound dataset (splits, duplicates, attributes, import report)."""
    from busforge.dataset.real import import_real

    report = import_real(
        kind,
        src,
        out,
        strict=strict,
        domain=domain,
        labels=labels,
        seed=seed,
        workers=workers or None,
        force=force,
        progress=not quiet,
    )
    typer.echo(report.text(), nl=False)
    if report.up_to_date:
        typer.echo(f"{out}: already holds this import (fingerprint {report.fingerprint}); nothing to do")
