"""Both trainers in two processes (torchrun, gloo on the CPU), as `accelerate launch` runs them on GPUs.

Checkpoints must hold the trained weights (not an empty file), and a run stopped after its step-2
checkpoint and resumed (each process's global generators scrambled) must end with the same weights
and losses as the uninterrupted run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train_checkpoint import pickled_files
from test_train_fixtures import fixture_dataset, write_tiny

from busforge.train.checkpoint import FILES as CHECKPOINT_FILES

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
EXPORTED = {"controlnet": "diffusion_pytorch_model.safetensors", "lora": "pytorch_lora_weights.safetensors"}


def torchrun(dataset: Path, model: Path, out: Path) -> None:
    launcher = Path(sys.executable).with_name("torchrun")
    if not launcher.is_file():
        pytest.skip("torchrun is not installed beside this Python")
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    script = HERE / "distributed_train.py"
    command = [
        str(launcher),
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        str(dataset),
        str(model),
        str(out),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_checkpoint_the_weights_and_resume_exactly(tmp_path):
    dataset = fixture_dataset(tmp_path / "ds")
    model = write_tiny(tmp_path / "model")
    out = tmp_path / "runs"
    torchrun(dataset, model, out)

    for trainer, filename in EXPORTED.items():
        whole, split = out / f"{trainer}-whole", out / f"{trainer}-split"
        exported = load_file(str(whole / filename))
        # The step-2 checkpoint holds every trained tensor (it was a 40-byte empty file)...
        ckpt = split / "checkpoints" / "checkpoint-2"
        saved = load_file(str(ckpt / "model.safetensors"))
        if trainer == "controlnet":
            assert {
                k.removeprefix("controlnet.") for k in saved if k.startswith("controlnet.")
            } == exported.keys()
        else:
            assert saved and all("lora_" in k for k in saved)
            assert sum(v.numel() for v in saved.values()) == sum(v.numel() for v in exported.values())
        # ...in busforge's format only (the main process writes it, then renames it into place):
        # no optimizer.bin or random_states_N.pkl for a resume to unpickle.
        assert sorted(p.name for p in ckpt.iterdir()) == sorted(CHECKPOINT_FILES)
        assert not pickled_files(ckpt)
        assert not list((split / "checkpoints").glob(".*"))  # no temporary folder left

        # Stopped at step 2 and resumed: the same weights and losses as the uninterrupted run.
        resumed = load_file(str(split / filename))
        assert resumed.keys() == exported.keys()
        differ = [k for k in exported if not torch.equal(exported[k], resumed[k])]
        assert not differ, (trainer, differ[:3])
        histories = [json.loads((d / "training.json").read_text())["history"] for d in (whole, split)]
        assert len(histories[0]) == 4
        assert [h["loss"] for h in histories[0]] == [h["loss"] for h in histories[1]], trainer
