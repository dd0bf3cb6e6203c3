"""Mask drawing speed at 512x512 on one core, against a naive full-frame deformation.

Baseline: what `elasticdeform.deform_random_grid` does to a full 512x512 ellipse image
(3x3 grid, cubic interpolation), with the displacement drawn from a seeded Generator
instead of numpy's global RNG, then thresholded. Candidate: `busforge.shapes.draw_mask`
for the same lesions. Both run interleaved in the same process; prints medians,
masks/s and the ratio.

    python benchmarks/masks.py [--count 200]
"""

# Nothing is set up here (no thread variables, no busforge set-up call): `busforge render` draws
# masks in its main process as it is, and so does this script.
import argparse
import math
import os
import statistics
import time

import numpy as np

IMAGE_SIZE = 512


def lesions(count: int) -> list[tuple[object, tuple[float, float]]]:
    """A mix of BI-RADS and BUSI-calibrated lesions of both pathologies and all bins."""
    from busforge.shapes.priors import load_prior

    rng = np.random.default_rng(0)
    birads_bins = [(0.08, 0.18), (0.18, 0.30), (0.30, 0.50)]
    out = []
    for index in range(count):
        pathology = ("benign", "malignant")[index % 2]
        if index % 4 < 2:
            prior, size_range = load_prior("birads"), birads_bins[index % 3]
        else:
            prior = load_prior("busi")
            size_range = list(prior.size_bins(pathology).values())[index % 3]
        out.append((prior.sample(pathology, size_range, IMAGE_SIZE, rng), size_range))
    return out


def naive_full_frame(params, seed: int) -> np.ndarray:
    import elasticdeform

    ys, xs = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE].astype(np.float32)
    theta = math.radians(params.angle)
    u = (xs - params.cx) * math.cos(theta) - (ys - params.cy) * math.sin(theta)
    v = (xs - params.cx) * math.sin(theta) + (ys - params.cy) * math.cos(theta)
    image = ((u / params.a) ** 2 + (v / params.b) ** 2 <= 1).astype(np.float32)
    displacement = np.random.default_rng(seed).standard_normal((2, 3, 3)) * params.sigma
    return elasticdeform.deform_grid(image, displacement) >= 0.5


def main() -> None:
    from busforge.shapes.lesion import draw_mask

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="lesions to draw with each method")
    args = parser.parse_args()

    cases = lesions(args.count)
    draw_mask(cases[0][0], IMAGE_SIZE, 0, cases[0][1])  # warm imports and caches
    naive_full_frame(cases[0][0], 0)
    # Wall time, and this thread's CPU time (what one core spends, unaffected by other
    # processes competing for the machine).
    times: dict[str, dict[str, list[float]]] = {
        method: {"wall": [], "cpu": []} for method in ("naive", "busforge")
    }
    for seed, (params, size_range) in enumerate(cases):
        for method, call in (
            ("naive", lambda p=params, s=seed: naive_full_frame(p, s)),
            ("busforge", lambda p=params, s=seed, r=size_range: draw_mask(p, IMAGE_SIZE, s, r)),
        ):
            wall, cpu = time.perf_counter(), time.thread_time()
            call()
            times[method]["cpu"].append(time.thread_time() - cpu)
            times[method]["wall"].append(time.perf_counter() - wall)

    print(
        f"masks: {args.count} lesions at {IMAGE_SIZE}x{IMAGE_SIZE}, one process, load {os.getloadavg()[0]:.1f}"
    )
    labels = {"naive": "naive full-frame deform_random_grid", "busforge": "busforge draw_mask"}
    for clock in ("cpu", "wall"):
        medians = {method: statistics.median(times[method][clock]) for method in times}
        for method, median in medians.items():
            print(f"{clock:>4} {labels[method]:<36} median {median * 1e3:7.2f} ms  {1 / median:7.1f} masks/s")
        print(
            f"{clock:>4} speed-up (median naive / median draw_mask): {medians['naive'] / medians['busforge']:.1f}x"
        )


if __name__ == "__main__":
    main()
