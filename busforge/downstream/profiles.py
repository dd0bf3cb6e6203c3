"""Training protocols of `busforge downstream`: `smoke`, `cpu` and `paper`, and `--set key=value` overrides.

A profile fixes everything but the data: image sizes, networks, the optimiser-step budget, the
validation cadence. Arms of one comparison run under the same profile, so they differ in data only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from busforge.errors import BadInput


@dataclass(frozen=True)
class Profile:
    name: str
    seg_size: int  # segmentation input, pixels (square)
    cls_size: int  # classification input, pixels (square)
    batch: int
    seg_steps: int  # optimiser steps per segmentation run (fixed: arms differ in data, not compute)
    cls_steps: int
    val_every: int  # validate (and keep the best checkpoint) every N steps, and at the last step
    lr: float = 1e-3  # segmentation learning rate (AdamW)
    cls_lr: float = 3e-4  # classification learning rate (AdamW; 1e-3 makes EfficientNet swing early)
    weight_decay: float = 1e-4
    seg_channels: tuple[int, ...] = (16, 32, 64, 128)  # U-Net widths per level
    seg_res_units: int = 2
    cls_width: float = 1.0  # EfficientNet width/depth coefficients: 1.0/1.0 is EfficientNet-B0
    cls_depth: float = 1.0
    eval_batch: int = 32
    bootstrap: int = 2000  # bootstrap resamples for CIs and paired p-values
    amp: bool = False  # mixed precision (CUDA only)
    device: str = "auto"  # auto | cpu | cuda
    include_normal: bool = False  # segmentation trains and tests on normal images as empty masks too

    def protocol(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["seg_channels"] = list(self.seg_channels)
        return out


PROFILES: dict[str, Profile] = {
    # Tests and CI: seconds per run.
    "smoke": Profile(
        name="smoke",
        seg_size=64,
        cls_size=64,
        batch=8,
        seg_steps=8,
        cls_steps=8,
        val_every=4,
        seg_channels=(4, 8, 16),
        seg_res_units=0,
        cls_width=0.25,
        cls_depth=0.25,
        bootstrap=200,
    ),
    # One arm, one seed, both tasks: 4 to 5 minutes measured on 2 shared CPU cores (~0.35 s per
    # U-Net step, 2 to 2.5 s per EfficientNet-B0 step at 128 px, batch 16), whatever the train size.
    "cpu": Profile(
        name="cpu",
        seg_size=128,
        cls_size=128,
        batch=16,
        seg_steps=120,
        cls_steps=100,
        val_every=20,
        seg_channels=(16, 32, 64, 128),
        seg_res_units=0,
    ),
    # The paper's sizes and networks, as a user would run them on one GPU.
    "paper": Profile(
        name="paper",
        seg_size=256,
        cls_size=224,
        batch=16,
        seg_steps=10000,
        cls_steps=6000,
        val_every=250,
        seg_channels=(32, 64, 128, 256, 320),
        seg_res_units=2,
        amp=True,
    ),
}


def _parse(name: str, current: Any, text: str) -> Any:
    try:
        if isinstance(current, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, tuple):
            return tuple(int(v) for v in text.strip("()[] ").split(",") if v.strip())
    except ValueError:
        raise BadInput(
            f"--set {name}={text}: not a valid {type(current).__name__} (e.g. --set {name}={current!r})"
        ) from None
    return text


def resolve_profile(name: str, overrides: list[str]) -> Profile:
    """PROFILES[name] with `key=value` OVERRIDES applied; unknown names and keys are bad input."""
    if name not in PROFILES:
        raise BadInput(f"--profile: unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    profile = PROFILES[name]
    fields = {f.name for f in dataclasses.fields(Profile)} - {"name"}
    changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise BadInput(f"--set {item}: expected key=value with key one of {', '.join(sorted(fields))}")
        changes[key] = _parse(key, getattr(profile, key), value.strip())
    if changes:
        profile = dataclasses.replace(profile, **changes)
    for key in ("seg_size", "cls_size", "batch", "seg_steps", "cls_steps", "val_every", "eval_batch"):
        if getattr(profile, key) < 1:
            raise BadInput(f"--set {key}={getattr(profile, key)}: must be at least 1")
    if profile.device not in ("auto", "cpu", "cuda"):
        raise BadInput(f"--set device={profile.device}: choose auto, cpu or cuda")
    return profile
