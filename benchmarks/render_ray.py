"""`busforge render --engine ray` vs the local engine on the procedural demo: images/s, scaling.

In one run, interleaved so machine noise hits all alike, each as a user types it (no thread
variables set here): local `--workers 1` and `--workers 2`; ray with `--ray-workers 1` and `2` on a
Ray cluster this script starts once (`ray start --head` as a user types it, its own temp dir; Ray's
workers then run at its default nice 15, so on a shared machine other jobs slow Ray more). Ray's start-up (the cluster) is reported separately; each ray run still pays its
connection and its actors' start-up. Every run's shard hashes must equal the first local run's;
each run's time is printed as it ends.

    python benchmarks/render_ray.py [--count 2000] [--repeats 3] [--size 512]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def shard_hashes(out: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "data").glob("*.parquet"))
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(temp: Path, cpus: int) -> tuple[subprocess.Popen, str, float]:
    """A local head node; returns once a driver can connect (that wait is Ray's start-up)."""
    address = f"127.0.0.1:{free_port()}"
    start = time.perf_counter()
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--port", address.split(":")[1], "--num-cpus", str(cpus),
         "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", str(temp), "--block"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    probe = "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); ray.shutdown()"
    deadline = time.monotonic() + 180
    while subprocess.run([sys.executable, "-c", probe, address], capture_output=True).returncode != 0:
        if head.poll() is not None or time.monotonic() > deadline:
            head.send_signal(signal.SIGTERM)  # leave no cluster behind
            head.wait(timeout=120)
            raise SystemExit("ray start --head did not come up")
        time.sleep(1)
    return head, address, time.perf_counter() - start


def main() -> None:
    # The throw-away local cluster runs without Ray's token auth (a driver could race the head's
    # new token); this is the cluster's setting, not a tuning of busforge: no thread variables.
    os.environ["RAY_AUTH_MODE"] = "disabled"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", type=int, default=None, help="image_size override (default: the recipe's)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bfbench-", dir="/tmp") as tmp:
        tmp = Path(tmp)
        head, address, startup = start_cluster(tmp / "ray", os.cpu_count() or 2)
        print(f"Ray start-up (ray start --head until a driver connects): {startup:.1f} s")
        engines = {
            "local --workers 1": ["--workers", "1"],
            "local --workers 2": ["--workers", "2"],
            "ray --ray-workers 1": ["--engine", "ray", "--address", address, "--ray-workers", "1"],
            "ray --ray-workers 2": ["--engine", "ray", "--address", address, "--ray-workers", "2"],
        }
        sets = ["--set", f"count={args.count}"] + (["--set", f"image_size={args.size}"] if args.size else [])
        seconds: dict[str, list[float]] = {name: [] for name in engines}
        reference: dict[str, str] | None = None
        try:
            for _ in range(args.repeats):
                for name, extra in engines.items():
                    out = tmp / "out"
                    cmd = [str(BIN / "busforge"), "render", "recipes/demo.yaml", *sets, *extra, "--out", str(out),
                           "--force", "--quiet"]  # fmt: skip
                    start = time.perf_counter()
                    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
                    seconds[name].append(time.perf_counter() - start)
                    hashes = shard_hashes(out)
                    reference = reference or hashes
                    same = hashes == reference
                    # Each run as it ends: a run stopped early still leaves its figures.
                    print(f"{name}: {seconds[name][-1]:.1f} s, {args.count / seconds[name][-1]:.1f} img/s, "
                          f"hashes {'equal' if same else 'DIFFER'} (load {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip
                    if not same:
                        raise SystemExit(f"{name}: shard hashes differ from the first local run")
        finally:
            head.send_signal(signal.SIGTERM)
            head.wait(timeout=120)
        rate = {name: args.count / statistics.median(values) for name, values in seconds.items()}
        for name, values in seconds.items():
            print(f"{name}: median {rate[name]:.1f} img/s ({', '.join(f'{v:.1f}' for v in values)} s)")
        for engine in ("local", "ray"):
            one, two = (rate[n] for n in engines if n.startswith(engine))
            print(f"{engine}: 2 vs 1 workers {two / one:.2f}x, scaling efficiency {two / (2 * one):.0%}")
        print(f"ray vs local at 2 workers: {rate['ray --ray-workers 2'] / rate['local --workers 2']:.2f}x")
        print(
            f"identical shard hashes in all {args.repeats * len(engines)} runs ({len(reference or {})} shards)"
        )


if __name__ == "__main__":
    main()
