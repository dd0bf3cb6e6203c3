"""A finished dataset's counts for DVC: headline numbers in one JSON, per-stratum details beside it.

`dvc metrics show` prints every number of every metrics file as a column, so the file DVC reads
holds only rows per split and shards; the per-stratum counts go to `<name>.details.json`.
"""

from __future__ import annotations

from pathlib import Path

from busforge.dataset.manifest import read_manifest
from busforge.dataset.writer import write_json_atomic


def details_path(metrics_path: Path) -> Path:
    """Where the details of a headline metrics file go: `render.json` -> `render.details.json`."""
    return metrics_path.with_name(f"{metrics_path.stem}.details.json")


def write_count_metrics(dataset_dir: Path, out: Path) -> dict:
    """Write the headline counts to OUT and the per-stratum counts beside it; return the headline."""
    manifest = read_manifest(dataset_dir)
    splits = manifest["splits"]
    headline = {
        "rows": {split: info["rows"] for split, info in splits.items()},
        "shards": sum(len(info["shards"]) for info in splits.values()),
    }
    details = {
        **headline,
        "bytes": sum(info["bytes"] for info in splits.values()),
        "synthetic": manifest["counts"],
    }
    write_json_atomic(details_path(out), details)
    write_json_atomic(out, headline)
    return headline
