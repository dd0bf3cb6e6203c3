"""The README's PyTorch training loop runs on synthetic-only, mixed and imported (and concatenated) datasets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from real_fixtures import make_folder_dataset

from busforge.dataset.real import import_real
from busforge.executors.local import run_render
from busforge.recipe import recipe_from_dict


def readme_loop(repo: Path) -> str:
    """The README's python block that builds a DataLoader (run as written, with its imports)."""
    blocks = re.findall(r"```python\n(.*?)```", (repo / "README.md").read_text(), re.S)
    loop = next(b for b in blocks if "DataLoader" in b)
    return "import busforge, torch\nfrom datasets import load_dataset\n" + loop


@pytest.fixture(scope="module")
def datasets_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tensors")
    make_folder_dataset(root / "src", {"benign": 6, "malignant": 4, "normal": 2}, seed=2)
    import_real("folder", root / "src", root / "real", workers=1)
    common = {"image_size": 64, "shape_prior": "birads"}
    run_render(
        recipe_from_dict({"name": "syn", "count": 6, **common}, "syn.yaml"), out_dir=root / "syn", quiet=True
    )
    mixed = {"name": "mix", "count": 4, "real": {"dataset": str(root / "real"), "ratio": "1:1"}, **common}
    run_render(recipe_from_dict(mixed, "mix.yaml"), out_dir=root / "mix", quiet=True)
    return root


def test_plain_torch_format_cannot_collate_null_columns(datasets_dir):
    """Why the README's loop goes through ToTensors: the default collate rejects the null real-only columns."""
    import torch
    from datasets import load_dataset

    train = load_dataset(str(datasets_dir / "syn"))["train"].with_format("torch")
    with pytest.raises(TypeError, match="NoneType"):
        next(iter(torch.utils.data.DataLoader(train, batch_size=2)))


@pytest.mark.parametrize("name", ["syn", "mix", "real"])
def test_readme_training_loop(repo, datasets_dir, name, monkeypatch):
    (datasets_dir / name / "data").exists() or pytest.fail("fixture dataset missing")
    monkeypatch.chdir(datasets_dir)
    (datasets_dir / "data").mkdir(exist_ok=True)
    out = datasets_dir / "data" / "out"
    out.unlink(missing_ok=True)
    out.symlink_to(datasets_dir / name)
    scope: dict = {}
    exec(readme_loop(repo), scope)
    batch = scope["batch"]
    n = len(batch["prompt"])
    assert batch["image"].shape == (n, 1, 256, 256) and batch["image"].dtype.is_floating_point
    assert 0 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1
    assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0} and batch["mask"].shape == (n, 1, 256, 256)
    assert batch["pathology"].shape == (n,) and batch["pathology"].min() >= -1


def test_concatenated_datasets_load_through_one_loader(datasets_dir):
    import torch
    from datasets import concatenate_datasets, load_dataset

    from busforge import ToTensors

    parts = [load_dataset(str(datasets_dir / n))["train"] for n in ("syn", "real", "mix")]
    joined = concatenate_datasets(parts).with_transform(ToTensors(image_size=32))
    sources, labels = [], []
    for batch in torch.utils.data.DataLoader(joined, batch_size=5):
        assert batch["image"].shape[1:] == (1, 32, 32)
        sources += batch["source"].tolist()
        labels += batch["pathology"].tolist()
    assert len(sources) == sum(len(p) for p in parts)
    assert {0, 1} == set(sources)  # real and synthetic rows side by side
    assert set(labels) <= {0, 1, 2}
