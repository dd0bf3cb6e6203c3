"""`busforge downstream DATASET...`: does a dataset make a better segmenter and classifier? (Tables 3, 4)"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from busforge.errors import BadInput


def parse_init(items: list[str], tasks: list[str]) -> dict[str, Path]:
    """--init TASK=PATH, or a bare PATH when one task runs."""
    out: dict[str, Path] = {}
    for item in items:
        task, sep, path = item.partition("=")
        if not sep:
            if len(tasks) != 1:
                raise BadInput(f"--init {item}: several tasks run; write --init seg=PATH or --init cls=PATH")
            task, path = tasks[0], item
        out[task] = Path(path)
    return out


def downstream(
    datasets: Annotated[
        list[str],
        typer.Argument(
            help="Training datasets (arms), each DATASET or DATASET@ordinary for ordinary augmentation."
        ),
    ],
    task: Annotated[
        list[str] | None, typer.Option("--task", help="seg and/or cls (repeat; default both).")
    ] = None,
    test: Annotated[
        list[str] | None,
        typer.Option(
            "--test", help="Extra test set DATASET[:SPLIT] (default split test; :all = every split)."
        ),
    ] = None,
    profile: Annotated[str, typer.Option(help="smoke | cpu | paper.")] = "cpu",
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a profile field, key=value (repeat).")
    ] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per arm and task (0..N-1).")] = 1,
    augment: Annotated[str, typer.Option(help="none | ordinary, for arms without @AUGMENT.")] = "none",
    baseline: Annotated[
        str | None,
        typer.Option(help="The arm every other is compared with (default: the first real-only arm)."),
    ] = None,
    init: Annotated[
        list[str] | None,
        typer.Option("--init", help="Initial weights, TASK=PATH.safetensors (default random)."),
    ] = None,
    save_models: Annotated[
        bool, typer.Option("--save-models", help="Write model.safetensors + config.json per run.")
    ] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Decode splits without the array cache.")
    ] = False,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("runs/downstream"),
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Train a U-Net segmenter and an EfficientNet-B0 classifier on each DATASET's train split, select on its
    validation split, test on its test split and every --test; write metrics.json, table.md, report.html."""
    from busforge.downstream.profiles import resolve_profile
    from busforge.downstream.run import AUGMENTS, TASKS, run_downstream

    tasks = list(dict.fromkeys(task or list(TASKS)))
    for name in tasks:
        if name not in TASKS:
            raise BadInput(f"--task {name}: unknown task; use seg or cls")
    if augment not in AUGMENTS:
        raise BadInput(f"--augment {augment}: unknown; use none or ordinary")
    resolved = resolve_profile(profile, set_ or [])
    metrics = run_downstream(
        datasets,
        tasks=tasks,
        tests=test or [],
        profile=resolved,
        seeds=seeds,
        augment=augment,
        baseline=baseline,
        out=out,
        save_models=save_models,
        init=parse_init(init or [], tasks),
        quiet=quiet,
        use_cache=not no_cache,
    )
    from busforge.downstream.report import TABLE

    typer.echo((out / TABLE).read_text().split("\n\n")[0])
    typer.echo(
        f"wrote {out / 'metrics.json'}, {out / TABLE} and {out / 'report.html'} ({metrics['wall_s']:.0f}s)"
    )
