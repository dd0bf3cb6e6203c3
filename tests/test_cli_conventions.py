"""CLI conventions a Typer user expects: `--version`, and a bad `--set` value blamed on the --set argument."""

from __future__ import annotations

import os
import subprocess
import sys

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


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from busforge.cli import main

    monkeypatch.setattr(sys, "argv", ["busforge", *args])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["preview", "x", "--out", "x.png", "--per-stratum", "20"],
            "busforge preview: --per-stratum: at most 16",
        ),
        (
            ["preview", "x", "--out", "x.png", "--per-stratum", "0"],
            "busforge preview: --per-stratum: at least 1",
        ),
        (["render", "r.yaml", "--count", "-1"], "busforge render: --count: at least 0"),
        (["render", "r.yaml", "--gpus-per-worker", "-0.5"], "busforge render: --gpus-per-worker: at least 0"),
    ],
)
def test_range_errors_name_the_option(monkeypatch, capsys, tmp_path, args, line):
    monkeypatch.chdir(tmp_path)
    code, err = run_main(monkeypatch, capsys, *args)
    assert code == 2
    assert err.startswith(f"error: {line} (see busforge ")
    assert err.count("\n") == 1 and list(tmp_path.iterdir()) == []


def test_python_dash_m_busforge_cli_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "busforge.cli", "--version"], capture_output=True, text=True, env=os.environ
    )
    assert (result.returncode, result.stdout) == (0, f"busforge {__version__}\n")
    usage = subprocess.run(
        [sys.executable, "-m", "busforge.cli", "plan"], capture_output=True, text=True, env=os.environ
    )
    assert usage.returncode == 2 and "Missing argument 'recipe'" in usage.stderr
