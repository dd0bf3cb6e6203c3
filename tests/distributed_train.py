"""Run by tests/test_train_distributed.py under `torchrun --standalone --nproc_per_node 2` (gloo, CPU).

`python distributed_train.py DATASET MODEL OUT`: for both trainers, an uninterrupted 4-step run and a
run stopped after its step-2 checkpoint, then resumed from it (a new trainer that loads everything
from disk). One launch trains all of them because starting the processes (importing torch and
diffusers) costs far more than the tiny runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from test_train_fixtures import scramble_global_generators

from busforge.train.controlnet import ControlNetRun, train_controlnet
from busforge.train.lora import LoraRun, train_lora

SMALL = {
    "resolution": 32,
    "batch_size": 1,
    "effective_batch": 4,  # 1 x 2 accumulation x 2 processes
    "warmup_steps": 1,
    "learning_rate": 1e-3,
    "num_workers": 0,
    "validation_images": 0,
    "checkpoint_every": 2,
    "checkpoints_kept": 2,
    "quiet": True,
}


def keep_process_group() -> None:
    """Each trainer ends with `end_training`, which destroys the process group (the end of a script);
    here several runs share one launch, so the group is destroyed once, at the end."""
    from accelerate import Accelerator

    Accelerator.end_training = lambda self: None


def main(dataset: Path, model: Path, out: Path) -> None:
    torch.set_num_threads(1)
    keep_process_group()
    base = {"dataset": dataset, "base": str(model / "base"), **SMALL}
    runs = {
        "controlnet": lambda name, **kw: train_controlnet(ControlNetRun(out=out / name, **base, **kw)),
        "lora": lambda name, **kw: train_lora(
            LoraRun(out=out / name, domain="busi", controlnet=str(model / "controlnet"), rank=2, **base, **kw)
        ),
    }
    for trainer, train in runs.items():
        train(f"{trainer}-whole", max_steps=4)
        train(f"{trainer}-split", max_steps=2)
        # Nothing restores the global generators on resume: the run must not depend on them.
        scramble_global_generators(1000 + torch.distributed.get_rank())
        train(f"{trainer}-split", max_steps=4, resume="latest")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:4]))
