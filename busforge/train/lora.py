"""`busforge train lora --domain NAME`: a per-domain LoRA adapter (paper §2.3, cross-domain adaptation).

Everything is frozen (UNet, ControlNet, VAE, text encoder); peft LoRA layers of rank r are added to
the UNet's attention projections (`to_q`, `to_k`, `to_v`, `to_out.0`) and train on the target
domain's real rows with the base ControlNet in place. The adapter is saved as
`OUT/pytorch_lora_weights.safetensors` in diffusers format (`pipe.load_lora_weights(OUT)`), which
the diffusion renderer loads as `lora: {NAME: OUT}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from busforge.recipe import DEFAULT_PROMPT
from busforge.train.loop import TrainOutcome

LORA_FILE = "pytorch_lora_weights.safetensors"


@dataclass(frozen=True)
class LoraRun:
    dataset: Path
    out: Path
    domain: str
    controlnet: str
    base: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    rank: int = 8
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


def check_rank(rank: int) -> None:
    from busforge.errors import BadInput

    if rank < 1:
        raise BadInput(f"--rank {rank}: a LoRA rank must be a positive integer (the paper uses 2, 4 or 8)")


def train_lora(run: LoraRun) -> TrainOutcome:
    """Train the domain's adapter, save it in diffusers format with a model card; returns OUT."""
    from busforge.train.arch import lora_config
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
    from busforge.train.controlnet import check_resolution
    from busforge.train.data import TrainingSet, read_examples
    from busforge.train.loop import LoopSettings, TrainingLoop, accumulation_for, plan_steps, settings_dict
    from busforge.train.objective import DiffusionLoss

    check_rank(run.rank)
    check_resolution(run.resolution)
    train = read_examples(run.dataset, "train", run.prompt_template, domain=run.domain)
    validation = _validation_examples(run.dataset, run.prompt_template, run.domain, train)
    accelerator = make_accelerator(run.mixed_precision, run.seed)
    accumulation = accumulation_for(run.effective_batch, run.batch_size, accelerator.num_processes)
    steps = plan_steps(len(train), run.effective_batch, run.epochs, run.max_steps)

    # Heavy imports only once the inputs are known good: a bad input stays a one-line error.
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    base = load_base(run.base)
    controlnet = load_controlnet(run.controlnet)
    device, frozen_dtype = accelerator.device, weight_dtype(accelerator)
    for module in (base.unet, base.vae, base.text_encoder, controlnet):
        module.requires_grad_(False)
    for module in (base.unet, base.vae, controlnet):
        place(module, device, frozen_dtype)
    base.unet.add_adapter(lora_config(run.rank))
    for param in base.unet.parameters():
        if param.requires_grad:  # only the adapter; train it in fp32 under autocast
            param.data = param.data.float()
    if run.gradient_checkpointing:
        base.unet.enable_gradient_checkpointing()
    embeddings = PromptEmbeddings(base.text_encoder, base.tokenizer, train.prompts, device, frozen_dtype)

    model = DiffusionLoss(base.unet, controlnet, base.vae, base.noise_scheduler, kl_alpha=0.0)
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
            "trainer": "lora",
            "dataset": dataset_identity(run.dataset),
            "domain": run.domain,
            "base": run.base,
            "controlnet": run.controlnet,
            "rank": run.rank,
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
        unet = accelerator.unwrap_model(loop.model).unet
        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
        layers = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in layers.items()}
        StableDiffusionPipeline.save_lora_weights(run.out, unet_lora_layers=layers, safe_serialization=True)
        unet.eval()
        with accelerator.autocast():
            renders = validation_renders(
                base,
                unet,
                controlnet,
                validation,
                run.resolution,
                run.validation_images,
                run.seed,
                run.validation_steps,
                device,
            )
        write_card(
            run.out,
            title=f"busforge LoRA adapter for domain {run.domain!r}",
            kind="lora",
            base=run.base,
            dataset=run.dataset,
            dataset_id=dataset_identity(run.dataset),
            examples=train,
            trains=f"UNet LoRA r={run.rank} on {', '.join(lora_targets())} ({loop.params_count:,} parameters)",
            settings={**settings_dict(settings), **_run_fields(run), "accumulation": accumulation},
            result=result,
            renders=renders,
            usage=(
                "renderer:\n  backend: diffusion\n"
                f"  base: {run.base}\n  controlnet: {run.controlnet}\n  lora:\n    {run.domain}: {run.out}\n"
            ),
        )
    accelerator.end_training()
    return TrainOutcome(run.out, accelerator.unwrap_model(loop.model), result)


def lora_targets() -> tuple[str, ...]:
    from busforge.train.arch import LORA_TARGETS

    return LORA_TARGETS


def _validation_examples(dataset: Path, template: str, domain: str, train: Any) -> Any:
    from busforge.errors import BadInput
    from busforge.train.data import read_examples

    try:
        return read_examples(dataset, "validation", template, domain=domain)
    except BadInput:
        return train


def _run_fields(run: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(run).items()}
