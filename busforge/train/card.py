"""The model card of a trained ControlNet or LoRA: README.md + loss.png + loss.csv + validation.png + training.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from busforge.models.weights import hub_id


def plot_loss(history: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    losses = [h["loss"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.plot(steps, losses, lw=0.8, alpha=0.5, label="loss")
    if len(losses) > 1:
        smooth, ema = [], losses[0]
        for value in losses:
            ema = 0.95 * ema + 0.05 * value
            smooth.append(ema)
        ax.plot(steps, smooth, lw=1.5, label="EMA 0.95")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_loss_csv(history: list[dict[str, float]], path: Path) -> None:
    """The per-step loss as CSV (`step,loss,...`), the format `dvc plots show` draws."""
    import csv

    columns = ["step", *(k for k in history[0] if k != "step")]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def validation_grid(renders: list[tuple[np.ndarray, np.ndarray, str]], path: Path) -> None:
    """Masks on the top row, the renders conditioned on them below."""
    from PIL import Image

    masks = np.concatenate([m for m, _, _ in renders], axis=1)
    images = np.concatenate([r for _, r, _ in renders], axis=1)
    Image.fromarray(np.concatenate([masks, images], axis=0), mode="L").save(path)


def write_card(
    out: Path,
    *,
    title: str,
    kind: str,
    base: str,
    dataset: Path,
    dataset_id: str,
    examples: Any,
    trains: str,
    settings: dict[str, Any],
    result: Any,
    renders: list[tuple[np.ndarray, np.ndarray, str]],
    usage: str,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "training.json").write_text(
        json.dumps({"settings": settings, "history": result.history}, indent=1, sort_keys=True, default=str)
    )
    figures = []
    if result.history:
        plot_loss(result.history, out / "loss.png")
        write_loss_csv(result.history, out / "loss.csv")
        figures.append("## Loss\n\n![training loss](loss.png)\n")
    if renders:
        validation_grid(renders, out / "validation.png")
        prompts = "\n".join(f"{i + 1}. {p}" for i, (_, _, p) in enumerate(renders))
        figures.append(
            "## Validation renders\n\nTop row: lesion masks; bottom row: renders with the trained weights "
            f"({settings.get('validation_steps')} UniPC steps, seeds {settings.get('seed')}..).\n\n"
            f"![validation renders](validation.png)\n\n{prompts}\n"
        )
    last = result.history[-1] if result.history else {}
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(examples.skipped.items())) or "none"
    tags = ["busforge", "breast-ultrasound", "stable-diffusion", "diffusers", kind]
    # `base_model` is a Hub id the Hub links to; a local base folder would go nowhere, so it is left out.
    base_id = hub_id(base)
    front = "\n".join(
        [
            "---",
            "library_name: diffusers",
            *([f"base_model: {base_id}"] if base_id else []),
            "tags:",
            *[f"- {t}" for t in tags],
            "---",
        ]
    )
    text = f"""{front}

# {title}

Trained by `busforge train {kind}` (MICCAI 2025, Pan et al., "Clinical Prior-Guided Tumor Generation
for Breast Ultrasound with Cross Domain Adaptation"). Medical images: no safety checker is used.

| | |
|---|---|
| base model | `{base}`{"" if base_id else " (a local folder)"} |
| data | `{dataset}` (fingerprint `{dataset_id}`), train split |
| examples | {len(examples)} lesion images; skipped: {skipped} |
| trains | {trains} |
| optimizer steps | {result.steps} (resumed from step {result.resumed_from}) |
| effective batch | {settings.get("effective_batch")} ({settings.get("batch_size")} x {settings.get("accumulation")} accumulation x processes) |
| learning rate | {settings.get("learning_rate")} AdamW, {settings.get("warmup_steps")} warm-up steps, then constant |
| resolution | {settings.get("resolution")} |
| final loss | {last.get("loss", float("nan")):.5f} (noise MSE {last.get("mse", float("nan")):.5f}, KL {last.get("kl", float("nan")):.5f}) |

{chr(10).join(figures)}
## Use it in a recipe

```yaml
{usage}```

All settings and the per-step loss are in `training.json`.
"""
    (out / "README.md").write_text(text)
