"""Options of the diffusion renderer (the `renderer:` block of a recipe), with their defaults.

Every mistake becomes one `BadInput` line naming `renderer.<key>` and what is allowed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from busforge.renderers.base import parse_renderer_options
from busforge.validation import plain_message

DEFAULT_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
# scheduler name -> diffusers class; UniPC reaches SD 1.5 quality in ~20 steps (PNDM needs ~50).
SCHEDULERS = {
    "unipc": "UniPCMultistepScheduler",
    "dpmpp": "DPMSolverMultistepScheduler",
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
}
CPU_BATCH_SIZE = 4
# Options whose pydantic message (one per union branch) would be confusing.
CHOICE_HINTS = {"batch_size": "a whole number from 1 to 1024, or auto", "compile": "true, false or auto"}


class DiffusionOptions(BaseModel):
    """What a recipe may set under `renderer:` when `backend: diffusion`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: Annotated[str, Field(min_length=1)] = DEFAULT_BASE
    controlnet: Annotated[str, Field(min_length=1)]
    # domain -> LoRA folder (or Hub id); an explicit null renders that domain with the base model only.
    lora: dict[str, str | None] = {}
    scheduler: Literal["unipc", "dpmpp", "ddim", "pndm", "euler"] = "unipc"
    steps: Annotated[int, Field(ge=1, le=1000)] = 20
    guidance_scale: Annotated[float, Field(ge=0, le=50)] = 7.5
    controlnet_scale: Annotated[float, Field(ge=0, le=5)] = 1.0
    negative_prompt: str = ""
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    batch_size: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = "auto"
    compile: bool | Literal["auto"] = "auto"
    device: str = "auto"

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v != "auto" and v.split(":")[0] not in ("cpu", "cuda", "mps", "xpu"):
            raise ValueError(f"{v!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
        return v

    @field_validator("lora")
    @classmethod
    def _domains(cls, v: dict[str, str | None]) -> dict[str, str | None]:
        for domain, ref in v.items():
            if not domain or (ref is not None and not ref.strip()):
                raise ValueError(f"empty domain or folder in {{{domain!r}: {ref!r}}}; map domain -> folder")
        return v


def _describe(path: list[str], error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return (
            f"unknown option for the diffusion renderer; allowed: {', '.join(DiffusionOptions.model_fields)}"
        )
    if error["type"] == "missing" and path == ["controlnet"]:
        return (
            "required: a local folder or Hub id of a diffusers ControlNetModel trained on lesion masks; "
            "train one with `busforge train controlnet data/real/NAME --out models/controlnet-NAME` "
            "(for tests: `busforge models tiny models/tiny` writes models/tiny/controlnet)"
        )
    if path and path[0] in CHOICE_HINTS:
        return f"got {error.get('input')!r}; use {CHOICE_HINTS[path[0]]}"
    return f"got {error.get('input')!r}: {plain_message(error)}"


def parse_options(options: dict[str, Any]) -> DiffusionOptions:
    """Validate the renderer options of a recipe; one `BadInput` line for the first problem."""
    return parse_renderer_options(DiffusionOptions, options, _describe)
