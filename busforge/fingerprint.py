"""The dataset's version identity: a hash of everything that determines its bytes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from busforge import __version__


def fingerprint(recipe_content: dict[str, Any], renderer_identity: dict[str, Any], **extra: Any) -> str:
    """sha256 (first 16 hex digits) of the resolved recipe, the renderer's identity and the version.

    Where the output goes does not change what is in it, so `output.dir` is left out.
    """
    recipe = json.loads(json.dumps(recipe_content))
    recipe.get("output", {}).pop("dir", None)
    payload = {"recipe": recipe, "renderer": renderer_identity, "busforge": __version__, **extra}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def without_locations(recipe_content: dict[str, Any], locations: Iterable[tuple[str, ...]]) -> dict[str, Any]:
    """The recipe less the keys that only say where a local input lives (a prior, a profile, a
    model folder, the real dataset): their content enters the fingerprint through an identity
    (a sha256), so the same inputs at another path, or named from another folder, give the same
    fingerprint."""
    recipe = json.loads(json.dumps(recipe_content))
    for path in locations:
        node = recipe
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return recipe
