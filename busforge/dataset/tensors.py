"""Rows of a busforge dataset as tensors a PyTorch DataLoader can collate, whatever the dataset holds.

`with_format("torch")` alone cannot feed the default collate on every busforge dataset: columns a
row's source does not have are null (real-only columns in synthetic rows, shape parameters and seed
in real rows, pathology of unlabelled real data), and imported real images keep their native
sizes. The schema stays one for all datasets (so `concatenate_datasets` and the real:synthetic mix
work); `ToTensors` picks the training columns, resizes, and encodes missing values as -1 / NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

UNKNOWN_LABEL = -1  # `pathology` of unlabelled real rows


@dataclass(frozen=True)
class ToTensors:
    """A `datasets` transform: `ds.with_transform(ToTensors(256))`, then `DataLoader(ds, batch_size=...)`.

    Each row becomes `image` (float32 [1, S, S] in [0, 1]), `mask` (float32 [1, S, S], 0 or 1),
    `pathology` (int64: 0 normal, 1 benign, 2 malignant, -1 unknown), `source` (int64: 0 real,
    1 synthetic), `lesion_area` (float32, NaN where unknown), and `prompt`, `domain`, `sample_id`
    (strings, "" where unknown). `image_size=None` keeps each image's size (a rendered dataset's
    images all share one; imported real ones do not).
    """

    image_size: int | None = None

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, Any]:
        import numpy as np
        import torch
        from PIL import Image

        def plane(img: Image.Image, resample: Image.Resampling) -> np.ndarray:
            img = img.convert("L")
            if self.image_size is not None and img.size != (self.image_size, self.image_size):
                img = img.resize((self.image_size, self.image_size), resample)
            return np.array(img)  # a writable copy: torch refuses read-only buffers

        images = [plane(i, Image.Resampling.BILINEAR) for i in batch["image"]]
        masks = [plane(m, Image.Resampling.NEAREST) for m in batch["mask"]]
        return {
            "image": [torch.from_numpy(a).float().div_(255).unsqueeze(0) for a in images],
            "mask": [torch.from_numpy((a > 127).astype(np.float32)).unsqueeze(0) for a in masks],
            "pathology": torch.tensor(
                [UNKNOWN_LABEL if p is None else p for p in batch["pathology"]], dtype=torch.int64
            ),
            "source": torch.tensor(batch["source"], dtype=torch.int64),
            "lesion_area": torch.tensor(
                [math.nan if a is None else a for a in batch["lesion_area"]], dtype=torch.float32
            ),
            **{key: [v or "" for v in batch[key]] for key in ("prompt", "domain", "sample_id")},
        }
