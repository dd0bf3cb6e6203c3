"""Counts of a finished dataset as a flat-ish JSON of numbers, for `dvc metrics show`."""

from __future__ import annotations

from pathlib import Path

from busforge.dataset.manifest import read_manifest
from busforge.dataset.writer import write_json_atomic


def write_count_metrics(dataset_dir: Path, out: Path) -> dict:
    manifest = read_manifest(dataset_dir)
    metrics = {
        "rows": {split: info["rows"] for split, info in manifest["splits"].items()},
        "bytes": sum(info["bytes"] for info in manifest["splits"].values()),
        "shards": sum(len(info["shards"]) for info in manifest["splits"].values()),
        "synthetic": manifest["counts"],
    }
    write_json_atomic(out, metrics)
    return metrics
