"""Appearance profiles: measuring real images, fitting, loading, and the procedural renderer following them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from busforge.errors import BadInput
from busforge.renderers.procedural import ProceduralRenderer, render_bmode
from busforge.renderers.profile import (
    APPLY_VERSION,
    DEPTH_BANDS,
    QUANTILE_LEVELS,
    fit_profile,
    image_record,
    load_profile,
    parse_profile,
)

SIZE = 128
CLI = [sys.executable, "-c", "from busforge.cli import main; main()"]


def ellipse(size: int = SIZE, centre=(0.5, 0.4), axes=(0.2, 0.12)) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size] / size
    return ((cols - centre[0]) / axes[0]) ** 2 + ((rows - centre[1]) / axes[1]) ** 2 <= 1.0


def scan(seed: int, lesion_level: float, posterior_gain: float) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic scan: speckle that darkens with depth, a dark lesion, a brighter column below it."""
    rng = np.random.default_rng(seed)
    depth = np.linspace(1.0, 0.4, SIZE)[:, None]
    image = 150 * depth * rng.rayleigh(0.8, (SIZE, SIZE))
    mask = ellipse()
    image[mask] = lesion_level * rng.rayleigh(0.8, mask.sum())
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    image[rows[-1] + 1 :, cols[0] : cols[-1] + 1] *= posterior_gain
    return np.clip(image, 0, 255).astype(np.uint8), mask


def test_record_measures_what_it_documents():
    cyst, mask = scan(0, lesion_level=10, posterior_gain=1.6)
    solid, _ = scan(0, lesion_level=90, posterior_gain=0.5)
    a = image_record(cyst, mask, {"pathology": "benign"})
    b = image_record(solid, mask, {"pathology": "malignant"})
    assert len(a["quantiles"]) == len(QUANTILE_LEVELS) and np.all(np.diff(a["quantiles"]) >= 0)
    assert len(a["depth"]) == DEPTH_BANDS and a["depth"][0] > a["depth"][-1]  # darker with depth
    assert a["lesion_percentile"] < 0.05 < b["lesion_percentile"]  # the cyst is darker than tissue
    assert a["posterior"] > 0.2 and b["posterior"] < -0.2  # enhancement vs shadowing
    assert "lesion_percentile" not in image_record(cyst, None, {"pathology": "normal"})


def synthetic_profile(tmp_path: Path) -> Path:
    records = []
    for seed in range(6):
        image, mask = scan(seed, lesion_level=5 + 5 * seed, posterior_gain=1.5)
        records.append(image_record(image, mask, {"pathology": "benign", "echogenicity": "homogeneous"}))
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(fit_profile(records, "mine", "synthetic")))
    return path


def test_fit_refuses_too_few_images():
    image, mask = scan(0, 10, 1.5)
    with pytest.raises(BadInput, match="at least 5"):
        fit_profile([image_record(image, mask, {"pathology": "benign"})] * 3, "x", "tiny set")


def test_renderer_follows_the_profile_deterministically(tmp_path):
    profile = load_profile(str(synthetic_profile(tmp_path)))
    mask = ellipse()
    args = dict(pathology="benign", echogenicity="homogeneous", boundary="clear", seed=3)
    plain = render_bmode(mask, **args)
    first = render_bmode(mask, **args, profile=profile)
    assert np.array_equal(first, render_bmode(mask, **args, profile=profile))
    assert not np.array_equal(first, plain)
    assert not np.array_equal(first, render_bmode(mask, **{**args, "seed": 4}, profile=profile))
    # The image takes the grey levels of one of the profile's records.
    gaps = [
        np.median(np.abs(np.quantile(first, QUANTILE_LEVELS[1:-1]) - np.asarray(r["quantiles"][1:-1])))
        for r in profile.records
    ]
    plain_gap = np.median(
        np.abs(np.quantile(plain, QUANTILE_LEVELS[1:-1]) - np.asarray(profile.records[0]["quantiles"][1:-1]))
    )
    assert min(gaps) < 4.0 < plain_gap


