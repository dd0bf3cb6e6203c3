"""Held-out shape fidelity of the calibrated prior, and the cross-dataset figure against BUS-BRA.

Fit on one half of BUSI's masks, draw DRAWS masks, two-sample KS of every statistic against the
other half, both pathologies, both ways round (`busforge.evaluate.shape_holdout`). Beside each
KS: the same statistic's KS between the two real halves (what sampling alone gives at these
sizes) and the 5 % critical value of the two-sample KS test for the sizes compared. Then the
shipped `busi` prior against BUS-BRA's masks (an imported dataset), per pathology.

Run:
    python benchmarks/shape_holdout.py [--masks ../shared/data/busi_masks_calib]
        [--busbra data/real/busbra] [--draws 500] [--image-size 512] [--perfect-sampler] [--floor]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from importlib import resources
from pathlib import Path

import numpy as np

from busforge.evaluate.shape_holdout import (
    DRAWS,
    drawn_stats,
    held_out_ks,
    ks_table,
    real_stats,
    same_distribution_ks,
    split_halves,
    worst,
)
from busforge.shapes.calibrate import _case_masks, collect_masks
from busforge.shapes.stats import STAT_NAMES, shape_stats


def critical(n: int, m: int, alpha: float = 0.05) -> float:
    """Two-sample KS critical value (asymptotic) for sizes n and m."""
    return math.sqrt(-0.5 * math.log(alpha / 2)) * math.sqrt((n + m) / (n * m))


SIZE_BANDS = ((0.0, 0.2), (0.2, 0.3), (0.3, 1.0))
BAR = 0.12  # issue 13's bar: the worst held-out KS over every statistic, pathology and way
SCALES = (1, 2, 4, 8)  # held-out halves as large as this sample's, and larger
REPLICATES = 1000


def perfect_sampler_rates(
    masks: dict, first: dict, second: dict, draws: int, observed: float
) -> dict[int, dict[str, float]]:
    """What a sampler that draws from the real lesions themselves scores on the held-out table, for
    halves of this sample's sizes and SCALES times them: how often its worst KS is below BAR, and
    how often at least one of its cells is above that cell's 5 % critical value (the multiplicity
    of the table: one such cell is not, alone, evidence of a miss); at this sample's sizes, also
    how often its worst KS is at least the `observed` worst of the fitted priors (the table's
    p-value)."""
    population = {pathology: real_stats(cases) for pathology, cases in masks.items()}
    rates = {}
    print(f"\na perfect sampler (drawing from the real lesions themselves), {REPLICATES} replicates:")
    for scale in SCALES:
        # The ways as held_out_ks runs them: fit A, test B; fit B, test A.
        sizes = {p: (scale * len(second[p]), scale * len(first[p])) for p in masks}
        ks = same_distribution_ks(population, sizes, draws, REPLICATES)
        worst_ks = np.max([table.max(axis=(1, 2)) for table in ks.values()], axis=0)
        above = np.any(
            [
                (table[:, way] > critical(draws, sizes[p][way])).any(axis=1)
                for p, table in ks.items()
                for way in range(2)
            ],
            axis=0,
        )
        rates[scale] = {
            "pass_rate": float(np.mean(worst_ks < BAR)),
            "median_worst": float(np.median(worst_ks)),
            "any_cell_above_critical": float(above.mean()),
        }
        if scale == 1:
            rates[scale]["worst_at_least_observed"] = float(np.mean(worst_ks >= observed))
        halves = ", ".join(f"{p} {a}/{b}" for p, (a, b) in sorted(sizes.items()))
        print(
            f"  held-out halves of {halves}: worst KS < {BAR} in {rates[scale]['pass_rate']:.1%}, "
            f"median worst {rates[scale]['median_worst']:.3f}; "
            f"a cell above its 5 % critical KS in {rates[scale]['any_cell_above_critical']:.1%}"
        )
        if scale == 1:
            print(
                f"    worst KS >= the fitted priors' {observed:.3f} in {rates[scale]['worst_at_least_observed']:.1%}"
            )
    return rates


def floor_diagnosis(fit_on: list, pathology: str, draws: int, image_size: int) -> None:
    """Why smooth lesions miss: how many draws come out at zero deformation (where only the shape
    model's edge jitter sets solidity), and drawn vs real medians by size, with the jitter as
    shipped and at half strength (what a size-aware jitter would change)."""
    from busforge.shapes import lesion
    from busforge.shapes.calibrate import fit_prior_from_masks
    from busforge.shapes.priors import CalibratedPrior

    sampler = CalibratedPrior(fit_prior_from_masks({pathology: fit_on}, "half", "half"), "half", "half")
    bins = sampler.size_bins(pathology)
    size_range = (bins["small"][0], bins["large"][1])
    real = real_stats(fit_on)
    shipped_roughness = lesion.ROUGHNESS
    for roughness in (shipped_roughness, shipped_roughness / 2):
        lesion.ROUGHNESS = roughness
        rows = []
        try:
            for index in range(draws):
                params = sampler.sample(pathology, size_range, image_size, np.random.default_rng([index, 7]))
                mask, used = lesion.draw_mask(params, image_size, index, size_range)
                rows.append((shape_stats(mask), used.sigma == 0))
        finally:
            lesion.ROUGHNESS = shipped_roughness
        print(
            f"  edge jitter {roughness}: {np.mean([flat for _, flat in rows]):.0%} of draws at zero deformation"
        )
        for low, high in SIZE_BANDS:
            drawn = [s for s, _ in rows if low <= s.size < high]
            seen = [s for s in real if low <= s.size < high]
            if drawn and seen:
                print(
                    f"    size {low:.1f}-{high:.1f}: solidity drawn {np.median([s.solidity for s in drawn]):.4f} "
                    f"real {np.median([s.solidity for s in seen]):.4f}; circularity drawn "
                    f"{np.median([s.circularity for s in drawn]):.3f} real {np.median([s.circularity for s in seen]):.3f}"
                    f" (n {len(drawn)} / {len(seen)})"
                )


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", type=Path, default=repo.parent / "shared/data/busi_masks_calib")
    parser.add_argument("--busbra", type=Path, help="an imported BUS-BRA dataset (busforge import busbra)")
    parser.add_argument("--draws", type=int, default=DRAWS)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--perfect-sampler",
        action="store_true",
        help="also score a sampler that draws from the real lesions themselves (is the bar reachable here?)",
    )
    parser.add_argument(
        "--floor", action="store_true", help="also diagnose benign solidity (draws at zero deformation)"
    )
    args = parser.parse_args()

    files = collect_masks([args.masks])
    masks = {p: [m for m in _case_masks(f) if m.any()] for p, f in files.items() if p != "normal"}
    table = held_out_ks(masks, args.draws, args.image_size)
    first, second = split_halves(masks)
    print(f"held-out KS, {args.draws} drawn masks at {args.image_size}² vs the other half of {args.masks}")
    print(f"{'fit / test':<16} {'pathology':<10} " + " ".join(f"{n:>11}" for n in STAT_NAMES))
    result = {"held_out": table, "real_halves": {}}
    for pathology in sorted(masks):
        halves = ks_table(real_stats(first[pathology]), real_stats(second[pathology]))
        result["real_halves"][pathology] = halves
        for way in table:
            test = second if way.startswith("fit A") else first
            row = table[way][pathology]
            print(f"{way:<16} {pathology:<10} " + " ".join(f"{row[n]:>11.3f}" for n in STAT_NAMES))
        n_a, n_b = len(first[pathology]), len(second[pathology])
        print(f"{'real A vs B':<16} {pathology:<10} " + " ".join(f"{halves[n]:>11.3f}" for n in STAT_NAMES))
        print(
            f"  {pathology}: halves of {n_a} / {n_b} cases; 5 % critical KS, {args.draws} drawn vs "
            f"{len(test[pathology])}: {critical(args.draws, len(test[pathology])):.3f}; real half vs half: "
            f"{critical(n_a, n_b):.3f}"
        )
    value, where = worst(table)
    print(f"worst held-out KS: {value:.3f} ({where})")
    result["worst"] = {"ks": value, "where": where}

    if args.perfect_sampler:
        result["perfect_sampler"] = perfect_sampler_rates(masks, first, second, args.draws, value)
    if args.floor:
        for name, half in (("A", first), ("B", second)):
            print(f"\nbenign prior fitted on half {name}, {args.draws} draws at {args.image_size}²:")
            floor_diagnosis(half["benign"], "benign", args.draws, args.image_size)

    if args.busbra is not None:
        from busforge.renderers.profile import dataset_cases

        prior = json.loads(resources.files("busforge.shapes").joinpath("data", "busi.json").read_text())
        cases = dataset_cases(
            args.busbra, sorted(json.loads((args.busbra / "busforge.json").read_text())["splits"])
        )
        result["busbra"] = {}
        lesions = [(m, labels) for _, m, labels in cases if m is not None]
        # Drawn at BUS-BRA's own resolution: outlines lose solidity to pixelation on smaller masks.
        side = round(statistics.median(math.sqrt(m.shape[0] * m.shape[1]) for m, _ in lesions))
        result["busbra_image_size"] = side
        print(
            f"\nshipped busi prior ({args.draws} drawn at {side}², BUS-BRA's median) vs BUS-BRA masks ({args.busbra})"
        )
        for pathology in ("benign", "malignant"):
            real = real_stats([m for m, labels in lesions if labels["pathology"] == pathology])
            row = ks_table(drawn_stats(prior, pathology, args.draws, side), real)
            result["busbra"][pathology] = row
            print(f"{pathology:<10} n={len(real):<4} " + " ".join(f"{n}={row[n]:.3f}" for n in STAT_NAMES))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
