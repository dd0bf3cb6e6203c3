"""`busforge.json`: what a dataset is (fingerprint, counts) and what its files must hash to."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from busforge import __version__
from busforge.dataset.writer import ShardRecord
from busforge.errors import BadInput

MANIFEST = "busforge.json"
FORMAT = 1


def build_manifest(
    *,
    name: str,
    version: str,
    fingerprint: str,
    renderer: dict[str, Any],
    counts: dict[str, Any],
    strata: list[dict[str, Any]],
    shards: list[ShardRecord],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    splits: dict[str, dict[str, Any]] = {}
    for record in shards:
        split = splits.setdefault(record.split, {"rows": 0, "bytes": 0, "shards": []})
        split["rows"] += record.rows
        split["bytes"] += record.bytes
        split["shards"].append({k: v for k, v in asdict(record).items() if k != "split"})
    return {
        "format": FORMAT,
        "name": name,
        "version": version,
        "fingerprint": fingerprint,
        "busforge_version": __version__,
        "renderer": renderer,
        "counts": counts,
        "strata": strata,
        "splits": splits,
        **(extra or {}),
    }


def read_manifest(dataset_dir: Path) -> dict[str, Any]:
    path = dataset_dir / MANIFEST
    if not path.is_file():
        raise BadInput(
            f"{path}: missing; {dataset_dir} is not a busforge dataset (render or import one first)"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BadInput(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
