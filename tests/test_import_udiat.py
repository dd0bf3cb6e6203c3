"""UDIAT Dataset B layout (generated): labels from .xlsx or CSV, and every bad-input case."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from real_fixtures import save, scan_image, truncate, write_csv, write_xlsx

from busforge.dataset.importers import udiat
from busforge.dataset.real import import_real
from busforge.errors import BadInput

LABELS = {1: "Benign", 2: "Malignant", 3: "Benign", 4: "Malignant", 5: "Benign", 6: "Benign", 7: "Malignant"}


def make_udiat(root, n: int = 7):
    rng = np.random.default_rng(3)
    for i in range(1, n + 1):
        image, mask = scan_image(rng)
        save(root / "original" / f"{i:06d}.png", image, "RGB")
        save(root / "GT" / f"{i:06d}.png", mask)
    return root


def rows_of(out) -> list[dict]:
    return [r for p in sorted((out / "data").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def test_xlsx_labels_with_numeric_names(tmp_path):
    src = make_udiat(tmp_path / "DatasetB")
    # Spreadsheets keep image names as numbers (000003 -> 3); the tumour type is histology.
    write_xlsx(
        src / "DatasetB.xlsx",
        [["Image", "Type", "Tumor type"]] + [[i, t, f"T{i}"] for i, t in LABELS.items()],
    )
    report = import_real("udiat", tmp_path, tmp_path / "out", workers=1)
    rows = {r["sample_id"]: r for r in rows_of(tmp_path / "out")}
    assert report.per_class == {"benign": 4, "malignant": 3}
    assert rows["udiat/000002"]["pathology"] == 2 and rows["udiat/000002"]["histology"] == "T2"
    assert rows["udiat/000005"]["original_file"] == "original/000005.png"
    assert set(report.per_split) == {"train", "test"}  # the paper's UDIAT split has no validation


def test_csv_labels_and_bad_inputs_are_reported(tmp_path):
    src = make_udiat(tmp_path / "src")
    truncate(src / "original" / "000001.png")  # unreadable image
    (src / "GT" / "000002.png").unlink()  # image without a mask
    save(src / "GT" / "000099.png", np.ones((8, 8), bool))  # mask without an image
    save(src / "GT" / "000003.png", np.ones((80, 300), bool))  # irreconcilable mask size
    labels = write_csv(
        tmp_path / "labels.csv", ["Image", "Type"], [[f"{i:06d}", t] for i, t in LABELS.items() if i != 4]
    )
    report = import_real("udiat", src, tmp_path / "out", labels=labels, workers=1)
    reasons = {s["file"]: s["reason"] for s in report.skipped}
    assert "unreadable image" in reasons["original/000001.png"]
    assert reasons["original/000002.png"] == "image without a mask"
    assert reasons["GT/000099.png"] == "mask without an image"
    assert "not a resized copy" in reasons["original/000003.png"]
    assert "no label row" in reasons["original/000004.png"]
    assert {r["sample_id"] for r in rows_of(tmp_path / "out")} == {
        "udiat/000005",
        "udiat/000006",
        "udiat/000007",
    }
    assert "files skipped: 5" in (tmp_path / "out" / "import_report.txt").read_text()


def test_strict_stops_with_one_line(tmp_path):
    src = make_udiat(tmp_path / "src")
    write_csv(src / "DatasetB.csv", ["Image", "Type"], [[i, t] for i, t in LABELS.items()])
    truncate(src / "original" / "000006.png")
    with pytest.raises(BadInput, match=r"000006.png: .*unreadable image.*without --strict"):
        import_real("udiat", src, tmp_path / "out", strict=True, workers=1)
    cli = [
        sys.executable,
        "-c",
        "import sys; from busforge.cli import main; sys.argv[0] = 'busforge'; main()",
    ]
    done = subprocess.run(
        [*cli, "import", "udiat", str(src), "--out", str(tmp_path / "out"), "--strict", "-q"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_labels_file_names_the_fix(tmp_path):
    src = make_udiat(tmp_path / "src", n=2)
    with pytest.raises(BadInput, match="DatasetB.xlsx"):
        udiat.scan(src)
