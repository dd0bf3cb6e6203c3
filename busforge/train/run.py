"""What the ControlNet and LoRA trainers share: their common settings and the steps around the model.

A trainer checks its run, opens a `Session` (examples, accelerator, step plan), builds and freezes
its model parts, then `Session.fit` trains them, `Session.write_card` documents the result on the
main process and `Session.finish` ends the run. Only the model set-up and the export differ.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from busforge.prompts import DEFAULT_PROMPT
from busforge.train.loop import LoopResult, TrainingLoop, TrainOutcome

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"


@dataclass(frozen=True, kw_only=True)
class TrainingRun:
    """The settings of every trainer (data, base model, batch, schedule, checkpoints, validation)."""

    dataset: Path
    out: Path
    base: str = SD15
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


def check_resolution(resolution: int) -> None:
    from busforge.errors import BadInput

    if resolution % 8 or resolution < 8:
        raise BadInput(
            f"--resolution {resolution}: must be a positive multiple of 8 (the VAE's downsampling)"
        )


@dataclass
class Session:
    """One run once its inputs are read: the examples, the accelerator and the step plan."""

    run: TrainingRun
    train: Any  # busforge.train.data.Examples
    validation: Any
    accelerator: Any
    accumulation: int
    steps: int

    @classmethod
    def open(cls, run: TrainingRun, domain: str | None = None) -> Session:
        """Read the train split (of `domain` only, when given) and plan the steps; raises BadInput."""
        from busforge.train.components import make_accelerator
        from busforge.train.data import read_examples
        from busforge.train.loop import accumulation_for, check_resume, plan_steps

        check_resume(run.out, run.resume)  # a bad --resume fails before the data and models load
        train = read_examples(run.dataset, "train", run.prompt_template, domain=domain)
        validation = _validation_examples(run.dataset, run.prompt_template, domain, train)
        accelerator = make_accelerator(run.mixed_precision)
        accumulation = accumulation_for(run.effective_batch, run.batch_size, accelerator.num_processes)
        steps = plan_steps(len(train), run.effective_batch, run.epochs, run.max_steps)
        return cls(run, train, validation, accelerator, accumulation, steps)

    def fit(
        self, base: Any, controlnet: Any, kl_alpha: float, identity: dict[str, Any]
    ) -> tuple[TrainingLoop, LoopResult]:
        """Train what requires a gradient in `base` and `controlnet`, already placed on the device.

        `identity` adds the trainer's own settings to what a checkpoint must match to be resumed.
        """
        from busforge.train.components import (
            PromptEmbeddings,
            dataset_identity,
            make_loader,
            make_micro_step,
            weight_dtype,
        )
        from busforge.train.data import TrainingSet
        from busforge.train.loop import LoopSettings
        from busforge.train.objective import DiffusionLoss

        run, accelerator = self.run, self.accelerator
        device = accelerator.device
        embeddings = PromptEmbeddings(
            base.text_encoder, base.tokenizer, self.train.prompts, device, weight_dtype(accelerator)
        )
        model = DiffusionLoss(base.unet, controlnet, base.vae, base.noise_scheduler, kl_alpha)
        dataset = TrainingSet(self.train, run.resolution, controlnet.config.conditioning_channels)
        settings = LoopSettings(
            out_dir=run.out,
            max_steps=self.steps,
            micro_batch=run.batch_size,
            accumulation=self.accumulation,
            learning_rate=run.learning_rate,
            warmup_steps=run.warmup_steps,
            seed=run.seed,
            checkpoint_every=run.checkpoint_every,
            checkpoints_kept=run.checkpoints_kept,
            resume=run.resume,
            num_workers=run.num_workers,
            quiet=run.quiet,
            run_identity={
                "dataset": dataset_identity(run.dataset),
                "base": run.base,
                "resolution": run.resolution,
                "effective_batch": run.effective_batch,
                "batch_size": run.batch_size,
                "seed": run.seed,
                "prompt_template": run.prompt_template,
                **identity,
            },
        )
        loop = TrainingLoop(
            accelerator,
            model,
            settings,
            make_micro_step(embeddings, base.vae, base.noise_scheduler, run.resolution, device),
            make_loader(dataset, run.seed, run.batch_size, self.accumulation, accelerator, run.num_workers),
        )
        return loop, loop.run()

    def write_card(
        self,
        loop: TrainingLoop,
        result: LoopResult,
        base: Any,
        unet: Any,
        controlnet: Any,
        *,
        title: str,
        kind: str,
        trains: str,
        usage: str,
    ) -> None:
        """Validation renders with the trained `unet` and `controlnet` (in eval mode), then the card."""
        from busforge.train.card import write_card
        from busforge.train.components import dataset_identity, validation_renders
        from busforge.train.loop import settings_dict

        run, accelerator = self.run, self.accelerator
        with accelerator.autocast():
            renders = validation_renders(
                base,
                unet,
                controlnet,
                self.validation,
                run.resolution,
                run.validation_images,
                run.seed,
                run.validation_steps,
                accelerator.device,
            )
        write_card(
            run.out,
            title=title,
            kind=kind,
            base=run.base,
            dataset=run.dataset,
            dataset_id=dataset_identity(run.dataset),
            examples=self.train,
            trains=trains,
            settings={**settings_dict(loop.settings), **_run_fields(run), "accumulation": self.accumulation},
            result=result,
            renders=renders,
            usage=usage,
        )

    def finish(self, loop: TrainingLoop, result: LoopResult) -> TrainOutcome:
        self.accelerator.end_training()
        return TrainOutcome(self.run.out, self.accelerator.unwrap_model(loop.model), result)


def _validation_examples(dataset: Path, template: str, domain: str | None, train: Any) -> Any:
    """The validation split's examples; the train split's when there is no validation split."""
    from busforge.errors import BadInput
    from busforge.train.data import read_examples

    try:
        return read_examples(dataset, "validation", template, domain=domain)
    except BadInput:
        return train


def _run_fields(run: TrainingRun) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(run).items() if k != "extra"}
