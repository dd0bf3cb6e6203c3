"""Fixtures shared by the training tests: a small real-format dataset and the tiny diffusion model.

Generated images are deterministic (seeded numpy generators): a speckled background with a darker
ellipse where the mask is, in the busforge dataset schema written by the lead's ShardFile.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from busforge.dataset.features import PATHOLOGY_NAMES, SOURCE_NAMES, dataset_features, empty_row_extras
from busforge.dataset.writer import ShardFile, shard_path

FIXTURE_SIZE = 48


def png(array: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def fixture_row(i: int, domain: str, pathology: str, with_mask: bool = True) -> dict:
    rng = np.random.default_rng([7, i])
    size = FIXTURE_SIZE + 8 * (i % 3)  # real scans come in several sizes
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.3, 0.6) * size, rng.uniform(0.3, 0.7) * size
    a, b = rng.uniform(0.12, 0.25) * size, rng.uniform(0.08, 0.18) * size
    mask = (
        ((yy - cy) / b) ** 2 + ((xx - cx) / a) ** 2 <= 1 if pathology != "normal" else np.zeros_like(yy, bool)
    )
    image = rng.gamma(2.0, 40.0, (size, size)) * np.where(mask, 0.35, 1.0)
    echo = ("homogeneous", "heterogeneous")[i % 2]
    boundary = ("clear", "unclear")[(i // 2) % 2]
    return {
        "image": {"bytes": png(np.clip(image, 0, 255).astype(np.uint8)), "path": None},
        "mask": {"bytes": png(mask.astype(np.uint8) * 255), "path": None} if with_mask else None,
        "prompt": "",
        "pathology": PATHOLOGY_NAMES.index(pathology),
        "source": SOURCE_NAMES.index("real"),
        "domain": domain,
        "size_bin": None,
        "echogenicity": echo if pathology != "normal" else None,
        "boundary": boundary if pathology != "normal" else None,
        "sample_id": f"{domain}/{i}",
        "seed": i,
        "shape": None,
        "lesion_area": float(mask.mean()),
        "renderer": None,
        **empty_row_extras(),
    }


def write_dataset(root: Path, splits: dict[str, list[dict]]) -> Path:
    schema = dataset_features().arrow_schema
    for split, rows in splits.items():
        shard = ShardFile(root / shard_path(split, 0, 1), schema, rows_per_row_group=100)
        shard.add(rows)
        shard.close()
    return root


def fixture_dataset(root: Path, with_masks: bool = True) -> Path:
    """Two domains (busi: 6 lesions + 1 normal, udiat: 4 lesions) and a small validation split."""
    pathologies = ["benign", "malignant"]
    train = [fixture_row(i, "busi", pathologies[i % 2], with_masks) for i in range(6)]
    train.append(fixture_row(6, "busi", "normal", with_masks))
    train += [fixture_row(10 + i, "udiat", pathologies[i % 2], with_masks) for i in range(4)]
    validation = [fixture_row(20 + i, d, "benign", with_masks) for i, d in enumerate(["busi", "udiat"])]
    return write_dataset(root, {"train": train, "validation": validation})


def write_tiny(out: Path) -> Path:
    """The tiny random SD 1.5-shaped model (base, controlnet, lora/busi) of busforge.models.tiny."""
    tiny = pytest.importorskip("busforge.models.tiny")
    tiny.write_tiny_model(out, domains=["busi"])
    return out


def scramble_global_generators(seed: int) -> None:
    """Put python's, numpy's and torch's global generators in a state no run would reach by itself:
    a resumed run that still matches an uninterrupted one cannot have drawn from them."""
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)  # the global generator is the point here
    torch.manual_seed(seed)
