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


PARAM_KEYS = ("tasks", "profile", "seeds", "test", "set", "augment")


def read_params(path: Path) -> dict:
    """The `downstream:` section of a params file (params.yaml for the DVC stage)."""
    import yaml

    if not path.is_file():
        raise BadInput(f"--params {path}: no such file")
    section = (yaml.safe_load(path.read_text()) or {}).get("downstream") or {}
    if not isinstance(section, dict):
        raise BadInput(f"{path}: downstream: expected a mapping with keys {', '.join(PARAM_KEYS)}")
    unknown = sorted(set(section) - set(PARAM_KEYS))
    if unknown:
        raise BadInput(f"{path}: downstream.{unknown[0]}: unknown key; use {', '.join(PARAM_KEYS)}")
    settings = section.get("set") or {}
    if not isinstance(settings, dict):
        raise BadInput(
            f"{path}: downstream.set: expected a mapping of profile fields, e.g. {{seg_steps: 50}}"
        )
    section["set"] = [f"{k}={v}" for k, v in settings.items()]
    return section


def missing_real(datasets: list[str]) -> str | None:
    """Why the arms cannot be measured (a dataset without validation/test split), or None."""
    from busforge.dataset.manifest import read_manifest
    from busforge.downstream.run import parse_arm

    for spec in datasets:
        path, _ = parse_arm(spec, "none")
        splits = read_manifest(path).get("splits", {})
        absent = [s for s in ("train", "validation", "test") if s not in splits]
        if absent:
            return (
                f"{path} has no {' or '.join(absent)} split: no real data is mixed in, so there is nothing to "
                "select on or test against; add a `real:` block (e.g. `dvc exp run --set-param "
                "extends=recipes/busi_1to1.yaml` after `busforge import busi SRC --out data/real/busi`)"
            )
    return None


def write_headline(path: Path | None, metrics: dict) -> None:
    """--metrics: the headline numbers DVC declares as metrics (the full record stays in OUT)."""
    if path is None:
        return
    from busforge.dataset.writer import write_json_atomic
    from busforge.downstream.report import headline

    write_json_atomic(path, headline(metrics))


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
    profile: Annotated[str | None, typer.Option(help="smoke | cpu | paper (default cpu).")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a profile field, key=value (repeat).")
    ] = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds per arm and task, 0..N-1 (default 1).")] = None,
    augment: Annotated[
        str | None, typer.Option(help="none | ordinary, for arms without @AUGMENT (default none).")
    ] = None,
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
    params: Annotated[
        Path | None,
        typer.Option(
            help="Read tasks, profile, seeds, test, set, augment from this file's `downstream:` section."
        ),
    ] = None,
    metrics: Annotated[
        Path | None,
        typer.Option(
            help="Also write the headline numbers here (the DVC metrics file; details stay in OUT)."
        ),
    ] = None,
    skip_without_real: Annotated[
        bool,
        typer.Option(
            "--skip-without-real",
            help="Record a skip (exit 0) instead of failing when a dataset has no validation/test split.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Train a U-Net segmenter and an EfficientNet-B0 classifier on each DATASET's train split, select on its
    validation split, test on its test split and every --test; write metrics.json, table.md, report.html."""
    import json

    from busforge.downstream.profiles import resolve_profile
    from busforge.downstream.run import AUGMENTS, TASKS, run_downstream

    section = read_params(params) if params is not None else {}
    task = task or section.get("tasks")
    test = test or section.get("test")
    profile = profile or section.get("profile") or "cpu"
    seeds = seeds if seeds is not None else int(section.get("seeds", 1))
    augment = augment or section.get("augment") or "none"
    tasks = list(dict.fromkeys(task or list(TASKS)))
    for name in tasks:
        if name not in TASKS:
            raise BadInput(f"--task {name}: unknown task; use seg or cls")
    if augment not in AUGMENTS:
        raise BadInput(f"--augment {augment}: unknown; use none or ordinary")
    resolved = resolve_profile(profile, [*section.get("set", []), *(set_ or [])])
    if skip_without_real and (reason := missing_real(datasets)) is not None:
        record = {
            "skipped": True,
            "reason": reason,
            "protocol": {"profile": resolved.protocol(), "tasks": tasks},
        }
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
        write_headline(metrics, record)
        typer.echo(f"downstream skipped: {reason}", err=True)
        return
    result = run_downstream(
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

    write_headline(metrics, json.loads((out / "metrics.json").read_text()))
    typer.echo((out / TABLE).read_text().split("\n\n")[0])
    typer.echo(
        f"wrote {out / 'metrics.json'}, {out / TABLE} and {out / 'report.html'} ({result['wall_s']:.0f}s)"
    )
