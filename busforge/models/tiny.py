"""A tiny random-weight Stable Diffusion 1.5-shaped model, mask ControlNet and per-domain LoRAs.

It exists for tests and CI smoke runs: it produces noise, not ultrasound images. Everything is
written in the diffusers layout with safetensors, so the renderer loads it through exactly the same
`from_pretrained` / `load_lora_weights` code path as real weights:

    DIR/base/         StableDiffusionPipeline (unet, vae, text_encoder, tokenizer, scheduler)
    DIR/controlnet/   ControlNetModel (conditioning image = the lesion mask)
    DIR/lora/<domain>/pytorch_lora_weights.safetensors   UNet LoRA, diffusers format

The tokenizer is the real CLIP BPE tokenizer (the same 49408-token vocabulary as SD 1.5), built
offline from `bpe_simple_vocab_16e6.txt.gz`, which ships inside the `open_clip_torch` wheel.
Weights are drawn from a `torch.Generator` seeded with `seed`, so the same seed writes the same
files (and the same weight hashes) on any machine.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

from busforge.errors import BadInput

# Small enough to denoise a 64x64 image in milliseconds on a CPU, shaped like SD 1.5 otherwise:
# 4 latent channels, cross-attention on CLIP text states, a ControlNet mirroring the UNet encoder.
UNET_CHANNELS = (16, 32)
# Four levels: the VAE downsamples by 8 as SD 1.5's does, so 64x64 images -> 8x8 latents; the UNet's
# compute is then small next to its per-call overhead, as on a GPU, and batching pays as it does there.
VAE_CHANNELS = (8, 16, 16, 16)
NORM_GROUPS = 4
TEXT_WIDTH = 16
CLIP_VOCAB_SIZE = 49408
CLIP_MAX_LENGTH = 77
LORA_RANK = 4
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
DEFAULT_SEED = 0

# SD 1.5's noise schedule (its scheduler_config.json), so scheduler swaps behave as with real weights.
SD15_SCHEDULE = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}


def clip_bpe_vocab_file() -> Path:
    """The CLIP BPE merges file inside the installed open_clip package (found without importing it)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise BadInput(
            "busforge models tiny: the CLIP BPE vocabulary comes from the open_clip_torch package, which is "
            "not installed; install it with `pip install --no-deps open_clip_torch`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise BadInput(f"busforge models tiny: {path} is missing; reinstall open_clip_torch")
    return path


def _bytes_to_unicode() -> dict[int, str]:
    """OpenAI CLIP's reversible byte -> printable unicode map (the base alphabet of its BPE)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def write_clip_tokenizer(out_dir: Path) -> None:
    """vocab.json + merges.txt of the CLIP ViT-L/14 tokenizer, exactly as SD 1.5 ships them."""
    from transformers import CLIPTokenizer

    lines = gzip.open(clip_bpe_vocab_file(), "rt", encoding="utf-8").read().split("\n")
    # The same slice as CLIP's SimpleTokenizer: 48894 merges (+ 512 byte tokens + 2 specials).
    merges = lines[1 : 49152 - 256 - 2 + 1]
    alphabet = list(_bytes_to_unicode().values())
    tokens = alphabet + [t + "</w>" for t in alphabet] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    if len(tokens) != CLIP_VOCAB_SIZE:
        raise RuntimeError(f"CLIP vocabulary has {len(tokens)} tokens, expected {CLIP_VOCAB_SIZE}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(
        str(out_dir / "vocab.json"),
        str(out_dir / "merges.txt"),
        model_max_length=CLIP_MAX_LENGTH,
        pad_token="<|endoftext|>",
    )
    tokenizer.save_pretrained(out_dir)


def _randomize(module: Any, generator: Any, scale: float = 1.0) -> None:
    """Overwrite matrices/kernels with N(0, scale^2/fan_in) draws from `generator`, biases with zeros.

    diffusers and transformers initialise from torch's global RNG; this replaces every random tensor
    with one from our own generator (norm weights/biases are already constant), in a fixed order.
    """
    import torch

    with torch.no_grad():
        for name, param in sorted(module.named_parameters(), key=lambda kv: kv[0]):
            if param.ndim >= 2:
                fan_in = math.prod(param.shape[1:])
                draw = torch.randn(param.shape, generator=generator, dtype=torch.float32)
                param.copy_(draw * (scale / math.sqrt(fan_in)))
            elif name.endswith("bias"):
                param.zero_()


def build_components(seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """The tiny pipeline's components and a matching ControlNet, weights from `torch.Generator(seed)`."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    generator = torch.Generator().manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=UNET_CHANNELS,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=4,
        norm_num_groups=NORM_GROUPS,
    )
    controlnet = ControlNetModel(
        in_channels=4,
        block_out_channels=UNET_CHANNELS,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=4,
        norm_num_groups=NORM_GROUPS,
        # Three stride-2 stages, matching the VAE: 64x64 masks -> 8x8 latent-sized features.
        conditioning_embedding_out_channels=(8, 16, 16, 16),
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(VAE_CHANNELS),
        up_block_types=("UpDecoderBlock2D",) * len(VAE_CHANNELS),
        block_out_channels=VAE_CHANNELS,
        latent_channels=4,
        norm_num_groups=NORM_GROUPS,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=CLIP_VOCAB_SIZE,
            hidden_size=TEXT_WIDTH,
            intermediate_size=2 * TEXT_WIDTH,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=CLIP_MAX_LENGTH,
            projection_dim=TEXT_WIDTH,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    for module in (unet, controlnet, vae, text_encoder):
        _randomize(module, generator)
    scheduler = PNDMScheduler(**SD15_SCHEDULE)
    return {
        "unet": unet,
        "controlnet": controlnet,
        "vae": vae,
        "text_encoder": text_encoder,
        "scheduler": scheduler,
        "generator": generator,
    }


def lora_state_dict(unet: Any, generator: Any) -> dict[str, Any]:
    """A random rank-4 LoRA on the UNet's attention projections, in diffusers/peft key layout.

    peft initialises B to zero (an adapter that does nothing); here both A and B are random so
    that each domain's adapter visibly changes the output, as a trained one does.
    """
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    config = LoraConfig(
        r=LORA_RANK, lora_alpha=LORA_RANK, target_modules=LORA_TARGETS, init_lora_weights=True
    )
    unet.add_adapter(config, adapter_name="tiny")
    lora_modules = {n: p for n, p in unet.named_parameters() if "lora_" in n}
    for name in sorted(lora_modules):
        _randomize_tensor(lora_modules[name], generator)
    state = get_peft_model_state_dict(unet, adapter_name="tiny")
    unet.delete_adapters("tiny")
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def _randomize_tensor(param: Any, generator: Any) -> None:
    import torch

    with torch.no_grad():
        draw = torch.randn(param.shape, generator=generator, dtype=torch.float32)
        param.copy_(draw / math.sqrt(param.shape[1]))


def write_tiny_model(out_dir: Path, domains: list[str], seed: int = DEFAULT_SEED) -> dict[str, Path]:
    """Write the tiny base pipeline, ControlNet and one LoRA per domain under `out_dir`.

    Returns the folders written: {"base": ..., "controlnet": ..., "lora/<domain>": ...}.
    """
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    out_dir = Path(out_dir)
    parts = build_components(seed)
    tokenizer_dir = out_dir / "base" / "tokenizer"
    write_clip_tokenizer(tokenizer_dir)
    pipe = StableDiffusionPipeline(
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir),
        unet=parts["unet"],
        scheduler=parts["scheduler"],
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out_dir / "base", safe_serialization=True)
    parts["controlnet"].save_pretrained(out_dir / "controlnet", safe_serialization=True)
    written = {"base": out_dir / "base", "controlnet": out_dir / "controlnet"}
    for domain in domains:
        state = lora_state_dict(parts["unet"], parts["generator"])
        lora_dir = out_dir / "lora" / domain
        StableDiffusionPipeline.save_lora_weights(lora_dir, unet_lora_layers=state, safe_serialization=True)
        written[f"lora/{domain}"] = lora_dir
    (out_dir / "README.md").write_text(
        "# busforge tiny test model\n\n"
        "Random weights in the Stable Diffusion 1.5 + ControlNet + LoRA diffusers layout, written by "
        f"`busforge models tiny` (seed {seed}, domains {', '.join(domains) or 'none'}).\n"
        "It renders noise. It exists to test busforge's diffusion code path offline, not to make images.\n"
    )
    return written
