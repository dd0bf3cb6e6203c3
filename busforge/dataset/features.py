"""The dataset's columns and their Hugging Face feature types: the product's main interface.

Rendered and imported (real) datasets share one schema so that they can be mixed into one split;
columns that only real data has (original file, patient, device, ...) are null for synthetic rows
and vice versa.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets

from busforge.vocab import PATHOLOGY_NAMES, SOURCE_NAMES

SHAPE_FIELDS = ("a", "b", "angle", "cx", "cy", "sigma")
# Columns of real data (see busforge.dataset.real); null in synthetic rows.
REAL_COLUMNS = ("original_file", "patient_id", "birads", "device", "histology")
# Measures behind the clinical attributes of real lesions (busforge.dataset.attributes); null otherwise.
MEASURE_COLUMNS = ("echo_heterogeneity", "boundary_contrast", "boundary_sharpness")


def pathology_name(label: int | None) -> str:
    """The class name of a stored `pathology` label; unlabelled real data (e.g. STU) is "unknown"."""
    return "unknown" if label is None else PATHOLOGY_NAMES[label]


def dataset_features() -> datasets.Features:
    from datasets import ClassLabel, Features, Image, Value

    return Features(
        {
            "image": Image(),
            "mask": Image(),
            "prompt": Value("string"),
            "pathology": ClassLabel(names=PATHOLOGY_NAMES),
            "source": ClassLabel(names=SOURCE_NAMES),
            "domain": Value("string"),
            "size_bin": Value("string"),
            "echogenicity": Value("string"),
            "boundary": Value("string"),
            "sample_id": Value("string"),
            "seed": Value("int64"),
            "shape": {name: Value("float32") for name in SHAPE_FIELDS},
            "lesion_area": Value("float32"),
            "renderer": Value("string"),
            **{name: Value("string") for name in REAL_COLUMNS},
            **{name: Value("float32") for name in MEASURE_COLUMNS},
        }
    )


def empty_row_extras() -> dict[str, None]:
    """The real-only and measure columns, null: spread into synthetic rows."""
    return dict.fromkeys(REAL_COLUMNS + MEASURE_COLUMNS)
