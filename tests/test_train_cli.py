"""`busforge train ...` on the command line: dry-run counts, one-line errors with exit code 2, real data."""

from __future__ import annotations

import sys

import pytest
from test_train_fixtures import fixture_dataset

from busforge.prompts import DEFAULT_PROMPT


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from busforge.cli import main

    monkeypatch.setattr(sys, "argv", ["busforge", *args])
    code = 0
    try:
        main()
    except SystemExit as err:
        code = err.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return fixture_dataset(tmp_path_factory.mktemp("cli") / "ds")


def test_lora_dry_run_prints_paper_counts(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "train", "lora", "--arch", "sd15", "--rank", "4", "--dry-run")
    assert code == 0
    assert "trainable 797,184 (0.80M)" in out
    assert "859,520,964 (859.52M)" in out


def test_controlnet_dry_run_counts_what_trains(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "train", "controlnet", "--dry-run", "--kl-alpha", "0")
    assert code == 0
    assert "trainable 361,279,120 (361.28M)" in out and "vae encoder" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["controlnet", "{missing}", "--out", "{out}"], "no such dataset folder"),
        (["controlnet", "{nomask}", "--out", "{out}"], "without a mask"),
        (
            ["lora", "{dataset}", "--out", "{out}", "--domain", "busi", "--controlnet", "c", "--rank", "0"],
            "--rank 0",
        ),
        (["lora", "{dataset}", "--out", "{out}", "--domain", "stu", "--controlnet", "c"], "domain 'stu'"),
        (["lora", "{dataset}", "--out", "{out}", "--controlnet", "c"], "--domain is missing"),
        (["controlnet", "{dataset}", "--out", "{out}", "--base", "{missing}"], "--base"),
        (
            [
                "controlnet",
                "{dataset}",
                "--out",
                "{out}",
                "--effective-batch",
                "6",
                "--batch-size",
                "4",
                "--base",
                "{missing}",
            ],
            "--effective-batch 6",
        ),
    ],
)
def test_bad_inputs_are_one_line_exit_2(args, message, dataset, tmp_path, monkeypatch, capsys):
    paths = {
        "missing": str(tmp_path / "missing"),
        "out": str(tmp_path / "out"),
        "dataset": str(dataset),
        "nomask": str(fixture_dataset(tmp_path / "nomask", with_masks=False)),
    }
    code, _, err = run_cli(monkeypatch, capsys, "train", *[a.format(**paths) for a in args])
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "out").exists()


def test_real_busi_images_become_training_examples(shared_data, tmp_path):
    from busforge.dataset.real import import_real
    from busforge.train.data import TrainingSet, read_examples

    out = tmp_path / "busi"
    import_real("busi", shared_data / "busi_mini", out, progress=False)
    examples = read_examples(out, "train", DEFAULT_PROMPT)
    normal = examples.skipped.get("without a lesion (normal or unlabelled)", 0)
    assert len(examples) > 0 and normal > 0  # BUSI's normal cases have no lesion to learn
    assert all(p.startswith("breast ultrasound image of ") and "{" not in p for p in examples.prompts)
    item = TrainingSet(examples, 64)[0]
    assert 0 < float(item["conditioning"].mean()) < 1  # a real lesion mask, resized
