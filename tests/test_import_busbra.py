"""Import of the BUS-BRA sample (../shared/data/busbra_mini): labels, devices, patient grouping."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict

import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA

from busforge.dataset.real import import_real

BUSBRA = SHARED_DATA / "busbra_mini" / "BUSBRA"


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> list[dict]:
    if not BUSBRA.is_dir():
        pytest.skip(f"BUS-BRA sample not present at {BUSBRA}")
    out = tmp_path_factory.mktemp("real") / "busbra"
    import_real("busbra", BUSBRA.parent, out, workers=1)
    found = []
    for path in sorted((out / "data").glob("*.parquet")):
        split = path.name.split("-")[0]
        found += [{**r, "split": split} for r in pq.read_table(path, columns=None).to_pylist()]
    return found


def test_labels_from_csv(rows):
    with open(BUSBRA / "bus_data.csv", newline="") as f:
        table = {r["ID"]: r for r in csv.DictReader(f)}
    assert len(rows) == 40
    for row in rows:
        source = table[row["sample_id"].removeprefix("busbra/")]
        assert ["benign", "malignant"][row["pathology"] - 1] == source["Pathology"]
        assert row["patient_id"] == source["Case"]
        assert row["device"] == source["Device"] and row["birads"] == source["BIRADS"]
        assert row["histology"] == source["Histology"]
        assert row["original_file"] == f"Images/{source['ID']}.png"
        assert row["domain"] == "busbra"
    assert len({r["device"] for r in rows}) == 4


def test_patients_never_straddle_splits(rows):
    splits = defaultdict(set)
    for row in rows:
        splits[row["patient_id"]].add(row["split"])
    assert any(len([r for r in rows if r["patient_id"] == p]) == 2 for p in splits), "left/right pairs exist"
    assert all(len(s) == 1 for s in splits.values())
    # Stratified: both classes in every split.
    per_split = Counter((r["split"], r["pathology"]) for r in rows)
    assert all(per_split[(s, p)] > 0 for s in ("train", "validation", "test") for p in (1, 2))
