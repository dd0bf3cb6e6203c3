"""`busforge.json`: what a dataset is (fingerprint, counts) and what its files must hash to."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
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
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = f" ({err.msg} at line {err.lineno})" if isinstance(err, json.JSONDecodeError) else ""
        raise BadInput(f"{path}: not valid JSON{where}; render or import the dataset again") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: not a busforge manifest (a JSON object); render or import the dataset again")
    return data


@contextmanager
def manifest_content(dataset_dir: Path) -> Iterator[None]:
    """Reading what a manifest holds: a missing or mistyped key (an edited or damaged
    busforge.json) becomes one line naming the file instead of a raw KeyError."""
    try:
        yield
    except (KeyError, TypeError, AttributeError) as err:
        what = f"key {str(err.args[0])[:80]!r} missing" if isinstance(err, KeyError) else "malformed content"
        raise BadInput(
            f"{dataset_dir / MANIFEST}: {what}; the manifest was edited or damaged, render or import the "
            "dataset again"
        ) from None
