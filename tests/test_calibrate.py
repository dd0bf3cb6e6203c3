"""Calibrated shape priors: fidelity to the data, size bins, fitting, loading errors, CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import ks_2samp

from busforge.errors import BadInput
from busforge.shapes.calibrate import _case_masks, fit_prior, read_mask, simulate_sigma_table, table_model
from busforge.shapes.lesion import ShapeParams, draw_mask
from busforge.shapes.priors import load_prior
from busforge.shapes.stats import STAT_NAMES, shape_stats

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CALIB = SHARED / "busi_masks_calib"
SHIPPED = Path(__file__).resolve().parents[1] / "busforge" / "shapes" / "data" / "busi.json"
FIDELITY_DRAWS = 500
KS_LIMIT = 0.15


def _drawn_stats(prior, pathology: str) -> dict[str, np.ndarray]:
    bins = prior.size_bins(pathology)
    size_range = (bins["small"][0], bins["large"][1])
    rng = np.random.default_rng(1)
    rows = []
    for seed in range(FIDELITY_DRAWS):
        mask, _ = draw_mask(prior.sample(pathology, size_range, 512, rng), 512, seed, size_range)
        stats = shape_stats(mask)
        rows.append([getattr(stats, key) for key in STAT_NAMES])
    return dict(zip(STAT_NAMES, np.array(rows).T, strict=True))


@pytest.mark.parametrize("pathology", ["benign", "malignant"])
def test_shipped_prior_reproduces_the_calibration_statistics(pathology):
    prior = load_prior("busi")
    real = prior.stats(pathology)
    drawn = _drawn_stats(prior, pathology)
    for key in ("area", "aspect", "solidity", "circularity", "cx", "cy"):
        statistic = ks_2samp(drawn[key], real[key]).statistic
        assert statistic < KS_LIMIT, (pathology, key, statistic)


def test_shipped_prior_follows_the_data_not_the_textbook():
    # Most malignant BUSI lesions are wider than tall, and less convex than benign ones.
    prior = load_prior("busi")
    assert np.mean(prior.stats("malignant")["aspect"] > 1) > 0.7
    assert np.median(prior.stats("malignant")["solidity"]) < np.median(prior.stats("benign")["solidity"])


@pytest.mark.skipif(not CALIB.is_dir(), reason=f"shared calibration masks absent ({CALIB})")
def test_shipped_prior_is_the_fit_of_the_calibration_masks():
    fitted = fit_prior([CALIB], name="busi")
    shipped = json.loads(SHIPPED.read_text())
    assert fitted["pathologies"].keys() == shipped["pathologies"].keys()
    for label, entry in shipped["pathologies"].items():
        assert fitted["pathologies"][label]["count"] == entry["count"]
        for key in STAT_NAMES:
            np.testing.assert_allclose(
                fitted["pathologies"][label]["stats"][key], entry["stats"][key], atol=1e-5
            )
        for key, value in entry["corrections"].items():
            assert fitted["pathologies"][label]["corrections"][key] == pytest.approx(value, abs=1e-3)


def test_shipped_sigma_table_matches_the_current_shape_model():
    shipped = json.loads(SHIPPED.read_text())["sigma_table"]
    assert shipped["model"] == table_model()
    row = shipped["longest_side_px"].index(96)
    fresh = simulate_sigma_table(longest_sides=(96,))
    for key in ("solidity", "circularity", "aspect_gain", "size_gain"):
        np.testing.assert_allclose(fresh[key][0], shipped[key][row], atol=2e-3)


def test_size_bins_are_terciles_of_the_fitted_sizes():
    prior = load_prior("busi")
    for pathology in ("benign", "malignant"):
        bins = prior.size_bins(pathology)
        sizes = prior.stats(pathology)["size"]
        assert list(bins) == ["small", "medium", "large"]
        assert bins["small"][1] == bins["medium"][0] and bins["medium"][1] == bins["large"][0]
        for low, high in bins.values():
            share = np.mean((sizes >= low) & (sizes <= high))
            assert 0.28 < share < 0.40
    assert prior.size_bins("malignant")["medium"][0] > prior.size_bins("benign")["medium"][0]


def test_conditioned_draws_stay_in_their_bin():
    prior = load_prior("busi")
    rng = np.random.default_rng(2)
    for pathology in ("benign", "malignant"):
        for size_range in prior.size_bins(pathology).values():
            params = prior.sample(pathology, size_range, 512, rng)
            mask, _ = draw_mask(params, 512, 0, size_range)
            assert size_range[0] <= shape_stats(mask).size <= size_range[1]


def test_birads_prior_has_no_size_bins_and_identities_are_stable():
    with pytest.raises(BadInput, match="size_bins"):
        load_prior("birads").size_bins("benign")
    assert load_prior("birads").identity() == "birads-v1"
    busi = load_prior("busi").identity()
    assert busi.startswith("calibrated:") and busi == load_prior("busi").identity()


def test_unknown_pathology_is_bad_input():
    with pytest.raises(BadInput, match="pathology"):
        load_prior("busi").sample("normal", (0.1, 0.2), 512, np.random.default_rng(0))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "something-else", "version": 1}', "format"),
        ('{"format": "busforge-shape-prior", "version": 7}', "version"),
        ('{"format": "busforge-shape-prior", "version": 1, "stat_names": ["size"]}', "stat_names"),
    ],
)
def test_bad_prior_files_are_bad_input(tmp_path, content, message):
    path = tmp_path / "prior.json"
    path.write_text(content)
    with pytest.raises(BadInput, match=message) as error:
        load_prior(str(tmp_path / "prior.json"))
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_missing_prior_file_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="not found"):
        load_prior(str(tmp_path / "nope.json"))


def test_truncated_pathology_stats_are_bad_input(tmp_path):
    data = json.loads(SHIPPED.read_text())
    data["pathologies"]["benign"]["stats"]["aspect"].pop()
    path = tmp_path / "prior.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BadInput, match="pathologies.benign"):
        load_prior(str(path))


def test_masks_of_every_png_mode_read_the_same(tmp_path):
    lesion = np.zeros((40, 60), dtype=bool)
    lesion[10:30, 15:50] = True
    grey = lesion.astype(np.uint8) * 255
    images = {
        "bit": Image.fromarray(lesion),
        "l": Image.fromarray(grey),
        "rgb": Image.fromarray(np.stack([grey] * 3, axis=2)),
        "rgba": Image.fromarray(np.dstack([grey] * 3 + [np.full_like(grey, 255)])),
        "p": Image.fromarray(grey).convert("P"),
    }
    for mode, image in images.items():
        image.save(tmp_path / f"{mode}.png")
        assert np.array_equal(read_mask(tmp_path / f"{mode}.png"), lesion), mode


def test_busi_case_files_are_united(tmp_path):
    first = np.zeros((50, 50), dtype=np.uint8)
    first[5:15, 5:20] = 255
    second = np.zeros((50, 50), dtype=np.uint8)
    second[30:45, 25:45] = 255
    Image.fromarray(first).save(tmp_path / "benign (7)_mask.png")
    Image.fromarray(second).save(tmp_path / "benign (7)_mask_1.png")
    Image.fromarray(second).save(tmp_path / "benign (8)_mask.png")
    masks = _case_masks(sorted(tmp_path.glob("*.png")))
    assert sorted(int(m.sum()) for m in masks) == [300, 450]


def _synthetic_mask_folder(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for seed in range(count):
        params = ShapeParams(a=60.0 + 5 * seed, b=35.0, angle=0.0, cx=200.0, cy=150.0, sigma=3.0)
        mask, _ = draw_mask(params, 256, seed, (0.2, 0.9))
        Image.fromarray(mask).save(folder / f"case{seed}.png")


def _cli(*args: str) -> subprocess.CompletedProcess:
    code = "from busforge.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_calibrate_command_writes_a_loadable_prior(tmp_path):
    _synthetic_mask_folder(tmp_path / "lesions", 6)
    out = tmp_path / "mine.json"
    result = _cli("calibrate", str(tmp_path / "lesions"), "--out", str(out), "--pathology", "malignant")
    assert result.returncode == 0, result.stderr
    assert "malignant" in result.stdout and "solidity" in result.stdout
    prior = load_prior(str(tmp_path / "mine.json"))
    assert prior.identity().startswith("calibrated:")
    assert len(prior.stats("malignant")["size"]) == 6
    with pytest.raises(BadInput, match="no 'benign' masks"):
        prior.sample("benign", (0.1, 0.3), 512, np.random.default_rng(0))


def test_calibrate_command_rejects_missing_and_empty_folders(tmp_path):
    missing = _cli("calibrate", str(tmp_path / "absent"), "--out", str(tmp_path / "p.json"))
    assert missing.returncode == 2 and "not found" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "benign").mkdir()
    empty = _cli("calibrate", str(tmp_path / "benign"), "--out", str(tmp_path / "p.json"))
    assert empty.returncode == 2 and "non-empty masks" in empty.stderr
    unnamed = tmp_path / "lesions"
    unnamed.mkdir()
    unknown = _cli("calibrate", str(unnamed), "--out", str(tmp_path / "p.json"))
    assert unknown.returncode == 2 and "--pathology" in unknown.stderr


def test_calibrate_given_images_instead_of_masks_says_so(tmp_path):
    from real_fixtures import save, scan_image

    rng = np.random.default_rng(3)
    for i in range(6):
        image, _ = scan_image(rng)
        save(tmp_path / "benign" / f"scan{i}.png", image)
    result = _cli("calibrate", str(tmp_path / "benign"), "--out", str(tmp_path / "p.json"))
    assert result.returncode == 2, result.stderr
    assert "scan0.png: an image, not a lesion mask" in result.stderr and "`_mask` files" in result.stderr
    assert not (tmp_path / "p.json").exists()
