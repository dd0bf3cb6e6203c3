"""End to end: render -> load_dataset, determinism, resume after SIGKILL, idempotence, verify."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from busforge.dataset.manifest import read_manifest
from busforge.dataset.verify import verify_dataset
from busforge.errors import BadInput
from busforge.executors.local import run_render
from busforge.recipe import load_recipe

SMALL = ["count=24", "output.rows_per_shard=10", "image_size=128"]
BUSFORGE = [sys.executable, "-c", "from busforge.cli import main; main()"]


def shard_hashes(root: Path) -> dict[str, str]:
    manifest = read_manifest(root)
    return {s["file"]: s["sha256"] for split in manifest["splits"].values() for s in split["shards"]}


def test_render_demo_loads_with_features_and_exact_counts(repo, tmp_path):
    from datasets import ClassLabel, Image, load_dataset

    recipe = load_recipe(
        repo / "recipes/demo.yaml", SMALL + ["pathology.benign=0.75", "pathology.malignant=0.25"]
    )
    outcome = run_render(recipe, out_dir=tmp_path / "out", quiet=True)
    assert outcome.rows == 24 and outcome.rendered_shards == 3
    ds = load_dataset(str(tmp_path / "out"))["train"]
    assert isinstance(ds.features["image"], Image) and isinstance(ds.features["mask"], Image)
    assert ds.features["pathology"] == ClassLabel(names=["normal", "benign", "malignant"])
    assert ds.features["source"] == ClassLabel(names=["real", "synthetic"])
    assert ds.features["seed"].dtype == "int64" and ds.features["lesion_area"].dtype == "float32"
    assert set(ds.features["shape"]) == {"a", "b", "angle", "cx", "cy", "sigma"}
    names = ds.features["pathology"].names
    assert sorted(names[p] for p in ds["pathology"]) == ["benign"] * 18 + ["malignant"] * 6
    row = ds[0]
    assert row["image"].size == (128, 128) and row["mask"].size == (128, 128)
    assert 0 < row["lesion_area"] < 1
    assert row["prompt"].startswith("breast ultrasound image of")
    manifest = read_manifest(tmp_path / "out")
    assert manifest["counts"]["pathology"] == {"benign": 18, "malignant": 6}
    assert (tmp_path / "out/README.md").read_text().startswith("---\nlicense:")
    assert load_recipe(tmp_path / "out/recipe.yaml").count == 24
    assert not list(tmp_path.glob(".out.staging"))


def test_same_bytes_for_any_worker_count_and_run(repo, tmp_path):
    recipe = load_recipe(repo / "recipes/demo.yaml", SMALL)
    run_render(recipe, out_dir=tmp_path / "a", quiet=True, workers=1)
    run_render(recipe, out_dir=tmp_path / "b", quiet=True, workers=2)
    assert shard_hashes(tmp_path / "a") == shard_hashes(tmp_path / "b")
    assert (tmp_path / "a/busforge.json").read_bytes() == (tmp_path / "b/busforge.json").read_bytes()


def test_rerun_is_a_no_op_and_other_recipe_is_refused(repo, tmp_path):
    out = tmp_path / "out"
    recipe = load_recipe(repo / "recipes/demo.yaml", SMALL)
    run_render(recipe, out_dir=out, quiet=True)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert run_render(recipe, out_dir=out, quiet=True).up_to_date
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    other = load_recipe(repo / "recipes/demo.yaml", SMALL + ["seed=1"])
    with pytest.raises(BadInput, match="holds another dataset.*--force"):
        run_render(other, out_dir=out, quiet=True)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # untouched
    assert not (tmp_path / ".out.staging").exists()  # refused before rendering anything
    outcome = run_render(other, out_dir=out, quiet=True, force=True)
    assert read_manifest(out)["fingerprint"] == outcome.fingerprint


def test_sigkill_then_resume_gives_identical_shards(repo, tmp_path):
    args = [
        "render",
        str(repo / "recipes/demo.yaml"),
        "--quiet",
        "--set",
        "count=60",
        "--set",
        "output.rows_per_shard=6",
        "--set",
        "image_size=128",
    ]
    reference = tmp_path / "reference"
    subprocess.run([*BUSFORGE, *args, "--out", str(reference)], check=True, cwd=tmp_path)

    out = tmp_path / "out"
    markers = tmp_path / ".out.staging/.busforge/shards"
    proc = subprocess.Popen([*BUSFORGE, *args, "--out", str(out)], cwd=tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(markers.glob("*.json"))) < 3 and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(markers.glob("*.json")))
    assert not out.exists(), "a killed render must not leave a half-written output in place"
    assert 3 <= done_before < 10

    result = subprocess.run(
        [*BUSFORGE, *args, "--out", str(out)], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert f"{done_before} reused" in result.stdout
    assert shard_hashes(out) == shard_hashes(reference)
    assert verify_dataset(out) == []


def test_verify_catches_corruption(repo, tmp_path):
    out = tmp_path / "out"
    run_render(load_recipe(repo / "recipes/demo.yaml", SMALL), out_dir=out, quiet=True)
    assert verify_dataset(out) == []
    shard = out / "data/train-00001-of-00003.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = subprocess.run([*BUSFORGE, "verify", str(out)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "train-00001-of-00003.parquet: sha256 differs" in result.stderr

    manifest = json.loads((out / "busforge.json").read_text())
    manifest["counts"]["pathology"]["benign"] += 1
    (out / "busforge.json").write_text(json.dumps(manifest))
    assert any("counts of pathology" in p for p in verify_dataset(out))


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("name: x\ncount: 5\nrenderer: {backend: gan}\n")
    result = subprocess.run([*BUSFORGE, "render", str(recipe)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert (
        "bad.yaml: renderer.backend: unknown renderer 'gan'; allowed: diffusion, procedural" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("data*")) and not list(tmp_path.glob(".*staging"))


def test_plan_command_prints_strata_and_fingerprint(repo):
    result = subprocess.run(
        [*BUSFORGE, "plan", str(repo / "recipes/demo.yaml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "200 samples" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("fingerprint ")


def test_limit_renders_the_first_samples_of_the_same_plan(repo, tmp_path):
    from datasets import load_dataset

    recipe = load_recipe(repo / "recipes/demo.yaml", SMALL)
    full = run_render(recipe, out_dir=tmp_path / "full", quiet=True)
    quick = run_render(recipe, out_dir=tmp_path / "quick", quiet=True, limit=5)
    assert quick.rows == 5 and quick.fingerprint != full.fingerprint
    first = load_dataset(str(tmp_path / "full"))["train"].select(range(5))
    limited = load_dataset(str(tmp_path / "quick"))["train"]
    assert first["sample_id"] == limited["sample_id"]
    assert [
        r["image"]["bytes"]
        for r in first.cast_column("image", first.features["image"].__class__(decode=False))
    ] == [
        r["image"]["bytes"]
        for r in limited.cast_column("image", limited.features["image"].__class__(decode=False))
    ]
    assert verify_dataset(tmp_path / "quick") == []


def test_rows_of_a_shard_are_grouped_by_domain_in_plan_order(repo, tmp_path):
    import pyarrow.parquet as pq

    recipe = load_recipe(repo / "recipes/demo.yaml", SMALL + ["domain={busi: 1, udiat: 1}"])
    run_render(recipe, out_dir=tmp_path / "out", quiet=True)
    for shard in sorted((tmp_path / "out/data").glob("train-*.parquet")):
        table = pq.read_table(shard, columns=["domain", "sample_id"]).to_pylist()
        keys = [(r["domain"], r["sample_id"]) for r in table]
        assert keys == sorted(keys)
    domains = pq.read_table(tmp_path / "out/data", columns=["domain"]).column("domain").to_pylist()
    assert sorted(domains) == ["busi"] * 12 + ["udiat"] * 12


def test_empty_output_folder_is_taken_over_and_a_file_is_refused(repo, tmp_path):
    recipe = load_recipe(repo / "recipes/demo.yaml", SMALL)
    (tmp_path / "out").mkdir()
    run_render(recipe, out_dir=tmp_path / "out", quiet=True)
    assert verify_dataset(tmp_path / "out") == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInput, match="is a file"):
        run_render(recipe, out_dir=tmp_path / "file", quiet=True)


def test_a_run_killed_after_its_final_rename_is_tidied_by_the_next(repo, tmp_path):
    """A kill between the rename and the removal of the bookkeeping leaves a hidden folder only."""
    out = tmp_path / "out"
    recipe = load_recipe(repo / "recipes/demo.yaml", SMALL)
    run_render(recipe, out_dir=out, quiet=True)
    (out / ".busforge/shards").mkdir(parents=True)  # what such a kill leaves behind
    (tmp_path / ".out.old").mkdir()
    assert run_render(recipe, out_dir=out, quiet=True).up_to_date
    assert not (out / ".busforge").exists() and not (tmp_path / ".out.old").exists()
    assert verify_dataset(out) == []


def test_a_staging_folder_with_nothing_finished_is_restarted(repo, tmp_path):
    """Killed between creating the staging folder and recording its fingerprint: nothing to keep."""
    (tmp_path / ".out.staging/.busforge").mkdir(parents=True)
    run_render(load_recipe(repo / "recipes/demo.yaml", SMALL), out_dir=tmp_path / "out", quiet=True)
    assert verify_dataset(tmp_path / "out") == []


def test_limited_manifest_counts_its_strata_over_the_kept_samples(repo, tmp_path):
    out = tmp_path / "out"
    run_render(load_recipe(repo / "recipes/demo.yaml", SMALL), out_dir=out, quiet=True, limit=5)
    manifest = read_manifest(out)
    assert sum(s["count"] for s in manifest["strata"]) == 5
    assert sum(manifest["counts"]["pathology"].values()) == 5
