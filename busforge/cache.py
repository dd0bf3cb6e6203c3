"""busforge's one cache folder (weight hashes, evaluation features): `$BUSFORGE_CACHE_DIR`,
else `$XDG_CACHE_HOME/busforge`, else `~/.cache/busforge`."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    root = os.environ.get("BUSFORGE_CACHE_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "busforge"