def test_profile_identity_goes_into_the_renderer_identity(tmp_path):
    path = synthetic_profile(tmp_path)
    plain = ProceduralRenderer({}, image_size=SIZE).identity()
    assert "profile" not in plain and "profile_sha256" not in plain
    with_profile = ProceduralRenderer({"profile": str(path)}, image_size=SIZE).identity()
    assert len(with_profile["profile_sha256"]) == 64 and with_profile["profile"] == "mine"
    assert with_profile["profile_algorithm"] == APPLY_VERSION  # how it is applied: in the fingerprint
    path.write_text(path.read_text().replace('"synthetic"', '"edited"'))
    edited = ProceduralRenderer({"profile": str(path)}, image_size=SIZE).identity()
    assert edited["profile_sha256"] != with_profile["profile_sha256"]
    busi = ProceduralRenderer({"profile": "busi"}, image_size=SIZE).identity()
    assert busi["profile"] == "busi" and busi != ProceduralRenderer({"profile": "busbra"}, SIZE).identity()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "busforge-shape-prior", "version": 1}', "format: not a busforge appearance profile"),
        ('{"format": "busforge-appearance-profile", "version": 7, "records": []}', "version: 7"),
        ('{"format": "busforge-appearance-profile", "version": 1, "records": [{}]}', "records: missing"),
    ],
)
def test_bad_profile_files_are_bad_input(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(BadInput, match=message) as raised:
        ProceduralRenderer({"profile": str(path)}, image_size=SIZE)
    assert "renderer.profile" in str(raised.value) and str(path) in str(raised.value)


def test_malformed_record_names_its_index(tmp_path):
    data = json.loads(synthetic_profile(tmp_path).read_text())
    data["records"][2]["quantiles"] = data["records"][2]["quantiles"][::-1]
    with pytest.raises(BadInput, match=r"records\[2\]"):
        parse_profile(json.dumps(data), "edited.json")


def test_render_with_a_bad_profile_is_one_line_exit_2(tmp_path, repo):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    for spec, words in ((str(bad), (str(bad), "format")), (str(tmp_path / "absent.json"), ("not found",))):
        result = subprocess.run(
            [*CLI, "render", str(repo / "recipes" / "demo.yaml")]
            + ["--count", "4", "--out", str(tmp_path / "out"), "--set", f"renderer.profile={spec}"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "renderer.profile" in lines[0], result.stderr
        assert all(word in lines[0] for word in words)
        assert not (tmp_path / "out").exists()


def test_shipped_profiles_are_fits_of_the_shared_samples(shared_data, tmp_path):
    """The shipped busbra profile is what `busforge calibrate` fits on the shared BUS-BRA sample."""
    source = shared_data / "busbra_mini" / "BUSBRA"
    if not source.is_dir():
        pytest.skip(f"{source} not present")
    env_python = CLI
    imported, out = tmp_path / "busbra", tmp_path / "busbra.json"
    run = dict(capture_output=True, text=True, timeout=300, check=False)
    assert (
        subprocess.run(
            [*env_python, "import", "busbra", str(source), "--out", str(imported)], **run
        ).returncode
        == 0
    )
    result = subprocess.run(
        [*env_python, "calibrate", str(imported), "--out", str(out), "--name", "busbra"], **run
    )
    assert result.returncode == 0, result.stderr
    assert "appearance profile" in result.stdout
    fitted = json.loads(out.read_text())
    assert fitted["format"] == "busforge-shape-prior" and set(fitted["pathologies"]) == {
        "benign",
        "malignant",
    }
    shipped = load_profile("busbra")
    assert tuple(fitted["appearance"]["records"]) == shipped.records
    # The same file also loads as a profile (and as a shape prior, by its format).
    assert parse_profile(out.read_text(), str(out)).records == shipped.records


def adherence(profile, size: int = 192, count: int = 24) -> tuple[float, float]:
    """Share of renders whose measured echogenicity / boundary (BUSI thresholds) equal their labels,
    measured as `busforge evaluate` does: at the thresholds' side (256)."""
    from busforge.dataset.attributes import Thresholds, at_side, classify, measure

    thresholds = Thresholds(**load_profile("busi").attribute_thresholds)
    echo = boundary = 0
    for seed in range(count):
        labels = (("homogeneous", "heterogeneous")[seed % 2], ("clear", "unclear")[(seed // 2) % 2])
        mask = ellipse(size, centre=(0.5, 0.45), axes=(0.12 + 0.01 * (seed % 5), 0.08))
        image = render_bmode(
            mask,
            pathology=("benign", "malignant")[(seed // 4) % 2],
            echogenicity=labels[0],
            boundary=labels[1],
            seed=seed,
            profile=profile,
        )
        measured = classify(measure(*at_side(image, mask, 256)), thresholds)
        echo += measured[0] == labels[0]
        boundary += measured[1] == labels[1]
    return echo / count, boundary / count


def test_profiled_renders_read_as_their_labels():
    """With the busi profile the importer's own measures read the prompt's attributes back."""
    echo, boundary = adherence(load_profile("busi"))
    plain_echo, plain_boundary = adherence(None)
    assert echo >= 0.9 and boundary >= 0.9, (echo, boundary)
    assert echo + boundary > plain_echo + plain_boundary


def test_profiled_512_renders_are_corrected_at_the_thresholds_resolution():
    """BUSI's thresholds are fitted at 256²: a 512² render's lesion is measured (and corrected) at
    that side, as `busforge evaluate` measures it; measured as is, the loop missed what needed it."""
    import dataclasses

    from busforge.dataset.attributes import Thresholds, at_side, classify, measure

    busi = load_profile("busi")
    assert busi.attribute_side == 256
    thresholds = Thresholds(**busi.attribute_thresholds)

    def adherence_at_256(profile) -> tuple[float, float]:
        echo = boundary = 0
        for seed in range(24):
            labels = (("homogeneous", "heterogeneous")[seed % 2], ("clear", "unclear")[(seed // 2) % 2])
            mask = ellipse(512, centre=(0.5, 0.4), axes=(0.08 + 0.02 * (seed % 5), 0.06 + 0.01 * (seed % 3)))
            image = render_bmode(mask, pathology=("benign", "malignant")[(seed // 4) % 2],
                                 echogenicity=labels[0], boundary=labels[1], seed=seed, profile=profile)  # fmt: skip
            measured = classify(measure(*at_side(image, mask, 256)), thresholds)
            echo += measured[0] == labels[0]
            boundary += measured[1] == labels[1]
        return echo / 24, boundary / 24

    echo, boundary = adherence_at_256(busi)
    assert echo >= 0.95 and boundary >= 0.95, (echo, boundary)
    as_is = adherence_at_256(dataclasses.replace(busi, attribute_side=None))  # the loop measures at 512
    assert sum(as_is) < echo + boundary, as_is


def test_version_1_profiles_still_load_and_bad_record_attributes_are_named(tmp_path):
    data = json.loads(synthetic_profile(tmp_path).read_text())
    assert data["version"] == 2 and set(data["records"][0]["attributes"]) == {
        "echo_heterogeneity",
        "boundary_contrast",
        "boundary_sharpness",
    }
    # A version 1 profile (no measured attributes per record) renders with margin targets.
    records = [{k: v for k, v in r.items() if k != "attributes"} for r in data["records"]]
    thresholds = load_profile("busi").attribute_thresholds
    old = {**data, "version": 1, "records": records, "attribute_thresholds": thresholds}
    profile = parse_profile(json.dumps(old), "old.json")
    image = render_bmode(ellipse(), pathology="benign", echogenicity="heterogeneous", boundary="clear",
                         seed=1, profile=profile)  # fmt: skip
    assert image.shape == (SIZE, SIZE)
    for side in (0, 2.5, "256"):
        with pytest.raises(BadInput, match=r"bad\.json: attribute_side: got .*whole number of pixels"):
            parse_profile(json.dumps({**data, "attribute_side": side}), "bad.json")
    data["records"][1]["attributes"]["boundary_contrast"] = "high"
    with pytest.raises(BadInput, match=r"records\[1\]: .*attributes"):
        parse_profile(json.dumps(data), "bad.json")
    data["records"][1]["attributes"] = {"echo_heterogeneity": 0.1}
    with pytest.raises(BadInput, match=r"records\[1\]"):
        parse_profile(json.dumps(data), "bad.json")


def test_profile_and_prior_paths_resolve_from_the_working_directory(tmp_path, monkeypatch):
    """README: relative paths in a recipe are relative to the working directory, for
    `renderer.profile` as for `shape_prior` (a calibrate file serves as both)."""
    from importlib import resources

    from busforge.executors.local import run_render
    from busforge.recipe import load_recipe

    prior = json.loads(resources.files("busforge.shapes").joinpath("data", "busi.json").read_text())
    prior["appearance"] = json.loads(
        resources.files("busforge.renderers").joinpath("profiles", "busi.json").read_text()
    )
    (tmp_path / "recipes").mkdir()
    recipe = tmp_path / "recipes" / "mine.yaml"
    recipe.write_text(
        "name: mine\nversion: 1.0.0\ncount: 2\nimage_size: 64\nshape_prior: calibrated.json\n"
        "renderer: {backend: procedural, profile: calibrated.json}\noutput: {dir: out}\n"
    )
    # Beside the recipe only: neither resolves (from the working directory).
    (tmp_path / "recipes" / "calibrated.json").write_text(json.dumps(prior))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInput, match="calibrated.json"):
        run_render(load_recipe(recipe), out_dir=tmp_path / "out", quiet=True)
    # In the working directory: both resolve, from the same file.
    (tmp_path / "calibrated.json").write_text(json.dumps(prior))
    run_render(load_recipe(recipe), out_dir=tmp_path / "out", quiet=True)
    manifest = json.loads((tmp_path / "out" / "busforge.json").read_text())
    assert "profile_sha256" in json.dumps(manifest)


def test_enforcement_dynamic_range_equals_the_measures_own():
    from busforge.dataset.attributes import dynamic_range
    from busforge.renderers.attribute_look import _SubsampleRange

    rng = np.random.default_rng(5)
    for case in range(200):
        height, width = (int(n) for n in rng.integers(16, 300, 2))
        image = (rng.uniform(0, 255, (height, width)) ** rng.uniform(0.5, 2)).astype(np.float32)
        image = np.round(image) if case % 3 == 0 else image  # ties
        top, left = int(rng.integers(0, height)), int(rng.integers(0, width))
        box = (
            slice(top, int(rng.integers(top, height + 1))),
            slice(left, int(rng.integers(left, width + 1))),
        )
        changing = np.zeros(image.shape, bool)
        changing[box] = rng.uniform(size=changing[box].shape) < rng.uniform(0.2, 1.0)
        tracked = _SubsampleRange(image, changing)
        for _ in range(3):  # only the changing pixels change between calls, as in enforce_attributes
            assert tracked() == dynamic_range(image[::2, ::2]), case
            scale, shift = np.float32(rng.uniform(0.5, 1.5)), np.float32(rng.uniform(-30, 30))
            image[changing] = image[changing] * scale + shift


def test_only_measures_that_read_wrong_are_moved():
    """A lesion that already reads as its labels keeps its look; one on the wrong side of a threshold
    is moved beyond it."""
    from busforge.dataset.attributes import lesion_geometry, measure
    from busforge.renderers.attribute_look import MIN_MARGIN, _beyond, enforce_attributes

    thresholds = {"echo_heterogeneity": 0.1, "boundary_contrast": 0.2, "boundary_sharpness": 0.15}
    assert _beyond(0.3, 0.2, above=True) == 0.3 and _beyond(0.19, 0.2, above=False) == 0.2 / MIN_MARGIN
    assert _beyond(0.201, 0.2, above=True) == pytest.approx(0.2 * MIN_MARGIN)

    mask = ellipse(128, centre=(0.5, 0.5), axes=(0.2, 0.14))
    rng = np.random.default_rng(0)
    tissue = np.clip(rng.normal(150, 25, mask.shape), 0, 255).astype(np.float32)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, mask.shape), 3).astype(np.float32)
    texture /= texture.std()
    image = np.where(mask, 60 + 8 * texture, tissue)  # dark, crisp, faint texture: homogeneous, clear
    before = measure(image, mask)
    assert before.boundary_contrast > 1.5 * thresholds["boundary_contrast"]
    assert before.boundary_sharpness > 1.5 * thresholds["boundary_sharpness"]
    assert before.echo_heterogeneity < thresholds["echo_heterogeneity"] / 1.5
    geometry, weight = lesion_geometry(mask), mask.astype(np.float32)
    kept = enforce_attributes(image.copy(), weight, geometry, "homogeneous", "clear", thresholds)
    np.testing.assert_array_equal(kept, image)
    # Labelled heterogeneous, the same lesion reads wrong: only its texture is raised, past the threshold.
    moved = enforce_attributes(image.copy(), weight, geometry, "heterogeneous", "clear", thresholds)
    after = measure(moved, mask)
    assert after.echo_heterogeneity >= thresholds["echo_heterogeneity"]
    assert after.boundary_contrast > thresholds["boundary_contrast"]
    np.testing.assert_array_equal(moved[~ndimage.binary_dilation(mask, iterations=3)],
                                  image[~ndimage.binary_dilation(mask, iterations=3)])  # fmt: skip

    # A lesion the profile left brighter than its surroundings (BUSI's are darker) is darkened, whether
    # its unclear margin is unclear by sharpness (its record's contrast above the threshold) or by
    # contrast.
    from busforge.dataset.attributes import measure_parts

    bright = np.where(mask, 190 + 8 * texture, tissue)
    for record_contrast in (0.3, None):
        fixed = enforce_attributes(bright.copy(), weight, geometry, "homogeneous", "unclear", thresholds,
                                   record_contrast)  # fmt: skip
        before, after = measure_parts(bright, geometry), measure_parts(fixed, geometry)
        assert before.inner_level > before.outer_level
        assert after.inner_level < after.outer_level, record_contrast
