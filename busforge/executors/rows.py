"""From planned samples to finished dataset rows: masks, rendering, PNG encoding."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

from busforge.dataset.features import PATHOLOGY_NAMES, SOURCE_NAMES, empty_row_extras
from busforge.renderers.base import Renderer, RenderItem
from busforge.sample import SampleSpec
from busforge.shapes.lesion import ShapeParams, draw_mask

PNG_COMPRESS_LEVEL = 1  # lossless at every level; on speckle, 1 is 2.5x faster than 3 for 4% more bytes


def encode_png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode="L").save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def make_masks(specs: list[SampleSpec], image_size: int) -> list[tuple[np.ndarray, ShapeParams]]:
    return [draw_mask(s.shape, image_size, s.seed, s.size_range) for s in specs]


def make_row(
    spec: SampleSpec, mask: np.ndarray, shape: ShapeParams, image: np.ndarray, renderer: str
) -> dict:
    return {
        "image": {"bytes": encode_png(image), "path": None},
        "mask": {"bytes": encode_png(mask.astype(np.uint8) * 255), "path": None},
        "prompt": spec.prompt,
        "pathology": PATHOLOGY_NAMES.index(spec.pathology),
        "source": SOURCE_NAMES.index("synthetic"),
        "domain": spec.domain,
        "size_bin": spec.size_bin,
        "echogenicity": spec.echogenicity,
        "boundary": spec.boundary,
        "sample_id": spec.sample_id,
        "seed": spec.seed,
        "shape": shape.as_row(),
        "lesion_area": float(mask.mean()),
        "renderer": renderer,
        **empty_row_extras(),
    }


def provenance(renderer: Renderer, spec: SampleSpec) -> str:
    """The row's `renderer` column: the renderer's identity for this sample (e.g. its domain's LoRA)."""
    return json.dumps(renderer.provenance(spec), sort_keys=True, separators=(",", ":"))


def prepare_items(specs: list[SampleSpec], image_size: int) -> tuple[list[RenderItem], list[ShapeParams]]:
    """Masks (CPU) for a batch: the renderer's input, and the shape parameters finally used."""
    masks = make_masks(specs, image_size)
    items = [RenderItem(spec=s, mask=m) for s, (m, _) in zip(specs, masks, strict=True)]
    return items, [shape for _, shape in masks]


def encode_rows(
    renderer: Renderer, items: list[RenderItem], shapes: list[ShapeParams], images: list[np.ndarray]
) -> list[dict[str, Any]]:
    return [
        make_row(item.spec, item.mask, shape, image, provenance(renderer, item.spec))
        for item, shape, image in zip(items, shapes, images, strict=True)
    ]


def batches_of(specs: list[SampleSpec], size: int) -> list[list[SampleSpec]]:
    return [specs[i : i + size] for i in range(0, len(specs), size)]


def render_shard(
    renderer: Renderer, specs: list[SampleSpec], image_size: int
) -> Iterator[list[dict[str, Any]]]:
    """A shard's rows, batch by batch (`renderer.batch_size`), rendered in this process: the unit
    an executor hands a worker (the renderer loaded there once)."""
    for batch in batches_of(specs, renderer.batch_size):
        yield render_rows(renderer, batch, image_size)


def render_rows(renderer: Renderer, specs: list[SampleSpec], image_size: int) -> list[dict[str, Any]]:
    """Render one batch of samples into encoded rows, in plan order."""
    items, shapes = prepare_items(specs, image_size)
    return encode_rows(renderer, items, shapes, renderer.render(items))
