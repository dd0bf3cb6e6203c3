"""`busforge evaluate`: stream two datasets, extract (cached) features and mask statistics, compute metrics.

Rows are read from parquet one batch at a time; only features (a few KB per image) and mask
statistics are kept in memory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from busforge.dataset.features import PATHOLOGY_NAMES, SOURCE_NAMES
from busforge.dataset.manifest import read_manifest
from busforge.errors import BadInput
from busforge.evaluate.features import (
    RESIZE_FILTER,
    ExtractionCounts,
    FeatureCache,
    FeatureExtractor,
    extract_features,
)
from busforge.evaluate.fid import KID_SUBSET_SIZE, KID_SUBSETS, scope_metrics
from busforge.evaluate.shape_fidelity import ShapeSamples, mask_shape, shape_fidelity

STRATUM = ("pathology", "size_bin", "echogenicity", "boundary")
BATCH_ROWS = 16


@dataclass
class ImageSet:
    """What evaluation keeps of a set of rows: features, pathology names, mask statistics."""

    features: list[np.ndarray] = field(default_factory=list)
    pathology: list[str] = field(default_factory=list)
    shapes: ShapeSamples = field(default_factory=ShapeSamples)
    strata: Counter = field(default_factory=Counter)

    def matrix(self, num_features: int) -> np.ndarray:
        return np.concatenate(self.features) if self.features else np.zeros((0, num_features), np.float32)


def split_files(dataset: Path, splits: list[str]) -> list[Path]:
    manifest = read_manifest(dataset)
    return [dataset / shard["file"] for split in splits for shard in manifest["splits"][split]["shards"]]


def iter_rows(files: list[Path], columns: list[str]) -> Iterator[list[dict[str, Any]]]:
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns):
            yield batch.to_pylist()


def collect(
    files: list[Path],
    extractor: FeatureExtractor,
    cache: FeatureCache,
    counts: ExtractionCounts,
    progress: Any,
    *,
    synthetic_only: bool,
    with_shapes: bool,
) -> ImageSet:
    columns = ["image", "mask", "source", *STRATUM]
    out = ImageSet()
    for rows in iter_rows(files, columns):
        if synthetic_only:
            rows = [r for r in rows if SOURCE_NAMES[r["source"]] == "synthetic"]
        if rows:
            out.features.append(
                extract_features([r["image"]["bytes"] for r in rows], extractor, cache, counts)
            )
        for row in rows:
            pathology = PATHOLOGY_NAMES[row["pathology"]]
            out.pathology.append(pathology)
            out.strata[(pathology, row["size_bin"], row["echogenicity"], row["boundary"])] += 1
            if with_shapes:
                out.shapes.add(pathology, mask_shape(row["mask"]["bytes"]))
        progress.update(len(rows))
    return out


def balance(manifest: dict[str, Any], realised: Counter) -> dict[str, Any]:
    """Planned (manifest strata) vs realised counts of generated rows, keyed by stratum."""
    table: dict[str, dict[str, int]] = {}
    planned_keys = set()
    for stratum in manifest.get("strata", []):
        key = tuple(stratum[k] for k in STRATUM)
        planned_keys.add(key)
        table["/".join(key)] = {"planned": int(stratum["count"]), "realised": int(realised.get(key, 0))}
    for key, count in realised.items():
        if key not in planned_keys:
            table["/".join(str(k) for k in key)] = {"planned": 0, "realised": int(count)}
    diffs = [abs(v["planned"] - v["realised"]) for v in table.values()]
    return {"strata": table, "max_abs_diff": max(diffs, default=0)}


def image_metrics(
    generated: ImageSet, reference: ImageSet, pool: ImageSet, num_features: int, seed: int
) -> dict[str, dict[str, Any]]:
    """FID/KID with the real floor, overall and per pathology present (>= 2 images) on both sides."""
    gen, ref, rest = (s.matrix(num_features) for s in (generated, reference, pool))
    gen_path, ref_path, rest_path = (np.array(s.pathology) for s in (generated, reference, pool))
    out = {"overall": scope_metrics(gen, ref, rest, seed)}
    for i, name in enumerate(PATHOLOGY_NAMES):
        g, r = gen[gen_path == name], ref[ref_path == name]
        if len(g) >= 2 and len(r) >= 2:
            out[name] = scope_metrics(g, r, rest[rest_path == name], seed + 10 * (i + 1))
    return out


def evaluate(
    dataset: Path,
    reference: Path,
    *,
    split: str,
    extractor: FeatureExtractor,
    cache: FeatureCache,
    seed: int = 0,
    quiet: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate the generated rows of DATASET against the `split` rows of REFERENCE.

    Returns:
        (metrics, details): metrics for metrics.json; details (shape samples, extraction counts)
        for the report.
    """
    from tqdm import tqdm

    manifest = read_manifest(dataset)
    ref_manifest = read_manifest(reference)
    if split not in ref_manifest["splits"]:
        raise BadInput(
            f"{reference}: --split: no split {split!r}; it has {', '.join(sorted(ref_manifest['splits']))}"
        )
    gen_files = split_files(dataset, sorted(manifest["splits"]))
    ref_files = split_files(reference, [split])
    other_splits = sorted(s for s in ref_manifest["splits"] if s != split)
    pool_files = split_files(reference, other_splits)
    total = sum(info["rows"] for info in manifest["splits"].values()) + sum(
        info["rows"] for info in ref_manifest["splits"].values()
    )
    counts = ExtractionCounts()
    progress = tqdm(total=total, unit="img", desc="evaluate", disable=quiet, leave=False)
    try:
        generated = collect(
            gen_files, extractor, cache, counts, progress, synthetic_only=True, with_shapes=True
        )
        ref_set = collect(
            ref_files, extractor, cache, counts, progress, synthetic_only=False, with_shapes=True
        )
        pool = collect(
            pool_files, extractor, cache, counts, progress, synthetic_only=False, with_shapes=False
        )
    finally:
        progress.close()
    if len(generated.pathology) < 2:
        raise BadInput(f"{dataset}: fewer than 2 synthetic rows; nothing to evaluate")
    if len(ref_set.pathology) < 2:
        raise BadInput(f"{reference}: split {split!r} has fewer than 2 rows; choose another --split")
    metrics = {
        "protocol": {
            "features": extractor.identity,
            "preprocessing": RESIZE_FILTER,
            "reference": str(reference),
            "reference_split": split,
            "floor_pool_splits": ",".join(other_splits) or "none",
            "fid": "torchmetrics FrechetInceptionDistance (float64); floor and matched-N by the exact low-rank formula",
            "kid": f"torchmetrics poly_mmd (degree 3), {KID_SUBSETS} subsets of up to {KID_SUBSET_SIZE}, seed {seed}",
            "dataset_fingerprint": manifest.get("fingerprint", ""),
        },
        "image": image_metrics(generated, ref_set, pool, extractor.num_features, seed),
        "shape": shape_fidelity(generated.shapes, ref_set.shapes),
        "balance": balance(manifest, generated.strata),
    }
    details = {
        "generated": generated,
        "reference": ref_set,
        "features_computed": counts.computed,
        "features_cached": counts.cached,
        "generated_splits": sorted(manifest["splits"]),
    }
    return metrics, details
