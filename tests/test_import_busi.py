"""Import of the BUSI sample (../shared/data/busi_mini): counts, merged masks, mask modes, splits."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA
from PIL import Image

from busforge.dataset.importers.base import read_image, to_binary, to_grey
from busforge.dataset.real import import_real
from busforge.dataset.real_rows import NORMAL_PROMPT
from busforge.dataset.verify import verify_dataset

BUSI = SHARED_DATA / "busi_mini" / "Dataset_BUSI_with_GT"


def read_rows(root: Path) -> list[dict]:
    rows = []
    for split in ("train", "validation", "test"):
        for path in sorted((root / "data").glob(f"{split}-*.parquet")):
            rows += [{**r, "split": split} for r in pq.read_table(path).to_pylist()]
    return rows


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> tuple[Path, dict]:
    if not BUSI.is_dir():
        pytest.skip(f"BUSI sample not present at {BUSI}")
    out = tmp_path_factory.mktemp("real") / "busi"
    report = import_real("busi", BUSI.parent, out, workers=2)
    return out, report.as_dict()


def test_counts_per_class_and_verified(imported):
    out, report = imported
    rows = read_rows(out)
    assert report["per_class"] == {"benign": 21, "malignant": 12, "normal": 5}
    assert Counter(r["pathology"] for r in rows) == {1: 21, 2: 12, 0: 5}
    assert {r["source"] for r in rows} == {0}  # real
    assert verify_dataset(out) == []
    assert json.loads((out / "import_report.json").read_text())["fingerprint"] == report["fingerprint"]
    assert "files skipped: 0" in (out / "import_report.txt").read_text()


def test_multi_lesion_masks_are_the_union(imported):
    out, report = imported
    merged = {
        "busi/benign (4)",
        "busi/benign (54)",
        "busi/benign (100)",
        "busi/benign (195)",
        "busi/malignant (53)",
    }
    assert set(report["multi_lesion_merged"]) == merged
    rows = {r["sample_id"]: r for r in read_rows(out)}
    for sample_id in merged:
        cls, stem = sample_id.split("/")[1].split(" ", 1)[0], sample_id.split("/")[1]
        files = sorted((BUSI / cls).glob(f"{stem}_mask*.png"))
        assert len(files) >= 2
        union = np.logical_or.reduce([to_binary(read_image(f)) for f in files])
        stored = png(rows[sample_id]["mask"]["bytes"])
        assert np.array_equal(stored > 0, union)
        assert set(np.unique(stored)) <= {0, 255}


def test_every_mask_mode_reads_as_binary():
    if not BUSI.is_dir():
        pytest.skip(f"BUSI sample not present at {BUSI}")
    modes = Counter()
    for path in sorted(BUSI.glob("*/*_mask*.png")):
        img = read_image(path)
        mask = to_binary(img)
        modes[img.mode] += 1
        assert mask.dtype == bool and mask.shape == (img.height, img.width)
        share = mask.mean()
        # Lesion masks of every mode have lesion pixels (RGBA alpha is not mistaken for the mask).
        assert (share == 0) if path.parent.name == "normal" else (0 < share < 0.9), path.name
    assert {"1", "RGB", "RGBA"} <= set(modes)


def test_images_grey_at_original_resolution(imported):
    out, _ = imported
    for row in read_rows(out)[:10]:
        source = read_image(BUSI / row["original_file"])
        stored = png(row["image"]["bytes"])
        assert stored.ndim == 2 and stored.shape == (source.height, source.width)
        assert np.array_equal(stored, to_grey(source))
        assert png(row["mask"]["bytes"]).shape == stored.shape


def test_normal_cases_have_empty_masks_and_no_attributes(imported):
    out, _ = imported
    normal = [r for r in read_rows(out) if r["pathology"] == 0]
    assert len(normal) == 5
    for row in normal:
        assert not png(row["mask"]["bytes"]).any()
        assert row["lesion_area"] == 0.0
        assert row["prompt"] == NORMAL_PROMPT
        assert row["echogenicity"] is None and row["echo_heterogeneity"] is None


def test_lesion_rows_carry_prompt_attributes_and_measures(imported):
    out, report = imported
    lesions = [r for r in read_rows(out) if r["pathology"] in (1, 2)]
    thresholds = report["attribute_thresholds"]
    for row in lesions:
        pathology = "benign" if row["pathology"] == 1 else "malignant"
        assert row["prompt"] == (
            f"breast ultrasound image of {pathology} tumor with {row['echogenicity']} echogenicity "
            f"and {row['boundary']} boundary."
        )
        heterogeneous = row["echo_heterogeneity"] > thresholds["echo_heterogeneity"]
        assert row["echogenicity"] == ("heterogeneous" if heterogeneous else "homogeneous")
        assert row["seed"] == -1 and row["domain"] == "busi"
        assert row["size_bin"] in ("small", "medium", "large")
        assert 0 < row["lesion_area"] < 1 and row["shape"]["a"] >= row["shape"]["b"] > 0
    # Per-dataset thresholds split the lesions roughly in half.
    echo = Counter(r["echogenicity"] for r in lesions)
    assert min(echo.values()) >= len(lesions) // 3


def test_duplicate_groups_stay_in_one_split(imported):
    out, report = imported
    split_of = {r["sample_id"]: r["split"] for r in read_rows(out)}
    assert report["duplicate_groups"], "busi_mini holds re-scans of the same lesions"
    for group in report["duplicate_groups"]:
        assert len({split_of[s] for s in group}) == 1, group
    assert {s for s in split_of.values()} == {"train", "validation", "test"}
    files = sorted(p.name for p in (out / "data").iterdir())
    assert files == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]


def test_loads_with_datasets_features(imported):
    from datasets import load_dataset

    from busforge.dataset.features import dataset_features

    out, _ = imported
    ds = load_dataset(str(out))
    assert set(ds) == {"train", "validation", "test"}
    assert ds["train"].features == dataset_features()
    assert sum(len(s) for s in ds.values()) == 38
