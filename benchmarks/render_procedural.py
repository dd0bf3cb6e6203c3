"""Speed of the procedural renderer at 512x512 on one core, against a baseline in the same run.

Baseline: the same image formation done the straightforward way, with the speckle
formed at full resolution by a 2-D FFT convolution with the same (non-separated) PSF
(scipy.signal.fftconvolve), instead of separable 1-D convolutions on a half-lateral grid.
Both share the anatomy and lesion maps, so the ratio isolates the speckle strategy; the
end-to-end figure of `render_bmode` is what the target (>= 40 images/s) is about.

With `--before DIR` (a checkout of another busforge version, e.g. `git worktree add /tmp/old
f3316c6`, the last one before profiles), `render_bmode` without and with the busi profile is also
timed by that code and by this one, each in its own fresh process set up as that version's
render processes are, rounds interleaved: the before/after figure, with the minor page faults per
render (memory handed back to the OS and taken again). Code without profiles is timed without one only.

Run: python benchmarks/render_procedural.py [--repeats N] [--before DIR]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import signal

from busforge.renderers import bmode, procedural
from busforge.renderers.profile import Profile, load_profile

# Nothing is set up here: `render_bmode` sets up what busforge's render processes have (BLAS on one
# thread, freed memory kept) whoever calls it, so this times what a user's call runs.

SIZE = 512
TARGET_IMAGES_PER_S = 40.0
CONDITIONS = [
    (pathology, echogenicity, boundary)
    for pathology in ("benign", "malignant")
    for echogenicity in ("homogeneous", "heterogeneous")
    for boundary in ("clear", "unclear")
]


def ellipse_mask(size: int) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size] / size
    return ((cols - 0.5) / 0.2) ** 2 + ((rows - 0.35) / 0.13) ** 2 <= 1.0


def baseline_speckle_envelope(
    reflectivity: np.ndarray, rng: np.random.Generator, axial_sigma_px: float, lateral_sigma_px: float
) -> np.ndarray:
    """Full lateral resolution scatterers, one 2-D FFT convolution per IQ component."""
    full = np.repeat(reflectivity, 2, axis=1)
    psf = np.outer(bmode.gaussian_kernel(axial_sigma_px), bmode.gaussian_kernel(2.0 * lateral_sigma_px))
    iq = rng.standard_normal((2, *full.shape), dtype=np.float32) * full
    real = signal.fftconvolve(iq[0], psf, mode="same")
    imaginary = signal.fftconvolve(iq[1], psf, mode="same")
    envelope = np.hypot(real, imaginary).astype(np.float32)
    # Back on the half-lateral grid the rest of the pipeline expects.
    return envelope[:, 0::2]


def time_renders(render: Callable[[int], np.ndarray], repeats: int) -> list[float]:
    render(0)  # warm caches (kernels, resampling matrices)
    seconds = []
    for index in range(repeats):
        start = time.perf_counter()
        render(index)
        seconds.append(time.perf_counter() - start)
    return seconds


# Timed in a child process, by whichever busforge its PYTHONPATH holds (the API is the same).
CHILD = """
import json, sys, time
import numpy as np
from busforge.renderers import procedural
try:  # versions whose render_bmode sets itself up: nothing to do, as for a user
    from busforge.executors.render_process import renders_as_busforge  # noqa: F401
except ImportError:  # older ones rendered as set up by their executor: what their pool workers did
    try:
        from busforge.executors.render_process import default_worker_threads, prepare_render_process
        prepare_render_process(default_worker_threads())
    except ImportError:
        from busforge.executors.threads import available_cores, limit_threads, pool_worker_threads
        limit_threads(pool_worker_threads(available_cores()))
size, repeats, profiled = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
rows, cols = np.mgrid[0:size, 0:size] / size
mask = ((cols - 0.5) / 0.2) ** 2 + ((rows - 0.35) / 0.13) ** 2 <= 1.0
options = {}
if profiled:  # code from before profiles has no `profile` argument: it is only timed without one
    from busforge.renderers.profile import load_profile
    options["profile"] = load_profile("busi")
conditions = [(p, e, b) for p in ("benign", "malignant") for e in ("homogeneous", "heterogeneous")
              for b in ("clear", "unclear")]
def render(i):
    p, e, b = conditions[i % len(conditions)]
    procedural.render_bmode(mask, pathology=p, echogenicity=e, boundary=b, seed=i, **options)
