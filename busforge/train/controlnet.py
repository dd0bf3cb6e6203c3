"""`busforge train controlnet`: the mask-and-text ControlNet on real data (paper §2.1).

Stable Diffusion 1.5 with a ControlNet (`ControlNetModel.from_unet`, or an existing one to continue
from) that takes the lesion mask; the frozen text encoder embeds the clinical prompt. Trains the
ControlNet (default) or ControlNet + UNet ("fully fine-tune"); with kl_alpha > 0 the VAE encoder
too (see busforge.train.objective). Writes a diffusers ControlNet folder (safetensors) at OUT,
the fine-tuned UNet at OUT/unet when it trained, and a model card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from busforge.recipe import DEFAULT_PROMPT
from busforge.train.loop import TrainOutcome


@dataclass(frozen=True)
class ControlNetRun:
    dataset: Path
    out: Path
    base: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    controlnet: str | None = None  # continue from this ControlNet instead of copying the UNet
    train_unet: bool = False
    kl_alpha: float = 0.001
    resolution: int = 512
    batch_size: int = 8
    effective_batch: int = 64
    epochs: float = 200
    max_steps: int | None = None
    learning_rate: float = 1e-4
    warmup_steps: int = 500
    seed: int = 0
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 500
    checkpoints_kept: int = 3
    resume: str | None = None
    prompt_template: str = DEFAULT_PROMPT
    validation_images: int = 4
    validation_steps: int = 20
    num_workers: int = 2
    quiet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def train_controlnet(run: ControlNetRun) -> TrainOutcome:
    """Train, export and document; returns the output folder."""
    from busforge.train.card import write_card
    from busforge.train.components import (
        PromptEmbeddings,
        dataset_identity,
        load_base,
        load_controlnet,
        make_accelerator,
        make_loader,
        make_micro_step,
        place,
        validation_renders,
        weight_dtype,
    )
    from busforge.train.data import TrainingSet, read_examples
    from busforge.train.loop import LoopSettings, TrainingLoop, accumulation_for, plan_steps, settings_dict
    from busforge.train.objective import DiffusionLoss

    check_run(run)
    train = read_examples(run.dataset, "train", run.prompt_template)
    validation = _validation_examples(run.dataset, run.prompt_template, train)
    accelerator = make_accelerator(run.mixed_precision, run.seed)
    accumulation = accumulation_for(run.effective_batch, run.batch_size, accelerator.num_processes)
    steps = plan_steps(len(train), run.effective_batch, run.epochs, run.max_steps)

    import torch

    base = load_base(run.base)
    if run.controlnet:
        controlnet = load_controlnet(run.controlnet)
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
    embeddings = PromptEmbeddings(base.text_encoder, base.tokenizer, train.prompts, device, frozen_dtype)

    model = DiffusionLoss(base.unet, controlnet, base.vae, base.noise_scheduler, run.kl_alpha)
    dataset = TrainingSet(train, run.resolution, controlnet.config.conditioning_channels)
    settings = LoopSettings(
        out_dir=run.out,
        max_steps=steps,
        micro_batch=run.batch_size,
        accumulation=accumulation,
        learning_rate=run.learning_rate,
        warmup_steps=run.warmup_steps,
        seed=run.seed,
        checkpoint_every=run.checkpoint_every,
        checkpoints_kept=run.checkpoints_kept,
        resume=run.resume,
        num_workers=run.num_workers,
        quiet=run.quiet,
        run_identity={
            "trainer": "controlnet",
            "dataset": dataset_identity(run.dataset),
            "base": run.base,
            "controlnet": run.controlnet,
            "train_unet": run.train_unet,
            "kl_alpha": run.kl_alpha,
            "resolution": run.resolution,
            "effective_batch": run.effective_batch,
            "batch_size": run.batch_size,
            "seed": run.seed,
            "prompt_template": run.prompt_template,
        },
    )
    loop = TrainingLoop(
        accelerator,
        model,
        settings,
        make_micro_step(embeddings, base.vae, base.noise_scheduler, run.resolution, device),
        make_loader(dataset, run.seed, run.batch_size, accumulation, accelerator, run.num_workers),
    )
    result = loop.run()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        trained = accelerator.unwrap_model(loop.model)
        trained.controlnet.save_pretrained(run.out, safe_serialization=True)
        if run.train_unet:
            trained.unet.save_pretrained(run.out / "unet", safe_serialization=True)
        trained.eval()
        with accelerator.autocast():
            renders = validation_renders(
                base,
                trained.unet,
                trained.controlnet,
                validation,
                run.resolution,
                run.validation_images,
                run.seed,
                run.validation_steps,
                device,
            )
        trains = "ControlNet + UNet" if run.train_unet else "ControlNet"
        if run.kl_alpha > 0:
            trains += " + VAE encoder"
        write_card(
            run.out,
            title="busforge mask-and-text ControlNet",
            kind="controlnet",
            base=run.base,
            dataset=run.dataset,
            dataset_id=dataset_identity(run.dataset),
            examples=train,
            trains=trains,
            settings={**settings_dict(settings), **_run_fields(run), "accumulation": accumulation},
            result=result,
            renders=renders,
            usage=(f"renderer:\n  backend: diffusion\n  base: {run.base}\n  controlnet: {run.out}\n"),
        )
    accelerator.end_training()
    return TrainOutcome(run.out, accelerator.unwrap_model(loop.model), result)


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


def check_resolution(resolution: int) -> None:
    from busforge.errors import BadInput

    if resolution % 8 or resolution < 8:
        raise BadInput(
            f"--resolution {resolution}: must be a positive multiple of 8 (the VAE's downsampling)"
        )


def _validation_examples(dataset: Path, template: str, train: Any) -> Any:
    """The validation split's examples; the train split's when there is no validation split."""
    from busforge.errors import BadInput
    from busforge.train.data import read_examples

    try:
        return read_examples(dataset, "validation", template)
    except BadInput:
        return train


def _run_fields(run: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(run).items() if k != "extra"}
