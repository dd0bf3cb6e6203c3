"""The generic `folder` layout (generated): labels CSV, normal images, multi-lesion union, bad input."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from real_fixtures import save, scan_image, write_csv

from busforge.dataset.real import import_real
from busforge.dataset.real_rows import NORMAL_PROMPT
from busforge.errors import BadInput


def make_src(root):
    rng = np.random.default_rng(11)
    lesion_masks = {}
    rows = []
    for name, pathology in [
        ("a", "benign"),
        ("b", "malignant"),
        ("c", "benign"),
        ("d", "normal"),
        ("e", "benign"),
    ]:
        image, mask = scan_image(rng)
        save(root / "images" / f"{name}.png", image, "RGB")
        if pathology != "normal" and name != "e":
            save(root / "masks" / f"{name}_mask.png", mask, "1")
            lesion_masks[name] = mask
        rows.append([f"{name}.png", pathology, f"P{name}", "4a", "dev1", ""])
    second = np.zeros_like(lesion_masks["a"])
    second[2:10, 2:12] = True
    save(root / "masks" / "a_mask_1.png", second, "RGBA")
    lesion_masks["a"] = lesion_masks["a"] | second
    save(root / "images" / "f.png", scan_image(rng)[0])  # no label row
    (root / "images" / "notes.txt").write_text("not an image")
    rows += [["g.png", "benign", "", "", "", ""], ["h.png", "cyst", "", "", "", ""]]
    save(root / "images" / "h.png", scan_image(rng)[0])
    save(root / "masks" / "h.png", np.zeros((80, 96), bool))
    write_csv(root / "labels.csv", ["file", "pathology", "patient_id", "birads", "device", "histology"], rows)
    return lesion_masks


def test_folder_layout(tmp_path):
    src = tmp_path / "src"
    lesion_masks = make_src(src)
    report = import_real("folder", src, tmp_path / "inhouse", workers=1)
    reasons = {s["file"]: s["reason"] for s in report.skipped}
    assert reasons == {
        "images/notes.txt": "not an image file",
        "images/e.png": "image without a mask (only normal images may have none)",
        "images/f.png": "no row for it in labels.csv",
        "images/h.png": "pathology 'cyst' is not normal, benign or malignant",
        "labels.csv:g": "label row without an image",
    }
    assert report.multi_lesion_merged == ["folder/a"]
    rows = {
        r["sample_id"]: r
        for p in (tmp_path / "inhouse" / "data").glob("*.parquet")
        for r in pq.read_table(p).to_pylist()
    }
    assert set(rows) == {"folder/a", "folder/b", "folder/c", "folder/d"}
    for name, mask in lesion_masks.items():
        stored = np.asarray(Image.open(io.BytesIO(rows[f"folder/{name}"]["mask"]["bytes"]))) > 0
        assert np.array_equal(stored, mask)
    normal = rows["folder/d"]
    assert normal["pathology"] == 0 and normal["prompt"] == NORMAL_PROMPT and normal["lesion_area"] == 0
    assert rows["folder/b"]["patient_id"] == "Pb" and rows["folder/b"]["birads"] == "4a"
    assert rows["folder/b"]["histology"] is None  # empty cells are null, not ""
    assert {r["domain"] for r in rows.values()} == {"inhouse"}  # the output's name by default


def test_domain_option_and_strict(tmp_path):
    src = tmp_path / "src"
    make_src(src)
    with pytest.raises(BadInput, match=r"src: images/notes.txt: not an image file; .*without --strict"):
        import_real("folder", src, tmp_path / "out", strict=True, workers=1)
    for name in ("e", "f", "h"):
        (src / "images" / f"{name}.png").unlink()
    (src / "masks" / "h.png").unlink()
    (src / "images" / "notes.txt").unlink()
    write_csv(
        src / "labels.csv",
        ["file", "pathology"],
        [["a.png", "benign"], ["b.png", "malignant"], ["c.png", "benign"], ["d.png", "normal"]],
    )
    report = import_real("folder", src, tmp_path / "out", strict=True, domain="site-b", workers=1)
    assert report.skipped == [] and report.domain == "site-b"


def test_missing_folders_are_one_line_errors(tmp_path):
    with pytest.raises(BadInput, match=r"images: no such folder; the folder layout needs images/ and masks/"):
        import_real("folder", tmp_path, tmp_path / "out")
    with pytest.raises(BadInput, match="unknown kind 'nope'"):
        import_real("nope", tmp_path, tmp_path / "out")


def test_import_is_deterministic_and_independent_of_workers(tmp_path):
    import json

    make_src(tmp_path / "src")
    one = import_real("folder", tmp_path / "src", tmp_path / "a" / "site", workers=1)
    two = import_real("folder", tmp_path / "src", tmp_path / "b" / "site", workers=2)
    assert one.fingerprint == two.fingerprint
    shards = [json.loads((tmp_path / d / "site" / "busforge.json").read_text())["splits"] for d in ("a", "b")]
    assert shards[0] == shards[1]  # same files, same sha256
    assert not list(tmp_path.glob("*/.site.*"))  # no spool or staging left behind


def test_a_lesion_case_with_an_all_black_mask_is_skipped_or_stops_strict(tmp_path):
    src = tmp_path / "src"
    rng = np.random.default_rng(3)
    rows = []
    for name, pathology in [("a", "benign"), ("b", "malignant"), ("c", "benign"), ("d", "normal")]:
        image, mask = scan_image(rng)
        save(src / "images" / f"{name}.png", image)
        empty = name in ("b", "d")  # a malignant case whose mask is all black, and a normal case
        save(src / "masks" / f"{name}.png", np.zeros_like(mask) if empty else mask)
        rows.append([f"{name}.png", pathology])
    write_csv(src / "labels.csv", ["file", "pathology"], rows)
    report = import_real("folder", src, tmp_path / "out", workers=1)
    assert {s["file"]: s["reason"] for s in report.skipped} == {
        "images/b.png": "b.png: malignant case with an all-black mask (no lesion pixels)"
    }
    ids = {
        r["sample_id"]
        for p in (tmp_path / "out" / "data").glob("*.parquet")
        for r in pq.read_table(p).to_pylist()
    }
    assert ids == {"folder/a", "folder/c", "folder/d"}
    with pytest.raises(BadInput, match=r"images/b.png: b.png: malignant case with an all-black mask"):
        import_real("folder", src, tmp_path / "strict", strict=True, workers=1)
    assert not (tmp_path / "strict").exists()
