"""`busforge train controlnet`: the mask-and-text ControlNet on real data (paper §2.1).

Stable Diffusion 1.5 with a ControlNet (`ControlNetModel.from_unet`, or an existing one to continue
from) that takes the lesion mask; the frozen text encoder embeds the clinical prompt. Trains the
ControlNet (default) or ControlNet + UNet ("fully fine-tune"); with kl_alpha > 0 the VAE encoder
too (default 0, see busforge.train.objective). Writes a diffusers ControlNet folder (safetensors) at
OUT, the fine-tuned UNet at OUT/unet and the VAE with its trained encoder at OUT/vae when they
trained (the renderer and `train lora` use them with this ControlNet), and a model card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from busforge.train.loop import TrainOutcome
from busforge.train.run import TrainingRun, check_resolution


@dataclass(frozen=True, kw_only=True)
class ControlNetRun(TrainingRun):
    controlnet: str | None = None  # continue from this ControlNet instead of copying the UNet
    train_unet: bool = False
    kl_alpha: float = 0.0  # safe default: encoder frozen, KL logged (busforge.train.objective)
    extra: dict[str, Any] = field(default_factory=dict)


def train_controlnet(run: ControlNetRun) -> TrainOutcome:
    """Train, export and document; returns the output folder."""
    from busforge.train.components import load_base, load_controlnet, place, use_companions, weight_dtype
    from busforge.train.run import Session

    check_run(run)
    session = Session.open(run)
    accelerator = session.accelerator

    import torch

    base = load_base(run.base)
    if run.controlnet:
        controlnet = load_controlnet(run.controlnet)
        use_companions(base, run.controlnet)  # continue with the UNet / VAE it was trained with
    else:
        controlnet = controlnet_from_unet(base.unet, base.vae, run.seed)
    frozen_dtype = weight_dtype(accelerator)
    device = accelerator.device

    base.text_encoder.requires_grad_(False)
    base.unet.requires_grad_(run.train_unet)
    base.vae.requires_grad_(False)
    if run.kl_alpha > 0:
        base.vae.encoder.requires_grad_(True)
        base.vae.quant_conv.requires_grad_(True)
    controlnet.requires_grad_(True)
    if run.gradient_checkpointing:
        # The UNet too, trained or not: the ControlNet's gradient flows back through its activations.
        controlnet.enable_gradient_checkpointing()
        base.unet.enable_gradient_checkpointing()
    # Frozen parts run in the mixed-precision dtype; trained parts stay fp32 (autocast handles the mix).
    place(base.unet, device, torch.float32 if run.train_unet else frozen_dtype)
    place(base.vae, device, torch.float32 if run.kl_alpha > 0 else frozen_dtype)
    place(controlnet, device, torch.float32)

    identity = {
        "trainer": "controlnet",
        "controlnet": run.controlnet,
        "train_unet": run.train_unet,
        "kl_alpha": run.kl_alpha,
    }
    loop, result = session.fit(base, controlnet, run.kl_alpha, identity)

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(loop.model)
        trained.controlnet.save_pretrained(run.out, safe_serialization=True)
        if run.train_unet:
            trained.unet.save_pretrained(run.out / "unet", safe_serialization=True)
        if run.kl_alpha > 0:  # the base decoder with the trained encoder
            trained.vae.save_pretrained(run.out / "vae", safe_serialization=True)
        trained.eval()
        trains = ("ControlNet + UNet (in unet/)" if run.train_unet else "ControlNet") + (
            f" + VAE encoder (in vae/), KL weight {run.kl_alpha:g}"
            if run.kl_alpha > 0
            else "; VAE encoder frozen (KL weight 0: the KL term is logged, not trained)"
        )
        session.write_card(
            loop,
            result,
            base,
            trained.unet,
            trained.controlnet,
            title="busforge mask-and-text ControlNet",
            kind="controlnet",
            trains=trains,
            usage=(f"renderer:\n  backend: diffusion\n  base: {run.base}\n  controlnet: {run.out}\n"),
        )
    return session.finish(loop, result)


def controlnet_from_unet(unet: Any, vae: Any, seed: int = 0) -> Any:
    """A ControlNet copying the UNet's encoder, its mask embedding matched to the VAE's downsampling.

    One stride-2 stage per VAE level (3 for SD 1.5, which gives diffusers' default (16, 32, 96, 256)).
    The only layers not copied from the UNet are the mask embedding's convolutions (the zero
    convolutions start at zero); diffusers draws them from torch's global RNG, so they are drawn
    again here from a generator seeded with `seed`, with torch's default Conv2d initialisation.
    """
    import math

    import torch
    from diffusers import ControlNetModel

    stages = len(vae.config.block_out_channels) - 1
    channels = (16, 32, 96, 256, 256, 256)[: stages + 1]
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=channels)
    generator = torch.Generator().manual_seed(seed)
    embedding = controlnet.controlnet_cond_embedding
    with torch.no_grad():
        for conv in [embedding.conv_in, *embedding.blocks]:
            torch.nn.init.kaiming_uniform_(conv.weight, a=math.sqrt(5), generator=generator)
            bound = 1 / math.sqrt(conv.weight[0].numel())
            conv.bias.uniform_(-bound, bound, generator=generator)
    return controlnet


def check_run(run: ControlNetRun) -> None:
    from busforge.errors import BadInput

    if run.kl_alpha < 0:
        raise BadInput(f"--kl-alpha {run.kl_alpha}: must be >= 0 (0 freezes the VAE)")
    check_resolution(run.resolution)
