"""Never corrupt, never delete what is not ours: one run per output, --force only over datasets,
damaged staging recovered by a plain rerun, no orphaned workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import REPO

from busforge.dataset.lock import hold_output, lock_path
from busforge.dataset.manifest import read_manifest
from busforge.dataset.verify import verify_dataset
from busforge.errors import BadInput
from busforge.executors import local
from busforge.executors.local import run_render
from busforge.recipe import load_recipe

BUSFORGE = [sys.executable, "-c", "from busforge.cli import main; main()"]
TINY = ["count=30", "output.rows_per_shard=10", "image_size=64"]


def shard_hashes(root: Path) -> dict[str, str]:
    manifest = read_manifest(root)
    return {s["file"]: s["sha256"] for split in manifest["splits"].values() for s in split["shards"]}


def test_a_second_run_on_a_locked_output_is_refused_at_once_naming_the_first(repo, tmp_path):
    out = tmp_path / "out"
    with hold_output(out, "render"):
        started = time.monotonic()
        done = subprocess.run(
            [
                *BUSFORGE,
                "render",
                str(repo / "recipes/demo.yaml"),
                "--out",
                str(out),
                "--quiet",
                *(a for s in TINY for a in ("--set", s)),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert time.monotonic() - started < 60
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1
    assert f"another busforge run is writing here (pid {os.getpid()} on " in done.stderr
    assert not out.exists() and not (tmp_path / ".out.staging").exists()
    assert not lock_path(out).exists()  # released and removed


def test_import_into_a_locked_output_is_refused(tmp_path):
    from real_fixtures import make_folder_dataset

    from busforge.dataset.real import import_real

    make_folder_dataset(tmp_path / "src", {"benign": 2, "malignant": 2})
    with (
        hold_output(tmp_path / "real"),
        pytest.raises(BadInput, match="another busforge run is writing here"),
    ):
        import_real("folder", tmp_path / "src", tmp_path / "real", workers=1)
    assert not (tmp_path / "real").exists() and not (tmp_path / ".real.spool").exists()


def test_a_stale_lock_of_a_dead_run_is_taken_over(repo, tmp_path):
    out = tmp_path / "out"
    lock_path(out).write_text(json.dumps({"pid": 999999, "started": 0}))  # left by a killed run
    run_render(load_recipe(repo / "recipes/demo.yaml", ["count=4", "image_size=64"]), out_dir=out, quiet=True)
    assert verify_dataset(out) == [] and not lock_path(out).exists()


def test_two_renders_started_together_never_publish_a_wrong_dataset(repo, tmp_path):
    out = tmp_path / "out"
    common = ["render", str(repo / "recipes/demo.yaml"), "--out", str(out), "--quiet", "--workers", "1"]
    runs = []
    for seed in (1, 2):
        sets = [*TINY, "count=40", f"seed={seed}"]
        runs.append(
            subprocess.Popen(
                [*BUSFORGE, *common, *(a for s in sets for a in ("--set", s))],
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        time.sleep(0.3)
    results = [(p.wait(timeout=300), p.stderr.read()) for p in runs]
    assert sorted(code for code, _ in results) == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert loser.count("\n") == 1
    assert "another busforge run is writing here (pid" in loser or "holds another dataset" in loser
    assert verify_dataset(out) == []
    # The published dataset is wholly the winner's: the same bytes as that recipe rendered alone.
    seed = load_recipe(out / "recipe.yaml").seed
    alone = tmp_path / "alone"
    run_render(
        load_recipe(repo / "recipes/demo.yaml", [*TINY, "count=40", f"seed={seed}"]),
        out_dir=alone,
        quiet=True,
    )
    assert shard_hashes(out) == shard_hashes(alone)


def test_force_never_replaces_a_folder_that_is_not_a_busforge_dataset(repo, tmp_path, monkeypatch):
    thesis = tmp_path / "thesis"
    (thesis / "figures").mkdir(parents=True)
    (thesis / "thesis.tex").write_text("\\documentclass{article}")
    (thesis / "figures" / "a.png").write_bytes(b"png")
    before = sorted(
        (p.relative_to(thesis), p.read_bytes() if p.is_file() else None) for p in thesis.rglob("*")
    )
    recipe = load_recipe(repo / "recipes/demo.yaml", TINY)
    with pytest.raises(BadInput, match="thesis: exists and is not a busforge dataset; --force replaces only"):
        run_render(recipe, out_dir=thesis, force=True, quiet=True)
    after = sorted(
        (p.relative_to(thesis), p.read_bytes() if p.is_file() else None) for p in thesis.rglob("*")
    )
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]


def test_force_over_a_dataset_works_and_a_users_dot_old_folder_survives(repo, tmp_path):
    out = tmp_path / "out"
    run_render(load_recipe(repo / "recipes/demo.yaml", TINY), out_dir=out, quiet=True)
    mine = tmp_path / ".out.old"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(BadInput, match="a folder busforge did not make is in the way"):
        run_render(
            load_recipe(repo / "recipes/demo.yaml", [*TINY, "seed=5"]), out_dir=out, force=True, quiet=True
        )
    assert (mine / "notes.txt").read_text() == "mine"
    assert verify_dataset(out) == []  # the old dataset is still in place
    (mine / "notes.txt").unlink()
    mine.rmdir()
    run_render(
        load_recipe(repo / "recipes/demo.yaml", [*TINY, "seed=5"]), out_dir=out, force=True, quiet=True
    )
    assert verify_dataset(out) == [] and read_manifest(out)["fingerprint"]


def _interrupted_staging(repo, tmp_path, monkeypatch, recipe) -> Path:
    """A staging folder whose run stopped after two finished shards."""
    real_job_rows = local.job_rows
    calls = {"n": 0}

    def failing(job, source, mix):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_job_rows(job, source, mix)

    monkeypatch.setattr(local, "job_rows", failing)
    with pytest.raises(KeyboardInterrupt):
        run_render(recipe, out_dir=tmp_path / "out", quiet=True)
    monkeypatch.setattr(local, "job_rows", real_job_rows)
    staging = tmp_path / ".out.staging"
    assert len(list((staging / ".busforge" / "shards").glob("*.json"))) == 2
    return staging


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("reference") / "out"
    run_render(load_recipe(REPO / "recipes/demo.yaml", TINY), out_dir=out, quiet=True)
    return shard_hashes(out)


@pytest.mark.parametrize(
    "damage", ["garbage marker", "empty marker", "incomplete marker", "garbage run.json"]
)
def test_damaged_staging_is_recovered_by_a_plain_rerun(repo, tmp_path, monkeypatch, reference, damage):
    recipe = load_recipe(repo / "recipes/demo.yaml", TINY)
    staging = _interrupted_staging(repo, tmp_path, monkeypatch, recipe)
    marker = staging / ".busforge" / "shards" / "train-00000.json"
    run_json = staging / ".busforge" / "run.json"
    if damage == "garbage marker":
        marker.write_bytes(b"\x00{not json")
    elif damage == "empty marker":
        marker.write_text("")
    elif damage == "incomplete marker":
        marker.write_text(json.dumps({"split": "train", "index": 0}))
    else:
        run_json.write_text("{{{")
    run_render(recipe, out_dir=tmp_path / "out", quiet=True)
    assert verify_dataset(tmp_path / "out") == []
    assert shard_hashes(tmp_path / "out") == reference


def test_force_always_starts_afresh_over_a_damaged_staging(repo, tmp_path, monkeypatch):
    recipe = load_recipe(repo / "recipes/demo.yaml", TINY)
    staging = _interrupted_staging(repo, tmp_path, monkeypatch, recipe)
    (staging / ".busforge" / "run.json").write_text("garbage")
    (staging / ".busforge" / "shards" / "train-00001.json").write_text("garbage")
    run_render(recipe, out_dir=tmp_path / "out", force=True, quiet=True)
    assert verify_dataset(tmp_path / "out") == []


def test_workers_exit_when_the_parent_is_killed(repo, tmp_path):
    parent = subprocess.Popen(
        [
            *BUSFORGE,
            "render",
            str(repo / "recipes/demo.yaml"),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
            "--workers",
            "2",
            "--set",
            "count=2000",
            "--set",
            "image_size=64",
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        children: list[psutil.Process] = []
        while time.monotonic() < deadline and len(children) < 2:
            time.sleep(0.2)
            children = psutil.Process(parent.pid).children(recursive=True)
        assert len(children) >= 2, "the pool never started"
        time.sleep(1.0)  # let the workers settle into rendering
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == [], f"orphaned workers still alive: {[p.pid for p in alive]}"
    finally:
        if parent.poll() is None:
            parent.kill()
    # The dead run's lock went with it: the next run takes the output over.
    with hold_output(tmp_path / "out"):
        pass


def test_verify_recomputes_the_fingerprint(repo, tmp_path):
    out = tmp_path / "out"
    run_render(load_recipe(repo / "recipes/demo.yaml", TINY[:1] + ["image_size=64"]), out_dir=out, quiet=True)
    notes: list[str] = []
    assert verify_dataset(out, notes) == [] and notes == [
        "fingerprint recomputed from recipe.yaml and the renderer"
    ]
    manifest = read_manifest(out)
    manifest["fingerprint"] = "0123456789abcdef"
    (out / "busforge.json").write_text(json.dumps(manifest))
    problems = verify_dataset(out)
    assert any(p.startswith("fingerprint: manifest says 0123456789abcdef, recipe.yaml") for p in problems)


def test_verify_across_a_force_swap_reports_no_false_mismatch(repo, tmp_path, monkeypatch):
    from busforge.dataset import verify as verify_module

    out, other = tmp_path / "out", tmp_path / "other"
    run_render(
        load_recipe(repo / "recipes/demo.yaml", ["count=10", "image_size=64"]), out_dir=out, quiet=True
    )
    run_render(
        load_recipe(repo / "recipes/demo.yaml", ["count=10", "image_size=64", "seed=9"]),
        out_dir=other,
        quiet=True,
    )
    real_hash = verify_module.sha256_file
    swapped = []

    def hash_during_a_swap(path):
        if not swapped:  # what finalize does: the old folder aside, the new one into place
            swapped.append(True)
            os.replace(out, tmp_path / ".out.old")
            os.replace(other, out)
        return real_hash(path)

    monkeypatch.setattr(verify_module, "sha256_file", hash_during_a_swap)
    assert verify_dataset(out) == [] and swapped


def test_ctrl_c_says_how_to_resume_and_exits_130(repo, tmp_path):
    run = subprocess.Popen(
        [
            *BUSFORGE,
            "render",
            str(repo / "recipes/demo.yaml"),
            "--out",
            str(tmp_path / "out"),
            "--workers",
            "2",
            "--set",
            "count=20000",
            "--set",
            "image_size=64",
        ],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # As from a terminal: a test run started as a background job (`cmd &` without job control)
        # passes SIGINT down ignored, and a process that starts so ignores Ctrl-C, as POSIX wants.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(psutil.Process(run.pid).children()) < 2:
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(run.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert f"render: writing {(tmp_path / 'out').resolve()}" in err  # the resolved output, at start
    assert err.rstrip().endswith("interrupted; finished shards are kept, rerun the same command to resume")
    assert "Traceback" not in err
