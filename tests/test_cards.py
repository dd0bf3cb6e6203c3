"""Honest cards: a dataset card says what is in it (synthetic, mixed, imported), names and cites the real
source with its terms, keeps local paths out of Hub metadata; a model card's base_model is a Hub id or absent.
Each card is read back with huggingface_hub's card classes and its metadata keys checked against the Hub's."""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData
from real_fixtures import save, scan_image

from busforge.dataset.real import import_real
from busforge.executors.local import run_render
from busforge.recipe import recipe_from_dict
from busforge.release.push import release_card


def hub_keys(card_data: type) -> set[str]:
    named = set(inspect.signature(card_data.__init__).parameters) - {
        "self",
        "kwargs",
        "ignore_metadata_errors",
    }
    # Keys the Hub's card spec documents beyond the named arguments of huggingface_hub's class.
    extra = {"tags", "configs", "dataset_info"} if card_data is DatasetCardData else set()
    return named | extra


def check_dataset_card(path: Path) -> dict:
    card = DatasetCard(path.read_text())
    data = card.data.to_dict()
    assert set(data) <= hub_keys(DatasetCardData), set(data) - hub_keys(DatasetCardData)
    assert "source_datasets" not in data  # Hub ids only, and busforge's real data are local imports
    assert str(path.parents[1]) not in str(data)  # no local path in the metadata
    assert release_card(path.read_text(), "user/x", "v1.0.0")  # what push checks before a release
    return data


def make_busi(root: Path, counts: dict[str, int]) -> Path:
    """The BUSI layout: CLASS/CLASS (N).png beside CLASS (N)_mask.png."""
    rng = np.random.default_rng(7)
    for pathology, n in counts.items():
        for i in range(1, n + 1):
            image, mask = scan_image(rng)
            save(root / pathology / f"{pathology} ({i}).png", image)
            save(root / pathology / f"{pathology} ({i})_mask.png", mask)
    return root


@pytest.fixture(scope="module")
def busi(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cards")
    out = root / "real" / "busi"
    import_real("busi", make_busi(root / "src", {"benign": 8, "malignant": 4}), out, workers=1)
    return out


def render(out: Path, **extra) -> Path:
    data = {"name": "cardtest", "count": 6, "image_size": 64, "license": "cc-by-4.0", **extra}
    run_render(recipe_from_dict(data), out_dir=out, workers=1, quiet=True)
    return out


def test_synthetic_card_lists_domains_and_its_licence(tmp_path):
    out = render(tmp_path / "syn", domain={"busi": 1, "udiat": 1})
    data = check_dataset_card(out / "README.md")
    text = (out / "README.md").read_text()
    assert data["license"] == "cc-by-4.0"
    assert "synthetic" in data["tags"] and "real" not in data["tags"]
    assert "Synthetic breast-ultrasound images" in text and "not for clinical use" in text
    assert "target domain(s): `busi` (50%), `udiat` (50%)" in text
    assert "{'busi'" not in text


def test_mixed_card_names_the_real_source_its_terms_and_citation(busi, tmp_path):
    out = render(tmp_path / "mix", real={"dataset": str(busi), "ratio": "1:1"}, pathology="match_real")
    data = check_dataset_card(out / "README.md")
    text = (out / "README.md").read_text()
    body = text.split("---\n", 2)[2]
    words = " ".join(body.split())
    assert data["license"] == "other"  # not the synthetic rows' cc-by-4.0 for real rows too
    assert {"synthetic", "real"} <= set(data["tags"])
    assert not body.lstrip().split("\n\n")[1].startswith("Synthetic")  # the intro after the title
    assert "real rows of **BUSI** (Al-Dhabyani" in words
    assert "the synthetic rows are `cc-by-4.0`" in words and "terms of the BUSI copy" in words
    assert "@article{aldhabyani2020busi" in body and "@inproceedings{pan2025clinicalprior" in body


def test_imported_card_is_real_and_cites_its_source(busi):
    data = check_dataset_card(busi / "README.md")
    text = (busi / "README.md").read_text()
    assert data["license"] == "other"
    assert "real" in data["tags"] and "synthetic" not in data["tags"]
    assert "Source: **BUSI** (Al-Dhabyani" in " ".join(text.split()) and "@article{aldhabyani2020busi" in text


class Examples(list):
    skipped: dict = {}


def write_model_card(out: Path, base: str) -> ModelCard:
    from busforge.train.card import write_card

    write_card(
        out,
        title="t",
        kind="controlnet",
        base=base,
        dataset=Path("data/real/busi"),
        dataset_id="abc",
        examples=Examples(),
        trains="ControlNet",
        settings={},
        result=SimpleNamespace(history=[], steps=0, resumed_from=0),
        renders=[],
        usage="renderer: {}\n",
    )
    card = ModelCard((out / "README.md").read_text())
    assert set(card.data.to_dict()) <= hub_keys(ModelCardData)
    return card


def test_model_card_base_model_is_a_hub_id_or_absent(tmp_path):
    hub = write_model_card(tmp_path / "hub", "stable-diffusion-v1-5/stable-diffusion-v1-5@abc123")
    assert hub.data.base_model == "stable-diffusion-v1-5/stable-diffusion-v1-5"  # no revision, no path
    local_base = tmp_path / "models" / "sd15"
    local_base.mkdir(parents=True)
    local = write_model_card(tmp_path / "local", str(local_base))
    assert local.data.base_model is None and str(local_base) in local.text
