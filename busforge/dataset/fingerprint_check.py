"""`verify` recomputes what a manifest's fingerprint claims: the plan of the stored
`recipe.yaml` with the renderer's identity, where both can be resolved here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from busforge import __version__
from busforge.errors import BadInput


def check_fingerprint(root: Path, manifest: dict[str, Any]) -> tuple[str | None, str]:
    """(a problem line or None, a note saying what was checked)."""
    from busforge.planning import prepare
    from busforge.recipe import load_yaml, recipe_from_dict

    stored = manifest.get("fingerprint")
    if manifest.get("source") == "real":
        return None, "fingerprint of an import not recomputed (it hashes the source files)"
    if manifest.get("busforge_version") != __version__:
        return None, f"fingerprint not recomputed (made by busforge {manifest.get('busforge_version')})"
    path = root / "recipe.yaml"
    try:
        recipe = recipe_from_dict(load_yaml(path.read_text(), str(path)), str(path))
        prepared = prepare(recipe)
        # A `--limit N` render keeps the first N samples; N is the synthetic row count.
        synthetic = sum(manifest.get("counts", {}).get("pathology", {}).values())
        if prepared.fingerprint != stored and synthetic < len(prepared.plan.specs):
            prepared = prepare(recipe, limit=synthetic)
    except BadInput as err:
        return None, f"fingerprint not recomputed ({str(err)[:200]})"
    except Exception as err:  # noqa: BLE001 - a renderer that cannot be built here is a note, not a crash
        return None, f"fingerprint not recomputed ({type(err).__name__}: {str(err)[:200]})"
    if prepared.fingerprint != stored:
        return (
            f"fingerprint: manifest says {stored}, recipe.yaml with this renderer gives {prepared.fingerprint}",
            "fingerprint recomputed",
        )
    return None, "fingerprint recomputed from recipe.yaml and the renderer"
