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
    from busforge.planning import prepare
    from busforge.recipe import load_recipe, reject_ignored_count

    overrides = list(set_ or []) + ([f"count={count}"] if count is not None else [])
    resolved = load_recipe(recipe, overrides)
    reject_ignored_count(resolved, count)
    prepared = prepare(resolved)
    the_plan, resolved = prepared.plan, prepared.recipe
    typer.echo(
        f"recipe {resolved.name} {resolved.version}: {len(the_plan.specs)} samples, "
        f"renderer {resolved.renderer.backend}, shape prior {resolved.shape_prior}"
    )
    if prepared.mix is not None:
        rows = ", ".join(f"{k} {v}" for k, v in prepared.mix.split_rows.items())
        typer.echo(f"real data {prepared.mix.dataset} ({rows}); ratio real:synthetic {resolved.real.ratio}")
    header = f"{'pathology':<10} {'domain':<10} {'size bin':<10} {'range':<13} {'echogenicity':<14} {'boundary':<9} {'count':>7}"
    typer.echo(header)
    typer.echo("-" * len(header))
    for s in the_plan.strata:
        rng = f"{s.size_range[0]:.3f}-{s.size_range[1]:.3f}"
        typer.echo(
            f"{s.pathology:<10} {s.domain:<10} {s.size_bin:<10} {rng:<13} {s.echogenicity:<14} {s.boundary:<9} {s.count:>7}"
        )
    typer.echo(f"fingerprint {prepared.fingerprint}")
