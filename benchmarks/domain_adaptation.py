"""The procedural renderer's domain-adaptation table: FID/KID of rendered sets against real datasets.

For each rendered dataset (e.g. no profile / busi profile / busbra profile) and each real reference
(e.g. BUSI test, BUS-BRA), FID and KID are computed with the FID Inception beside two real-vs-real
figures: the floor (other real images of the reference's own dataset) and another scanner (the
other real dataset's images). This is the figure "as close to BUSI as another real scanner's
images are". FID is biased upwards at small N, so where the other scanner's set is smaller than a
rendered one, the rendered set is also compared at that N: the median (and range) of SUBSETS
random subsets of that size.

Run:
    python benchmarks/domain_adaptation.py \
        --generated none=/tmp/gen_none busi=/tmp/gen_busi busbra=/tmp/gen_busbra \
        --real busi=data/real/busi:test busbra=data/real/busbra:all [--json OUT]

A real reference is NAME=FOLDER:SPLIT (SPLIT `all` uses every split; the floor pool is then the
reference itself split in halves). Features come from `busforge evaluate`'s cache.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from busforge.cache import cache_dir
from busforge.dataset.manifest import read_manifest
from busforge.evaluate.features import ExtractionCounts, FeatureCache, make_extractor
from busforge.evaluate.fid import compare
from busforge.evaluate.run import collect, split_files

SUBSETS = 20


class _NoProgress:
    def update(self, _n: int) -> None:
        pass


def features(folder: Path, splits: list[str] | None, synthetic: bool, extractor, cache) -> np.ndarray:
    names = splits or sorted(read_manifest(folder)["splits"])
    images = collect(
        split_files(folder, names),
        extractor,
        cache,
        ExtractionCounts(),
        _NoProgress(),
        synthetic_only=synthetic,
        with_shapes=False,
    )
    return images.matrix(extractor.num_features)


def at_n(generated: np.ndarray, reference: np.ndarray, n: int, seed: int) -> dict[str, object]:
    """FID and KID of SUBSETS random n-image subsets of the generated set (without replacement):
    median, min and max FID, every subset's FID, and the median KID under `kid_mean`, the key the
    table printer reads."""
    # Its own draws, so the other rows do not move with it; the same subset indices for every
    # rendered set (they are compared on the same positions of equally long sets).
    rng = np.random.default_rng([seed, n])
    results = [
        compare(generated[rng.choice(len(generated), n, replace=False)], reference, seed)
        for _ in range(SUBSETS)
    ]
    fids = [r.fid for r in results]
    return {
        "fid": float(np.median(fids)),
        "fid_min": float(min(fids)),
        "fid_max": float(max(fids)),
        "fids": [float(f) for f in fids],
        "kid_mean": float(np.median([r.kid_mean for r in results])),
        "n_a": n,
        "n_b": len(reference),
        "subsets": SUBSETS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generated", nargs="+", required=True, help="NAME=FOLDER of rendered datasets")
    parser.add_argument("--real", nargs="+", required=True, help="NAME=FOLDER:SPLIT of real datasets")
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    extractor = make_extractor("inception")
    cache = FeatureCache(cache_dir() / "features.sqlite")  # the one `busforge evaluate` uses
    real: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # name -> (reference, same-dataset pool)
    everything: dict[str, np.ndarray] = {}
    for spec in args.real:
        name, _, rest = spec.partition("=")
        folder, _, split = rest.rpartition(":")
        all_splits = sorted(read_manifest(Path(folder))["splits"])
        everything[name] = features(Path(folder), all_splits, False, extractor, cache)
        if split == "all":
            real[name] = (everything[name], np.zeros((0, extractor.num_features), np.float32))
        else:
            pool = [s for s in all_splits if s != split]
            real[name] = (
                features(Path(folder), [split], False, extractor, cache),
                features(Path(folder), pool, False, extractor, cache),
            )
    rng = np.random.default_rng(args.seed)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for ref_name, (reference, pool) in real.items():
        row: dict[str, dict[str, float]] = {}
        if len(pool) >= 2:
            floor_a, floor_b = pool, reference
        else:  # the reference split in halves
            order = rng.permutation(len(reference))
            half = len(reference) // 2
            floor_a, floor_b = reference[order[:half]], reference[order[half : 2 * half]]
        row["floor (same dataset)"] = compare(floor_a, floor_b, args.seed).as_dict()
        for other_name, other in everything.items():
            if other_name != ref_name:
                row[f"real {other_name}"] = compare(other, reference, args.seed).as_dict()
        for spec in args.generated:
            name, _, folder = spec.partition("=")
            generated = features(Path(folder), None, True, extractor, cache)
            row[f"procedural {name}"] = compare(generated, reference, args.seed).as_dict()
            for other_name, other in everything.items():
                if other_name != ref_name and len(other) < len(generated):
                    row[f"procedural {name} @N={len(other)}"] = at_n(
                        generated, reference, len(other), args.seed
                    )
        table[ref_name] = row
    cache.close()

    for ref_name, row in table.items():
        n_ref = len(real[ref_name][0])
        print(f"\nreference: {ref_name} ({n_ref} images)")
        print(f"{'set':<28} {'N':>5} {'FID':>8} {'KID x1e3':>10}")
        for label, result in row.items():
            spread = f"  [{result['fid_min']:.1f}, {result['fid_max']:.1f}]" if "subsets" in result else ""
            print(
                f"{label:<28} {result['n_a']:>5} {result['fid']:>8.1f} {1e3 * result['kid_mean']:>10.1f}{spread}"
            )
    if args.json:
        args.json.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
