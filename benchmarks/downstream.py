"""Training throughput of `busforge downstream`: the in-memory uint8 array cache vs decoding the
`datasets` rows (PNG -> PIL -> resize -> array) every step, same model, same steps, same run.

    python benchmarks/downstream.py DATASET [--task seg] [--profile cpu] [--steps 10] [--repeats 3]

Both paths run `busforge.downstream.train.train_run` with one validation at the end; only how a
batch of uint8 images and masks is produced differs. Prints train images/s (medians over repeats,
validation excluded) and the ratio, and the same for producing the batches alone (no model).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--task", default="seg", choices=["seg", "cls"])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import datasets
    import torch

    from busforge.downstream.data import decode_rows, labelled_for, load_split, stack
    from busforge.downstream.profiles import resolve_profile
    from busforge.downstream.train import train_run

    profile = resolve_profile(args.profile, [f"{args.task}_steps={args.steps}", f"val_every={args.steps}"])
    size = profile.seg_size if args.task == "seg" else profile.cls_size
    started = time.perf_counter()
    train = load_split(args.dataset, "train", size)
    validation = load_split(args.dataset, "validation", size)
    cache_s = time.perf_counter() - started
    keep, _ = labelled_for(args.task, train, profile.include_normal)
    rows = np.flatnonzero(keep)
    train = train.subset(keep)
    validation = validation.subset(labelled_for(args.task, validation, profile.include_normal)[0])
    # The baseline reads the same rows through `datasets`, undecoded, and decodes every batch.
    hf = datasets.load_dataset(str(args.dataset), split="train").cast_column(
        "image", datasets.Image(decode=False)
    )
    hf = hf.cast_column("mask", datasets.Image(decode=False))

    def decode_every_step(idx):
        batch = hf.select(rows[idx.numpy()].tolist())
        decoded, colour = decode_rows(
            [
                {"image": image, "mask": mask}
                for image, mask in zip(batch["image"], batch["mask"], strict=True)
            ],
            size,
        )
        images, masks = stack(decoded, colour)
        return torch.from_numpy(images), torch.from_numpy(masks)

    images_all, masks_all = torch.from_numpy(train.images), torch.from_numpy(train.masks)

    def from_cache(idx):
        return images_all[idx], masks_all[idx]

    # Batches alone (no model): what the data path costs by itself.
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    batches = [order[i : i + profile.batch] for i in range(0, len(order) - profile.batch + 1, profile.batch)]
    data_rates: dict[str, list[float]] = {"cache": [], "decode": []}
    for _ in range(args.repeats):
        for name, fetch in (("cache", from_cache), ("decode", decode_every_step)):
            t0 = time.perf_counter()
            for idx in batches:
                fetch(idx)
            data_rates[name].append(len(batches) * profile.batch / (time.perf_counter() - t0))

    rates: dict[str, list[float]] = {"cache": [], "decode": []}
    for _ in range(args.repeats):
        for name, fetch in (("cache", None), ("decode", decode_every_step)):
            result = train_run(args.task, train, validation, {}, profile, 0, fetch=fetch)
            rates[name].append(result.train_images_per_s)
    cache, decode = (statistics.median(rates[k]) for k in ("cache", "decode"))
    print(
        f"dataset {args.dataset}, task {args.task}, profile {profile.name}, {args.steps} steps x {args.repeats}"
    )
    print(f"first load (decode + write cache, or read it): {cache_s:.1f}s for {len(train)} train rows")
    print(
        f"array cache:        {cache:7.1f} train images/s  (runs: {', '.join(f'{r:.1f}' for r in rates['cache'])})"
    )
    print(
        f"decode every step:  {decode:7.1f} train images/s  (runs: {', '.join(f'{r:.1f}' for r in rates['decode'])})"
    )
    print(f"ratio cache / decode (training): {cache / decode:.2f}x")
    data_cache, data_decode = (statistics.median(data_rates[k]) for k in ("cache", "decode"))
    print(
        f"batches only: cache {data_cache:.0f} vs decode {data_decode:.0f} images/s: "
        f"{data_cache / data_decode:.1f}x"
    )


if __name__ == "__main__":
    main()
