"""`dvc repro` in a fresh git repository renders params.yaml into data/out with count metrics."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FILES = ["dvc.yaml", "params.yaml", "recipes/demo.yaml", ".dvc/config", ".dvcignore"]


def run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{cmd}: {result.stdout}\n{result.stderr}"
    return result


def test_dvc_repro_renders_and_reports_counts(repo, tmp_path):
    if shutil.which("dvc", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("dvc is not installed beside this Python")
    project = tmp_path / "project"
    for name in FILES:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo / name, project / name)
    # Keep the test quick: fewer, smaller images, through the same params file DVC tracks.
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("count: 200", "count: 12") + "image_size: 128\n")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    run(["git", "init", "-q"], project, env)
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "init"], project, env)

    run(["dvc", "repro"], project, env)
    assert (project / "data/out/busforge.json").is_file()
    metrics = json.loads((project / "metrics/render.json").read_text())
    assert metrics["rows"] == {"train": 12}
    assert sum(metrics["synthetic"]["pathology"].values()) == 12
    assert "render" in (project / "dvc.lock").read_text()

    again = run(["dvc", "repro"], project, env)
    assert "didn't change" in again.stdout or "up to date" in again.stdout.lower()
    shown = run(["dvc", "metrics", "show", "--json"], project, env)
    assert '"train": 12' in shown.stdout.replace(" ", "").replace('"train":12', '"train": 12')
