"""Training examples from a busforge real dataset: rows, prompts, resizing, order, bad inputs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from test_train_fixtures import fixture_dataset, fixture_row, png, write_dataset

from busforge.errors import BadInput
from busforge.prompts import DEFAULT_PROMPT
from busforge.train.data import StepBatches, TrainingSet, load_mask, read_examples


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return fixture_dataset(tmp_path_factory.mktemp("data") / "ds")


def test_reads_lesion_rows_with_clinical_prompts(dataset):
    examples = read_examples(dataset, "train", DEFAULT_PROMPT)
    assert len(examples) == 10  # 6 busi + 4 udiat lesions; the normal row has no lesion to learn
    assert examples.skipped == {"without a lesion (normal or unlabelled)": 1}
    assert examples.prompts[0] == (
        "breast ultrasound image of benign tumor with homogeneous echogenicity and clear boundary."
    )
    assert examples.prompts[3] == (
        "breast ultrasound image of malignant tumor with heterogeneous echogenicity and unclear boundary."
    )


def test_domain_filter(dataset):
    examples = read_examples(dataset, "train", "{pathology}", domain="udiat")
    assert examples.domains == ["udiat"] * 4
    assert examples.prompts == ["benign", "malignant", "benign", "malignant"]


def test_items_are_resized_square_and_mask_stays_binary(dataset):
    examples = read_examples(dataset, "train", DEFAULT_PROMPT)
    item = TrainingSet(examples, 40)[1]  # stored at 56x56
    assert tuple(item["pixel_values"].shape) == (3, 40, 40)
    assert tuple(item["conditioning"].shape) == (3, 40, 40)
    assert -1.0 <= float(item["pixel_values"].min()) < float(item["pixel_values"].max()) <= 1.0
    assert set(np.unique(item["conditioning"].numpy())) == {0.0, 1.0}


def one_bit_png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask).convert("1", dither=Image.Dither.NONE).save(buf, format="PNG")
    return buf.getvalue()


def test_mask_modes_give_the_same_binary_mask():
    mask = np.zeros((20, 30), np.uint8)
    mask[5:12, 8:20] = 255
    grey = load_mask(png(mask), 10)
    rgb = load_mask(png(np.stack([mask] * 3, -1), "RGB"), 10)
    one_bit = load_mask(one_bit_png(mask), 10)
    assert grey.sum() > 0
    np.testing.assert_array_equal(grey, rgb)
    np.testing.assert_array_equal(grey, one_bit)


def test_step_batches_resume_where_an_uninterrupted_run_is():
    full = list(StepBatches(7, seed=3, micro_batch=2, accumulation=3, world=1, rank=0, start=0, end=5))
    tail = list(StepBatches(7, seed=3, micro_batch=2, accumulation=3, world=1, rank=0, start=2, end=5))
    assert len(full) == 15 and tail == full[6:]
    flat = [i for batch in full for i in batch]
    assert sorted(flat[:7]) == list(range(7))  # each epoch is a permutation
    assert flat[:7] != flat[7:14]  # and a new one each epoch


def test_processes_take_disjoint_slices_of_a_step():
    ranks = [list(StepBatches(8, 0, 2, 2, world=2, rank=r, start=0, end=1)) for r in (0, 1)]
    seen = [i for batches in ranks for batch in batches for i in batch]
    assert sorted(seen) == list(range(8))


def test_missing_dataset_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="no such dataset folder"):
        read_examples(tmp_path / "nope", "train", DEFAULT_PROMPT)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="no train split"):
        read_examples(tmp_path / "empty", "train", DEFAULT_PROMPT)


def test_dataset_without_masks_is_bad_input(tmp_path):
    root = fixture_dataset(tmp_path / "nomask", with_masks=False)
    with pytest.raises(BadInput, match="no usable training rows .*without a mask") as err:
        read_examples(root, "train", DEFAULT_PROMPT)
    assert "\n" not in str(err.value)


def test_unknown_domain_is_bad_input(dataset):
    with pytest.raises(BadInput, match=r"domain 'stu'.*domains present: busi, udiat"):
        read_examples(dataset, "train", DEFAULT_PROMPT, domain="stu")


def test_rows_without_attributes_are_counted_not_silently_dropped(tmp_path):
    rows = [fixture_row(0, "busi", "benign"), fixture_row(1, "busi", "malignant")]
    rows[1]["echogenicity"] = None
    examples = read_examples(write_dataset(tmp_path / "ds", {"train": rows}), "train", DEFAULT_PROMPT)
    assert len(examples) == 1
    assert examples.skipped == {"without echogenicity/boundary attributes": 1}
