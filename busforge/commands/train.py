"""`busforge train controlnet|lora`: train the mask ControlNet and per-domain LoRA adapters.

Multi-GPU: `accelerate launch --num_processes N "$(which busforge)" train controlnet ...`; the
effective batch stays the same (the gradient accumulation shrinks with the number of processes).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from busforge.errors import BadInput

app = typer.Typer(
    help="Train the mask-and-text ControlNet and per-domain LoRA adapters on imported real data.",
    no_args_is_help=True,
)

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
PRECISIONS = ("auto", "no", "fp16", "bf16")

Dataset = Annotated[
    Path | None, typer.Argument(help="Imported real dataset (busforge import ... --out DIR); train split.")
]
Out = Annotated[Path | None, typer.Option(help="Output folder (model, checkpoints/, README.md card).")]
Base = Annotated[
    str, typer.Option(help="Stable Diffusion 1.5 diffusers folder or Hub id (in the local cache).")
]
Arch = Annotated[str, typer.Option(help="Architecture for --dry-run counts (no weights loaded).")]
DryRun = Annotated[bool, typer.Option(help="Print trainable/total parameter counts and exit.")]
Resolution = Annotated[int, typer.Option(help="Training size in pixels (square).")]
BatchSize = Annotated[int, typer.Option(min=1, help="Micro-batch per process.")]
EffectiveBatch = Annotated[
    int, typer.Option(min=1, help="Samples per optimizer step (gradient accumulation).")
]
Epochs = Annotated[float, typer.Option(min=0, help="Passes over the training rows.")]
MaxSteps = Annotated[int | None, typer.Option(min=1, help="Optimizer steps (overrides --epochs).")]
LearningRate = Annotated[float, typer.Option(help="AdamW learning rate after warm-up.")]
Warmup = Annotated[int, typer.Option(min=0, help="Linear warm-up steps.")]
Seed = Annotated[int, typer.Option(min=0, help="Seed of data order, noise and timesteps.")]
Precision = Annotated[str, typer.Option(help="auto (bf16/fp16 on GPU, none on CPU), no, fp16, bf16.")]
GradCkpt = Annotated[bool, typer.Option(help="Gradient checkpointing: less memory, ~30% slower.")]
CkptEvery = Annotated[int, typer.Option(min=1, help="Save a checkpoint every N optimizer steps.")]
CkptKept = Annotated[int, typer.Option(min=1, help="Keep the newest N checkpoints.")]
Resume = Annotated[str | None, typer.Option(help="'latest' or a checkpoint folder to continue from.")]
Template = Annotated[str | None, typer.Option(help="Prompt template (default: the recipe default).")]
ValImages = Annotated[int, typer.Option(min=0, help="Validation renders in the model card.")]
ValSteps = Annotated[int, typer.Option(min=1, help="Denoising steps of each validation render.")]
Workers = Annotated[int, typer.Option(min=0, help="Data-loading worker processes.")]
Quiet = Annotated[bool, typer.Option(help="No progress bar.")]


def _check_common(dataset: Path | None, out: Path | None, precision: str, template: str | None) -> str:
    if dataset is None:
        raise BadInput("train: DATASET is missing; give an imported real dataset folder (or use --dry-run)")
    if out is None:
        raise BadInput("train: --out is missing; give the folder to write the trained model to")
    if precision not in PRECISIONS:
        raise BadInput(f"--mixed-precision {precision}: unknown; allowed: {', '.join(PRECISIONS)}")
    from busforge.prompts import DEFAULT_PROMPT, check_template

    template = template or DEFAULT_PROMPT
    try:
        check_template(template)
    except ValueError as err:
        raise BadInput(f"--prompt-template: {err}") from None
    return template


def _finish(run_training, run) -> None:
    from busforge.train.loop import TrainingDiverged

    try:
        out = run_training(run).out
    except TrainingDiverged as err:
        typer.echo(f"error: training diverged: {err}", err=True)
        raise typer.Exit(1) from None
    from accelerate import PartialState

    if PartialState().is_main_process:  # once, not once per process of a multi-GPU run
        typer.echo(f"{out}: trained model and model card (README.md) written")


def _shared_options(
    arch: Arch = "sd15",
    dry_run: DryRun = False,
    resolution: Resolution = 512,
    batch_size: BatchSize = 8,
    effective_batch: EffectiveBatch = 64,
    epochs: Epochs = 200,
    max_steps: MaxSteps = None,
    learning_rate: LearningRate = 1e-4,
    warmup_steps: Warmup = 500,
    seed: Seed = 0,
    mixed_precision: Precision = "auto",
    gradient_checkpointing: GradCkpt = False,
    checkpoint_every: CkptEvery = 500,
    checkpoints_kept: CkptKept = 3,
    resume: Resume = None,
    prompt_template: Template = None,
    validation_images: ValImages = 4,
    validation_steps: ValSteps = 20,
    num_workers: Workers = 2,
    quiet: Quiet = False,
) -> None:
    """The options both trainers take after their own; only its signature is used."""


def _with_shared_options(command: Callable[..., None]) -> Callable[..., None]:
    """Append `_shared_options`' parameters to the command's; it gets their values as `shared`."""
    own = inspect.signature(command, eval_str=True)
    shared = inspect.signature(_shared_options, eval_str=True).parameters

    @functools.wraps(command)
    def with_shared(**kwargs: Any) -> None:
        values = {name: kwargs.pop(name) for name in shared}
        command(**kwargs, shared=values)

    params = [p for p in own.parameters.values() if p.name != "shared"] + list(shared.values())
    with_shared.__signature__ = own.replace(parameters=params)
    return with_shared


def _run_fields(dataset: Path | None, out: Path | None, base: str, shared: dict[str, Any]) -> dict[str, Any]:
    """The checked TrainingRun fields common to both trainers (the prompt template resolved)."""
    fields = {k: v for k, v in shared.items() if k not in ("arch", "dry_run")}
    fields["prompt_template"] = _check_common(
        dataset, out, shared["mixed_precision"], shared["prompt_template"]
    )
    return {"dataset": dataset, "out": out, "base": base, **fields}


@app.command("controlnet")
@_with_shared_options
def controlnet(
    dataset: Dataset = None,
    out: Out = None,
    base: Base = SD15,
    init_controlnet: Annotated[
        str | None, typer.Option("--controlnet", help="Start from this ControlNet (default: copy the UNet).")
    ] = None,
    train_unet: Annotated[
        bool, typer.Option(help="Also fine-tune the UNet (the paper's full fine-tune).")
    ] = False,
    kl_alpha: Annotated[
        float,
        typer.Option(
            help="Weight of the VAE KL term; 0 (default) freezes the encoder and only logs the KL, "
            "> 0 also trains the encoder and exports it to OUT/vae."
        ),
    ] = 0.0,
    *,
    shared: dict[str, Any],
) -> None:
    """Train the mask-and-text ControlNet on DATASET's train split (paper §2.1)."""
    if shared["dry_run"]:
        from busforge.train.arch import controlnet_counts

        arch = shared["arch"]
        counts = controlnet_counts(arch, train_unet=train_unet, train_vae_encoder=kl_alpha > 0)
        typer.echo(f"{arch} controlnet: {counts.describe()}")
        return
    fields = _run_fields(dataset, out, base, shared)
    from busforge.train.controlnet import ControlNetRun, train_controlnet

    run = ControlNetRun(**fields, controlnet=init_controlnet, train_unet=train_unet, kl_alpha=kl_alpha)
    _finish(train_controlnet, run)


