"""`busforge evaluate`: stream two datasets, extract (cached) features and mask statistics, compute metrics.

Rows are read from parquet one batch at a time; only features (a few KB per image), mask
statistics and lesion attribute measures are kept in memory. Without a reference the generated
masks, attribute adherence and the attribute balance are evaluated, and no image is passed through
a network (images are decoded only to measure their lesions' attributes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from busforge.dataset.features import PATHOLOGY_NAMES, SOURCE_NAMES, pathology_name
from busforge.dataset.manifest import MANIFEST, read_manifest
from busforge.errors import BadInput
from busforge.evaluate.adherence import AttributeSamples, adherence, measuring_side, resolve_thresholds
from busforge.evaluate.features import (
    RESIZE_FILTER,
    ExtractionCounts,
    FeatureCache,
    FeatureExtractor,
    extract_features,
)
from busforge.evaluate.fid import KID_SUBSET_SIZE, KID_SUBSETS, scope_metrics
from busforge.evaluate.shape_fidelity import ShapeSamples, mask_shape, shape_fidelity
from busforge.imagefiles import png_size

# A render plan's stratum; recipes may weight several domains, so domain is part of it.
STRATUM = ("domain", "pathology", "size_bin", "echogenicity", "boundary")
BATCH_ROWS = 16
NO_REFERENCE_HINT = (
    "give one with `busforge evaluate DATASET --reference data/real/NAME` (an imported real dataset, "
    "e.g. from `busforge import busi SRC --out data/real/busi`); a dataset rendered with a `real:` "
    "block is compared with its real data by default"
)


@dataclass
class ImageSet:
    """What evaluation keeps of a set of rows: features, pathology names, mask statistics, attributes."""

    features: list[np.ndarray] = field(default_factory=list)
    pathology: list[str] = field(default_factory=list)
    shapes: ShapeSamples = field(default_factory=ShapeSamples)
    attributes: AttributeSamples = field(default_factory=AttributeSamples)
    strata: Counter = field(default_factory=Counter)  # keyed by the values of STRATUM
    sides: list[int] = field(default_factory=list)  # each image's shorter side in pixels (from its mask)

    def matrix(self, num_features: int) -> np.ndarray:
        return np.concatenate(self.features) if self.features else np.zeros((0, num_features), np.float32)


def split_files(dataset: Path, splits: list[str]) -> list[Path]:
    manifest = read_manifest(dataset)
    return [dataset / shard["file"] for split in splits for shard in manifest["splits"][split]["shards"]]


def iter_rows(files: list[Path], columns: list[str]) -> Iterator[list[dict[str, Any]]]:
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns):
            yield batch.to_pylist()


def default_reference(dataset: Path) -> tuple[Path | None, str]:
    """The reference to use when none is given: the real dataset a mixed DATASET was rendered with.

    Returns:
        (path or None, a sentence saying where the reference came from or why there is none).
    """
    real = read_manifest(dataset).get("real") or {}
    if "dataset" not in real:
        return None, (
            f"No reference dataset was given, so there are no FID, KID or shape KS statistics; {NO_REFERENCE_HINT}."
        )
    path = Path(real["dataset"])
    if not (path / MANIFEST).is_file():
        return None, (
            f"{dataset} was mixed with the real dataset {path}, which is not there (from {Path.cwd()}), "
            f"so there are no FID, KID or shape KS statistics; {NO_REFERENCE_HINT}."
        )
    return path, f"Reference: {path}, the real dataset {dataset} was mixed with ({MANIFEST} real.dataset)."


def collect(
    files: list[Path],
    extractor: FeatureExtractor | None,
    cache: FeatureCache | None,
    counts: ExtractionCounts,
    progress: Any,
    *,
    synthetic_only: bool,
    with_shapes: bool,
    with_attributes: bool = False,
    attribute_side: int | None = None,
) -> ImageSet:
    """Features (only with an extractor), pathologies, strata and (optionally) mask statistics and
    lesion attribute measures of FILES (at ATTRIBUTE_SIDE px, `AttributeSamples`)."""
    with_image = extractor is not None or with_attributes
    columns = [*(["image"] if with_image else []), "mask", "source", *STRATUM]
    out = ImageSet(attributes=AttributeSamples(attribute_side))
    for rows in iter_rows(files, columns):
        if synthetic_only:
            rows = [r for r in rows if SOURCE_NAMES[r["source"]] == "synthetic"]
        if rows and extractor is not None:
            out.features.append(
                extract_features([r["image"]["bytes"] for r in rows], extractor, cache, counts)
            )
        for row in rows:
            pathology = pathology_name(row["pathology"])
            out.pathology.append(pathology)
            out.strata[tuple(pathology if k == "pathology" else row[k] for k in STRATUM)] += 1
            if (size := png_size(row["mask"]["bytes"])) is not None:
                out.sides.append(min(size))
            if with_shapes:
                out.shapes.add(pathology, mask_shape(row["mask"]["bytes"]))
            if with_attributes:
                out.attributes.add(row["image"]["bytes"], row["mask"]["bytes"], row)
        progress.update(len(rows))
    return out


RESOLUTION_TOLERANCE = 1.5  # median shorter sides further apart than this factor get a warning


def resolution_warning(generated: ImageSet, reference: ImageSet, input_size: int) -> str | None:
    """A warning when the generated images are of another resolution than the reference's."""
    if not generated.sides or not reference.sides:
        return None
    gen, ref = float(np.median(generated.sides)), float(np.median(reference.sides))
    if max(gen, ref) <= RESOLUTION_TOLERANCE * min(gen, ref):
        return None
    suggested = max(64, int(round(ref / 8)) * 8)
    return (
        f"generated images are {gen:.0f} px, the reference's about {ref:.0f} px (median shorter side): both "
        f"are resized to {input_size} px for the features, so FID/KID also measure the resolution difference; "
        f"render with image_size {suggested} or compare with a reference of the generated resolution"
    )


