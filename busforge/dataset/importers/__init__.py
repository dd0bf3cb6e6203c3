"""Importers of real breast-ultrasound datasets, one file per source layout.

Each module has `scan(src, labels) -> Scan` and `DEFAULT_SPLIT` (absolute sizes where the paper
gives them, ratios otherwise).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from busforge.errors import BadInput

IMPORTERS: dict[str, str] = {
    "busi": "busforge.dataset.importers.busi",
    "udiat": "busforge.dataset.importers.udiat",
    "stu": "busforge.dataset.importers.stu",
    "busbra": "busforge.dataset.importers.busbra",
    "folder": "busforge.dataset.importers.folder",
}


def get_importer(kind: str) -> ModuleType:
    if kind not in IMPORTERS:
        raise BadInput(f"import KIND: unknown kind {kind!r}; allowed: {', '.join(IMPORTERS)}")
    return importlib.import_module(IMPORTERS[kind])
