"""busforge from Python: `load_recipe`, `plan` and `render`, the functions the CLI commands call.

    import busforge
    recipe = busforge.load_recipe("recipes/demo.yaml", {"image_size": 128})
    print(busforge.plan(recipe, count=50).table())
    result = busforge.render(recipe, count=50, out="data/demo50")
    ds = result.load()  # the DatasetDict, as `datasets.load_dataset("data/demo50")`

Bad input raises `busforge.BadInput` with the same one-line message the CLI prints. Overrides are
the CLI's `--set` arguments: a mapping `{"pathology.benign": 0.7}` or strings `["pathology.benign=0.7"]`;
an error in a value names it as `--set KEY=VALUE`. Heavy libraries load inside the functions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from busforge.errors import BadInput

if TYPE_CHECKING:
    from busforge.executors.local import RenderOutcome
    from busforge.recipe import Recipe
    from busforge.sample_plan import Stratum

Overrides = Mapping[str, Any] | Sequence[str] | None


def override_texts(overrides: Overrides, count: int | None = None) -> list[str]:
    """`--set` strings from a mapping or a list of strings, plus `count=N` when COUNT is given."""
    if overrides is None:
        texts: list[str] = []
    elif isinstance(overrides, Mapping):
        # JSON is YAML, so `--set`'s own parser reads each value back as given ("1:2" stays text).
        texts = [f"{key}={json.dumps(value, default=str)}" for key, value in overrides.items()]
    elif isinstance(overrides, str):
        raise BadInput(f"overrides {overrides!r}: give a mapping or a list of KEY.PATH=VALUE strings")
    else:
        texts = [str(text) for text in overrides]
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise BadInput(f"count {count!r}: a whole number of samples, 0 or more")
        texts.append(f"count={count}")
    return texts


def load_recipe(
    path: str | os.PathLike[str], overrides: Overrides = None, *, count: int | None = None
) -> Recipe:
    """Read a recipe file, resolve `extends`, apply OVERRIDES (and COUNT) and validate it."""
    from busforge.recipe import load_recipe as read_recipe
    from busforge.recipe import reject_ignored_count

    recipe = read_recipe(Path(path), override_texts(overrides, count))
    reject_ignored_count(recipe, count)
    return recipe


def _recipe(recipe: str | os.PathLike[str] | Recipe, overrides: Overrides, count: int | None) -> Recipe:
    """A recipe given as a path or as a `Recipe`, with OVERRIDES and COUNT applied."""
    from busforge.recipe import Recipe, apply_overrides, recipe_from_dict, reject_ignored_count

    if isinstance(recipe, str | os.PathLike):
        return load_recipe(recipe, overrides, count=count)
    if not isinstance(recipe, Recipe):
        raise BadInput(f"recipe {recipe!r}: give a recipe file path or a busforge.load_recipe(...) result")
    texts = override_texts(overrides, count)
    if texts:
        data = apply_overrides(recipe.model_dump(mode="json"), texts)
        recipe = recipe_from_dict(data, recipe.source, texts)
        reject_ignored_count(recipe, count)
    return recipe


@dataclass(frozen=True)
class RecipePlan:
    """What a recipe would render, decided before the first pixel (`busforge plan` prints `table()`)."""

    recipe: Recipe  # resolved: with real data mixed in, its pathology weights follow the real split
    samples: int  # synthetic samples
    rows: int  # rows of the output, real ones included
    strata: list[Stratum]
    fingerprint: str
    real: dict[str, Any] | None  # {"dataset", "ratio", "rows": {split: n}} when real data is mixed in

    def table(self) -> str:
        recipe = self.recipe
        lines = [
            f"recipe {recipe.name} {recipe.version}: {self.samples} samples, "
            f"renderer {recipe.renderer.backend}, shape prior {recipe.shape_prior}"
        ]
        if self.real is not None:
            rows = ", ".join(f"{k} {v}" for k, v in self.real["rows"].items())
            lines.append(
                f"real data {self.real['dataset']} ({rows}); ratio real:synthetic {self.real['ratio']}"
            )
        header = (
            f"{'pathology':<10} {'domain':<10} {'size bin':<10} {'range':<13} {'echogenicity':<14} "
            f"{'boundary':<9} {'count':>7}"
        )
        lines += [header, "-" * len(header)]
        for s in self.strata:
            rng = f"{s.size_range[0]:.3f}-{s.size_range[1]:.3f}"
            lines.append(
                f"{s.pathology:<10} {s.domain:<10} {s.size_bin:<10} {rng:<13} {s.echogenicity:<14} "
                f"{s.boundary:<9} {s.count:>7}"
            )
        lines.append(f"fingerprint {self.fingerprint}")
        return "\n".join(lines)


def plan(
    recipe: str | os.PathLike[str] | Recipe, *, overrides: Overrides = None, count: int | None = None
) -> RecipePlan:
    """The strata, counts and fingerprint RECIPE (a path or a `Recipe`) would render; renders nothing."""
    from busforge.planning import prepare

    prepared = prepare(_recipe(recipe, overrides, count))
    mix = prepared.mix
    real = (
        {"dataset": mix.dataset, "ratio": prepared.recipe.real.ratio, "rows": dict(mix.split_rows)}
        if mix is not None
        else None
    )
    return RecipePlan(
        recipe=prepared.recipe,
        samples=len(prepared.plan.specs),
        rows=prepared.rows,
        strata=list(prepared.plan.strata),
        fingerprint=prepared.fingerprint,
        real=real,
    )


def render(
    recipe: str | os.PathLike[str] | Recipe,
    *,
    count: int | None = None,
    out: str | os.PathLike[str] | None = None,
    overrides: Overrides = None,
    limit: int | None = None,
    workers: int = 0,
    force: bool = False,
    quiet: bool = False,
    metrics: str | os.PathLike[str] | None = None,
    engine: Literal["local", "ray"] = "local",
    address: str | None = None,
    ray_workers: int = 0,
    gpus_per_worker: float | None = None,
) -> RenderOutcome:
    """Render RECIPE (a path or a `Recipe`) into OUT (default: the recipe's `output.dir`).

    Resumes an interrupted run and does nothing when OUT already is this dataset. Returns the
    outcome: `.out_dir`, `.fingerprint`, `.rows`, ... and `.load()`, the `datasets.DatasetDict`.
    (A path and a loader rather than the DatasetDict itself: a render may be many GB, and a
    script that renders for a later job need not read it back.) `workers=0`: one per CPU core.
    """
    if engine not in ("local", "ray"):
        raise BadInput(f"engine {engine!r}: use local or ray")
    for name, value in (("limit", limit), ("workers", workers), ("ray_workers", ray_workers)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise BadInput(f"{name} {value!r}: a whole number, 0 or more")
    if quiet:
        from busforge.quiet import set_quiet

        set_quiet()
    resolved = _recipe(recipe, overrides, count)
    out_dir = Path(out) if out is not None else None
    if engine == "ray":
        from busforge.executors.ray import run_render_ray

        outcome = run_render_ray(
            resolved,
            out_dir=out_dir,
            address=address,
            ray_workers=ray_workers or None,
            gpus_per_worker=gpus_per_worker,
            force=force,
            quiet=quiet,
            limit=limit,
        )
    else:
        from busforge.executors.local import run_render
        from busforge.executors.threads import available_cores

        outcome = run_render(
            resolved,
            out_dir=out_dir,
            workers=workers or available_cores(),
            force=force,
            quiet=quiet,
            limit=limit,
        )
    if metrics is not None:
        from busforge.dataset.metrics import write_count_metrics

        write_count_metrics(outcome.out_dir, Path(metrics))
    return outcome
