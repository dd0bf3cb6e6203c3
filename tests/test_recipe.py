"""Recipe validation: every user mistake is one line naming the file, the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from busforge.errors import BadInput
from busforge.prompts import DEFAULT_PROMPT
from busforge.recipe import load_recipe

BASE = {"name": "t", "count": 10, "shape_prior": "birads"}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def error_of(tmp_path: Path, data: dict, overrides: list[str] | None = None) -> str:
    with pytest.raises(BadInput) as info:
        load_recipe(write(tmp_path, data), overrides)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "r.yaml"))
    return message


def test_defaults_resolve(tmp_path):
    recipe = load_recipe(write(tmp_path, BASE))
    assert recipe.image_size == 512
    assert recipe.output.dir == "data/out"
    assert recipe.prompt_template == DEFAULT_PROMPT
    assert recipe.renderer.backend == "procedural"
    assert set(recipe.attributes) == {"benign", "malignant"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({**BASE, "colour": 1}, "colour: unknown key; allowed: name, version"),
        ({**BASE, "output": {"dri": "x"}}, "output.dri: unknown key; allowed: dir, rows_per_shard"),
        ({**BASE, "count": "many"}, "count: "),
        (
            {**BASE, "pathology": {"benign": 0, "malignant": 0}},
            "pathology: weights must sum to a positive number",
        ),
        (
            {**BASE, "pathology": {"benign": 1, "cyst": 1}},
            "pathology: unknown name(s) ['cyst']; allowed: benign",
        ),
        ({**BASE, "pathology": {"benign": -1, "malignant": 2}}, "pathology.benign: "),
        (
            {**BASE, "size_bins": {"s": {"weight": 1, "range": [0.3, 0.2]}}},
            "size_bins.s.range: empty or out-of-bounds range",
        ),
        (
            {
                **BASE,
                "size_bins": {
                    "s": {"weight": 1, "range": [0.1, 0.3]},
                    "m": {"weight": 1, "range": [0.25, 0.4]},
                },
            },
            "size_bins: bins 's' [0.1, 0.3] and 'm' [0.25, 0.4] overlap",
        ),
        (
            {**BASE, "renderer": {"backend": "gan"}},
            "renderer.backend: unknown renderer 'gan'; allowed: diffusion",
        ),
        ({**BASE, "version": "v1"}, "version: 'v1' is not semver"),
        (
            {**BASE, "prompt_template": "{pathology} {size}"},
            "prompt_template: unknown placeholder(s) ['size']",
        ),
        ({"count": 3}, "name: required key is missing"),
        ({**BASE, "size_bins": "prior"}, "size_bins: prior needs a calibrated shape_prior"),
        ({**BASE, "real": {"dataset": "d", "ratio": 62}}, 'real.ratio: write the ratio quoted, like "1:2"'),
        (
            {**BASE, "real": {"dataset": "d", "ratio": "1/2"}},
            "real.ratio: ratio '1/2' is not 'REAL:SYNTHETIC'",
        ),
        (
            {**BASE, "attributes": {"benign": {"echogenicity": {"hypo": 1}}}},
            "attributes.benign.echogenicity: unknown",
        ),
    ],
)
def test_bad_recipes_name_file_key_and_fix(tmp_path, data, expected):
    assert expected in error_of(tmp_path, data)


def test_not_a_mapping_and_bad_yaml(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(BadInput, match="a recipe is a YAML mapping"):
        load_recipe(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(BadInput, match="not valid YAML at line"):
        load_recipe(path)
    with pytest.raises(BadInput, match="no such recipe file"):
        load_recipe(tmp_path / "missing.yaml")


def test_set_overrides_any_field(tmp_path):
    path = write(tmp_path, BASE)
    recipe = load_recipe(
        path, ["count=7", "output.rows_per_shard=3", "pathology.benign=1", "pathology.malignant=0"]
    )
    assert recipe.count == 7
    assert recipe.output.rows_per_shard == 3
    assert recipe.pathology == {"benign": 1, "malignant": 0}
    assert load_recipe(path, ["real.dataset=d", "real.ratio=1:2"]).real.ratio == "1:2"
    with pytest.raises(BadInput, match="expected KEY.PATH=VALUE"):
        load_recipe(path, ["count"])
    with pytest.raises(BadInput, match="count: "):
        load_recipe(path, ["count=-1"])


def test_extends_merges_over_base(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**BASE, "output": {"dir": "a", "rows_per_shard": 5}}))
    child = tmp_path / "child.yaml"
    child.write_text(yaml.safe_dump({"extends": "base.yaml", "count": 4, "output": {"dir": "b"}}))
    recipe = load_recipe(child)
    assert (recipe.count, recipe.output.dir, recipe.output.rows_per_shard, recipe.name) == (4, "b", 5, "t")
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"extends": "child.yaml"}))
    with pytest.raises(BadInput, match="a cycle"):
        load_recipe(child)


def test_shipped_recipes_validate(repo):
    for path in sorted((repo / "recipes").glob("*.yaml")):
        load_recipe(path)
    load_recipe(repo / "params.yaml")


def test_yaml_reads_ratios_as_strings_like_yaml_1_2(tmp_path):
    """dvc writes `ratio: 1:4` back unquoted; YAML 1.1 would read it as the base-60 number 64."""
    path = tmp_path / "r.yaml"
    path.write_text("name: t\ncount: 3\nseed: 12\nreal: {dataset: d, ratio: 1:4}\nimage_size: 256\n")
    recipe = load_recipe(path)
    assert (recipe.real.ratio, recipe.seed, recipe.image_size) == ("1:4", 12, 256)


def test_set_into_an_omitted_mapping_starts_from_its_default(tmp_path):
    recipe = load_recipe(
        write(tmp_path, BASE), ["pathology.benign=0.75", "attributes.benign.boundary.clear=1"]
    )
    assert recipe.pathology == {"benign": 0.75, "malignant": 0.4}
    assert recipe.attributes["benign"].boundary == {"clear": 1, "unclear": 0.2}
    assert recipe.attributes["benign"].echogenicity == {"homogeneous": 0.7, "heterogeneous": 0.3}


def test_partial_attributes_keep_the_clinical_default_of_what_is_left_out(tmp_path):
    data = {**BASE, "attributes": {"malignant": {"echogenicity": {"homogeneous": 1, "heterogeneous": 0}}}}
    recipe = load_recipe(write(tmp_path, data))
    assert recipe.attributes["malignant"].echogenicity == {"homogeneous": 1, "heterogeneous": 0}
    assert recipe.attributes["malignant"].boundary == {"clear": 0.2, "unclear": 0.8}
    assert recipe.attributes["benign"].boundary == {"clear": 0.8, "unclear": 0.2}
