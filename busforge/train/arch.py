"""Stable Diffusion 1.5 architectures built without weights, for parameter counts and benchmarks.

The configs are those of `stable-diffusion-v1-5` (unet/, vae/, text_encoder/ config.json). Built on
the meta device they cost no memory and no download, so `--dry-run` can say what a run trains
before any weight is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Paper §2.3: LoRA on the UNet's attention projections (self- and cross-attention).
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")

SD15_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-5,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}

SD15_VAE: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "scaling_factor": 0.18215,
}

SD15_TEXT: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}

ARCHS = ("sd15",)


def lora_config(rank: int, targets: tuple[str, ...] = LORA_TARGETS):
    """The peft config of the paper's adapters (alpha = rank, so the scale is 1)."""
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(targets))


@dataclass(frozen=True)
class Sd15Models:
    unet: Any
    controlnet: Any
    vae: Any
    text_encoder: Any


def build_sd15(device: str = "meta", conditioning_channels: int = 3, with_text: bool = True) -> Sd15Models:
    """The SD 1.5 UNet, a ControlNet from it, the VAE and the CLIP text encoder, randomly initialised.

    On "meta" nothing is allocated (parameter counting); on a real device the weights are random
    (benchmarks: the compute does not depend on the weights).
    """
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    with torch.device(device):
        unet = UNet2DConditionModel(**SD15_UNET)
        controlnet = ControlNetModel.from_unet(unet, conditioning_channels=conditioning_channels)
        vae = AutoencoderKL(**SD15_VAE)
        text_encoder = None
        if with_text:
            from transformers import CLIPTextConfig, CLIPTextModel

            text_encoder = CLIPTextModel(CLIPTextConfig(**SD15_TEXT))
    return Sd15Models(unet, controlnet, vae, text_encoder)


def count(module: Any, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@dataclass(frozen=True)
class ParameterCounts:
    trainable: int
    total: int
    parts: dict[str, int]  # name -> parameters of each trained part

    def describe(self) -> str:
        parts = ", ".join(f"{name} {n:,}" for name, n in self.parts.items())
        return (
            f"trainable {self.trainable:,} ({self.trainable / 1e6:.2f}M) of {self.total:,} "
            f"({self.total / 1e6:.2f}M) parameters; trains: {parts}"
        )


def lora_counts(arch: str, rank: int) -> ParameterCounts:
    """LoRA on the UNet: trainable adapter parameters, of the adapted UNet's total."""
    _check_arch(arch)
    import torch
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET)
    unet.requires_grad_(False)
    unet.add_adapter(lora_config(rank))
    trainable = count(unet, trainable_only=True)
    return ParameterCounts(trainable, count(unet), {f"unet LoRA r={rank}": trainable})


def unet_counts(arch: str) -> int:
    """Parameters of the full UNet (the paper's 'full fine-tuning' row: 859.52M)."""
    _check_arch(arch)
    import torch
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return count(UNet2DConditionModel(**SD15_UNET))


def controlnet_counts(arch: str, train_unet: bool, train_vae_encoder: bool) -> ParameterCounts:
    """ControlNet training: trainable parts of the whole stack (UNet, ControlNet, VAE, text encoder)."""
    _check_arch(arch)
    models = build_sd15("meta")
    parts = {"controlnet": count(models.controlnet)}
    if train_unet:
        parts["unet"] = count(models.unet)
    if train_vae_encoder:
        parts["vae encoder"] = count(models.vae.encoder) + count(models.vae.quant_conv)
    total = sum(count(m) for m in (models.unet, models.controlnet, models.vae, models.text_encoder))
    return ParameterCounts(sum(parts.values()), total, parts)


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        from busforge.errors import BadInput

        raise BadInput(f"--arch {arch}: unknown architecture; allowed: {', '.join(ARCHS)}")
