"""`busforge downstream`: metrics on hand-made cases, determinism, a two-arm smoke run, bad inputs."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from real_fixtures import make_folder_dataset

from busforge.dataset.real import import_real
from busforge.downstream.metrics import auc, dice_per_image
from busforge.downstream.stats import bootstrap_ci, paired_difference
from busforge.errors import BadInput


@pytest.fixture(scope="module")
def arms(tmp_path_factory) -> dict[str, Path]:
    """A small imported real dataset (grey, 64 px) and a 1:1 procedural mix of it."""
    from busforge.executors.local import run_render
    from busforge.recipe import recipe_from_dict

    root = tmp_path_factory.mktemp("downstream")
    make_folder_dataset(root / "src", {"benign": 16, "malignant": 12, "normal": 3}, seed=7)
    real = root / "real"
    import_real("folder", root / "src", real, workers=1)
    recipe = recipe_from_dict(
        {
            "name": "mix",
            "count": 4,
            "image_size": 64,
            "shape_prior": "busi",
            "pathology": "match_real",
            "real": {"dataset": str(real), "ratio": "1:1"},
        },
        "mix.yaml",
    )
    run_render(recipe, out_dir=root / "mix", quiet=True)
    return {"real": real, "mix": root / "mix", "root": root}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BUSFORGE_CACHE_DIR", str(tmp_path / "cache"))


def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    from busforge import cli

    monkeypatch.setattr(sys, "argv", ["busforge", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


# --- metrics against hand-made cases -------------------------------------------------------------


def test_dice_of_known_masks():
    import torch

    target = torch.zeros(4, 4, 4, dtype=torch.bool)
    pred = torch.zeros_like(target)
    target[0, :2, :2] = True  # 4 px
    pred[0, :2, :1] = True  # 2 px inside: 2*2 / (4+2)
    target[1, :2, :2] = True
    pred[1, 2:, 2:] = True  # disjoint
    target[2, :, :] = True
    pred[2, :, :] = True  # identical
    # image 3: both empty -> 1 by convention
    assert dice_per_image(pred, target).tolist() == pytest.approx([4 / 6, 0.0, 1.0, 1.0])


def test_auc_of_known_scores_matches_hand_count_and_torchmetrics():
    import torch
    from torchmetrics.classification import BinaryAUROC

    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.35, 0.9])
    # 9 positive-negative pairs: 0.35 ties one negative (counts 1/2), beats one, loses to 0.4.
    assert float(auc(labels, scores)) == pytest.approx(7.5 / 9)
    expected = BinaryAUROC()(torch.tensor(scores), torch.tensor(labels)).item()
    assert float(auc(labels, scores)) == pytest.approx(expected)
    assert float(auc([0, 1, 0, 1], [0.2, 0.9, 0.1, 0.8])) == 1.0
    assert float(auc([0, 1], [0.9, 0.1])) == 0.0
    assert np.isnan(auc([1, 1, 1], [0.1, 0.2, 0.3]))
    # Vectorised: one AUC per row.
    assert auc(labels, np.stack([scores, 1 - scores])) == pytest.approx([7.5 / 9, 1.5 / 9])


def test_bootstrap_ci_of_a_constant_is_the_constant():
    low, high = bootstrap_ci("seg", np.full((3, 25), 0.7), None, n_resamples=200)
    assert low == pytest.approx(0.7) and high == pytest.approx(0.7)
    labels = np.array([0, 1] * 10)
    perfect = np.tile(labels * 0.5 + 0.25, (2, 1))
    low, high = bootstrap_ci("cls", perfect, labels, n_resamples=200)
    assert (low, high) == (1.0, 1.0)


def test_paired_difference_sees_a_shift_and_no_shift():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.4, 0.8, size=(2, 40))
    same = paired_difference("seg", base, base, None, n_resamples=300)
    assert same["diff"] == 0 and same["p"] == 1.0
    better = paired_difference("seg", base + 0.1, base, None, n_resamples=300)
    assert better["diff"] == pytest.approx(0.1)
    assert better["ci_low"] == pytest.approx(0.1) and better["p"] < 0.01
    labels = np.array([0, 1] * 20)
    noisy = rng.random((2, 40))
    informative = noisy + labels
    result = paired_difference("cls", informative, noisy, labels, n_resamples=300)
    assert result["diff"] > 0.3 and result["ci_low"] > 0 and result["p"] < 0.05


# --- profiles and bad input ----------------------------------------------------------------------


def test_profiles_and_overrides():
    from busforge.downstream.profiles import resolve_profile

    profile = resolve_profile("cpu", ["seg_steps=7", "seg_channels=8,16", "amp=true", "lr=0.01"])
    assert (profile.seg_steps, profile.seg_channels, profile.amp, profile.lr) == (7, (8, 16), True, 0.01)
    assert profile.seg_size == 128 and profile.batch == 16
    with pytest.raises(BadInput, match="unknown profile 'gpu'"):
        resolve_profile("gpu", [])
    with pytest.raises(BadInput, match="--set nope=1"):
        resolve_profile("cpu", ["nope=1"])
    with pytest.raises(BadInput, match="not a valid int"):
        resolve_profile("cpu", ["seg_steps=many"])


def test_bad_inputs_exit_2_with_one_line(arms, tmp_path, monkeypatch, capsys):
    from PIL import Image

    out = tmp_path / "out"
    smoke = ["--profile", "smoke", "--out", str(out), "--quiet"]
    # An unknown profile.
    code, _, err = run_cli(["downstream", str(arms["real"]), "--profile", "gpu"], monkeypatch, capsys)
    assert code == 2 and "unknown profile 'gpu'" in err and len(err.strip().splitlines()) == 1
    # A test set without the named split.
    code, _, err = run_cli(
        ["downstream", str(arms["mix"]), "--test", f"{arms['real']}:holdout", *smoke], monkeypatch, capsys
    )
    assert code == 2 and "no 'holdout' split" in err and len(err.strip().splitlines()) == 1
    # A training dataset without validation/test splits (a plain synthetic render).
    from busforge.executors.local import run_render
    from busforge.recipe import recipe_from_dict

    plain = tmp_path / "plain"
    run_render(
        recipe_from_dict({"name": "p", "count": 3, "image_size": 64}, "p.yaml"), out_dir=plain, quiet=True
    )
    code, _, err = run_cli(["downstream", str(plain), *smoke], monkeypatch, capsys)
    assert code == 2 and "has no 'validation' split" in err and str(plain) in err
    # No labelled rows for classification: an unlabelled (STU-like) import.
    make_folder_dataset(tmp_path / "unl", {"benign": 10}, seed=1)
    (tmp_path / "unl/labels.csv").unlink()  # without labels every pathology is unknown
    import_real("folder", tmp_path / "unl", tmp_path / "unlabelled", workers=1)
    code, _, err = run_cli(
        ["downstream", str(tmp_path / "unlabelled"), "--task", "cls", *smoke], monkeypatch, capsys
    )
    assert code == 2 and "no rows usable for cls" in err
    # A test set with another channel count: a copy of the real data with its images in RGB
    # (importers store grey, so the copy is written here).
    rgb = tmp_path / "rgb_real"
    shutil.copytree(arms["real"], rgb)
    for path in (rgb / "data").glob("*.parquet"):
        table = pq.read_table(path)
        images = []
        for cell in table.column("image").to_pylist():
            buffer = io.BytesIO()
            Image.open(io.BytesIO(cell["bytes"])).convert("RGB").save(buffer, format="PNG")
            images.append({"bytes": buffer.getvalue(), "path": cell["path"]})
        index = table.schema.get_field_index("image")
        pq.write_table(
            table.set_column(
                index, table.schema.field(index), pa.array(images, table.schema.field(index).type)
            ),
            path,
        )
    manifest = json.loads((rgb / "busforge.json").read_text())
    manifest["fingerprint"] = "rgbcopy"
    (rgb / "busforge.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(
        ["downstream", str(arms["real"]), "--test", f"{rgb}:all", *smoke], monkeypatch, capsys
    )
    assert code == 2 and "channel" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing trained, nothing written


# --- runs ----------------------------------------------------------------------------------------


def test_two_smoke_runs_give_equal_metrics(arms, tmp_path):
    from busforge.downstream.profiles import resolve_profile
    from busforge.downstream.run import run_downstream

    profile = resolve_profile("smoke", ["bootstrap=50"])
    first, second = (
        run_downstream(
            [str(arms["mix"])],
            tasks=["seg", "cls"],
            tests=[],
            profile=profile,
            seeds=1,
            augment="ordinary",
            baseline=None,
            out=tmp_path / name,
            quiet=True,
        )
        for name in ("a", "b")
    )
    keys = [k for k, v in first.items() if isinstance(v, float) and k != "wall_s"]
    assert "seg.test.dice_mean" in keys and "cls.test.auc_mean" in keys
    for key in keys:
        assert first[key] == pytest.approx(second[key], abs=1e-6, nan_ok=True), key
    a = (tmp_path / "a/runs/mix@ordinary/seg-seed0/predictions.csv").read_text()
    assert a == (tmp_path / "b/runs/mix@ordinary/seg-seed0/predictions.csv").read_text()


def test_smoke_run_of_two_arms_end_to_end(arms, tmp_path, monkeypatch, capsys):
    out = tmp_path / "table"
    code, stdout, err = run_cli(
        [
            "downstream",
            str(arms["real"]),
            str(arms["mix"]),
            "--test",
            f"{arms['real']}:all",
            "--profile",
            "smoke",
            "--seeds",
            "2",
            "--set",
            "bootstrap=100",
            "--save-models",
            "--out",
            str(out),
            "--quiet",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["baseline"] == "real" and metrics["protocol"]["seeds"] == 2
    assert metrics["arms"]["real"]["ratio"] == "1:0" and metrics["arms"]["mix"]["ratio"] == "1:1"
    assert metrics["arms"]["real"]["synthetic_share"]["seg"] == 0.0
    assert 0.4 < metrics["arms"]["mix"]["synthetic_share"]["seg"] < 0.7
    # Classification leaves the normal rows out and says so.
    assert any("3 normal" in n or "normal" in n for n in metrics["arms"]["real"]["left_out"]["cls"])
    for prefix in ("real", "mix"):
        for key in ("seg.test.dice", "seg.real.dice", "cls.test.auc", "cls.real.auc"):
            value = metrics[f"{prefix}.{key}_mean"]
            assert value is None or 0.0 <= value <= 1.0
    cell = metrics["arms"]["mix"]["results"]["seg"]["test"]
    assert len(cell["per_seed"]) == 2 and cell["ci_low"] <= cell["ci_high"]
    assert set(cell["vs_baseline"]) == {"diff", "ci_low", "ci_high", "p"}
    assert "vs_baseline" not in metrics["arms"]["real"]["results"]["seg"]["test"]
    table = (out / "table.md").read_text()
    assert "| real | 1:0 |" in table and "| mix | 1:1 |" in table and "Δ" in table
    assert table.splitlines()[0] in stdout
    report = (out / "report.html").read_text()
    assert "data:image/png;base64," in report and "random initialisation" in report
    run = out / "runs/mix/seg-seed1"
    header = (run / "predictions.csv").read_text().splitlines()[0]
    assert header == "test_set,id,lesion_pixels,dice"
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "seg" and config["in_channels"] == 1
    from safetensors.torch import load_file

    from busforge.downstream.models import build_model
    from busforge.downstream.profiles import resolve_profile

    model = build_model("seg", resolve_profile("smoke", []), 1)
    model.load_state_dict(load_file(str(run / "model.safetensors")))  # the saved model loads back
    # The array cache was written once per split and size, keyed by the fingerprint.
    cached = sorted(p.name for p in (tmp_path / "cache/downstream").glob("*.npz"))
    assert len(cached) == 6 and all(name.endswith("-64-v1.npz") for name in cached)


def test_init_weights_must_fit_the_network(tmp_path):
    import torch
    from safetensors.torch import save_file

    from busforge.downstream.models import build_model, load_init
    from busforge.downstream.profiles import resolve_profile

    smoke = resolve_profile("smoke", [])
    source = build_model("seg", smoke, 1)
    path = tmp_path / "seg.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    target = build_model("seg", smoke, 1)
    load_init(target, path, "seg")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    wider = build_model("seg", resolve_profile("smoke", ["seg_channels=8,16,32"]), 1)
    with pytest.raises(BadInput, match="does not fit the seg network"):
        load_init(wider, path, "seg")
    with pytest.raises(BadInput, match="not a .safetensors file"):
        load_init(target, tmp_path / "model.pt", "seg")
