"""`busforge export nnunet`: nnU-Net v2 raw layout from imported and mixed datasets.

The layout is checked against nnU-Net's documented format (documentation/dataset_format.md):
`imagesTr/<case>_0000.png`, `labelsTr/<case>.png` with consecutive integer labels from 0,
dataset.json with channel_names / labels / numTraining / file_ending, and one-channel images of
the label's geometry. nnU-Net's own checker runs when nnunetv2 is importable here, or from the
interpreter named by BUSFORGE_NNUNET_PYTHON (nnunetv2 is not a busforge dependency: see docs).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from real_fixtures import make_folder_dataset

from busforge.dataset.features import SOURCE_NAMES
from busforge.dataset.real import import_real
from busforge.downstream import nnunet
from busforge.downstream.nnunet import case_ids, export_nnunet
from busforge.errors import BadInput
from busforge.executors.local import run_render
from busforge.recipe import recipe_from_dict


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nnunet_real")
    make_folder_dataset(root / "src", {"benign": 10, "malignant": 6, "normal": 5}, seed=11)
    import_real("folder", root / "src", root / "real", workers=1)
    return root / "real"


@pytest.fixture(scope="module")
def mixed(real, tmp_path_factory) -> Path:
    """Real train rows + 1x synthetic (procedural, 64 px); validation and test stay real."""
    out = tmp_path_factory.mktemp("nnunet_mixed") / "mix"
    recipe = recipe_from_dict(
        {
            "name": "mix",
            "count": 4,
            "image_size": 64,
            "shape_prior": "birads",
            "pathology": "match_real",
            "real": {"dataset": str(real), "ratio": "1:1"},
        },
        "mix.yaml",
    )
    run_render(recipe, out_dir=out, quiet=True)
    return out


@pytest.fixture(scope="module")
def exported(mixed, tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("nnunet_raw")
    return export_nnunet(mixed, raw, 501, "BUSI").folder


def rows(dataset: Path, split: str) -> list[dict]:
    files = sorted((dataset / "data").glob(f"{split}-*.parquet"))
    return [
        r
        for f in files
        for r in pq.read_table(f, columns=["sample_id", "image", "mask", "source"]).to_pylist()
    ]


def has_lesion(row: dict) -> bool:
    return bool((np.asarray(Image.open(io.BytesIO(row["mask"]["bytes"])).convert("L")) > 127).any())


def stems(folder: Path, suffix: str = ".png") -> set[str]:
    return {p.name.removesuffix(suffix) for p in folder.iterdir()}


def test_layout_follows_nnunets_documented_format(mixed, exported):
    assert exported.name == "Dataset501_BUSI"
    assert sorted(p.name for p in exported.iterdir()) == [
        "dataset.json",
        "imagesTr",
        "imagesTs",
        "labelsTr",
        "labelsTs",
        "splits_final.json",
    ]
    for part in ("Tr", "Ts"):
        images, labels = stems(exported / f"images{part}"), stems(exported / f"labels{part}")
        assert images and all(s.endswith("_0000") for s in images)  # one channel, identifier 0000
        assert {s.removesuffix("_0000") for s in images} == labels
    info = json.loads((exported / "dataset.json").read_text())
    assert info["channel_names"] == {"0": "ultrasound"}
    assert info["labels"] == {"background": 0, "lesion": 1}
    assert info["file_ending"] == ".png"
    assert info["overwrite_image_reader_writer"] == "NaturalImage2DIO"
    assert info["busforge"]["export"] == "nnunet"

    # Counts: every lesion row of train + validation is a training case, of test a test case.
    lesion_tr = [r for s in ("train", "validation") for r in rows(mixed, s) if has_lesion(r)]
    lesion_ts = [r for r in rows(mixed, "test") if has_lesion(r)]
    assert info["numTraining"] == len(lesion_tr) == len(list((exported / "imagesTr").iterdir()))
    assert info["numTest"] == len(lesion_ts) == len(list((exported / "imagesTs").iterdir()))
    assert {SOURCE_NAMES[r["source"]] for r in lesion_tr} == {"real", "synthetic"}


def test_images_are_grey_and_labels_are_0_1_of_the_stored_mask(mixed, exported):
    ids = case_ids([r["sample_id"] for s in ("train", "validation", "test") for r in rows(mixed, s)])
    checked = 0
    for split, part in (("train", "Tr"), ("validation", "Tr"), ("test", "Ts")):
        for row in filter(has_lesion, rows(mixed, split)):
            case = ids[row["sample_id"]]
            image = Image.open(exported / f"images{part}" / f"{case}_0000.png")
            label = Image.open(exported / f"labels{part}" / f"{case}.png")
            assert image.mode == "L" and label.mode == "L" and image.size == label.size
            stored = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])).convert("L"))
            assert np.array_equal(np.asarray(image), stored)
            values = np.asarray(label)
            assert set(np.unique(values)) == {0, 1}  # uint8 0/1, not 0/255
            mask = np.asarray(Image.open(io.BytesIO(row["mask"]["bytes"])).convert("L")) > 127
            assert np.array_equal(values == 1, mask)
            checked += 1
    assert checked == len(list((exported / "labelsTr").iterdir())) + len(
        list((exported / "labelsTs").iterdir())
    )


def test_splits_final_is_busforges_train_validation_split(mixed, exported):
    folds = json.loads((exported / "splits_final.json").read_text())
    assert len(folds) == 1 and set(folds[0]) == {"train", "val"}
    ids = case_ids([r["sample_id"] for s in ("train", "validation", "test") for r in rows(mixed, s)])
    expected = {
        key: [ids[r["sample_id"]] for r in rows(mixed, split) if has_lesion(r)]
        for key, split in (("train", "train"), ("val", "validation"))
    }
    assert folds[0] == expected  # dataset order, not re-sorted
    assert set(folds[0]["train"]) | set(folds[0]["val"]) == stems(exported / "labelsTr")
    assert not set(folds[0]["train"]) & set(folds[0]["val"])


def test_nnunet_folds_leaves_the_split_to_nnunet(mixed, tmp_path):
    folder = export_nnunet(mixed, tmp_path, 502, "X", nnunet_folds=True).folder
    assert not (folder / "splits_final.json").exists()


def test_normal_rows_are_left_out_unless_asked_for(real, tmp_path):
    normal_tr = [r for s in ("train", "validation") for r in rows(real, s) if not has_lesion(r)]
    lesion_tr = [r for s in ("train", "validation") for r in rows(real, s) if has_lesion(r)]
    assert normal_tr, "the fixture must put normal cases into train/validation"
    all_normal = [r for s in ("train", "validation", "test") for r in rows(real, s) if not has_lesion(r)]

    default = export_nnunet(real, tmp_path / "a", 501, "A")
    assert default.training == len(lesion_tr) and default.normal_included == 0
    assert default.excluded == {"normal": len(all_normal)}

    included = export_nnunet(real, tmp_path / "b", 501, "A", include_normal=True)
    assert included.training == len(lesion_tr) + len(normal_tr)
    assert included.normal_included == len(all_normal) and included.excluded == {}
    info = json.loads((included.folder / "dataset.json").read_text())
    assert info["numTraining"] == included.training
    ids = case_ids([r["sample_id"] for s in ("train", "validation", "test") for r in rows(real, s)])
    label = np.asarray(Image.open(included.folder / "labelsTr" / f"{ids[normal_tr[0]['sample_id']]}.png"))
    assert label.dtype == np.uint8 and not label.any()


def test_case_ids_are_safe_unique_and_stable():
    ids = case_ids(["busi/benign (12)", "mix-0.1.0-0000003", "a b", "a_b", "Case", "case", "x" * 300])
    assert ids["busi/benign (12)"] == "busi_benign_12"
    assert ids["mix-0.1.0-0000003"] == "mix-0.1.0-0000003"
    assert len(set(ids.values())) == len(ids)
    assert len({v.lower() for v in ids.values()}) == len(ids)  # case-insensitive file systems
    assert ids["a b"].startswith("a_b_") and ids["Case"].startswith("Case_")
    assert all(len(v) <= 110 and all(c.isalnum() or c in "._-" for c in v) for v in ids.values())
    assert case_ids(list(reversed(list(ids)))) == ids


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from busforge.cli import main

    monkeypatch.setattr(sys, "argv", ["busforge", "export", "nnunet", *args])
    monkeypatch.delenv("nnUNet_raw", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err.strip()


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(real, tmp_path, monkeypatch, capsys):
    normal_src = tmp_path / "normal_src"
    make_folder_dataset(normal_src, {"normal": 6}, seed=2)
    import_real("folder", normal_src, tmp_path / "only_normal", workers=1)
    out = tmp_path / "raw"
    cases = [
        ([str(tmp_path / "nope"), "--out", str(out), "--id", "501"], "no such dataset folder"),
        ([str(tmp_path / "only_normal"), "--out", str(out), "--id", "501"], "has a lesion mask"),
        ([str(real), "--out", str(out), "--id", "0"], "--id: 0 is not in 1..999"),
        ([str(real), "--out", str(out), "--id", "1000"], "--id: 1000 is not in 1..999"),
        ([str(real), "--out", str(out), "--id", "501", "--name", "BU SI"], "--name: 'BU SI'"),
        ([str(real), "--out", str(out), "--id", "501", "--name", "_x"], "--name: '_x'"),
    ]
    for args, message in cases:
        code, err = cli(monkeypatch, capsys, *args)
        assert code == 2, (args, err)
        assert len(err.splitlines()) == 1 and message in err, err
        assert not out.exists() or not any(out.iterdir()), args


def test_cli_exports_and_reports_counts(real, tmp_path, monkeypatch, capsys):
    from busforge.cli import main

    monkeypatch.setattr(sys, "argv", ["busforge", "export", "nnunet", str(real), "--id", "501", "-q"])
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))  # --out defaults to nnU-Net's own variable
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert (tmp_path / "Dataset501_real" / "dataset.json").is_file()  # name from the dataset
    assert "training cases" in out and "nnUNetv2_train 501 2d 0" in out


def test_existing_exports_are_replaced_only_with_force_and_only_if_ours(real, tmp_path, monkeypatch, capsys):
    raw = tmp_path / "raw"
    first = export_nnunet(real, raw, 501, "BUSI").folder
    before = {p: p.read_bytes() for p in first.rglob("*") if p.is_file()}

    code, err = cli(monkeypatch, capsys, str(real), "--out", str(raw), "--id", "501", "--name", "BUSI")
    assert code == 2 and "pass --force" in err
    assert {p: p.read_bytes() for p in first.rglob("*") if p.is_file()} == before

    again = export_nnunet(real, raw, 501, "BUSI", include_normal=True, force=True)
    assert again.normal_included > 0
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset501_BUSI"]  # no staging or .old left

    foreign = raw / "Dataset502_MINE"
    (foreign / "imagesTr").mkdir(parents=True)
    (foreign / "dataset.json").write_text('{"labels": {}}')
    code, err = cli(
        monkeypatch, capsys, str(real), "--out", str(raw), "--id", "502", "--name", "MINE", "--force"
    )
    assert code == 2 and "not an nnU-Net export written by busforge" in err
    assert (foreign / "dataset.json").read_text() == '{"labels": {}}'

    code, err = cli(monkeypatch, capsys, str(real), "--out", str(raw), "--id", "501", "--name", "OTHER")
    assert code == 2 and "already uses nnU-Net id 501" in err
    assert not (raw / "Dataset501_OTHER").exists()


def test_a_failed_export_leaves_nothing_half_written(real, tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    kept = export_nnunet(real, raw, 501, "BUSI").folder
    before = {p: p.read_bytes() for p in kept.rglob("*") if p.is_file()}
    calls = []
    original = nnunet.grey_png

    def failing(png: bytes):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return original(png)

    monkeypatch.setattr(nnunet, "grey_png", failing)
    with pytest.raises(OSError, match="disk full"):
        export_nnunet(real, raw, 501, "BUSI", force=True)
    with pytest.raises(OSError, match="disk full"):
        calls.clear()
        export_nnunet(real, raw, 503, "NEW")
    assert {p: p.read_bytes() for p in kept.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset501_BUSI"]


def test_a_folder_that_is_not_a_dataset_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="missing"):
        export_nnunet(tmp_path, tmp_path / "raw", 501, "X")  # a folder that is not a dataset


def nnunet_python() -> str | None:
    if importlib.util.find_spec("nnunetv2") is not None:
        return sys.executable
    return os.environ.get("BUSFORGE_NNUNET_PYTHON")


CHECK = """
import shutil, sys
import numpy as np
from PIL import Image
from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
good, bad = sys.argv[1], sys.argv[2]
verify_dataset_integrity(good, 1)
print("GOOD PASSED")
shutil.copytree(good, bad)
label = next(iter(sorted(__import__("pathlib").Path(bad, "labelsTr").iterdir())))
Image.fromarray(np.asarray(Image.open(label)) * 255).save(label)  # a 0/255 label, as masks are stored
try:
    verify_dataset_integrity(bad, 1)
except (RuntimeError, AssertionError):
    print("BAD REFUSED")
"""


def test_nnunets_own_integrity_checker_accepts_the_export(exported, tmp_path):
    python = nnunet_python()
    if python is None:
        pytest.skip("nnunetv2 not installed (set BUSFORGE_NNUNET_PYTHON to a Python that has it)")
    env = {**os.environ, "nnUNet_raw": str(exported.parent)}
    done = subprocess.run(
        [python, "-c", CHECK, str(exported), str(tmp_path / "Dataset599_BAD")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "GOOD PASSED" in done.stdout and "BAD REFUSED" in done.stdout, done.stdout[-2000:]
