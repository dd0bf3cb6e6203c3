"""Rendering with `real:`: train = real train rows + ratio x synthetic rows; validation/test stay real."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from real_fixtures import make_folder_dataset

from busforge.dataset.features import SOURCE_NAMES
from busforge.dataset.real import import_real
from busforge.dataset.verify import verify_dataset
from busforge.errors import BadInput
from busforge.executors.local import run_render
from busforge.recipe import recipe_from_dict


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("render_mix")
    make_folder_dataset(root / "src", {"benign": 12, "malignant": 6, "normal": 2}, seed=5)
    out = root / "real"
    import_real("folder", root / "src", out, workers=1)
    return out


def rows(dataset: Path, split: str) -> list[dict]:
    return [
        r for p in sorted((dataset / "data").glob(f"{split}-*.parquet")) for r in pq.read_table(p).to_pylist()
    ]


def recipe(real: Path, ratio: str, **extra):
    data = {
        "name": "mix",
        "count": 9,
        "image_size": 64,
        "shape_prior": "birads",
        "pathology": "match_real",
        "real": {"dataset": str(real), "ratio": ratio},
        "output": {"rows_per_shard": 7},
        **extra,
    }
    return recipe_from_dict(data, "mix.yaml")


@pytest.mark.parametrize(("ratio", "factor"), [("1:2", 2), ("1:0", 0), ("0:1", None)])
def test_mixed_splits_have_exact_counts_and_untouched_real_rows(real, tmp_path, ratio, factor):
    out = tmp_path / "out"
    run_render(recipe(real, ratio), out_dir=out, quiet=True)
    assert verify_dataset(out) == []
    real_train = rows(real, "train")
    train = rows(out, "train")
    sources = Counter(SOURCE_NAMES[r["source"]] for r in train)
    if factor is None:  # synthetic only: the recipe's count, no real rows
        assert sources == {"synthetic": 9}
    else:
        assert sources.get("real", 0) == len(real_train)
        assert sources.get("synthetic", 0) == factor * len(real_train)
        assert [r for r in train if SOURCE_NAMES[r["source"]] == "real"] == real_train
    for split in ("validation", "test"):
        assert rows(out, split) == rows(real, split)
    synthetic = [r for r in train if SOURCE_NAMES[r["source"]] == "synthetic"]
    assert {r["domain"] for r in synthetic} <= {rows(real, "train")[0]["domain"]}


def test_match_real_follows_the_real_pathology_mix(real, tmp_path):
    out = tmp_path / "out"
    run_render(recipe(real, "1:1"), out_dir=out, quiet=True)
    train = rows(out, "train")
    real_mix = Counter(
        r["pathology"] for r in train if SOURCE_NAMES[r["source"]] == "real" and r["pathology"] != 0
    )
    synth_mix = Counter(r["pathology"] for r in train if SOURCE_NAMES[r["source"]] == "synthetic")
    total_real, total_synth = sum(real_mix.values()), sum(synth_mix.values())
    for label, n in real_mix.items():  # largest remainder: within one sample of the real share
        assert abs(synth_mix[label] - n * total_synth / total_real) < 1


def test_missing_real_dataset_names_the_import_command(tmp_path):
    with pytest.raises(BadInput, match=r"^mix.yaml: real.dataset: .*busforge import"):
        run_render(recipe(tmp_path / "data/real/busi", "1:1"), out_dir=tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()


def test_count_is_refused_where_the_ratio_decides_it(real, tmp_path):
    import subprocess
    import sys

    import yaml

    path = tmp_path / "mix.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "mix",
                "count": 9,
                "image_size": 64,
                "shape_prior": "birads",
                "real": {"dataset": str(real), "ratio": "1:2"},
            }
        )
    )
    cmd = [sys.executable, "-c", "from busforge.cli import main; main()", "render", str(path), "--count", "3"]
    result = subprocess.run([*cmd, "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "--count: with real.ratio 1:2" in result.stderr and "--limit" in result.stderr
    assert not (tmp_path / "out").exists()
