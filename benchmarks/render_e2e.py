"""End-to-end `busforge render` with the procedural renderer: images/s and peak RSS.

Compares, in one run: --workers 1 (baseline) vs --workers 2, and peak RSS of the whole process
tree for N vs 10 N samples (memory must stay flat: the writer streams row groups).

    python benchmarks/render_e2e.py [--count 1000] [--size 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
BUSFORGE = [sys.executable, "-c", "from busforge.cli import main; main()"]


def run_render(count: int, size: int, workers: int, out: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, summed over the process tree, sampled every 50 ms)."""
    cmd = [
        *BUSFORGE,
        "render",
        str(REPO / "recipes/demo.yaml"),
        "--quiet",
        "--force",
        "--out",
        str(out),
        "--set",
        f"count={count}",
        "--set",
        f"image_size={size}",
        "--workers",
        str(workers),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = psutil.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"render failed with exit code {proc.returncode}")
    return elapsed, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-factor", type=int, default=10, help="RSS comparison: N vs factor*N samples")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        speed: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(args.repeats):
            for workers in (1, 2):  # interleaved so machine noise hits both alike
                seconds, _ = run_render(args.count, args.size, workers, out)
                speed[workers].append(args.count / seconds)
        for workers, rates in speed.items():
            print(
                f"workers={workers}: median {statistics.median(rates):.1f} img/s over {len(rates)} runs "
                f"({', '.join(f'{r:.1f}' for r in rates)})"
            )
        print(f"speed-up 2 vs 1 workers: {statistics.median(speed[2]) / statistics.median(speed[1]):.2f}x")
        _, small = run_render(args.count, args.size, 2, out)
        _, large = run_render(args.count * args.memory_factor, args.size, 2, out)
        print(
            f"peak RSS, {args.count} samples: {small:.0f} MiB; {args.count * args.memory_factor} samples: "
            f"{large:.0f} MiB; ratio {large / small:.3f}"
        )


if __name__ == "__main__":
    main()
