"""Where a dataset may be written: checked before anything is created.

Relative and absolute paths both work (users need both). Refused: the working directory or any
folder above it (replacing it would delete the user's work, and the staging folder would sit
outside it), a folder that holds busforge itself or the recipe being rendered, a recipe's own
`recipes/` folder, and a path under a file.
"""

from __future__ import annotations

from pathlib import Path

from busforge.errors import BadInput


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_dir(out_dir: Path, recipe: Path | None = None) -> Path:
    """The resolved output folder, or BadInput naming why it cannot be one."""
    resolved = out_dir.expanduser().resolve()
    cwd = Path.cwd().resolve()
    if _inside(cwd, resolved):
        raise BadInput(
            f"{out_dir}: is the working directory or a folder above it; write into a new folder such as data/out"
        )
    package = Path(__file__).resolve().parents[1]
    if _inside(resolved, package) or _inside(package, resolved):
        raise BadInput(f"{out_dir}: inside or above the busforge package ({package}); choose another --out")
    if recipe is not None:
        recipe_file = recipe.expanduser().resolve()
        if _inside(recipe_file, resolved):
            raise BadInput(f"{out_dir}: would hold the recipe {recipe} itself; choose another --out")
        if recipe_file.parent.name == "recipes" and _inside(resolved, recipe_file.parent):
            raise BadInput(
                f"{out_dir}: inside the recipes folder {recipe_file.parent}; datasets go elsewhere, e.g. data/out"
            )
    for parent in resolved.parents:
        if parent.exists():
            if not parent.is_dir():
                raise BadInput(f"{out_dir}: {parent} is a file, not a folder; choose another --out")
            break
    return resolved
