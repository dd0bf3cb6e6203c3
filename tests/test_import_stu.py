"""STU layout (generated): masks stored larger than their image are resized and reported."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
from PIL import Image
from real_fixtures import save, scan_image

from busforge.dataset.real import import_real


def test_masks_resized_to_their_image_and_no_pathology(tmp_path):
    rng = np.random.default_rng(5)
    src = tmp_path / "STU"
    masks = {}
    for n in range(1, 5):
        image, mask = scan_image(rng)
        save(src / f"Test_Image_{n}.png", image, "RGB")
        if n <= 2:  # stored at twice the size, as STU does for some cases
            big = np.kron(mask, np.ones((2, 2), dtype=bool))
            save(src / f"mask_{n}.png", big)
        else:
            save(src / f"mask_{n}.png", mask)
        masks[n] = mask
    save(src / "mask_9.png", np.zeros((80, 96), bool))
    save(src / f"mask_{5}.png", np.zeros((10, 90), bool))
    save(src / "Test_Image_5.png", scan_image(rng)[0])
    report = import_real("stu", src, tmp_path / "out", workers=1)

    assert [m["sample_id"] for m in report.masks_resized] == ["stu/Test_Image_1", "stu/Test_Image_2"]
    assert report.masks_resized[0]["from"] == [192, 160] and report.masks_resized[0]["to"] == [96, 80]
    reasons = {s["file"]: s["reason"] for s in report.skipped}
    assert reasons["mask_9.png"] == "mask without an image"
    assert "not a resized copy" in reasons["Test_Image_5.png"]
    assert "masks resized to their image (nearest neighbour): 2" in report.text()

    rows = [
        r for p in sorted((tmp_path / "out" / "data").glob("*.parquet")) for r in pq.read_table(p).to_pylist()
    ]
    assert len(rows) == 4 and report.per_class == {"unknown": 4}
    for row in rows:
        n = int(row["sample_id"].rsplit("_", 1)[1])
        stored = np.asarray(Image.open(io.BytesIO(row["mask"]["bytes"]))) > 0
        assert np.array_equal(stored, masks[n])
        assert row["pathology"] is None
        assert row["prompt"].startswith("breast ultrasound image of tumor with ")
