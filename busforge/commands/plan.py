"""`busforge plan RECIPE`: print the stratum table and the fingerprint, render nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def plan(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override: key.path=value (repeatable).")
    ] = None,
    count: Annotated[
        int | None, typer.Option(min=0, help="Override the number of synthetic samples.")
    ] = None,
) -> None:
    """Show what RECIPE would render: counts per stratum and the dataset fingerprint."""
    from busforge.api import plan as plan_recipe

    typer.echo(plan_recipe(recipe, overrides=set_, count=count).table())