def balance(manifest: dict[str, Any], realised: Counter) -> dict[str, Any]:
    """Planned (manifest strata) vs realised counts of generated rows, keyed by stratum.

    REALISED is keyed by the values of STRATUM. Manifests written before strata carried a domain
    are compared without it (realised counts summed over domains).
    """
    strata = manifest.get("strata", [])
    names = STRATUM if all("domain" in s for s in strata) else tuple(k for k in STRATUM if k != "domain")
    realised_by_key: Counter = Counter()
    for key, count in realised.items():
        realised_by_key[tuple(v for k, v in zip(STRATUM, key, strict=True) if k in names)] += count
    planned: Counter = Counter()
    for stratum in strata:
        planned[tuple(stratum[k] for k in names)] += int(stratum["count"])
    table = {
        "/".join(str(v) for v in key): {"planned": planned[key], "realised": int(realised_by_key[key])}
        for key in [*planned, *(k for k in realised_by_key if k not in planned)]
    }
    diffs = [abs(v["planned"] - v["realised"]) for v in table.values()]
    return {"key": "/".join(names), "strata": table, "max_abs_diff": max(diffs, default=0)}


def shape_summary(shapes: ShapeSamples) -> dict[str, dict[str, dict[str, float]]]:
    """Mean, spread and quartiles of each mask statistic, per pathology (no reference to compare with)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for pathology in shapes.pathologies():
        out[pathology] = {}
        for name, values in shapes.values[pathology].items():
            v = np.asarray(values, dtype=np.float64)
            q1, median, q3 = np.quantile(v, [0.25, 0.5, 0.75])
            out[pathology][name] = {
                "n_generated": len(v),
                "mean": float(v.mean()),
                "std": float(v.std()),
                "q1": float(q1),
                "median": float(median),
                "q3": float(q3),
            }
    return out


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
    reference: Path | None,
    *,
    split: str,
    extractor: FeatureExtractor | None,
    cache: FeatureCache | None,
    seed: int = 0,
    quiet: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate the generated rows of DATASET against the `split` rows of REFERENCE.

    Without a REFERENCE (and then no extractor is needed) only the generated masks' statistics,
    attribute adherence (BUSI's thresholds) and the attribute balance are computed; `image` is None
    and `shape` holds summary statistics.

    Returns:
        (metrics, details): metrics for metrics.json; details (shape samples, extraction counts)
        for the report.
    """
    from tqdm import tqdm

    manifest = read_manifest(dataset)
    ref_manifest = read_manifest(reference) if reference is not None else {"splits": {}}
    if reference is not None and split not in ref_manifest["splits"]:
        raise BadInput(
            f"{reference}: --split: no split {split!r}; it has {', '.join(sorted(ref_manifest['splits']))}"
        )
    if reference is not None and extractor is None:
        raise ValueError("a reference needs a feature extractor")
    gen_files = split_files(dataset, sorted(manifest["splits"]))
    other_splits = sorted(s for s in ref_manifest["splits"] if s != split)
    total = sum(info["rows"] for info in manifest["splits"].values()) + sum(
        info["rows"] for info in ref_manifest["splits"].values()
    )
    counts = ExtractionCounts()
    progress = tqdm(total=total, unit="img", desc="evaluate", disable=quiet, leave=False)
    ref_set, pool = ImageSet(), ImageSet()
    try:
        # The reference first: the generated rows' attributes are measured at its resolution.
        if reference is not None:
            ref_set = collect(
                split_files(reference, [split]),
                extractor,
                cache,
                counts,
                progress,
                synthetic_only=False,
                with_shapes=True,
                with_attributes=True,
            )
            pool = collect(
                split_files(reference, other_splits),
                extractor,
                cache,
                counts,
                progress,
                synthetic_only=False,
                with_shapes=False,
            )
        generated = collect(
            gen_files,
            extractor,
            cache,
            counts,
            progress,
            synthetic_only=True,
            with_shapes=True,
            with_attributes=True,
            attribute_side=measuring_side(ref_manifest if reference is not None else None, ref_set.sides),
        )
    finally:
        progress.close()
    if len(generated.pathology) < 2:
        raise BadInput(f"{dataset}: fewer than 2 synthetic rows; nothing to evaluate")
    if reference is not None and len(ref_set.pathology) < 2:
        raise BadInput(f"{reference}: split {split!r} has fewer than 2 rows; choose another --split")
    warnings = []
    if reference is None:
        protocol: dict[str, Any] = {
            "features": None,
            "reference": None,
            "reference_split": None,
            "dataset_fingerprint": manifest.get("fingerprint", ""),
        }
        image = None
        shape = shape_summary(generated.shapes)
    else:
        protocol = {
            "features": extractor.identity,
            "preprocessing": RESIZE_FILTER,
            "reference": str(reference),
            "reference_split": split,
            "floor_pool_splits": ",".join(other_splits) or "none",
            "fid": "torchmetrics FrechetInceptionDistance (float64); floor and matched-N by the exact low-rank formula",
            "kid": f"torchmetrics poly_mmd (degree 3), {KID_SUBSETS} subsets of up to {KID_SUBSET_SIZE}, seed {seed}",
            "dataset_fingerprint": manifest.get("fingerprint", ""),
        }
        if (warning := resolution_warning(generated, ref_set, extractor.input_size)) is not None:
            warnings.append(warning)
        image = image_metrics(generated, ref_set, pool, extractor.num_features, seed)
        shape = shape_fidelity(generated.shapes, ref_set.shapes)
    thresholds, thresholds_from = resolve_thresholds(ref_manifest if reference is not None else None)
    metrics = {
        "protocol": protocol,
        "image": image,
        "shape": shape,
        "attributes": adherence(
            generated.attributes,
            ref_set.attributes if reference is not None else None,
            thresholds,
            thresholds_from,
        ),
        "balance": balance(manifest, generated.strata),
        "warnings": warnings,
    }
    details = {
        "generated": generated,
        "reference": ref_set,
        "features_computed": counts.computed,
        "features_cached": counts.cached,
        "generated_splits": sorted(manifest["splits"]),
    }
    return metrics, details
