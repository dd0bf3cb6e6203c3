"""Where an input lives is not what it is: the same profile, prior or real dataset at another path,
or named from another working folder, gives the same fingerprint; other content gives another."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import pytest
from real_fixtures import make_folder_dataset

import busforge
from busforge.dataset.real import import_real

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "recipes" / "demo.yaml"


def fingerprint(overrides: dict) -> str:
    return busforge.plan(DEMO, overrides={"count": 16, **overrides}).fingerprint


def shipped(package: str, folder: str, name: str) -> str:
    return resources.files(package).joinpath(folder, name).read_text()


def test_a_profile_at_another_path_or_from_another_folder_keeps_the_fingerprint(tmp_path, monkeypatch):
    text = shipped("busforge.renderers", "profiles", "busbra.json")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "profile.json").write_text(text)
    first = fingerprint({"renderer.profile": str(tmp_path / "a" / "profile.json")})
    assert fingerprint({"renderer.profile": str(tmp_path / "b" / "profile.json")}) == first
    monkeypatch.chdir(tmp_path / "a")
    assert fingerprint({"renderer.profile": "profile.json"}) == first

    edited = json.loads(text)
    edited["records"] = edited["records"][:-1]
    (tmp_path / "b" / "profile.json").write_text(json.dumps(edited))
    assert fingerprint({"renderer.profile": str(tmp_path / "b" / "profile.json")}) != first
    assert fingerprint({}) != first  # no profile


def test_a_shape_prior_at_another_path_keeps_the_fingerprint_and_names_stay(tmp_path, monkeypatch):
    text = shipped("busforge.shapes", "data", "busi.json")
    (tmp_path / "one.json").write_text(text)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "two.json").write_text(text)
    first = fingerprint({"shape_prior": str(tmp_path / "one.json")})
    monkeypatch.chdir(tmp_path / "sub")
    assert fingerprint({"shape_prior": "two.json"}) == first
    # The built-in default keeps its published fingerprint (README, CI): names are not locations.
    assert fingerprint({"shape_prior": "busi"}) != fingerprint({"shape_prior": "birads"})


def test_a_real_dataset_moved_elsewhere_keeps_the_fingerprint(tmp_path, monkeypatch):
    make_folder_dataset(tmp_path / "src", {"benign": 8, "malignant": 6, "normal": 2}, seed=5)
    import_real("folder", tmp_path / "src", tmp_path / "real", workers=1)
    first = fingerprint({"real": {"dataset": str(tmp_path / "real"), "ratio": "1:1"}})
    shutil.copytree(tmp_path / "real", tmp_path / "moved" / "real")
    monkeypatch.chdir(tmp_path / "moved")
    assert fingerprint({"real": {"dataset": "real", "ratio": "1:1"}}) == first
    assert fingerprint({"real": {"dataset": "real", "ratio": "1:2"}}) != first


@pytest.mark.parametrize("name", ["busi", "busbra"])
def test_a_shipped_profile_is_named_in_the_fingerprint(name):
    assert fingerprint({"renderer.profile": name}) != fingerprint({})
