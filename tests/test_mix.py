"""Mixing API: exact synthetic counts per ratio, match_real weights, real rows byte-identical."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from real_fixtures import make_folder_dataset

from busforge.dataset.mix import (
    manifest_entry,
    mixed_split_rows,
    pathology_weights,
    real_row_batches,
    real_train_rows,
    resolve_real,
    synthetic_count,
)
from busforge.dataset.real import import_real
from busforge.errors import BadInput
from busforge.recipe import recipe_from_dict
from busforge.sample_plan import make_plan


@pytest.fixture(scope="module")
def real_dataset(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("mix")
    images = make_folder_dataset(root / "src", {"benign": 18, "malignant": 9, "normal": 3}, seed=21)
    out = root / "data" / "real" / "site"
    import_real("folder", root / "src", out, workers=2)
    return out, images


def stored_rows(dataset: Path, split: str) -> list[dict]:
    return [
        r for p in sorted((dataset / "data").glob(f"{split}-*.parquet")) for r in pq.read_table(p).to_pylist()
    ]


def recipe(dataset: Path, ratio: str, **extra):
    return recipe_from_dict(
        {"name": "mix", "count": 37, "real": {"dataset": str(dataset), "ratio": ratio}, **extra}
    )


def test_exact_counts_for_every_ratio(real_dataset):
    dataset, _ = real_dataset
    train = stored_rows(dataset, "train")
    assert len(train) == 20 and resolve_real(recipe(dataset, "1:1")).split_rows["train"] == 20
    expected = {"1:1": 20, "1:2": 40, "1:4": 80, "1:8": 160, "0:1": 37, "1:0": 0}
    for ratio, synthetic in expected.items():
        mix = resolve_real(recipe(dataset, ratio))
        assert synthetic_count(mix) == synthetic, ratio
        rows = mixed_split_rows(mix)
        assert rows["train"] == {"real": 0 if ratio == "0:1" else len(train), "synthetic": synthetic}
        assert rows["validation"] == {"real": len(stored_rows(dataset, "validation")), "synthetic": 0}
        assert rows["test"] == {"real": len(stored_rows(dataset, "test")), "synthetic": 0}
    assert real_train_rows(resolve_real(recipe(dataset, "0:1"))) == 0


def test_rounding_is_half_up(real_dataset):
    mix = resolve_real(recipe(real_dataset[0], "2:3"))
    assert synthetic_count(replace(mix, split_rows={"train": 5})) == 8  # 7.5 -> 8
    assert synthetic_count(replace(mix, split_rows={"train": 3})) == 5  # 4.5 -> 5
    assert synthetic_count(replace(mix, real=3.0, synthetic=1.0, split_rows={"train": 7})) == 2  # 2.33 -> 2


def test_identity_pathology_and_domain(real_dataset):
    dataset, _ = real_dataset
    mix = resolve_real(recipe(dataset, "1:2", pathology="match_real"))
    stored = Counter(r["pathology"] for r in stored_rows(dataset, "train"))
    assert mix.train_pathology == {"benign": stored[1], "malignant": stored[2], "normal": stored[0]}
    assert pathology_weights(mix) == {"benign": 12.0, "malignant": 6.0}
    assert mix.domain == "site" and len(mix.fingerprint) == 16
    entry = manifest_entry(mix)
    assert entry["ratio"] == "1:2" and entry["fingerprint"] == mix.fingerprint
    plan = make_plan(recipe(dataset, "1:2", count=synthetic_count(mix)), pathology_weights(mix))
    assert len(plan.specs) == 40
    assert plan.counts()["pathology"] == {"benign": 27, "malignant": 13}  # 40 * 12/18 = 26.7 -> 27


def test_real_rows_are_byte_identical(real_dataset):
    dataset, images = real_dataset
    mix = resolve_real(recipe(dataset, "1:1"))
    for split, rows in mix.split_rows.items():
        streamed = [row for batch in real_row_batches(mix, split, batch_rows=4) for row in batch]
        assert len(streamed) == rows and streamed == stored_rows(dataset, split)
    batches = list(real_row_batches(mix, "train", batch_rows=6))
    assert [len(b) for b in batches] == [6, 6, 6, 2]
    for row in batches[0]:
        name = row["sample_id"].removeprefix("folder/")
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(row["image"]["bytes"]))), images[name])


def test_missing_or_synthetic_dataset_names_the_import_command(tmp_path, real_dataset):
    assert resolve_real(recipe_from_dict({"name": "x", "count": 1})) is None
    with pytest.raises(
        BadInput, match=r"make it first with `busforge import udiat SRC --out .*data/real/udiat`"
    ):
        resolve_real(recipe(tmp_path / "data" / "real" / "udiat", "1:2"))
    fake = tmp_path / "synthetic"
    fake.mkdir()
    (fake / "busforge.json").write_text('{"fingerprint": "x", "splits": {}}')
    with pytest.raises(BadInput, match="not an imported real one"):
        resolve_real(recipe(fake, "1:1"))
    mix = resolve_real(recipe(real_dataset[0], "1:1"))
    with pytest.raises(BadInput, match="match_real"):
        pathology_weights(replace(mix, train_pathology={"benign": 0, "malignant": 0, "normal": 4}))


@pytest.mark.parametrize(
    ("name", "dataset", "ratio"),
    [
        ("busi_1to1", "data/real/busi", "1:1"),
        ("udiat_1to2", "data/real/udiat", "1:2"),
        ("ratio_sweep", "data/real/busi", "1:1"),
    ],
)
def test_shipped_recipes(repo, name, dataset, ratio):
    from busforge.recipe import load_recipe

    loaded = load_recipe(repo / "recipes" / f"{name}.yaml")
    assert (loaded.real.dataset, loaded.real.ratio, loaded.pathology) == (dataset, ratio, "match_real")
    for sweep in ("1:2", "1:4", "1:8", "0:1"):
        assert load_recipe(repo / "recipes" / "ratio_sweep.yaml", [f"real.ratio={sweep}"]).real.ratio == sweep
