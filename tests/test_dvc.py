"""`dvc repro` in a fresh git repository renders params.yaml into data/out with count metrics, then evaluates it."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# .gitignore too: what it ignores never reaches an experiment commit.
FILES = ["dvc.yaml", "params.yaml", ".dvc/config", ".dvcignore", ".gitignore"]


def run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    # A bound, so a stuck DVC fails the test instead of hanging the suite.
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"{cmd}: {result.stdout}\n{result.stderr}"
    return result


def dvc_env(tmp_path: Path) -> dict:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "BUSFORGE_EVAL_FEATURES": "tiny",  # the evaluate stage: no Inception in tests
        "BUSFORGE_CACHE_DIR": str(tmp_path / "cache"),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }


def copy_project(repo: Path, tmp_path: Path) -> Path:
    """The files a fresh clone has that DVC needs, in a new folder."""
    if shutil.which("dvc", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("dvc is not installed beside this Python")
    project = tmp_path / "project"
    shutil.copytree(repo / "recipes", project / "recipes")
    for name in FILES:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo / name, project / name)
    return project


def test_dvc_repro_renders_and_reports_counts(repo, tmp_path):
    project = copy_project(repo, tmp_path)
    # Keep the test quick: fewer, smaller images, through the same params file DVC tracks.
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("count: 200", "count: 12") + "image_size: 128\n")
    env = dvc_env(tmp_path)
    run(["git", "init", "-q"], project, env)
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "init"], project, env)

    run(["dvc", "repro"], project, env)
    assert (project / "data/out/busforge.json").is_file()
    metrics = json.loads((project / "metrics/render.json").read_text())
    assert metrics == {"rows": {"train": 12}, "shards": 1}
    lock = (project / "dvc.lock").read_text()
    assert "render" in lock and "evaluate" in lock
    # No real data in params.yaml: the evaluate stage reports balance and masks, no image metrics.
    evaluation = json.loads((project / "metrics/evaluate/metrics.json").read_text())
    assert evaluation["image"] is None and evaluation["protocol"]["reference"] is None
    assert evaluation["balance"]["max_abs_diff"] == 0
    assert "No reference dataset was given" in (project / "metrics/evaluate/report.html").read_text()
    # No real data: the downstream stage records that it was skipped and why.
    downstream = json.loads((project / "metrics/downstream/metrics.json").read_text())
    assert downstream["skipped"] is True and "no validation or test split" in downstream["reason"]

    again = run(["dvc", "repro"], project, env)
    assert "Stage 'render' didn't change, skipping" in again.stdout
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project, env).stdout)[""]["data"]
    # Only headline numbers are DVC metrics; per-stratum counts and the balance table sit beside them.
    summary = shown["metrics/evaluate/summary.json"]["data"]
    assert shown == {
        "metrics/render.json": {"data": {"rows": {"train": 12}, "shards": 1}},
        "metrics/evaluate/summary.json": {"data": {"balance_max_abs_diff": 0, **summary}},
        "metrics/downstream.json": {"data": {"skipped": True}},
    }
    assert set(summary) == {"balance_max_abs_diff", "echogenicity_adherence", "boundary_adherence"}
    assert all(0 <= summary[f"{a}_adherence"] <= 1 for a in ("echogenicity", "boundary"))
    details = json.loads((project / "metrics/render.details.json").read_text())
    assert sum(details["synthetic"]["pathology"].values()) == 12
    # `dvc plots show` draws the declared mask-statistic CDFs (generated only: no reference here).
    plots = json.loads(run(["dvc", "plots", "show", "--json"], project, env).stdout)
    assert "errors" not in plots, plots
    assert {"lesion area (CDF)", "width / height (CDF)", "solidity (CDF)", "circularity (CDF)"} <= set(
        plots["data"]
    )

    # An experiment changes a recipe key through DVC's own parameter mechanism.
    run(
        ["dvc", "exp", "run", "--set-param", "count=5", "--set-param", "+pathology.malignant=0"], project, env
    )
    metrics = json.loads((project / "metrics/render.details.json").read_text())
    assert metrics["rows"] == {"train": 5}
    assert metrics["synthetic"]["pathology"] == {"benign": 5}


def test_dvc_ratio_sweep_through_params(repo, tmp_path):
    """The README's Table 3 sweep: queued experiments switch params.yaml to the BUSI 1:1 recipe and set the
    ratio; each experiment commit keeps its metrics, so `dvc exp show` and `dvc metrics diff` compare them."""
    from real_fixtures import make_folder_dataset

    from busforge.dataset.real import import_real

    project = copy_project(repo, tmp_path)
    params = project / "params.yaml"
    params.write_text(params.read_text() + "image_size: 64\n")
    make_folder_dataset(tmp_path / "src", {"benign": 8, "malignant": 4}, seed=3)
    import_real("folder", tmp_path / "src", project / "data/real/busi", workers=1)
    env = dvc_env(tmp_path)
    run(["git", "init", "-q"], project, env)
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "init"], project, env)

    # The README's sweep, each experiment run at once in a temporary copy (--temp: what a queued run
    # does, hence --copy-paths) rather than through `--queue` + `--run-all`: DVC's file-system celery
    # broker can lose a queued task on a loaded machine (a worker read a half-written message,
    # JSONDecodeError, and exited with the second task pending), and `--run-all` then waits forever.
    for ratio in ("1:1", "1:2"):
        run(
            ["dvc", "exp", "run", "--temp", "--copy-paths", "data/real/busi", "--name", f"r{ratio[-1]}"]
            + ["--set-param", "extends=recipes/busi_1to1.yaml", "--set-param", f"+real.ratio={ratio}"]
            + ["--set-param", "downstream.profile=smoke"],
            project,
            env,
        )
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project, env).stdout)
    experiments = {
        rev["name"]: rev["data"]["metrics"] for exp in shown[1]["experiments"] for rev in exp["revs"]
    }
    real_splits = json.loads((project / "data/real/busi/busforge.json").read_text())["splits"]
    real_train = real_splits["train"]["rows"]
    for name, factor in (("r1", 2), ("r2", 3)):
        render = experiments[name]["metrics/render.json"]["data"]
        assert render["rows"]["train"] == factor * real_train
        summary = experiments[name]["metrics/evaluate/summary.json"]["data"]
        assert math.isfinite(summary["fid"]) and math.isfinite(summary["floor_fid"])
        assert summary["n_generated"] == (factor - 1) * real_train
        assert 0 <= summary["max_shape_ks"] <= 1
        assert 0 <= summary["boundary_adherence"] <= 1
    diff = json.loads(run(["dvc", "metrics", "diff", "r1", "r2", "--json"], project, env).stdout)
    assert diff["metrics/render.json"]["rows.train"] == {
        "old": 2 * real_train,
        "new": 3 * real_train,
        "diff": real_train,
    }

    run(["dvc", "exp", "apply", "r2"], project, env)
    metrics = json.loads((project / "metrics/render.details.json").read_text())
    assert sum(metrics["synthetic"]["pathology"].values()) == 2 * real_train
    assert {s: n for s, n in metrics["rows"].items() if s != "train"} == {
        s: info["rows"] for s, info in real_splits.items() if s != "train"
    }
    # The evaluate stage compared the synthetic rows with the real data the recipe mixed in.
    evaluation = json.loads((project / "metrics/evaluate/metrics.json").read_text())
    assert evaluation["protocol"]["reference"] == "data/real/busi"
    overall = evaluation["image"]["overall"]
    assert overall["n_reference"] == real_splits["test"]["rows"]
    assert "reference" in (project / "metrics/evaluate/plots/shape_area.csv").read_text().splitlines()[0]
    # The downstream stage trained and tested on the mix (smoke profile): Table 3's row in `dvc exp show`,
    # headline numbers only; the protocol and per-arm record sit beside them.
    for name in ("r1", "r2"):
        headline = experiments[name]["metrics/downstream.json"]["data"]
        assert 0.0 <= headline["seg.test.dice_mean"] <= 1.0
        assert "protocol" not in headline and "arms" not in headline
    downstream = json.loads((project / "metrics/downstream/metrics.json").read_text())
    assert downstream["protocol"]["profile"]["name"] == "smoke"
    assert downstream["arms"]["out"]["ratio"] == "1:2"
