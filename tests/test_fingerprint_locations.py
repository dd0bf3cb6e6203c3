"""Where an input lives is not what it is: the same profile, prior or real dataset at another path,
or named from another working folder, gives the same fingerprint; other content gives another."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

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


def test_a_shape_prior_at_another_path_keeps_the_fingerprint(tmp_path, monkeypatch):
    text = shipped("busforge.shapes", "data", "busi.json")
    (tmp_path / "one.json").write_text(text)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "two.json").write_text(text)
    first = fingerprint({"shape_prior": str(tmp_path / "one.json")})
    monkeypatch.chdir(tmp_path / "sub")
    assert fingerprint({"shape_prior": "two.json"}) == first


def test_names_stay_in_the_fingerprint_and_paths_leave_it(tmp_path):
    from busforge.planning import input_locations, prepare

    (tmp_path / "profile.json").write_text(shipped("busforge.renderers", "profiles", "busi.json"))
    (tmp_path / "prior.json").write_text(shipped("busforge.shapes", "data", "busi.json"))

    def locations(overrides: dict) -> list[tuple[str, ...]]:
        prepared = prepare(busforge.load_recipe(DEMO, {"count": 16, **overrides}))
        return input_locations(prepared.recipe, prepared.renderer, prepared.mix)

    assert locations({"renderer.profile": "busi", "shape_prior": "busi"}) == []
    assert locations({"shape_prior": "birads"}) == []
    assert locations(
        {"renderer.profile": str(tmp_path / "profile.json"), "shape_prior": str(tmp_path / "prior.json")}
    ) == [("renderer", "profile"), ("shape_prior",)]


def test_a_real_dataset_moved_elsewhere_keeps_the_fingerprint(tmp_path, monkeypatch):
    make_folder_dataset(tmp_path / "src", {"benign": 8, "malignant": 6, "normal": 2}, seed=5)
    import_real("folder", tmp_path / "src", tmp_path / "real", workers=1)
    first = fingerprint({"real": {"dataset": str(tmp_path / "real"), "ratio": "1:1"}})
    shutil.copytree(tmp_path / "real", tmp_path / "moved" / "real")
    monkeypatch.chdir(tmp_path / "moved")
    assert fingerprint({"real": {"dataset": "real", "ratio": "1:1"}}) == first

    # Another dataset at the same path is another fingerprint.
    shutil.rmtree(tmp_path / "moved" / "real")
    make_folder_dataset(tmp_path / "other", {"benign": 8, "malignant": 6, "normal": 2}, seed=6)
    import_real("folder", tmp_path / "other", tmp_path / "moved" / "real", workers=1)
    assert fingerprint({"real": {"dataset": "real", "ratio": "1:1"}}) != first


def test_model_folders_are_named_by_their_weights_not_their_paths(tiny, tmp_path, monkeypatch):
    from busforge.planning import input_locations, prepare

    monkeypatch.setenv("BUSFORGE_CACHE_DIR", str(tmp_path / "cache"))
    recipe = REPO / "recipes" / "tiny_diffusion.yaml"

    def prepared(models: Path, busi: str = "busi", udiat: str = "udiat"):
        overrides = {
            "renderer.base": str(models / "base"),
            "renderer.controlnet": str(models / "controlnet"),
            "renderer.lora.busi": str(models / "lora" / busi),
            "renderer.lora.udiat": str(models / "lora" / udiat),
            "renderer.device": "cpu",
        }
        return prepare(busforge.load_recipe(recipe, overrides))

    first = prepared(tiny)
    assert input_locations(first.recipe, first.renderer, first.mix) == [
        ("renderer", "base"),
        ("renderer", "controlnet"),
        ("renderer", "lora", "busi"),
        ("renderer", "lora", "udiat"),
    ]
    shutil.copytree(tiny, tmp_path / "elsewhere")
    assert prepared(tmp_path / "elsewhere").fingerprint == first.fingerprint
    assert prepared(tiny, busi="udiat", udiat="busi").fingerprint != first.fingerprint
