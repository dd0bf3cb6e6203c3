"""The accelerate training loop shared by the ControlNet and LoRA trainers.

- AdamW; learning rate warmed up linearly over `warmup_steps` optimizer steps, then constant. The
  rate is a pure function of the step (no scheduler state to save or restore).
- Gradient accumulation to the effective batch: micro_batch x accumulation x processes.
- Checkpoints (busforge.train.checkpoint: safetensors and JSON, no pickle) every `checkpoint_every`
  steps into `OUT/checkpoints/checkpoint-STEP`, written by the main process under a temporary name
  and renamed when complete; only the newest `checkpoints_kept` stay. `resume="latest"` continues
  from the newest one; every process loads it.
- The examples and the random draws of a step depend only on (seed, step, process, micro-batch),
  never on the global generators, so a resumed run gives the same weights as an uninterrupted run
  of the same length without saving any random-number state.
- A non-finite loss stops the run before the optimizer step: the weights and the newest
  checkpoint stay as they were (the last good state).
"""

from __future__ import annotations

import contextlib
import math
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from busforge.errors import BadInput
from busforge.models.weights import TRAINING_CHECKPOINTS
from busforge.train.checkpoint import load_checkpoint, read_state, sync_folder, write_checkpoint

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class LoopSettings:
    out_dir: Path
    max_steps: int
    micro_batch: int
    accumulation: int
    learning_rate: float = 1e-4
    warmup_steps: int = 500
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    seed: int = 0
    checkpoint_every: int = 500
    checkpoints_kept: int = 3
    resume: str | None = None
    num_workers: int = 0
    quiet: bool = False
    # What must match for a checkpoint to be resumed (data, model, hyper-parameters).
    run_identity: dict[str, Any] = field(default_factory=dict)


def learning_rate_at(step: int, base: float, warmup_steps: int) -> float:
    """The rate of optimizer step `step` (0-based): linear warm-up from base/warmup to base."""
    if warmup_steps <= 0:
        return base
    return base * min(1.0, (step + 1) / warmup_steps)


def step_seed(seed: int, step: int, rank: int, micro: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank, micro]).generate_state(1, dtype=np.uint64)[0] >> 1)


def checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    root = out_dir / TRAINING_CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m[1]), p) for p in root.iterdir() if (m := CHECKPOINT.match(p.name)) and p.is_dir()]
    return sorted(found)


def resolve_resume(out_dir: Path, resume: str | None) -> Path | None:
    if resume is None:
        return None
    if resume == "latest":
        found = checkpoints(out_dir)
        return found[-1][1] if found else None
    return Path(resume)


def check_resume(out_dir: Path, resume: str | None) -> Path | None:
    """The checkpoint folder to resume from, its format checked (cheap: before any model loads).

    Raises BadInput for checkpoints of an earlier run without --resume, and for a folder that is
    not a checkpoint of this busforge (pickles, an older format, missing files).
    """
    if resume is None and checkpoints(out_dir):
        raise BadInput(
            f"{out_dir}: holds checkpoints of an earlier run; continue it with --resume latest, "
            "or give another --out"
        )
    path = resolve_resume(out_dir, resume)
    if path is not None:
        read_state(path)
    return path


@dataclass
class LoopResult:
    steps: int
    history: list[dict[str, float]]
    resumed_from: int
    seconds: float


@dataclass
class TrainOutcome:
    out: Path
    model: Any  # the trained DiffusionLoss module (unwrapped), for callers that keep going
    result: LoopResult


