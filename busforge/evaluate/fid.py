"""FID and KID between two feature sets, and the real-vs-real floor to read them against.

FID and KID go through torchmetrics (`FrechetInceptionDistance`, the polynomial-kernel MMD of
`KernelInceptionDistance`). Features are extracted (and cached) beforehand, so the torchmetrics
metric gets a pass-through feature module. `fid_direct` recomputes FID with numpy/scipy (means,
covariances, `sqrtm`) from the same features as a cross-check.

torchmetrics takes the eigenvalues of a general 2048x2048 matrix: about 30 s per FID on 2 cores.
The floor and matched-N values therefore use `fid_fast`, the same quantity computed exactly in the
span of the samples (tr sqrt(Sa Sb) = sum of singular values of A B^T for centred, scaled feature
rows A, B), and every evaluation records its difference to torchmetrics on the headline FID.
KID subsets are drawn from an explicit seed, never the global RNG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def _passthrough(num_features: int) -> torch.nn.Module:
    """The torchmetrics "custom feature extractor": features were computed already."""
    import torch

    class PrecomputedFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.num_features = num_features

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return features

    return PrecomputedFeatures()


def fid(generated: np.ndarray, reference: np.ndarray) -> float:
    """FID between two (N, D) feature sets with torchmetrics (float64 statistics)."""
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(generated) < 2 or len(reference) < 2:
        raise ValueError("FID needs at least 2 samples on each side")
    metric = FrechetInceptionDistance(feature=_passthrough(generated.shape[1]), reset_real_features=True)
    metric.update(torch.from_numpy(np.asarray(reference, np.float64)), real=True)
    metric.update(torch.from_numpy(np.asarray(generated, np.float64)), real=False)
    return float(metric.compute())


def fid_direct(generated: np.ndarray, reference: np.ndarray) -> float:
    """FID from means, covariances and the matrix square root (scipy), for cross-checking `fid`."""
    from scipy import linalg

    a, b = np.asarray(generated, np.float64), np.asarray(reference, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * np.real(root)))


def fid_fast(generated: np.ndarray, reference: np.ndarray) -> float:
    """FID, exact, in O(N_a N_b D): for N < D the covariances have rank < N, so the trace of the
    matrix square root is the nuclear norm of the (N_a, N_b) cross-product of the centred samples."""
    a, b = np.asarray(generated, np.float64), np.asarray(reference, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("FID needs at least 2 samples on each side")
    mu_a, mu_b = a.mean(0), b.mean(0)
    scaled_a = (a - mu_a) / np.sqrt(len(a) - 1)
    scaled_b = (b - mu_b) / np.sqrt(len(b) - 1)
    if max(len(a), len(b)) <= a.shape[1]:
        trace_root = np.linalg.svd(scaled_a @ scaled_b.T, compute_uv=False).sum()
    else:  # more samples than features: symmetric form sqrt(Sa) Sb sqrt(Sa), eigh only
        values, vectors = np.linalg.eigh(scaled_a.T @ scaled_a)
        root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
        cov_b = scaled_b.T @ scaled_b
        trace_root = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    traces = np.sum(scaled_a**2) + np.sum(scaled_b**2)
    return float(np.sum((mu_a - mu_b) ** 2) + traces - 2 * trace_root)


def kid(
    generated: np.ndarray,
    reference: np.ndarray,
    seed: int,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
) -> tuple[float, float, int]:
    """KID mean and standard deviation over random subsets (torchmetrics' polynomial MMD).

    Returns:
        (mean, std, subset size used): the subset size shrinks to the smaller side when needed.
    """
    import torch
    from torchmetrics.image.kid import poly_mmd

    size = min(subset_size, len(generated), len(reference))
    if size < 2:
        raise ValueError("KID needs at least 2 samples on each side")
    gen = torch.from_numpy(np.asarray(generated, np.float64))
    ref = torch.from_numpy(np.asarray(reference, np.float64))
    rng = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(subsets):
        real = ref[torch.randperm(len(ref), generator=rng)[:size]]
        fake = gen[torch.randperm(len(gen), generator=rng)[:size]]
        scores.append(poly_mmd(real, fake, degree=3, gamma=None, coef=1.0))
    stacked = torch.stack(scores)
    return float(stacked.mean()), float(stacked.std(unbiased=False)), size


@dataclass
class Comparison:
    """FID/KID of one feature set against another, with the sizes behind them."""

    fid: float
    kid_mean: float
    kid_std: float
    n_a: int
    n_b: int

    def as_dict(self, prefix: str = "") -> dict[str, float | int]:
        return {
            f"{prefix}fid": self.fid,
            f"{prefix}kid_mean": self.kid_mean,
            f"{prefix}kid_std": self.kid_std,
            f"{prefix}n_a": self.n_a,
            f"{prefix}n_b": self.n_b,
        }


def compare(a: np.ndarray, b: np.ndarray, seed: int) -> Comparison:
    kid_mean, kid_std, _ = kid(a, b, seed)
    return Comparison(fid_fast(a, b), kid_mean, kid_std, len(a), len(b))


def scope_metrics(
    generated: np.ndarray, reference: np.ndarray, pool: np.ndarray, seed: int
) -> dict[str, float | int | str]:
    """Generated-vs-reference FID/KID beside the real-vs-real floor at matched N.

    The floor compares the reference with other real images of the same dataset (`pool`, e.g. its
    other splits), subsampled to the generated set's size, so both FIDs carry the same small-N bias.
    Where the pool is too small, the reference is split into two halves and the floor is half vs half;
    the generated set is then also compared at that N (`matched_*`).

    Returns:
        A flat dict: fid (torchmetrics), fid_check_diff (|torchmetrics - fid_fast|), kid_mean,
        kid_std, n_generated, n_reference, floor_fid, floor_kid_mean, floor_kid_std, floor_n,
        floor_method, matched_fid, matched_kid_mean, matched_n.
    """
    rng = np.random.default_rng(seed)
    main = compare(generated, reference, seed)
    headline = fid(generated, reference)
    out: dict[str, float | int | str] = {
        "fid": headline,
        "fid_check_diff": abs(headline - main.fid),
        "kid_mean": main.kid_mean,
        "kid_std": main.kid_std,
        "n_generated": len(generated),
        "n_reference": len(reference),
    }
    if len(pool) >= 2:
        n = min(len(generated), len(pool))
        real = pool[rng.permutation(len(pool))[:n]]
        floor = compare(real, reference, seed + 1)
        out["floor_method"] = "other real splits vs reference"
        against = reference
    elif len(reference) >= 4:
        order = rng.permutation(len(reference))
        half = len(reference) // 2
        real, against = reference[order[:half]], reference[order[half : 2 * half]]
        floor = compare(real, against, seed + 1)
        n = half
        out["floor_method"] = "reference half vs half"
    else:
        out["floor_method"] = "none (too few real images)"
        return out
    out.update(floor_fid=floor.fid, floor_kid_mean=floor.kid_mean, floor_kid_std=floor.kid_std, floor_n=n)
    # The generated set at exactly the floor's sizes, so the two numbers share their bias.
    sample = generated[rng.permutation(len(generated))[:n]]
    matched = compare(sample, against, seed + 2)
    out.update(matched_fid=matched.fid, matched_kid_mean=matched.kid_mean, matched_n=n)
    return out
