"""The renderer contract and registry.

A renderer turns a batch of planned samples (spec + lesion mask + prompt) into grey-scale images.
`Renderer` is the whole contract the executors and the row encoder rely on; `BaseRenderer` gives
the optional members their defaults, so a renderer states only what differs. The registry maps
backend names to import paths so that heavy renderers (torch, diffusers) are imported only when a
recipe selects them; adding a renderer is one file plus one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import numpy as np

from busforge.errors import BadInput

if TYPE_CHECKING:
    from pydantic import BaseModel

    from busforge.sample import SampleSpec
    from busforge.validation import Describe

# backend name -> "module:Class"
RENDERERS: dict[str, str] = {
    "procedural": "busforge.renderers.procedural:ProceduralRenderer",
    "diffusion": "busforge.renderers.diffusion:DiffusionRenderer",
}
DEFAULT_BATCH_SIZE = 8

Options = TypeVar("Options", bound="BaseModel")


@dataclass(frozen=True)
class RenderItem:
    spec: SampleSpec
    mask: np.ndarray  # HxW bool, image_size x image_size

    @property
    def prompt(self) -> str:
        return self.spec.prompt


class Renderer(Protocol):
    name: str
    batch_size: int  # samples per `render` call
    in_process: bool  # True: render in the calling process only (one model on one GPU), never in a pool

    def __init__(self, options: dict[str, Any], image_size: int) -> None: ...

    def identity(self) -> dict[str, Any]:
        """What determines the pixels besides the plan (backend, model ids and weight hashes, ...)."""
        ...

    def load(self) -> None:
        """Load weights once, before the first batch."""
        ...

    def expect_domains(self, domains: set[str]) -> None:
        """Told the whole plan's domains before the first batch (so a resumed run renders alike);
        raises BadInput for a domain it cannot render."""
        ...

    def provenance(self, spec: SampleSpec) -> dict[str, Any]:
        """The row's `renderer` column for one sample (e.g. naming its domain's LoRA)."""
        ...

    def input_locations(self) -> list[tuple[str, ...]]:
        """Option keys (paths under `renderer:`) that only say where a local input lives and whose
        content `identity()` holds by hash: the fingerprint leaves them out."""
        ...

    def render(self, items: list[RenderItem]) -> list[np.ndarray]:
        """One HxW uint8 grey image per item, in order; each depends only on its own item."""
        ...


class BaseRenderer:
    """Defaults of the contract's optional members."""

    name: ClassVar[str] = "base"
    batch_size: int = DEFAULT_BATCH_SIZE
    in_process: bool = False

    def identity(self) -> dict[str, Any]:
        raise NotImplementedError

    def load(self) -> None:
        """Nothing to load by default."""

    def expect_domains(self, domains: set[str]) -> None:
        """Every domain is fine by default."""

    def provenance(self, spec: SampleSpec) -> dict[str, Any]:
        return self.identity()

    def input_locations(self) -> list[tuple[str, ...]]:
        """No local inputs by default."""
        return []


def parse_renderer_options(
    model: type[Options], options: dict[str, Any], describe: Describe | None = None
) -> Options:
    """Validate a recipe's `renderer:` block (less `backend`) with the renderer's pydantic model;
    the first problem becomes one `BadInput` keyed `renderer.<key>`."""
    from pydantic import ValidationError

    from busforge.validation import bad_input

    try:
        return model.model_validate({k: v for k, v in options.items() if k != "backend"})
    except ValidationError as err:
        raise bad_input(err, prefix=("renderer",), describe=describe) from None


def renderer_class(backend: str) -> type[Renderer]:
    module_name, _, class_name = RENDERERS[backend].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def make_renderer(
    backend: str,
    options: dict[str, Any],
    image_size: int,
    source: str = "recipe",
    *,
    domains: set[str] | None = None,
    samples: int | None = None,
) -> Renderer:
    """Build a renderer; option errors name `source` (the recipe file).

    A renderer with `takes_plan_hints` also gets the plan's domains and sample count, so that it can
    report everything a run lacks (e.g. a LoRA per domain, a GPU) in its one start-up error.
    """
    cls = renderer_class(backend)
    hints = {"domains": domains, "samples": samples} if getattr(cls, "takes_plan_hints", False) else {}
    try:
        return cls(options, image_size, **hints)
    except BadInput as err:
        raise err.with_source(source) from None
