"""What DVC reads of an evaluation: a few headline numbers (`summary.json`) and shape CDFs for `dvc plots`.

`metrics.json` keeps every number (per pathology, per statistic, per stratum); declaring it as a
DVC metric would print well over a hundred columns, so dvc.yaml declares `summary.json` instead.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from busforge.dataset.writer import write_json_atomic
from busforge.evaluate.shape_fidelity import COMPARED, ShapeSamples

SUMMARY = "summary.json"
PLOTS = "plots"
# FID/KID of the generated set and the real-vs-real floor they are to be read against.
IMAGE_HEADLINE = ("fid", "floor_fid", "kid_mean", "floor_kid_mean", "n_generated", "n_reference")
CDF_POINTS = 50


def headline(metrics: dict[str, Any]) -> dict[str, float | int]:
    """The numbers worth a column in `dvc exp show`: FID/KID with floors, max shape KS, balance,
    attribute adherence."""
    out: dict[str, float | int] = {}
    overall = (metrics.get("image") or {}).get("overall", {})
    for key in IMAGE_HEADLINE:
        value = overall.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            out[key] = value
    ks = [
        stat["ks"]
        for per_stat in (metrics.get("shape") or {}).values()
        for stat in per_stat.values()
        if "ks" in stat
    ]
    if ks:
        out["max_shape_ks"] = max(ks)
    # Attribute balance: the largest |planned - realised| count over strata (0 = exactly as planned).
    out["balance_max_abs_diff"] = metrics["balance"]["max_abs_diff"]
    # Attribute adherence: share of lesions whose measured attribute equals its label (the image
    # says what the prompt says), per attribute.
    for attribute in ("echogenicity", "boundary"):
        share = ((metrics.get("attributes") or {}).get(attribute) or {}).get("adherence")
        if isinstance(share, int | float) and math.isfinite(share):
            out[f"{attribute}_adherence"] = share
    return out


def write_summary(out_dir: Path, metrics: dict[str, Any]) -> Path:
    path = out_dir / SUMMARY
    write_json_atomic(path, headline(metrics))
    return path


def _pooled(samples: ShapeSamples, name: str) -> np.ndarray:
    values = [v for p in samples.pathologies() for v in samples.values[p][name]]
    return np.sort(np.asarray(values, dtype=np.float64))


def write_shape_cdfs(out_dir: Path, generated: ShapeSamples, reference: ShapeSamples) -> list[Path]:
    """One CSV per mask statistic: empirical CDF of generated (and reference) lesions on a shared grid.

    Columns `STATISTIC,generated,reference`, so `dvc plots show` draws both curves on one chart;
    without a reference its column is empty (the chart then shows the generated curve alone).
    """
    plot_dir = out_dir / PLOTS
    plot_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in COMPARED:
        gen, ref = _pooled(generated, name), _pooled(reference, name)
        both = np.concatenate([gen, ref])
        if len(gen) == 0:
            continue
        grid = np.linspace(both.min(), both.max(), CDF_POINTS)
        cdf = {"generated": gen, "reference": ref}
        columns = {
            k: np.searchsorted(v, grid, side="right") / len(v) if len(v) else None for k, v in cdf.items()
        }
        path = plot_dir / f"shape_{name}.csv"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([name, *columns])
            for i, x in enumerate(grid):
                writer.writerow([f"{x:.6g}", *("" if c is None else f"{c[i]:.4f}" for c in columns.values())])
        paths.append(path)
    return paths
