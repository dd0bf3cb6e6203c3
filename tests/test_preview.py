"""`busforge preview`: captions name the domain when a dataset holds several."""

from __future__ import annotations

from pathlib import Path

import pytest

from busforge.evaluate import preview
from busforge.executors.local import run_render
from busforge.recipe import recipe_from_dict


def captions_of(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real_tile = preview.tile

    def recording_tile(image_png, mask_png, caption):
        seen.append(caption)
        return real_tile(image_png, mask_png, caption)

    monkeypatch.setattr(preview, "tile", recording_tile)
    rows = preview.contact_sheet(dataset, tmp_path / "sheet.png", per_stratum=2)
    assert rows >= 1 and (tmp_path / "sheet.png").is_file()
    return seen


def test_preview_names_the_domain_when_there_are_several(tmp_path, monkeypatch):
    two = tmp_path / "two"
    recipe = {"name": "two", "count": 16, "image_size": 64, "domain": {"busi": 1, "udiat": 1}}
    run_render(recipe_from_dict(recipe), out_dir=two, workers=1, quiet=True)
    captions = captions_of(two, tmp_path, monkeypatch)
    assert {c.split(":")[0] for c in captions} == {"busi", "udiat"}

    one = tmp_path / "one"
    run_render(
        recipe_from_dict({**recipe, "name": "one", "domain": "busi"}), out_dir=one, workers=1, quiet=True
    )
    assert not any(c.startswith("busi:") for c in captions_of(one, tmp_path, monkeypatch))
