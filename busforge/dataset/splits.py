"""Deterministic, stratified, leakage-safe train/validation/test splits.

Cases that must stay together form one *unit*: the images of one patient (where the source says
who the patient is) and every near-duplicate group (busforge.dataset.dedup), joined transitively.
Targets per split and pathology are allocated exactly (largest remainder), then units, largest
first and otherwise in a seeded shuffled order, each go to the split whose remaining target for
their pathologies is largest. A unit never straddles splits; only units bigger than one case can
make a split miss its target, by at most the unit's size.

Sizes: absolute counts (the paper's: BUSI 396/54/197, UDIAT 130/33) apply to the lesion cases
(benign + malignant) when the source has exactly that many; otherwise (a subset, another release)
their proportions are used. Normal and unlabelled cases are split by the same proportions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from busforge.allocation import largest_remainder
from busforge.dataset.dedup import connected_components
from busforge.errors import BadInput
from busforge.vocab import PATHOLOGIES

SPLIT_ORDER = ("train", "validation", "test")
UNKNOWN = "unknown"  # stratum of cases without a pathology label


@dataclass(frozen=True)
class SplitItem:
    pathology: str | None
    patient: str | None = None


def _check_sizes(sizes: dict[str, float]) -> None:
    unknown = sorted(set(sizes) - set(SPLIT_ORDER))
    if unknown or not sizes or any(v < 0 for v in sizes.values()) or sum(sizes.values()) <= 0:
        raise BadInput(
            f"split sizes {sizes}: need non-negative sizes for some of {', '.join(SPLIT_ORDER)} with a positive sum"
        )


def split_targets(strata: Counter, sizes: dict[str, float]) -> dict[str, dict[str, int]]:
    """Exact number of cases per stratum and split."""
    _check_sizes(sizes)
    names = [s for s in SPLIT_ORDER if s in sizes]
    lesion = [p for p in PATHOLOGIES if strata.get(p)]
    lesion_total = sum(strata[p] for p in lesion)
    absolute = (
        all(float(v).is_integer() and v >= 1 or v == 0 for v in sizes.values()) and sum(sizes.values()) > 1
    )
    targets: dict[str, dict[str, int]] = {}
    if absolute and lesion_total == int(sum(sizes.values())):
        # Exact sizes for the lesion cases: each stratum takes its share of what is left, the last
        # one the remainder, so the totals per split are met exactly.
        remaining = {s: int(sizes[s]) for s in names}
        for i, p in enumerate(lesion):
            alloc = remaining if i == len(lesion) - 1 else largest_remainder(strata[p], remaining)
            targets[p] = dict(alloc)
            remaining = {s: remaining[s] - alloc[s] for s in names}
        rest = [p for p in strata if p not in lesion]
    else:
        rest = list(strata)
    for p in rest:
        targets[p] = largest_remainder(strata[p], {s: float(sizes[s]) for s in names})
    return targets


def make_splits(
    items: list[SplitItem],
    sizes: dict[str, float],
    duplicate_groups: list[list[int]] = (),
    seed: int = 0,
) -> list[str]:
    """The split name of every item (same order as `items`)."""
    n = len(items)
    links: list[tuple[int, int]] = []
    first_of_patient: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.patient is not None:
            links.append((i, first_of_patient.setdefault(item.patient, i)))
    for group in duplicate_groups:
        links.extend((group[0], j) for j in group[1:])
    ordered = connected_components(n, links)  # the units, ordered by their first case

    def stratum(i: int) -> str:
        return items[i].pathology or UNKNOWN

    targets = split_targets(Counter(stratum(i) for i in range(n)), sizes)
    names = [s for s in SPLIT_ORDER if s in sizes]
    remaining = {p: dict(t) for p, t in targets.items()}
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x5911,)))
    shuffled = [ordered[i] for i in rng.permutation(len(ordered))]
    shuffled.sort(key=len, reverse=True)  # stable: big units first, otherwise the shuffled order

    assignment = [""] * n
    for unit in shuffled:
        need = Counter(stratum(i) for i in unit)
        # Room left for this unit's cases in each split; ties go to the earlier split name.
        scores = [sum(min(remaining[p][s], c) for p, c in need.items()) for s in names]
        best = names[int(np.argmax(scores))] if max(scores) > 0 else _fallback(remaining, need, names)
        for i in unit:
            assignment[i] = best
        for p, c in need.items():
            remaining[p][best] -= c
    return assignment


def _fallback(remaining: dict[str, dict[str, int]], need: Counter, names: list[str]) -> str:
    # No split has room (only after an oversized unit): take the one least over its targets.
    return max(names, key=lambda s: sum(remaining[p][s] for p in need))
