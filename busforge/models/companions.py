"""Models trained together with a ControlNet, saved beside it, and used wherever that ControlNet is.

`busforge train controlnet --train-unet` writes the fine-tuned UNet to `OUT/unet`, and a run with
`--kl-alpha > 0` writes the VAE with its trained encoder to `OUT/vae`. A ControlNet trained jointly
with them only makes sense with them, so the diffusion renderer and `busforge train lora` given the
folder `OUT` load these in place of the base model's (named in the renderer identity and the LoRA
card). Only local ControlNet folders carry companions; a Hub ControlNet uses the base model's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# name -> the diffusers class that loads it
COMPANIONS = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL"}


def companion_folders(controlnet: str) -> dict[str, Path]:
    """The fine-tuned parts saved beside a local ControlNet folder (none for a Hub id)."""
    folder = Path(controlnet).expanduser()
    return {name: folder / name for name in COMPANIONS if (folder / name / "config.json").is_file()}


def load_companion(name: str, folder: str | Path, **kwargs: Any) -> Any:
    """`from_pretrained` of the companion `name` (safetensors only)."""
    import diffusers

    return getattr(diffusers, COMPANIONS[name]).from_pretrained(folder, use_safetensors=True, **kwargs)
