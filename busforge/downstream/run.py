"""`busforge downstream`: load every arm's splits and the test sets, train each (arm, task, seed),
score the test sets, and aggregate into Table 3 cells with their CIs and paired comparisons.

All inputs are loaded and checked before the first step is trained, so bad input costs seconds.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from busforge.dataset.manifest import read_manifest
from busforge.downstream.data import SplitArrays, labelled_for, load_split
from busforge.downstream.profiles import Profile
from busforge.errors import BadInput
from busforge.vocab import SOURCE_NAMES

TASKS = ("seg", "cls")
METRIC = {"seg": "dice", "cls": "auc"}
AUGMENTS = ("none", "ordinary")
OWN_TEST = "test"  # name of an arm's own test split among the test sets


@dataclass
class Arm:
    """One training dataset under one augmentation: a row of Table 3."""

    name: str
    path: Path
    augment: str
    ratio: str
    manifest: dict[str, Any]
    data: dict[str, dict[str, SplitArrays]] = field(default_factory=dict)  # task -> split -> arrays
    notes: dict[str, list[str]] = field(default_factory=dict)  # task -> what was left out

    def synthetic_share(self, task: str) -> float:
        return self.data[task]["train"].synthetic_share()


@dataclass
class TestSet:
    name: str
    path: Path
    splits: list[str]
    data: dict[str, SplitArrays] = field(default_factory=dict)  # task -> arrays


def dataset_ratio(manifest: dict[str, Any]) -> str:
    """real:synthetic of a dataset's train split: the mixed recipe's ratio, 1:0 for imported real data."""
    real = manifest.get("real") or {}
    if manifest.get("source") == "real":
        return "1:0"
    return str(real.get("ratio", "0:1"))


def parse_arm(spec: str, default_augment: str) -> tuple[Path, str]:
    """DATASET or DATASET@AUGMENT (e.g. data/busi_real_only@ordinary, the Table 4 row)."""
    path, sep, augment = spec.rpartition("@")
    if not sep:
        path, augment = spec, default_augment
    if augment not in AUGMENTS:
        raise BadInput(f"{spec}: unknown augmentation {augment!r}; use DATASET@none or DATASET@ordinary")
    return Path(path), augment


def parse_test(spec: str) -> tuple[Path, list[str] | None]:
    """DATASET (its test split), DATASET:SPLIT, or DATASET:all (every split: an external set)."""
    if Path(spec).exists() or ":" not in spec:
        return Path(spec), None
    path, _, split = spec.rpartition(":")
    return Path(path), [split]


def unique_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


def concat(parts: list[SplitArrays]) -> SplitArrays:
    if len(parts) == 1:
        return parts[0]
    return SplitArrays(
        *(
            np.concatenate([getattr(p, k) for p in parts])
            for k in ("images", "masks", "pathology", "source", "ids")
        )
    )


def load_arms(
    specs: list[str], default_augment: str, tasks: list[str], profile: Profile, use_cache: bool = True
) -> list[Arm]:
    arms, taken = [], set()
    for spec in specs:
        path, augment = parse_arm(spec, default_augment)
        manifest = read_manifest(path)
        name = path.name if augment == "none" else f"{path.name}@{augment}"
        arm = Arm(unique_name(name, taken), path, augment, dataset_ratio(manifest), manifest)
        for task in tasks:
            size = profile.seg_size if task == "seg" else profile.cls_size
            arm.data[task], arm.notes[task] = {}, []
            for split in ("train", "validation", OWN_TEST):
                arrays = load_split(path, split, size, use_cache=use_cache)
                keep, note = labelled_for(task, arrays, profile.include_normal)
                if not keep.any():
                    raise BadInput(
                        f"{path}: {split}: no rows usable for {task} "
                        f"({'benign or malignant labels' if task == 'cls' else 'lesion masks'}) among "
                        f"{len(arrays)}; drop `--task {task}` or give a dataset with labelled rows"
                    )
                arm.data[task][split] = arrays.subset(keep)
                arm.notes[task].append(f"{split}: {note}")
            channels = {arm.data[task][s].channels for s in arm.data[task]}
            if len(channels) > 1:
                raise BadInput(f"{path}: splits differ in image channels ({sorted(channels)}); re-import it")
        arms.append(arm)
    return arms


def load_tests(
    specs: list[str], tasks: list[str], profile: Profile, arms: list[Arm], use_cache: bool = True
) -> list[TestSet]:
    tests, taken = [], {OWN_TEST}
    for spec in specs:
        path, splits = parse_test(spec)
        manifest = read_manifest(path)
        available = sorted(manifest.get("splits", {}))
        if splits == ["all"]:
            splits = available
        splits = splits or [OWN_TEST]
        for split in splits:
            if split not in available:
                raise BadInput(
                    f"{path}: --test {spec}: no {split!r} split (it has {', '.join(available) or 'none'}); "
                    f"use {path}:SPLIT or {path}:all"
                )
        test = TestSet(unique_name(str(manifest.get("name") or path.name), taken), path, splits)
        for task in tasks:
            size = profile.seg_size if task == "seg" else profile.cls_size
            arrays = concat([load_split(path, s, size, use_cache=use_cache) for s in splits])
            keep, _ = labelled_for(task, arrays, profile.include_normal)
            if not keep.any():
                raise BadInput(
                    f"{path}: --test {spec}: no rows usable for {task} among {len(arrays)} "
                    f"({'benign or malignant labels' if task == 'cls' else 'lesion masks'})"
                )
            test.data[task] = arrays.subset(keep)
            for arm in arms:
                trained = arm.data[task]["train"].channels
                if test.data[task].channels != trained:
                    raise BadInput(
                        f"{path}: --test {spec}: images have {test.data[task].channels} channel(s) but "
                        f"{arm.path} has {trained}; import both the same way (grey or colour)"
                    )
        tests.append(test)
    return tests


def write_predictions(path: Path, task: str, result) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    column = "dice" if task == "seg" else "score"
    label = "lesion_pixels" if task == "seg" else "malignant"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["test_set", "id", label, column])
        for test_name, pred in result.tests.items():
            for i, lab, value in zip(pred.ids, pred.labels, pred.values, strict=True):
                writer.writerow([test_name, i, int(lab), f"{float(value):.6f}"])


def save_model(folder: Path, task: str, result, profile: Profile, arm: Arm, channels: int) -> None:
    from safetensors.torch import save_file

    from busforge.downstream.models import describe

    state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    config = {
        "task": task,
        "network": describe(task, profile),
        "in_channels": channels,
        "image_size": profile.seg_size if task == "seg" else profile.cls_size,
        "input": "grey values / 255 in [0, 1], shape (B, C, S, S)",
        "classes": ["background", "lesion"] if task == "seg" else ["benign", "malignant"],
        "profile": profile.protocol(),
        "trained_on": str(arm.path),
        "seed": result.seed,
        "best_step": result.best_step,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def cell(task: str, results: list, test_name: str) -> dict[str, Any]:
    """Per-seed metric and the seed-by-image matrix behind the bootstrap, for one arm x test set."""
    from busforge.downstream.metrics import auc

    preds = [r.tests[test_name] for r in results]
    matrix = np.stack([p.values for p in preds])
    labels = preds[0].labels if task == "cls" else None
    per_seed = [float(np.mean(p.values)) if task == "seg" else float(auc(p.labels, p.values)) for p in preds]
    return {"per_seed": per_seed, "matrix": matrix, "labels": labels, "ids": preds[0].ids}


def aggregate(
    arms: list[Arm], cells: dict, tasks: list[str], test_names: list[str], baseline: Arm, profile: Profile
):
    """Nested record per arm/task/test: mean, sd, CI, and the paired difference to the baseline."""
    from busforge.downstream.stats import bootstrap_ci, paired_difference, seed_summary

    record: dict[str, Any] = {}
    for arm in arms:
        record[arm.name] = {}
        for task in tasks:
            record[arm.name][task] = {}
            for test_name in test_names:
                c = cells[(arm.name, task, test_name)]
                mean, sd = seed_summary(c["per_seed"])
                low, high = bootstrap_ci(task, c["matrix"], c["labels"], profile.bootstrap)
                entry = {
                    "metric": METRIC[task],
                    "mean": mean,
                    "sd": sd,
                    "ci_low": low,
                    "ci_high": high,
                    "per_seed": c["per_seed"],
                    "n_images": int(c["matrix"].shape[1]),
                }
                base = cells[(baseline.name, task, test_name)]
                if arm is not baseline and np.array_equal(base["ids"], c["ids"]):
                    entry["vs_baseline"] = paired_difference(
                        task, c["matrix"], base["matrix"], c["labels"], profile.bootstrap
                    )
                elif arm is not baseline:
                    entry["vs_baseline"] = None  # different test images: nothing to pair
                record[arm.name][task][test_name] = entry
    return record


def flat_metrics(record: dict, several_arms: bool) -> dict[str, float]:
    """`seg.busbra.dice_mean`-style keys (prefixed `ARM.` when several arms) for `dvc metrics show`."""
    flat: dict[str, float] = {}
    for arm_name, tasks in record.items():
        prefix = f"{arm_name}." if several_arms else ""
        for task, tests in tasks.items():
            for test_name, entry in tests.items():
                key = f"{prefix}{task}.{test_name}.{entry['metric']}"
                flat[f"{key}_mean"] = entry["mean"]
                flat[f"{key}_sd"] = entry["sd"]
                flat[f"{key}_ci_low"] = entry["ci_low"]
                flat[f"{key}_ci_high"] = entry["ci_high"]
                if entry.get("vs_baseline"):
                    flat[f"{key}_diff"] = entry["vs_baseline"]["diff"]
                    flat[f"{key}_p"] = entry["vs_baseline"]["p"]
    return flat


def run_downstream(
    datasets: list[str],
    *,
    tasks: list[str],
    tests: list[str],
    profile: Profile,
    seeds: int,
    augment: str,
    baseline: str | None,
    out: Path,
    save_models: bool = False,
    init: dict[str, Path] | None = None,
    quiet: bool = False,
    use_cache: bool = True,
) -> dict[str, Any]:
    """Everything `busforge downstream` does; returns the metrics.json record (also written to OUT)."""
    import torch
    from tqdm import tqdm

    from busforge.downstream.models import load_init
    from busforge.downstream.report import write_outputs
    from busforge.downstream.train import select_device, train_run

    if seeds < 1:
        raise BadInput(f"--seeds {seeds}: must be at least 1")
    started = time.perf_counter()
    arms = load_arms(datasets, augment, tasks, profile, use_cache)
    test_sets = load_tests(tests, tasks, profile, arms, use_cache)
    baseline_arm = pick_baseline(arms, baseline)
    test_names = [OWN_TEST, *(t.name for t in test_sets)]
    for task, path in (init or {}).items():
        if task not in tasks:
            raise BadInput(f"--init {task}={path}: no such task in this run (tasks: {', '.join(tasks)})")

    device = select_device(profile)
    context = {
        "profile": profile,
        "tasks": tasks,
        "seeds": seeds,
        "device": device.type,
        "init": init,
        "baseline": baseline_arm,
        "test_sets": test_sets,
    }
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    cells: dict = {}
    timings: dict[str, dict[str, Any]] = {}
    try:
        for arm in arms:
            arm_started = time.perf_counter()
            timings[arm.name] = {"runs": []}
            for task in tasks:
                data = arm.data[task]
                testing = {OWN_TEST: data[OWN_TEST], **{t.name: t.data[task] for t in test_sets}}
                results = []
                for seed in range(seeds):
                    steps = profile.seg_steps if task == "seg" else profile.cls_steps
                    with tqdm(
                        total=steps,
                        desc=f"{arm.name} {task} seed {seed}",
                        unit="step",
                        disable=quiet,
                        leave=False,
                    ) as bar:
                        result = train_run(
                            task,
                            data["train"],
                            data["validation"],
                            testing,
                            profile,
                            seed,
                            augment=arm.augment,
                            init=(lambda m, p=init[task], t=task: load_init(m, p, t))
                            if init and task in init
                            else None,
                            progress=bar.update,
                            keep_model=save_models,
                        )
                    folder = out / "runs" / arm.name / f"{task}-seed{seed}"
                    write_predictions(folder / "predictions.csv", task, result)
                    (folder / "history.json").write_text(json.dumps(result.history) + "\n")
                    if save_models:
                        save_model(folder, task, result, profile, arm, data["train"].channels)
                    timings[arm.name]["runs"].append(
                        {
                            "task": task,
                            "seed": seed,
                            "wall_s": result.wall_s,
                            "train_images_per_s": result.train_images_per_s,
                            "best_step": result.best_step,
                            "best_validation": result.best_validation,
                        }
                    )
                    if not quiet:
                        tqdm.write(
                            f"{arm.name} {task} seed {seed}: best step {result.best_step} "
                            f"(validation {METRIC[task]} {result.best_validation:.3f}), {result.wall_s:.0f}s"
                        )
                    results.append(result)
                for test_name in test_names:
                    cells[(arm.name, task, test_name)] = cell(task, results, test_name)
            timings[arm.name]["wall_s"] = time.perf_counter() - arm_started
            done = arms[: arms.index(arm) + 1]
            if len(done) < len(arms) and baseline_arm in done:
                # Finished arms are never lost: the outputs so far, rewritten after every arm.
                record = aggregate(done, cells, tasks, test_names, baseline_arm, profile)
                write_outputs(out, build_metrics(done, record, timings, context, started, partial=True))
    finally:
        torch.use_deterministic_algorithms(previous)

    record = aggregate(arms, cells, tasks, test_names, baseline_arm, profile)
    metrics = build_metrics(arms, record, timings, context, started, partial=False)
    write_outputs(out, metrics)
    return metrics


def build_metrics(
    arms: list[Arm], record: dict, timings: dict, context: dict, started: float, *, partial: bool
) -> dict[str, Any]:
    """The metrics.json record: flat DVC keys, the protocol, and per arm its data and results."""
    from busforge.downstream.models import describe

    profile, tasks, init = context["profile"], context["tasks"], context["init"]
    return {
        **flat_metrics(record, len(arms) > 1 or partial),
        "partial": partial,
        "protocol": {
            "profile": profile.protocol(),
            "tasks": list(tasks),
            "seeds": context["seeds"],
            "device": context["device"],
            "init": {t: str(p) for t, p in (init or {}).items()} or "random",
            "networks": {task: describe(task, profile) for task in tasks},
            "baseline": context["baseline"].name,
            "step_budget": "fixed optimiser steps per run, whatever the train size: arms differ in data, not compute",
            "selection": f"best validation {', '.join(f'{t}: {METRIC[t]}' for t in tasks)} every {profile.val_every} steps",
            "test_sets": {
                OWN_TEST: "each arm's own test split",
                **{t.name: f"{t.path} ({', '.join(t.splits)})" for t in context["test_sets"]},
            },
        },
        "arms": {
            arm.name: {
                "dataset": str(arm.path),
                "fingerprint": arm.manifest.get("fingerprint"),
                "ratio": arm.ratio,
                "augment": arm.augment,
                "train_rows": {task: len(arm.data[task]["train"]) for task in tasks},
                "synthetic_share": {task: arm.synthetic_share(task) for task in tasks},
                "left_out": arm.notes,
                "wall_s": timings[arm.name]["wall_s"],
                "runs": timings[arm.name]["runs"],
                "results": record[arm.name],
            }
            for arm in arms
        },
        "wall_s": time.perf_counter() - started,
    }


def pick_baseline(arms: list[Arm], spec: str | None) -> Arm:
    """--baseline (one of the arms, by name or path), else the first real-only arm without
    augmentation, else the first arm."""
    if spec is not None:
        path, augment = parse_arm(spec, "none")
        for arm in arms:
            if spec == arm.name or (arm.path == path and arm.augment == augment):
                return arm
        raise BadInput(
            f"--baseline {spec}: not one of the arms ({', '.join(a.name for a in arms)}); name one of them"
        )
    real_only = SOURCE_NAMES.index("real")
    for arm in arms:
        if arm.augment == "none" and all((arm.data[t]["train"].source == real_only).all() for t in arm.data):
            return arm
    return arms[0]
