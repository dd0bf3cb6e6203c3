"""CLI conventions a Typer user expects: `--version`, and a bad `--set` value blamed on the --set argument."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from busforge import __version__
from busforge.cli import app
from busforge.errors import BadInput
from busforge.recipe import load_recipe


def test_version_option():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"busforge {__version__}\n"


@pytest.mark.parametrize(
    ("override", "blamed"),
    [
        ("count=-3", r"^--set count=-3: count: "),
        ("pathology.benign=lots", r"^--set pathology\.benign=lots: pathology\.benign: "),
        ("renderer.backend=magic", r"^--set renderer\.backend=magic: renderer"),
    ],
)
def test_bad_set_value_is_blamed_on_the_set_argument(repo, override, blamed):
    with pytest.raises(BadInput, match=blamed):
        load_recipe(repo / "recipes/demo.yaml", ["seed=1", override])


def test_bad_value_in_the_file_is_still_blamed_on_the_file(repo, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ncount: -1\n")
    with pytest.raises(BadInput, match=rf"^{recipe}: count: "):
        load_recipe(recipe, ["seed=2"])
