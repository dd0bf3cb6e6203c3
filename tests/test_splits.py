"""Splits: deterministic, exact paper sizes, stratified, patients and duplicate groups kept whole."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow.parquet as pq
from PIL import Image
from real_fixtures import make_folder_dataset, scan_image

from busforge.dataset.dedup import duplicate_groups, phash
from busforge.dataset.real import import_real
from busforge.dataset.splits import SplitItem, make_splits

BUSI_COUNTS = {"benign": 437, "malignant": 210, "normal": 133}


def busi_like_items() -> list[SplitItem]:
    return [SplitItem(p) for p, n in BUSI_COUNTS.items() for _ in range(n)]


def test_paper_sizes_are_exact_and_stratified():
    items = busi_like_items()
    splits = make_splits(items, {"train": 396, "validation": 54, "test": 197})
    lesion = Counter(s for s, i in zip(splits, items, strict=True) if i.pathology != "normal")
    assert lesion == {"train": 396, "validation": 54, "test": 197}
    for pathology, n in BUSI_COUNTS.items():
        share = Counter(s for s, i in zip(splits, items, strict=True) if i.pathology == pathology)
        assert abs(share["train"] / n - 396 / 647) < 0.01, pathology


def test_deterministic_and_seeded():
    items = busi_like_items()
    sizes = {"train": 0.7, "validation": 0.1, "test": 0.2}
    assert make_splits(items, sizes, seed=4) == make_splits(items, sizes, seed=4)
    assert make_splits(items, sizes, seed=4) != make_splits(items, sizes, seed=5)


def test_groups_never_straddle_splits():
    rng = np.random.default_rng(0)
    items = [SplitItem(str(rng.choice(["benign", "malignant"])), patient=f"p{i // 3}") for i in range(300)]
    groups = [sorted(rng.choice(300, size=4, replace=False).tolist()) for _ in range(20)]
    splits = make_splits(items, {"train": 0.6, "validation": 0.2, "test": 0.2}, groups, seed=1)
    for group in groups:
        assert len({splits[i] for i in group}) == 1
    for patient in {i.patient for i in items}:
        assert len({s for s, i in zip(splits, items, strict=True) if i.patient == patient}) == 1
    counts = Counter(splits)
    assert abs(counts["train"] - 180) <= 12 and counts["validation"] > 40


def test_duplicate_groups_from_hashes():
    rng = np.random.default_rng(2)
    base = [scan_image(rng)[0] for _ in range(5)]
    copy = np.asarray(Image.fromarray(base[1]).resize((150, 125)))  # re-scaled copy
    marked = base[3].copy()
    marked[2:6, 2:14] = 255  # burnt-in text
    hashes = [phash(b) for b in base] + [phash(copy), phash(marked)]
    assert duplicate_groups(hashes) == [[1, 5], [3, 6]]


def test_planted_duplicates_across_classes_in_an_import(tmp_path):
    images = make_folder_dataset(tmp_path / "src", {"benign": 14, "malignant": 8, "normal": 3}, seed=8)
    src = tmp_path / "src"
    # A re-encoded copy of benign_002 filed as malignant (as BUSI has), and a brighter copy of malignant_001.
    Image.fromarray(images["benign_002"]).save(src / "images" / "malignant_100.png")
    (src / "masks" / "malignant_100.png").write_bytes((src / "masks" / "benign_002.png").read_bytes())
    bright = np.clip(images["malignant_001"].astype(int) + 12, 0, 255).astype(np.uint8)
    Image.fromarray(bright).save(src / "images" / "malignant_101.png")
    (src / "masks" / "malignant_101.png").write_bytes((src / "masks" / "malignant_001.png").read_bytes())
    with open(src / "labels.csv", "a") as f:
        f.write("malignant_100.png,malignant,\nmalignant_101.png,malignant,\n")
    report = import_real("folder", src, tmp_path / "out", workers=1)
    groups = sorted(sorted(g) for g in report.duplicate_groups)
    assert groups == [
        ["folder/benign_002", "folder/malignant_100"],
        ["folder/malignant_001", "folder/malignant_101"],
    ]
    assert report.cross_class_groups == [["folder/benign_002", "folder/malignant_100"]]
    split_of = {}
    for path in (tmp_path / "out" / "data").glob("*.parquet"):
        for sample_id in pq.read_table(path, columns=["sample_id"]).column("sample_id").to_pylist():
            split_of[sample_id] = path.name.split("-")[0]
    for group in groups:
        assert len({split_of[s] for s in group}) == 1
    assert "across classes: 1" in report.text()
