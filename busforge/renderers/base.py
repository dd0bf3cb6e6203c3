"""The renderer protocol and registry.

A renderer turns a batch of planned samples (spec + lesion mask + prompt) into grey-scale images.
The registry maps backend names to import paths so that heavy renderers (torch, diffusers) are
imported only when a recipe selects them; adding a renderer is one file plus one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from busforge.errors import BadInput, naming_file

if TYPE_CHECKING:
    from busforge.sample import SampleSpec

# backend name -> "module:Class"
RENDERERS: dict[str, str] = {
    "procedural": "busforge.renderers.procedural:ProceduralRenderer",
    "diffusion": "busforge.renderers.diffusion:DiffusionRenderer",
}


@dataclass(frozen=True)
class RenderItem:
    spec: SampleSpec
    mask: np.ndarray  # HxW bool, image_size x image_size
    prompt: str


class Renderer(Protocol):
    name: str

    def __init__(self, options: dict[str, Any], image_size: int) -> None: ...

    def identity(self) -> dict[str, Any]:
        """What determines the pixels besides the plan (backend, model ids and weight hashes, ...)."""
        ...

    def load(self) -> None:
        """Load weights once, before the first batch."""
        ...

    def render(self, items: list[RenderItem]) -> list[np.ndarray]:
        """One HxW uint8 grey image per item, in order; each depends only on its own item."""
        ...


def renderer_class(backend: str) -> type[Renderer]:
    module_name, _, class_name = RENDERERS[backend].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def make_renderer(backend: str, options: dict[str, Any], image_size: int, source: str = "recipe") -> Renderer:
    """Build a renderer; option errors (reported as `recipe: renderer.<key>: ...`) name `source`."""
    try:
        return renderer_class(backend)(options, image_size)
    except BadInput as err:
        raise naming_file(err, source) from None
