"""STU (Zhuang et al.): `Test_Image_N.png` with `mask_N.png`, no pathology labels.

Masks may be stored larger than their image; they are resized (nearest neighbour) to the image
and the import report lists them.
"""

from __future__ import annotations

import re
from pathlib import Path

from busforge.dataset.importers.base import Scan, Skip, add_case, is_image_file, require_dir

IMAGE_NAME = re.compile(r"^test_image_(\d+)$", re.IGNORECASE)
MASK_NAME = re.compile(r"^mask_(\d+)$", re.IGNORECASE)
DEFAULT_SPLIT = {"train": 0.7, "validation": 0.1, "test": 0.2}


def scan(src: Path, labels: Path | None = None) -> Scan:
    root = require_dir(src, "give the STU folder holding Test_Image_N.png and mask_N.png")
    result = Scan()
    images: dict[int, Path] = {}
    masks: dict[int, Path] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = str(path.relative_to(root))
        image_match, mask_match = IMAGE_NAME.match(path.stem), MASK_NAME.match(path.stem)
        if not is_image_file(path):
            result.skipped.append(Skip(rel, "not an image file"))
        elif image_match:
            images[int(image_match[1])] = path
        elif mask_match:
            masks[int(mask_match[1])] = path
        else:
            result.skipped.append(Skip(rel, "name is neither Test_Image_N nor mask_N"))
    for n, path in sorted(masks.items()):
        if n not in images:
            result.skipped.append(Skip(str(path.relative_to(root)), "mask without an image"))
    for n, image in sorted(images.items()):
        lesions = (masks[n],) if n in masks else ()
        add_case(result, root, image, lesions, sample_id=f"stu/{image.stem}", pathology=None)
    return result
