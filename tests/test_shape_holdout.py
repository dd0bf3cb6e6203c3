"""Held-out shape fidelity: a prior fitted on half of BUSI's masks against the other half."""

from __future__ import annotations

import numpy as np

from busforge.evaluate.shape_holdout import split_halves


def test_halves_are_disjoint_seeded_and_cover_every_case():
    masks = {
        "benign": [np.full((4, 4), i) for i in range(9)],
        "malignant": [np.full((4, 4), i) for i in range(5)],
    }
    first, second = split_halves(masks)
    again, _ = split_halves(masks)
    for pathology, cases in masks.items():
        ids = sorted(int(m[0, 0]) for m in first[pathology] + second[pathology])
        assert ids == list(range(len(cases)))
        assert [int(m[0, 0]) for m in first[pathology]] == [int(m[0, 0]) for m in again[pathology]]
    assert len(first["benign"]) == 4 and len(second["benign"]) == 5
