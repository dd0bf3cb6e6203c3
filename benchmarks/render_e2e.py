"""End-to-end `busforge render` with the procedural renderer: images/s and peak RSS.

Runs exactly the command a user types, in the user's environment (this script sets no thread
variables), and compares in one run, interleaved so machine noise hits all alike:

- `--workers 1` vs `--workers 2` (the default on two cores);
- with `--before DIR` (a checkout of another busforge version, e.g. `git worktree add /tmp/old
  9fa42cf`), each against the same command run by that code: the before/after comparison;
- peak RSS of the whole process tree for N vs 10 N samples (memory must stay flat).

    python benchmarks/render_e2e.py [--count 1000] [--repeats 3] [--size 512] [--before DIR]
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
BUSFORGE = str(Path(sys.executable).with_name("busforge"))  # the console script a user runs


def user_command(count: int, workers: int, out: Path, size: int | None) -> list[str]:
    cmd = [BUSFORGE, "render", "recipes/demo.yaml", "--set", f"count={count}", "--workers", str(workers)]
    cmd += ["--set", f"image_size={size}"] if size else []
    return [*cmd, "--out", str(out), "--force", "--quiet"]


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, summed over the process tree, sampled every 50 ms)."""
    start = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
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
        raise SystemExit(f"{' '.join(cmd)}: exit code {proc.returncode}")
    return elapsed, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=None, help="image_size override (default: the recipe's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-factor", type=int, default=10, help="RSS comparison: N vs factor*N samples")
    parser.add_argument("--no-memory", action="store_true", help="skip the RSS comparison")
    parser.add_argument("--before", type=Path, help="a checkout of the busforge version to compare with")
    args = parser.parse_args()
    user_env = dict(os.environ)
    codes = {"after": user_env}
    if args.before:
        # The same console script importing the other checkout's package: only the code differs.
        codes = {"before": {**user_env, "PYTHONPATH": str(args.before.resolve())}, **codes}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        seconds: dict[tuple[int, str], list[float]] = {}
        for _ in range(args.repeats):
            for workers in (1, 2):
                for label, env in codes.items():
                    elapsed, _ = run(user_command(args.count, workers, out, args.size), env)
                    seconds.setdefault((workers, label), []).append(elapsed)
        median = {key: statistics.median(values) for key, values in seconds.items()}
        for (workers, label), values in seconds.items():
            print(
                f"--workers {workers} ({label}): median {median[workers, label]:.1f} s = "
                f"{args.count / median[workers, label]:.1f} img/s ({', '.join(f'{v:.1f}' for v in values)} s)"
            )
        for workers in (1, 2):
            if "before" in codes:
                ratio = median[workers, "after"] / median[workers, "before"]
                print(f"--workers {workers}: time after / time before = {ratio:.2f}")
        for label in codes:
            print(f"speed-up --workers 2 vs 1 ({label}): {median[1, label] / median[2, label]:.2f}x")
        if not args.no_memory:
            _, small = run(user_command(args.count, 2, out, args.size), user_env)
            _, large = run(user_command(args.count * args.memory_factor, 2, out, args.size), user_env)
            print(
                f"peak RSS, {args.count} samples: {small:.0f} MiB; {args.count * args.memory_factor} "
                f"samples: {large:.0f} MiB; ratio {large / small:.3f}"
            )


if __name__ == "__main__":
    main()