import resource
render(0)
seconds, faults = [], []  # faults: minor page faults during each render (memory handed back and taken again)
for i in range(repeats):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter(); render(i); seconds.append(time.perf_counter() - start)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"seconds": seconds, "faults": faults}))
"""


def child_times(code: Path, repeats: int, profiled: bool) -> dict[str, list[float]]:
    """Seconds and minor page faults of each render, timed by CODE in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(code.resolve())}
    args = [sys.executable, "-c", CHILD, str(SIZE), str(repeats), "1" if profiled else "0"]
    # Run from the checkout itself: `python -c` puts the working directory first on sys.path, ahead
    # of PYTHONPATH, so run from a repo root both sides would time that root's code.
    result = subprocess.run(args, env=env, cwd=code, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def before_after(before: Path, repeats: int) -> None:
    after = Path(__file__).resolve().parents[1]
    # Code from before profiles existed is timed without one only; its plain render is then
    # the "before" of the profiled one.
    before_profiles = (before / "busforge/renderers/profile.py").is_file()
    times: dict[tuple[str, bool], list[float]] = {}
    faults: dict[tuple[str, bool], list[float]] = {}
    for _ in range(4):
        for profiled in (False, True):
            for label, code in (("before", before), ("after", after)):
                if label == "before" and profiled and not before_profiles:
                    continue
                child = child_times(code, repeats // 4, profiled)
                times.setdefault((label, profiled), []).extend(child["seconds"])
                faults.setdefault((label, profiled), []).extend(child["faults"])
    print(f"\nbefore = {before}, after = {after} ({len(times['after', False])} renders each, 512x512)")
    if not before_profiles:
        print("before has no profiles: 'with the busi profile' compares with its render without one")
    for profiled in (False, True):
        name = "with the busi profile" if profiled else "without a profile"
        keys = {"before": ("before", profiled and before_profiles), "after": ("after", profiled)}
        ms = {label: statistics.median(times[key]) * 1e3 for label, key in keys.items()}
        fault = {label: statistics.mean(faults[key]) for label, key in keys.items()}
        print(
            f"{name:<24} before {ms['before']:.1f} ms = {1e3 / ms['before']:.1f} images/s, "
            f"after {ms['after']:.1f} ms = {1e3 / ms['after']:.1f} images/s (after/before time "
            f"{ms['after'] / ms['before']:.2f}); page faults per render {fault['before']:.0f} -> "
            f"{fault['after']:.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=80)
    parser.add_argument("--before", type=Path, help="a checkout of the busforge version to compare with")
    args = parser.parse_args()
    mask = ellipse_mask(SIZE)

    busi = load_profile("busi")

    def render(index: int, profile: Profile | None = None) -> np.ndarray:
        pathology, echogenicity, boundary = CONDITIONS[index % len(CONDITIONS)]
        return procedural.render_bmode(
            mask,
            pathology=pathology,
            echogenicity=echogenicity,
            boundary=boundary,
            seed=index,
            profile=profile,
        )

    def render_profiled(index: int) -> np.ndarray:
        return render(index, busi)

    def render_baseline(index: int) -> np.ndarray:
        original = procedural.speckle_envelope
        procedural.speckle_envelope = baseline_speckle_envelope
        try:
            return render(index)
        finally:
            procedural.speckle_envelope = original

    # Interleave the two so that load from elsewhere on the machine hits both alike.
    fast, profiled, baseline = [], [], []
    for _ in range(4):
        fast += time_renders(render, args.repeats // 4)
        profiled += time_renders(render_profiled, args.repeats // 4)
        baseline += time_renders(render_baseline, max(2, args.repeats // 16))

    fast_ms = statistics.median(fast) * 1e3
    profiled_ms = statistics.median(profiled) * 1e3
    baseline_ms = statistics.median(baseline) * 1e3
    print(f"image size {SIZE}x{SIZE}, one thread, {len(fast)} / {len(profiled)} / {len(baseline)} renders")
    for label, median_ms in (
        ("render_bmode (separable PSF, half-lateral grid)", fast_ms),
        ("render_bmode with the busi profile", profiled_ms),
        ("baseline (full-res 2-D FFT PSF)", baseline_ms),
    ):
        print(f"{label:<50} median {median_ms:.1f} ms = {1e3 / median_ms:.1f} images/s")
    print(f"speed-up: {baseline_ms / fast_ms:.2f}x; profile cost: {profiled_ms / fast_ms:.2f}x")
    for label, median_ms in (("without a profile", fast_ms), ("with the busi profile", profiled_ms)):
        verdict = "meets" if 1e3 / median_ms >= TARGET_IMAGES_PER_S else "MISSES"
        print(f"target >= {TARGET_IMAGES_PER_S:.0f} images/s {label}: {verdict}")
    if args.before is not None:
        before_after(args.before, args.repeats)


if __name__ == "__main__":
    main()
