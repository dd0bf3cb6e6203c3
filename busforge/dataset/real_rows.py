"""One imported case as a dataset row: size bin, prompt, attributes, the real-data conventions."""

from __future__ import annotations

import math
from typing import Any

from busforge.dataset.attributes import Measures, Thresholds, classify
from busforge.dataset.importers.base import Case
from busforge.dataset.real_inspect import Inspected
from busforge.prompts import DEFAULT_PROMPT, make_prompt
from busforge.vocab import DEFAULT_SIZE_BINS, NORMAL, PATHOLOGY_NAMES, SOURCE_NAMES

NORMAL_PROMPT = "breast ultrasound image without tumor."
REAL_SEED = -1
# Upper edges of the default recipe's size bins; the largest bin is open-ended for real lesions.
SIZE_BIN_EDGES = tuple(
    (name, upper if i < len(DEFAULT_SIZE_BINS) - 1 else math.inf)
    for i, (name, (_, upper)) in enumerate(DEFAULT_SIZE_BINS.items())
)


def size_bin(size: float | None) -> str | None:
    if size is None:
        return None
    return next(name for name, upper in SIZE_BIN_EDGES if size < upper)


def prompt_for(pathology: str | None, echogenicity: str | None, boundary: str | None) -> str:
    if pathology == NORMAL or echogenicity is None or boundary is None:
        return NORMAL_PROMPT
    text = make_prompt(
        DEFAULT_PROMPT, pathology=pathology or "", echogenicity=echogenicity, boundary=boundary
    )
    return " ".join(text.split())


def make_real_row(
    case: Case, info: Inspected, pngs: tuple[bytes, bytes], thresholds: Thresholds, domain: str, renderer: str
) -> dict[str, Any]:
    echogenicity = boundary = None
    if info.measures is not None and case.pathology != NORMAL:
        echogenicity, boundary = classify(info.measures, thresholds)
    return {
        "image": {"bytes": pngs[0], "path": None},
        "mask": {"bytes": pngs[1], "path": None},
        "prompt": prompt_for(case.pathology, echogenicity, boundary),
        "pathology": PATHOLOGY_NAMES.index(case.pathology) if case.pathology else None,
        "source": SOURCE_NAMES.index("real"),
        "domain": domain,
        "size_bin": size_bin(info.size),
        "echogenicity": echogenicity,
        "boundary": boundary,
        "sample_id": case.sample_id,
        "seed": REAL_SEED,
        "shape": info.shape,
        "lesion_area": info.lesion_area,
        "renderer": renderer,
        "original_file": case.original_file,
        "patient_id": case.patient_id,
        "birads": case.birads,
        "device": case.device,
        "histology": case.histology,
        **(info.measures.as_row() if info.measures else dict.fromkeys(Measures.__dataclass_fields__)),
    }
