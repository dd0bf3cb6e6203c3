"""`busforge render RECIPE`: render a recipe into a versioned Hugging Face-format dataset."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class Engine(StrEnum):
    local = "local"
    ray = "ray"


def render(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML, e.g. recipes/demo.yaml.")],
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: the recipe's output.dir).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a recipe field: key.path=value (repeatable).")
    ] = None,
    count: Annotated[
        int | None, typer.Option(min=0, help="Override the number of synthetic samples.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=0, help="Render only the first N samples of the plan (a quick look).")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=0, help="Render processes for CPU renderers; 0 = one per CPU core. Bytes do not depend on it."
        ),
    ] = 0,
    force: Annotated[
        bool, typer.Option(help="Replace an output or staging folder of another recipe.")
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            help="No progress bars or library notices (diffusers, transformers, peft); print only the result line."
        ),
    ] = False,
    metrics: Annotated[
        Path | None, typer.Option(help="Also write row and stratum counts as a JSON metrics file (for DVC).")
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option(
            help="Who renders the shards: this machine, or a Ray cluster. Bytes do not depend on it."
        ),
    ] = Engine.local,
    address: Annotated[
        str | None,
        typer.Option(
            help="--engine ray: the cluster's address ('auto': the running one); default: a local Ray for this run."
        ),
    ] = None,
    ray_workers: Annotated[
        int,
        typer.Option(
            min=0, help="--engine ray: actors; 0 = one per GPU for GPU renderers, else one per CPU."
        ),
    ] = 0,
    gpus_per_worker: Annotated[
        float | None,
        typer.Option(
            min=0, help="--engine ray: GPUs each actor claims (default 1 for GPU renderers, else 0)."
        ),
    ] = None,
) -> None:
    """Render RECIPE. Resumes an interrupted run; does nothing when the output is already this dataset."""
    from busforge.api import render as render_recipe

    outcome = render_recipe(
        recipe,
        count=count,
        out=out,
        overrides=set_,
        limit=limit,
        workers=workers,
        force=force,
        quiet=quiet,
        metrics=metrics,
        engine=engine.value,
        address=address,
        ray_workers=ray_workers,
        gpus_per_worker=gpus_per_worker,
    )
    typer.echo(outcome.summary())
