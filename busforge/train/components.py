"""What both trainers need: the base model, the accelerator, cached prompt embeddings, the data
loader and the validation renders for the model card."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from busforge.errors import BadInput
from busforge.train.data import Examples, StepBatches, TrainingSet, collate, load_mask


@dataclass
class BaseModel:
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any
    source: str


def _load(what: str, source: str, loader: Any) -> Any:
    try:
        return loader()
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadInput(
            f"{what} {source}: cannot load ({first[:200]}); give a local diffusers folder or fetch it "
            f"first with `hf download {source}`"
        ) from None


def load_base(base: str) -> BaseModel:
    """The Stable Diffusion 1.5 components of a diffusers folder or Hub id (safetensors only)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    if (base.startswith((".", "/")) or Path(base).exists()) and not Path(base).is_dir():
        raise BadInput(
            f"--base {base}: no such folder; give a diffusers Stable Diffusion 1.5 folder or Hub id"
        )
    kw = {"use_safetensors": True}
    return BaseModel(
        unet=_load(
            "--base", base, lambda: UNet2DConditionModel.from_pretrained(base, subfolder="unet", **kw)
        ),
        vae=_load("--base", base, lambda: AutoencoderKL.from_pretrained(base, subfolder="vae", **kw)),
        text_encoder=_load(
            "--base", base, lambda: CLIPTextModel.from_pretrained(base, subfolder="text_encoder", **kw)
        ),
        tokenizer=_load("--base", base, lambda: CLIPTokenizer.from_pretrained(base, subfolder="tokenizer")),
        noise_scheduler=_load(
            "--base", base, lambda: DDPMScheduler.from_pretrained(base, subfolder="scheduler")
        ),
        source=base,
    )


def use_companions(base: BaseModel, controlnet: str) -> list[str]:
    """Put the UNet / VAE trained with `controlnet` (saved beside it) in place of the base's.

    Returns the names replaced, for the card: a LoRA on a fully fine-tuned ControlNet run adapts that
    run's UNet, the one the renderer uses with this ControlNet, not the base UNet.
    """
    from busforge.models.companions import companion_folders, load_companion

    found = companion_folders(controlnet)
    for name, folder in found.items():
        setattr(base, name, _load("--controlnet", str(folder), lambda f=folder, n=name: load_companion(n, f)))
    return sorted(found)


def load_controlnet(source: str) -> Any:
    from diffusers import ControlNetModel

    if (source.startswith((".", "/")) or Path(source).exists()) and not Path(source).is_dir():
        raise BadInput(f"--controlnet {source}: no such folder; give a diffusers ControlNet folder or Hub id")
    return _load(
        "--controlnet", source, lambda: ControlNetModel.from_pretrained(source, use_safetensors=True)
    )


def make_accelerator(mixed_precision: str) -> Any:
    """`auto`: bf16 on a GPU that has it, else fp16 on GPU; full precision on CPU."""
    import torch
    from accelerate import Accelerator

    if mixed_precision == "auto":
        if torch.cuda.is_available():
            mixed_precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            mixed_precision = "no"
    return Accelerator(mixed_precision=mixed_precision)


def place(module: Any, device: Any, dtype: Any) -> None:
    """Move to the device; cast only when the dtype changes (diffusers warns about every cast)."""
    if module.dtype != dtype:
        module.to(device, dtype=dtype)
    else:
        module.to(device)


def weight_dtype(accelerator: Any) -> Any:
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)


class PromptEmbeddings:
    """The frozen text encoder's output for each distinct prompt, computed once.

    Real prompts come from a handful of attribute combinations (2 pathologies x 2 x 2), so caching
    them removes the text encoder from every training step.
    """

    def __init__(
        self, text_encoder: Any, tokenizer: Any, prompts: list[str], device: Any, dtype: Any
    ) -> None:
        import torch

        unique = sorted(set(prompts) | {""})
        tokens = tokenizer(
            unique,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        with torch.no_grad():
            states = text_encoder(tokens.to(text_encoder.device))[0]
        self.by_prompt = {p: states[i].to(device=device, dtype=dtype) for i, p in enumerate(unique)}

    def __call__(self, prompts: list[str]) -> Any:
        import torch

        return torch.stack([self.by_prompt[p] for p in prompts])


def make_loader(
    dataset: TrainingSet, seed: int, micro_batch: int, accumulation: int, accelerator: Any, num_workers: int
) -> Any:
    """A factory: (start_step, end_step) -> DataLoader over exactly those steps' micro-batches."""
    from torch.utils.data import DataLoader

    def loader_for(start: int, end: int) -> Any:
        sampler = StepBatches(
            len(dataset),
            seed,
            micro_batch,
            accumulation,
            accelerator.num_processes,
            accelerator.process_index,
            start,
            end,
        )
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=num_workers,
            pin_memory=accelerator.device.type == "cuda",
            persistent_workers=False,
        )

    return loader_for


def make_micro_step(embeddings: PromptEmbeddings, vae: Any, noise_scheduler: Any, size: int, device: Any):
    """(model, batch, generator) -> (loss, mse, kl) for one micro-batch."""
    from busforge.train.objective import draw_inputs

    def micro_step(model: Any, batch: dict[str, Any], generator: Any) -> Any:
        pixels = batch["pixel_values"].to(device, non_blocking=True)
        drawn = draw_inputs(vae, noise_scheduler, pixels.shape[0], size, generator, device)
        return model(
            pixel_values=pixels,
            conditioning=batch["conditioning"].to(device, non_blocking=True),
            encoder_hidden_states=embeddings(batch["prompts"]),
            **drawn,
        )

    return micro_step


def validation_renders(
    base: BaseModel,
    unet: Any,
    controlnet: Any,
    examples: Examples,
    size: int,
    count: int,
    seed: int,
    steps: int,
    device: Any,
) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(mask, render, prompt) for the first `count` examples, rendered with the trained weights."""
    import torch
    from diffusers import StableDiffusionControlNetPipeline, UniPCMultistepScheduler
    from PIL import Image

    if count <= 0 or len(examples) == 0:
        return []
    pipe = StableDiffusionControlNetPipeline(
        vae=base.vae,
        text_encoder=base.text_encoder,
        tokenizer=base.tokenizer,
        unet=unet,
        controlnet=controlnet,
        scheduler=UniPCMultistepScheduler.from_config(base.noise_scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).to(device)
    pipe.set_progress_bar_config(disable=True)
    out = []
    for i in range(min(count, len(examples))):
        mask = load_mask(examples.masks[i], size)
        condition = Image.fromarray((mask * 255).astype(np.uint8)).convert("RGB")
        with torch.no_grad():
            image = pipe(
                examples.prompts[i],
                image=condition,
                height=size,
                width=size,
                num_inference_steps=steps,
                generator=torch.Generator().manual_seed(seed + i),
                output_type="np",
            ).images[0]
        grey = (image.mean(axis=-1) * 255).round().clip(0, 255).astype(np.uint8)
        out.append((mask.astype(np.uint8) * 255, grey, examples.prompts[i]))
    return out


def dataset_identity(dataset_dir: Path) -> str:
    """The dataset's fingerprint from its manifest when it has one, else its path."""
    import json

    manifest = dataset_dir / "busforge.json"
    if manifest.is_file():
        try:
            return str(json.loads(manifest.read_text()).get("fingerprint", dataset_dir))
        except ValueError:
            pass
    return str(dataset_dir.resolve())
