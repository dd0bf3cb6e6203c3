"""busforge: synthetic breast-ultrasound datasets from declarative recipes."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

from busforge.errors import BadInput

# Public names, imported on first use so that `import busforge` (and the CLI) start fast.
_LAZY = {
    "ToTensors": "busforge.dataset.tensors",
    "load_recipe": "busforge.api",
    "plan": "busforge.api",
    "render": "busforge.api",
    "RecipePlan": "busforge.api",
}

__all__ = ["BadInput", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'busforge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