@app.command("lora")
@_with_shared_options
def lora(
    dataset: Dataset = None,
    domain: Annotated[
        str | None, typer.Option(help="Target domain: trains on the rows of this domain.")
    ] = None,
    out: Out = None,
    base: Base = SD15,
    base_controlnet: Annotated[
        str | None, typer.Option("--controlnet", help="The trained base ControlNet, frozen in place.")
    ] = None,
    rank: Annotated[int, typer.Option(help="LoRA rank r (paper: 2, 4, 8).")] = 8,
    *,
    shared: dict[str, Any],
) -> None:
    """Train a LoRA adapter for one domain, with the base ControlNet in place (paper §2.3)."""
    from busforge.train.lora import LoraRun, check_rank, train_lora

    check_rank(rank)
    if shared["dry_run"]:
        from busforge.train.arch import lora_counts, unet_counts

        arch = shared["arch"]
        counts = lora_counts(arch, rank)
        full = unet_counts(arch)
        typer.echo(f"{arch} lora r={rank}: {counts.describe()}")
        typer.echo(f"  vs full UNet fine-tuning: {full:,} ({full / 1e6:.2f}M) trainable")
        return
    fields = _run_fields(dataset, out, base, shared)
    if not domain:
        raise BadInput(
            "train lora: --domain is missing; give the domain to adapt to (a `domain` of the dataset)"
        )
    if not base_controlnet:
        raise BadInput("train lora: --controlnet is missing; give the trained base ControlNet folder")
    run = LoraRun(**fields, domain=domain, controlnet=base_controlnet, rank=rank)
    _finish(train_lora, run)
