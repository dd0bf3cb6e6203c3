"""Mixing an imported real dataset into a recipe's output (`real:` in a recipe).

The output's train split holds the real train rows (none for "0:1") plus
`synthetic_count(mix)` synthetic rows; its validation and test splits are the real ones, untouched.

Rounding: synthetic rows = floor(synthetic / real * real train rows + 0.5) (half up), so "1:2"
on 130 real rows gives exactly 260 and "2:3" on 5 rows gives 8. "0:1" (synthetic only) renders the
recipe's `count`; "1:0" (real only) renders none. Every real train row counts, normal cases too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from busforge.errors import BadInput
from busforge.vocab import NORMAL, PATHOLOGIES

KINDS = ("busi", "udiat", "stu", "busbra", "folder")


@dataclass(frozen=True)
class RealMix:
    dataset: Path
    fingerprint: str
    real: float  # ratio parts, REAL:SYNTHETIC
    synthetic: float
    split_rows: dict[str, int]  # rows per split of the real dataset
    train_pathology: dict[str, int]  # real train rows per pathology (benign, malignant, normal)
    domain: str  # the real data's domain
    kind: str = "folder"  # the importer that made it (busi, udiat, ...): names the source on the card
    recipe_count: int = 0  # the recipe's `count`, rendered for "0:1"
    shards: dict[str, list[str]] | None = None  # split -> shard files, in order

    @property
    def ratio(self) -> str:
        return f"{_part(self.real)}:{_part(self.synthetic)}"


def _part(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def import_command(dataset: Path) -> str:
    kind = next((k for k in KINDS if k in dataset.name.lower()), "KIND")
    return f"busforge import {kind} SRC --out {dataset}"


def resolve_real(recipe) -> RealMix | None:
    """The recipe's real dataset, read from its manifest; None without a `real:` block."""
    from busforge.dataset.manifest import MANIFEST, manifest_content, read_manifest

    if recipe.real is None:
        return None
    dataset = Path(recipe.real.dataset)
    if not (dataset / MANIFEST).is_file():
        raise BadInput(
            f"real.dataset: {dataset}: no imported real dataset there; make it first with "
            f"`{import_command(dataset)}`"
        )
    manifest = read_manifest(dataset)
    if manifest.get("source") != "real" or "real" not in manifest:
        raise BadInput(
            f"real.dataset: {dataset}: is a synthetic busforge dataset, not an imported real one; "
            f"make one with `{import_command(dataset)}`"
        )
    with manifest_content(dataset):
        return _real_mix(recipe, dataset, manifest)


def _real_mix(recipe, dataset: Path, manifest: dict[str, Any]) -> RealMix:
    real_part, synthetic_part = (float(p) for p in recipe.real.ratio.split(":"))
    info = manifest["real"]
    train = info.get("per_split", {}).get("train", {})
    return RealMix(
        dataset=dataset,
        fingerprint=manifest["fingerprint"],
        real=real_part,
        synthetic=synthetic_part,
        split_rows={name: s["rows"] for name, s in manifest["splits"].items()},
        train_pathology={p: int(train.get(p, 0)) for p in (*PATHOLOGIES, NORMAL)},
        domain=info["domain"],
        kind=info.get("kind", "folder"),
        recipe_count=recipe.count,
        shards={name: [s["file"] for s in split["shards"]] for name, split in manifest["splits"].items()},
    )


def real_train_rows(mix: RealMix) -> int:
    """Real rows in the output's train split: all of the real train split, none for "0:1"."""
    return 0 if mix.real == 0 else mix.split_rows.get("train", 0)


def synthetic_count(mix: RealMix) -> int:
    """Synthetic rows to render (half-up rounding of synthetic/real x real train rows)."""
    if mix.real == 0:
        return mix.recipe_count
    return math.floor(mix.synthetic / mix.real * mix.split_rows.get("train", 0) + 0.5)


def mixed_split_rows(mix: RealMix) -> dict[str, dict[str, int]]:
    """The output's rows per split and source: what the manifest of a mixed render must show."""
    out = {"train": {"real": real_train_rows(mix), "synthetic": synthetic_count(mix)}}
    for split, rows in mix.split_rows.items():
        if split != "train":
            out[split] = {"real": rows, "synthetic": 0}
    return out


def pathology_weights(mix: RealMix) -> dict[str, float]:
    """`pathology: match_real`: the benign/malignant mix of the real train split."""
    weights = {p: float(mix.train_pathology.get(p, 0)) for p in PATHOLOGIES}
    if sum(weights.values()) <= 0:
        raise BadInput(
            f"pathology: match_real: {mix.dataset} has no benign or malignant rows in its train split "
            "(unlabelled data such as STU); give explicit pathology weights instead"
        )
    return weights


def manifest_entry(mix: RealMix) -> dict[str, Any]:
    """What the mixed dataset's manifest and card record about its real part."""
    return {
        "dataset": str(mix.dataset),
        "fingerprint": mix.fingerprint,
        "ratio": mix.ratio,
        "domain": mix.domain,
        "kind": mix.kind,
        "rows": mixed_split_rows(mix),
    }


def real_row_batches(mix: RealMix, split: str, batch_rows: int = 100) -> Iterator[list[dict[str, Any]]]:
    """The real dataset's rows of `split`, exactly as stored (PNG bytes untouched), in batches."""
    import pyarrow.parquet as pq

    if split not in mix.split_rows:
        raise BadInput(f"{mix.dataset}: has no {split!r} split; it has {', '.join(mix.split_rows)}")
    files = (mix.shards or {}).get(split) or sorted(
        str(p.relative_to(mix.dataset)) for p in (mix.dataset / "data").glob(f"{split}-*.parquet")
    )
    for name in files:
        parquet = pq.ParquetFile(mix.dataset / name)
        for batch in parquet.iter_batches(batch_size=batch_rows):
            yield batch.to_pylist()