class TrainingLoop:
    """Runs optimizer steps of `model` (a DiffusionLoss) on batches from `loader_for(start, end)`."""

    def __init__(
        self,
        accelerator: Any,
        model: Any,
        settings: LoopSettings,
        micro_step: Callable[[Any, dict[str, Any], Any], tuple[Any, Any, Any]],
        loader_for: Callable[[int, int], Any],
    ) -> None:
        import torch

        self.accelerator = accelerator
        self.settings = settings
        self.micro_step = micro_step
        self.loader_for = loader_for
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise RuntimeError("nothing to train: no parameter requires a gradient")
        self.params_count = sum(p.numel() for p in params)
        self.adamw = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
        self.model, self.optimizer = accelerator.prepare(model, self.adamw)  # wraps the same AdamW
        # Checkpoints hold the trained parameters only (a LoRA checkpoint stays megabytes, not the
        # whole frozen UNet), under the unwrapped module's names (not the DDP wrapper's `module.`).
        self.trained = {
            name: p for name, p in accelerator.unwrap_model(self.model).named_parameters() if p.requires_grad
        }
        self.history: list[dict[str, float]] = []

    # -- checkpoints -------------------------------------------------------------------------

    def save_checkpoint(self, step: int) -> Path:
        acc = self.accelerator
        root = self.settings.out_dir / TRAINING_CHECKPOINTS
        final = root / f"checkpoint-{step}"
        tmp = root / f".checkpoint-{step}.tmp"
        replaced = root / f".checkpoint-{step}.replaced"
        acc.wait_for_everyone()  # every process has finished the step (the state is the same on all)
        if acc.is_main_process:
            for stale in (tmp, replaced):  # left by a run that stopped while saving
                if stale.exists():
                    shutil.rmtree(stale)
            state = {"step": step, "history": self.history, "identity": self.settings.run_identity}
            write_checkpoint(tmp, self.trained, self.adamw, state, acc.scaler)
            # A resumed run rewriting a step: the old checkpoint is set aside, not deleted, until the
            # new one has its name (a crash in between leaves one of them whole).
            if final.exists():
                final.rename(replaced)
            tmp.rename(final)
            sync_folder(root)  # the new checkpoint's name is on disk before older ones go
            if replaced.exists():
                shutil.rmtree(replaced)
            for _, old in checkpoints(self.settings.out_dir)[: -self.settings.checkpoints_kept]:
                shutil.rmtree(old)
        acc.wait_for_everyone()
        return final

    def load_checkpoint(self, path: Path) -> int:
        state = load_checkpoint(
            path, self.trained, self.adamw, self.accelerator.scaler, identity=self.settings.run_identity
        )
        self.history = list(state["history"])
        return int(state["step"])

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> LoopResult:
        import torch

        s, acc = self.settings, self.accelerator
        start = 0
        resume_path = check_resume(s.out_dir, s.resume)
        if s.resume is not None and resume_path is None:
            self._say(
                f"--resume {s.resume}: no checkpoint in {s.out_dir / TRAINING_CHECKPOINTS}; starting at step 0"
            )
        if resume_path is not None:
            start = self.load_checkpoint(resume_path)
            self._say(f"resumed from {resume_path} at step {start}")
        if start >= s.max_steps:
            return LoopResult(start, self.history, start, 0.0)

        batches = iter(self.loader_for(start, s.max_steps))
        progress = self._progress(start)
        t0 = time.perf_counter()
        samples_per_step = s.micro_batch * s.accumulation * acc.num_processes
        self.model.train()
        for step in range(start, s.max_steps):
            lr = learning_rate_at(step, s.learning_rate, s.warmup_steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            totals = torch.zeros(3, device=acc.device)
            for micro in range(s.accumulation):
                batch = next(batches)
                generator = torch.Generator().manual_seed(step_seed(s.seed, step, acc.process_index, micro))
                last = micro == s.accumulation - 1
                sync = contextlib.nullcontext() if last else acc.no_sync(self.model)
                with sync:
                    with acc.autocast():
                        loss, mse, kl = self.micro_step(self.model, batch, generator)
                    self._check_finite(loss, step)
                    acc.backward(loss / s.accumulation)
                totals += torch.stack([loss.detach().float(), mse.float(), kl.float()]) / s.accumulation
            if acc.sync_gradients and s.max_grad_norm > 0:
                acc.clip_grad_norm_(self.model.parameters(), s.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

            loss, mse, kl = (float(v) for v in acc.reduce(totals, reduction="mean"))
            self.history.append({"step": step + 1, "loss": loss, "mse": mse, "kl": kl, "lr": lr})
            if progress is not None:
                rate = (step + 1 - start) * samples_per_step / (time.perf_counter() - t0)
                progress.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{rate:.2f}")
                progress.update(1)
            if (step + 1) % s.checkpoint_every == 0 or step + 1 == s.max_steps:
                self.save_checkpoint(step + 1)
        if progress is not None:
            progress.close()
        return LoopResult(s.max_steps, self.history, start, time.perf_counter() - t0)

    def _check_finite(self, loss: Any, step: int) -> None:
        import torch

        bad = torch.tensor(
            0.0 if torch.isfinite(loss.detach()).all() else 1.0, device=self.accelerator.device
        )
        if float(self.accelerator.reduce(bad, reduction="sum")) > 0:
            found = checkpoints(self.settings.out_dir)
            kept = f"last good checkpoint kept: {found[-1][1]}" if found else "no checkpoint was written yet"
            raise TrainingDiverged(
                f"loss became {float(loss.detach())} at step {step + 1}; stopped before updating the weights "
                f"({kept}); lower --learning-rate or use --mixed-precision no, then --resume latest"
            )

    def _progress(self, start: int) -> Any:
        if self.settings.quiet or not self.accelerator.is_main_process:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.settings.max_steps, initial=start, unit="step", dynamic_ncols=True)

    def _say(self, text: str) -> None:
        if self.accelerator.is_main_process:
            print(text, flush=True)


def plan_steps(n_examples: int, effective_batch: int, epochs: float, max_steps: int | None) -> int:
    """Optimizer steps of the run: `max_steps` if given, else enough to see `epochs` passes."""
    if max_steps is not None:
        return max_steps
    return max(1, math.ceil(epochs * n_examples / effective_batch))


def accumulation_for(effective_batch: int, micro_batch: int, processes: int) -> int:
    per_step = micro_batch * processes
    if effective_batch % per_step:
        raise BadInput(
            f"--effective-batch {effective_batch}: not a multiple of --batch-size {micro_batch} x "
            f"{processes} process(es); pick sizes that divide it"
        )
    return effective_batch // per_step


def settings_dict(settings: LoopSettings) -> dict[str, Any]:
    data = asdict(settings)
    data["out_dir"] = str(settings.out_dir)
    return data
