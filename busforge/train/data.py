"""Training examples from an imported real busforge dataset: image, lesion mask and clinical prompt.

Rows come from the dataset's parquet split (`data/{split}-*.parquet`, the format of every busforge
dataset). Only lesion rows train (benign/malignant: the ControlNet learns to draw a lesion in its
mask; normal rows have no lesion and the renderer never asks for one). Images and masks are resized
to a square of the training size, as the renderer draws square images: the image bicubic, the mask
nearest-neighbour so that it stays binary. Whole-image resizing (not cropping) keeps every lesion
inside the frame; the aspect ratio of non-square scans is not kept.

The order of examples is a pure function of (seed, position): position p of the example stream
is example `perm(p // n)[p % n]`, a fresh permutation per epoch. A run that resumes at optimizer
step s therefore sees exactly the examples an uninterrupted run would, without saving loader state.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from busforge.errors import BadInput
from busforge.prompts import make_prompt
from busforge.vocab import PATHOLOGIES, PATHOLOGY_NAMES

COLUMNS = ("image", "mask", "pathology", "echogenicity", "boundary", "domain")


def split_files(dataset_dir: Path, split: str) -> list[Path]:
    if not dataset_dir.is_dir():
        raise BadInput(
            f"{dataset_dir}: no such dataset folder; import real data first, "
            f"e.g. `busforge import busi SRC --out {dataset_dir}`"
        )
    files = sorted((dataset_dir / "data").glob(f"{split}-*.parquet"))
    if not files:
        raise BadInput(
            f"{dataset_dir}: no {split} split (data/{split}-*.parquet); give a busforge dataset "
            "made by `busforge import` or `busforge render`"
        )
    return files


@dataclass
class Examples:
    """The usable rows of one split, kept as encoded PNG bytes until an item is asked for."""

    images: list[bytes]
    masks: list[bytes]
    prompts: list[str]
    domains: list[str]
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)


def read_examples(dataset_dir: Path, split: str, template: str, domain: str | None = None) -> Examples:
    """Read the split's lesion rows (optionally of one domain) with their prompts.

    Raises BadInput when the dataset, split, masks or domain are missing, or no row is usable.
    """
    import pyarrow.parquet as pq

    files = split_files(dataset_dir, split)
    tables = []
    for path in files:
        names = pq.read_schema(path).names
        if "mask" not in names:
            raise BadInput(f"{path}: mask: column missing; training needs lesion masks (import with masks)")
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise BadInput(f"{path}: {', '.join(missing)}: column(s) missing; not a busforge dataset")
        tables.append(pq.read_table(path, columns=list(COLUMNS)))

    out = Examples([], [], [], [])
    domains_seen: set[str] = set()
    skipped: dict[str, int] = {}
    for table in tables:
        rows = table.to_pydict()
        for i in range(table.num_rows):
            row_domain = rows["domain"][i]
            domains_seen.add(str(row_domain))
            if domain is not None and row_domain != domain:
                continue
            pathology = PATHOLOGY_NAMES[rows["pathology"][i]] if rows["pathology"][i] is not None else None
            reason = _unusable(rows, i, pathology)
            if reason:
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            out.images.append(rows["image"][i]["bytes"])
            out.masks.append(rows["mask"][i]["bytes"])
            out.prompts.append(
                make_prompt(
                    template,
                    pathology=pathology,
                    echogenicity=rows["echogenicity"][i],
                    boundary=rows["boundary"][i],
                )
            )
            out.domains.append(row_domain)
    out.skipped = skipped
    if domain is not None and domain not in domains_seen:
        raise BadInput(
            f"{dataset_dir}: domain {domain!r}: no {split} rows of this domain; "
            f"domains present: {', '.join(sorted(domains_seen)) or '(none)'}"
        )
    if not out.images:
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items())) or "no rows"
        raise BadInput(f"{dataset_dir}: {split} split: no usable training rows ({why}); need lesion masks")
    return out


def _unusable(rows: dict[str, list[Any]], i: int, pathology: str | None) -> str | None:
    if pathology not in PATHOLOGIES:
        return "without a lesion (normal or unlabelled)"
    mask = rows["mask"][i]
    if mask is None or not mask.get("bytes"):
        return "without a mask"
    if rows["image"][i] is None or not rows["image"][i].get("bytes"):
        return "without an image"
    if not rows["echogenicity"][i] or not rows["boundary"][i]:
        return "without echogenicity/boundary attributes"
    return None


def load_image(data: bytes, size: int) -> np.ndarray:
    """Grey image resized to size x size, float32 in [-1, 1] (the VAE's input range)."""
    img = Image.open(io.BytesIO(data)).convert("L").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 127.5 - 1.0


def load_mask(data: bytes, size: int) -> np.ndarray:
    """Binary mask resized with nearest neighbour, float32 in {0, 1} (the ControlNet's condition)."""
    img = Image.open(io.BytesIO(data))
    binary = Image.fromarray((np.asarray(img.convert("L")) > 0).astype(np.uint8) * 255)
    resized = binary.resize((size, size), Image.Resampling.NEAREST)
    return (np.asarray(resized) > 127).astype(np.float32)


class TrainingSet:
    """A torch map-style dataset: item i -> {pixel_values (3,S,S), conditioning (C,S,S), prompt}."""

    def __init__(self, examples: Examples, size: int, conditioning_channels: int = 3) -> None:
        self.examples = examples
        self.size = size
        self.conditioning_channels = conditioning_channels

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        image = torch.from_numpy(load_image(self.examples.images[i], self.size))
        mask = torch.from_numpy(load_mask(self.examples.masks[i], self.size))
        return {
            "pixel_values": image.expand(3, -1, -1).clone(),
            "conditioning": mask.expand(self.conditioning_channels, -1, -1).clone(),
            "prompt": self.examples.prompts[i],
        }


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    import torch

    return {
        "pixel_values": torch.stack([it["pixel_values"] for it in items]),
        "conditioning": torch.stack([it["conditioning"] for it in items]),
        "prompts": [it["prompt"] for it in items],
    }


class ExampleStream:
    """The example at each stream position: a new seeded permutation of the n examples per epoch."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self._perms: dict[int, np.ndarray] = {}

    def indices(self, start: int, count: int) -> list[int]:
        out = []
        for p in range(start, start + count):
            epoch = p // self.n
            perm = self._perms.get(epoch)
            if perm is None:
                perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
                self._perms = {epoch: perm}  # positions only move forward; keep one epoch
            out.append(int(perm[p % self.n]))
        return out


class StepBatches:
    """Batch sampler: the micro-batches of optimizer steps [start, end) for one process.

    Step s covers stream positions [s*E, (s+1)*E) with E = micro_batch * accumulation * world;
    process `rank` takes its accumulation micro-batches from its own slice of that window.
    """

    def __init__(
        self,
        n: int,
        seed: int,
        micro_batch: int,
        accumulation: int,
        world: int,
        rank: int,
        start: int,
        end: int,
    ) -> None:
        self.stream = ExampleStream(n, seed)
        self.micro_batch, self.accumulation = micro_batch, accumulation
        self.world, self.rank = world, rank
        self.start, self.end = start, end

    def __len__(self) -> int:
        return (self.end - self.start) * self.accumulation

    def __iter__(self) -> Iterator[list[int]]:
        per_process = self.micro_batch * self.accumulation
        for step in range(self.start, self.end):
            base = step * per_process * self.world + self.rank * per_process
            for k in range(self.accumulation):
                yield self.stream.indices(base + k * self.micro_batch, self.micro_batch)
