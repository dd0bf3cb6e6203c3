"""One training run: one task, one arm, one seed, a fixed number of optimiser steps.

The data are uint8 tensors in memory; each step indexes a batch from the run's own permutation,
so the order, the augmentation and (with deterministic algorithms) the weights depend only on the
seed. Every `val_every` steps and at the last one the model is scored on the validation split and
the best state is kept (the earliest on ties); it is the one tested.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from busforge.downstream.data import SplitArrays
from busforge.downstream.profiles import Profile
from busforge.vocab import PATHOLOGY_NAMES

MALIGNANT = PATHOLOGY_NAMES.index("malignant")
TASK_OFFSET = {"seg": 0, "cls": 1}


@dataclass
class Predictions:
    """Per test image: id, label (malignant 1 / benign 0; lesion pixels for seg) and value (Dice or score)."""

    ids: np.ndarray
    labels: np.ndarray
    values: np.ndarray


@dataclass
class RunResult:
    task: str
    seed: int
    best_step: int
    best_validation: float
    history: list[dict] = field(default_factory=list)  # step, loss, validation
    tests: dict[str, Predictions] = field(default_factory=dict)
    wall_s: float = 0.0
    train_images_per_s: float = 0.0
    model: object | None = None


def select_device(profile: Profile):
    import torch

    if profile.device == "cuda" or (profile.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def to_input(images, device):
    """uint8 (B, C, H, W) -> float in [0, 1] on DEVICE."""
    return images.to(device, non_blocking=True).float().div_(255.0)


def batch_order(n: int, steps: int, batch: int, generator) -> list:
    """Indices of every step's batch: epochs of fresh permutations, cut into batches (the last
    partial batch of an epoch joins the next epoch's first), drawn from GENERATOR."""
    import torch

    need = steps * batch
    chunks, total = [], 0
    while total < need:
        chunks.append(torch.randperm(n, generator=generator))
        total += n
    flat = torch.cat(chunks)[:need]
    return list(flat.view(steps, batch))


def make_loss(task: str):
    import torch

    if task == "seg":
        from monai.losses import DiceCELoss

        return DiceCELoss(to_onehot_y=True, softmax=True)
    return torch.nn.CrossEntropyLoss()


def predict(model, task: str, arrays: SplitArrays, profile: Profile, device) -> Predictions:
    """Dice per image (seg, prediction = argmax) or malignancy score (cls, softmax) on ARRAYS."""
    import torch

    from busforge.downstream.metrics import dice_per_image

    model.eval()
    values = []
    images = torch.from_numpy(arrays.images)
    with torch.inference_mode(), autocast(profile, device):
        for start in range(0, len(arrays), profile.eval_batch):
            logits = model(to_input(images[start : start + profile.eval_batch], device)).float()
            if task == "seg":
                target = torch.from_numpy(arrays.masks[start : start + profile.eval_batch]).to(device)
                values.append(dice_per_image(logits.argmax(1) == 1, target > 0).cpu().numpy())
            else:
                values.append(torch.softmax(logits, 1)[:, 1].cpu().numpy())
    model.train()
    if task == "seg":
        labels = arrays.masks.reshape(len(arrays), -1).sum(1)
    else:
        labels = (arrays.pathology == MALIGNANT).astype(np.int64)
    return Predictions(arrays.ids, labels, np.concatenate(values) if values else np.zeros(0))


def score(task: str, predictions: Predictions) -> float:
    """The validation number a checkpoint is chosen by: mean Dice, or AUC (-inf with one class)."""
    from busforge.downstream.metrics import auc

    if task == "seg":
        return float(np.mean(predictions.values)) if len(predictions.values) else float("-inf")
    value = float(auc(predictions.labels, predictions.values))
    return value if np.isfinite(value) else float("-inf")


def autocast(profile: Profile, device):
    import contextlib

    import torch

    if profile.amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_run(
    task: str,
    train: SplitArrays,
    validation: SplitArrays,
    tests: dict[str, SplitArrays],
    profile: Profile,
    seed: int,
    *,
    augment: str = "none",
    init: Callable | None = None,
    fetch: Callable | None = None,
    progress: Callable | None = None,
    keep_model: bool = False,
) -> RunResult:
    """Train TASK on TRAIN for the profile's step budget; test the best validation checkpoint on TESTS.

    FETCH(indices) -> (uint8 images, uint8 masks) replaces indexing the in-memory arrays (the
    benchmark's decode-every-step baseline); PROGRESS(n) is called after every step.
    """
    import copy

    import torch

    from busforge.downstream.augment import augment_batch
    from busforge.downstream.models import build_model

    device = select_device(profile)
    steps = profile.seg_steps if task == "seg" else profile.cls_steps
    run_seed = 1000 * seed + TASK_OFFSET[task]
    torch.manual_seed(run_seed)  # weight init and dropout draw from torch's global generator
    model = build_model(task, profile, train.channels).to(device)
    if init is not None:
        init(model)
    lr = profile.lr if task == "seg" else profile.cls_lr
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=profile.weight_decay)
    loss_fn = make_loss(task)
    generator = torch.Generator().manual_seed(run_seed)
    order = batch_order(len(train), steps, min(profile.batch, len(train)), generator)
    images_all = torch.from_numpy(train.images)
    masks_all = torch.from_numpy(train.masks)
    labels_all = torch.from_numpy((train.pathology == MALIGNANT).astype(np.int64))
    if fetch is None:

        def fetch(idx):
            return images_all[idx], masks_all[idx]

    result = RunResult(task, seed, best_step=0, best_validation=float("-inf"))
    best_state = copy.deepcopy(model.state_dict())
    started = time.perf_counter()
    seen, validation_s = 0, 0.0
    model.train()
    for step, idx in enumerate(order, start=1):
        images_u8, masks_u8 = fetch(idx)
        images = to_input(images_u8, device)
        masks = masks_u8.to(device).float() if task == "seg" else None
        if augment == "ordinary":
            images, masks = augment_batch(images.cpu(), None if masks is None else masks.cpu(), generator)
            images, masks = images.to(device), None if masks is None else masks.to(device)
        with autocast(profile, device):
            logits = model(images)
            if task == "seg":
                loss = loss_fn(logits.float(), masks.round().long()[:, None])
            else:
                loss = loss_fn(logits.float(), labels_all[idx].to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        seen += len(idx)
        entry = {"step": step, "loss": float(loss.detach())}
        if step % profile.val_every == 0 or step == steps:
            validation_started = time.perf_counter()
            value = score(task, predict(model, task, validation, profile, device))
            validation_s += time.perf_counter() - validation_started
            entry["validation"] = value
            if result.best_step == 0 or value > result.best_validation:
                result.best_step, result.best_validation = step, value
                best_state = copy.deepcopy(model.state_dict())
        result.history.append(entry)
        if progress is not None:
            progress(1)
    train_s = time.perf_counter() - started - validation_s
    result.train_images_per_s = seen / train_s if train_s > 0 else float("nan")
    model.load_state_dict(best_state)
    result.tests = {name: predict(model, task, arrays, profile, device) for name, arrays in tests.items()}
    result.wall_s = time.perf_counter() - started
    if keep_model:
        result.model = model.cpu()
    return result
