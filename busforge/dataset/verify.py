"""Check a dataset folder against its manifest: hashes, row counts, schema and planned counts."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from busforge.dataset.features import SOURCE_NAMES, dataset_features, pathology_name
from busforge.dataset.hashing import sha256_file
from busforge.dataset.manifest import manifest_content, read_manifest
from busforge.errors import BadInput

COUNTED = ("pathology", "size_bin", "echogenicity", "boundary", "domain")


SWAP_RETRIES = 5


def _folder_identity(root: Path) -> tuple[int, int] | None:
    try:
        stat = root.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def verify_dataset(root: Path, notes: list[str] | None = None) -> list[str]:
    """Every mismatch found, one line each; empty when the dataset is intact.

    A `render --force` replaces the folder by renaming a new one into place; a check that ran
    across that rename (manifest of one dataset, shards of the other) is done again, so a swap
    is never reported as corruption.
    """
    for attempt in range(SWAP_RETRIES):
        before = _folder_identity(root)
        try:
            manifest = read_manifest(root)
            with manifest_content(root):
                problems = _check(root, manifest)
        except BadInput:
            if attempt + 1 == SWAP_RETRIES or (before is not None and _folder_identity(root) == before):
                raise
            time.sleep(0.2)  # the folder was being swapped (or is briefly absent): look again
            continue
        if _folder_identity(root) == before:
            from busforge.dataset.fingerprint_check import check_fingerprint

            problem, note = check_fingerprint(root, manifest)
            if notes is not None:
                notes.append(note)
            return problems + ([problem] if problem else [])
    return problems


def _check(root: Path, manifest: dict) -> list[str]:
    problems: list[str] = []
    expected_schema = dataset_features().arrow_schema
    listed = set()
    synthetic_counts: dict[str, Counter] = {c: Counter() for c in COUNTED}
    for split, info in manifest["splits"].items():
        split_rows = 0
        for shard in info["shards"]:
            path = root / shard["file"]
            listed.add(shard["file"])
            if not path.is_file():
                problems.append(f"{shard['file']}: missing")
                continue
            if path.stat().st_size != shard["bytes"]:
                problems.append(
                    f"{shard['file']}: {path.stat().st_size} bytes, manifest says {shard['bytes']}"
                )
            if sha256_file(path) != shard["sha256"]:
                problems.append(f"{shard['file']}: sha256 differs from the manifest (corrupted or modified)")
                continue
            try:
                parquet = pq.ParquetFile(path)
            except Exception as err:  # a shard that does not parse is a finding, not a crash
                problems.append(f"{shard['file']}: not readable as parquet ({err})")
                continue
            if parquet.metadata.num_rows != shard["rows"]:
                problems.append(
                    f"{shard['file']}: {parquet.metadata.num_rows} rows, manifest says {shard['rows']}"
                )
            if not parquet.schema_arrow.equals(expected_schema, check_metadata=False):
                problems.append(f"{shard['file']}: schema differs from busforge's dataset features")
            split_rows += parquet.metadata.num_rows
            table = parquet.read(columns=["source", *COUNTED])
            source = table.column("source").to_pylist()
            for column in COUNTED:
                values = table.column(column).to_pylist()
                if column == "pathology":
                    values = [pathology_name(v) for v in values]
                synthetic_counts[column].update(
                    v for v, s in zip(values, source, strict=True) if SOURCE_NAMES[s] == "synthetic"
                )
        if split_rows != info["rows"]:
            problems.append(f"split {split}: {split_rows} rows in shards, manifest says {info['rows']}")
    for path in sorted((root / "data").glob("*.parquet")) if (root / "data").exists() else []:
        rel = str(path.relative_to(root))
        if rel not in listed:
            problems.append(f"{rel}: not listed in the manifest")
    for column, planned in manifest.get("counts", {}).items():
        actual = dict(synthetic_counts.get(column, {}))
        if column in synthetic_counts and actual != planned:
            problems.append(
                f"counts of {column}: data has {dict(sorted(actual.items()))}, manifest says {planned}"
            )
    for name in ("README.md", "recipe.yaml"):
        if not (root / name).is_file():
            problems.append(f"{name}: missing")
    return problems
