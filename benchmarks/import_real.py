"""Import throughput (images/s) and peak memory of `busforge import` on BUSI-sized images.

Generates a BUSI-layout folder of N and 4N RGB PNGs (500x450, textured like a scan, with a
lesion mask each), imports each in a fresh process and reports:
- images/s on N images (median over repeats), with the one-process import as the baseline of this
  run and the 2-worker pool as the ratio against it;
- peak RSS of the importing process and of its largest worker for N and 4N images (one run each):
  memory is flat when the 4N/N ratio stays near 1. Rows are buffered one row group (100 rows) at
  a time, so N should be well above 100 for the comparison to mean anything.

Run: python benchmarks/import_real.py [--n 150] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

WIDTH, HEIGHT = 500, 450

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from busforge.dataset.real import import_real
src, out, workers = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
start = time.perf_counter()
report = import_real("busi", src, out, workers=workers, force=True)
seconds = time.perf_counter() - start
print(json.dumps({
    "seconds": seconds,
    "images": sum(report.per_class.values()),
    "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "worker_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
}))
"""


def make_busi(root: Path, n: int, seed: int = 0) -> Path:
    """n cases of BUSI's layout: benign/malignant folders, RGB images, 8-bit masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    for i in range(n):
        cls = "benign" if i % 3 else "malignant"
        tissue = ndimage.zoom(rng.normal(size=(HEIGHT // 10, WIDTH // 10)), 10, order=1)
        speckle = rng.rayleigh(1.0, size=(HEIGHT, WIDTH))
        image = (90 + 40 * tissue) * speckle * np.linspace(1.2, 0.5, HEIGHT)[:, None]
        cx, cy = rng.uniform(150, 350), rng.uniform(100, 250)
        mask = ((xx - cx) / rng.uniform(30, 90)) ** 2 + ((yy - cy) / rng.uniform(25, 60)) ** 2 <= 1
        image[mask] *= 0.3
        grey = np.clip(image, 0, 255).astype(np.uint8)
        folder = root / "Dataset_BUSI_with_GT" / cls
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grey).convert("RGB").save(folder / f"{cls} ({i + 1}).png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{cls} ({i + 1})_mask.png")
    return root


def run_import(src: Path, out: Path, workers: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(out), str(workers)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sources = {n: make_busi(tmp / f"src{n}", n, seed=n) for n in (args.n, 4 * args.n)}
        results: dict[tuple[int, int], list[dict]] = {}
        for n, src in sources.items():
            for workers in (1, 2):
                repeats = args.repeats if n == args.n else 1
                results[(n, workers)] = [run_import(src, tmp / "out", workers) for _ in range(repeats)]
        print(
            f"busforge import busi: {WIDTH}x{HEIGHT} RGB PNGs; {args.n} images: median of {args.repeats} runs"
        )
        print(
            f"{'images':>7} {'workers':>7} {'images/s':>9} {'vs 1 worker':>11} {'peak RSS MiB':>13} {'worker RSS':>11}"
        )
        for (n, workers), runs in results.items():
            rate = statistics.median(r["images"] / r["seconds"] for r in runs)
            base = statistics.median(r["images"] / r["seconds"] for r in results[(n, 1)])
            rss = statistics.median(r["rss_mib"] for r in runs)
            worker = statistics.median(r["worker_rss_mib"] for r in runs)
            print(f"{n:>7} {workers:>7} {rate:>9.1f} {rate / base:>10.2f}x {rss:>13.0f} {worker:>11.0f}")
        for workers in (1, 2):
            small = statistics.median(r["rss_mib"] for r in results[(args.n, workers)])
            large = statistics.median(r["rss_mib"] for r in results[(4 * args.n, workers)])
            print(f"peak RSS {4 * args.n} vs {args.n} images, {workers} worker(s): {large / small:.2f}x")


if __name__ == "__main__":
    main()
