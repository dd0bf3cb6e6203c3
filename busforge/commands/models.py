"""`busforge models ...`: write or inspect model weights (the tiny test model for now)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Model weights: write the tiny random-weight test model.", no_args_is_help=True)


@app.command("tiny")
def tiny(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write, e.g. models/tiny.")],
    domains: Annotated[
        str, typer.Option(help="Comma-separated domains to write a LoRA adapter for, e.g. busi,udiat.")
    ] = "busi,udiat",
    seed: Annotated[int, typer.Option(min=0, help="Seed of the random weights.")] = 0,
) -> None:
    """Write a tiny random-weight SD 1.5-shaped pipeline + ControlNet + one LoRA per domain.

    It renders noise: it exists to test the diffusion renderer offline (see recipes/tiny_diffusion.yaml).
    """
    from busforge.errors import BadInput
    from busforge.models.tiny import write_tiny_model

    names = [d.strip() for d in domains.split(",") if d.strip()]
    bad = [d for d in names if not d.replace("_", "").replace("-", "").isalnum()]
    if bad:
        raise BadInput(
            f"--domains: {bad[0]!r} is not a domain name; use letters, digits, - and _ like busi,udiat"
        )
    written = write_tiny_model(out_dir, names, seed=seed)
    for part, folder in written.items():
        typer.echo(f"{part}: {folder}")
