"""`busforge train lora --domain NAME`: a per-domain LoRA adapter (paper §2.3, cross-domain adaptation).

Everything is frozen (UNet, ControlNet, VAE, text encoder); peft LoRA layers of rank r are added to
the UNet's attention projections (`to_q`, `to_k`, `to_v`, `to_out.0`) and train on the target
domain's real rows with the base ControlNet in place. The adapter is saved as
`OUT/pytorch_lora_weights.safetensors` in diffusers format (`pipe.load_lora_weights(OUT)`), which
the diffusion renderer loads as `lora: {NAME: OUT}`. When the ControlNet folder holds the UNet (and
VAE) trained with it (`train controlnet --train-unet`), the adapter trains on those, as they render.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from busforge.train.loop import TrainOutcome
from busforge.train.run import TrainingRun

LORA_FILE = "pytorch_lora_weights.safetensors"


@dataclass(frozen=True, kw_only=True)
class LoraRun(TrainingRun):
    domain: str
    controlnet: str
    rank: int = 8


def seed_lora_init(unet: Any, rank: int, seed: int) -> None:
    """Redraw the adapters' A matrices from a generator seeded with `seed`.

    peft's "gaussian" init draws A ~ N(0, 1/r) from torch's global RNG (B starts at zero), so two
    runs with the same --seed would start from different adapters; same distribution, our stream.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(unet.named_parameters()):
            if "lora_A" in name:
                param.copy_(torch.randn(param.shape, generator=generator, dtype=torch.float32) / rank)


def check_rank(rank: int) -> None:
    from busforge.errors import BadInput

    if rank < 1:
        raise BadInput(f"--rank {rank}: a LoRA rank must be a positive integer (the paper uses 2, 4 or 8)")


def train_lora(run: LoraRun) -> TrainOutcome:
    """Train the domain's adapter, save it in diffusers format with a model card; returns OUT."""
    from busforge.train.arch import lora_config
    from busforge.train.components import load_base, load_controlnet, place, use_companions, weight_dtype
    from busforge.train.run import Session, check_resolution

    check_rank(run.rank)
    check_resolution(run.resolution)
    session = Session.open(run, domain=run.domain)
    accelerator = session.accelerator

    # Heavy imports only once the inputs are known good: a bad input stays a one-line error.
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    base = load_base(run.base)
    controlnet = load_controlnet(run.controlnet)
    companions = use_companions(base, run.controlnet)
    device, frozen_dtype = accelerator.device, weight_dtype(accelerator)
    for module in (base.unet, base.vae, base.text_encoder, controlnet):
        module.requires_grad_(False)
    for module in (base.unet, base.vae, controlnet):
        place(module, device, frozen_dtype)
    base.unet.add_adapter(lora_config(run.rank))
    seed_lora_init(base.unet, run.rank, run.seed)
    for param in base.unet.parameters():
        if param.requires_grad:  # only the adapter; train it in fp32 under autocast
            param.data = param.data.float()
    if run.gradient_checkpointing:
        base.unet.enable_gradient_checkpointing()

    identity = {
        "trainer": "lora",
        "domain": run.domain,
        "controlnet": run.controlnet,
        "rank": run.rank,
        "companions": companions,
    }
    loop, result = session.fit(base, controlnet, 0.0, identity)

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unet = accelerator.unwrap_model(loop.model).unet
        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
        layers = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in layers.items()}
        StableDiffusionPipeline.save_lora_weights(run.out, unet_lora_layers=layers, safe_serialization=True)
        unet.eval()
        session.write_card(
            loop,
            result,
            base,
            unet,
            controlnet,
            title=f"busforge LoRA adapter for domain {run.domain!r}",
            kind="lora",
            trains=(
                f"UNet LoRA r={run.rank} on {', '.join(lora_targets())} ({loop.params_count:,} parameters)"
                + (
                    f"; adapts the {' and '.join(companions)} trained with the ControlNet"
                    if companions
                    else ""
                )
            ),
            usage=(
                "renderer:\n  backend: diffusion\n"
                f"  base: {run.base}\n  controlnet: {run.controlnet}\n  lora:\n    {run.domain}: {run.out}\n"
            ),
        )
    return session.finish(loop, result)


def lora_targets() -> tuple[str, ...]:
    from busforge.train.arch import LORA_TARGETS

    return LORA_TARGETS
