"""Benchmark `busforge evaluate`: feature extraction images/s (cold vs cached) and peak memory.

Renders N procedural images at 512² (twice, two seeds: generated and reference), then runs the
evaluation twice in one process: a cold run that computes every feature, and a warm run that reads
them all from the content-hash cache (the baseline the cache is measured against, same run).

    python benchmarks/evaluate.py --count 1000 --features inception
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

from busforge.evaluate.features import FeatureCache, extract_features, make_extractor
from busforge.evaluate.run import evaluate, iter_rows, split_files
from busforge.executors.local import run_render
from busforge.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="images per side")
    parser.add_argument("--features", default="inception", choices=["inception", "tiny"])
    parser.add_argument(
        "--batches", type=int, default=5, help="timed extraction batches of 16 for the median"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, seed in (("generated", 1), ("reference", 2)):
            recipe = load_recipe(REPO / "recipes" / "demo.yaml", [f"count={args.count}", f"seed={seed}"])
            run_render(recipe, out_dir=root / name, workers=2, quiet=True)
        extractor = make_extractor(args.features)
        print(f"features: {extractor.identity}")

        # Median per-batch extraction speed, no cache (the network alone, plus decode and resize).
        pngs = [r["image"]["bytes"] for rows in iter_rows(split_files(root / "generated", ["train"]), ["image"])
                for r in rows][: 16 * args.batches]  # fmt: skip
        no_cache = FeatureCache(None)
        extract_features(pngs[:2], extractor, no_cache)  # TorchScript warm-up
        rates = []
        for i in range(0, len(pngs), 16):
            start = time.perf_counter()
            extract_features(pngs[i : i + 16], extractor, no_cache)
            rates.append(len(pngs[i : i + 16]) / (time.perf_counter() - start))
        print(f"extraction: median {statistics.median(rates):.2f} images/s over {len(rates)} batches of 16")

        cache = FeatureCache(root / "cache.sqlite")
        timings = []
        for label in ("cold", "cached"):
            start = time.perf_counter()
            metrics, details = evaluate(
                root / "generated",
                root / "reference",
                split="train",
                extractor=extractor,
                cache=cache,
                quiet=True,
            )
            elapsed = time.perf_counter() - start
            timings.append(elapsed)
            images = 2 * args.count
            print(
                f"evaluate {label}: {elapsed:.1f} s for {images} images ({images / elapsed:.2f} images/s end to end), "
                f"computed {details['features_computed']}, cached {details['features_cached']}; "
                f"FID {metrics['image']['overall']['fid']:.2f}, floor {metrics['image']['overall'].get('floor_fid')}"
            )
        cache.close()
        print(f"cached / cold time ratio: {timings[1] / timings[0]:.3f}")
        print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
