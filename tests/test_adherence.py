"""Attribute adherence: the importer's measures read each lesion's labels back, in `busforge evaluate`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from busforge.dataset.attributes import Measures, Thresholds, measure
from busforge.evaluate.adherence import (
    DEFAULT_THRESHOLDS_FROM,
    DEFAULT_THRESHOLDS_SIDE,
    AttributeSamples,
    adherence,
    measuring_side,
    resolve_thresholds,
)
from busforge.evaluate.run import evaluate as run_evaluation
from busforge.executors.local import run_render
from busforge.recipe import load_recipe
from busforge.renderers.profile import load_profile

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = Thresholds(0.1, 0.2, 0.15)


def samples(rows: list[tuple[str, str, Measures]]) -> AttributeSamples:
    out = AttributeSamples()
    for echogenicity, boundary, measures in rows:
        out.labels.append({"echogenicity": echogenicity, "boundary": boundary})
        out.measures.append(measures)
    return out


def test_adherence_counts_rows_whose_measure_reads_their_label():
    generated = samples(
        [
            ("heterogeneous", "clear", Measures(0.15, 0.30, 0.20)),  # both right
            ("heterogeneous", "clear", Measures(0.05, 0.30, 0.10)),  # homogeneous; unclear by sharpness
            ("homogeneous", "unclear", Measures(0.05, 0.10, 0.30)),  # both right
            ("homogeneous", "", Measures(0.05, 0.30, 0.30)),  # no boundary label: not counted there
        ]
    )
    reference = samples([("homogeneous", "unclear", Measures(0.07, 0.12, 0.2))])
    result = adherence(generated, reference, THRESHOLDS, "test")
    assert result["echogenicity"]["adherence"] == 0.75 and result["echogenicity"]["n"] == 4
    assert result["boundary"]["adherence"] == pytest.approx(2 / 3) and result["boundary"]["n"] == 3
    assert result["boundary"]["confusion"]["clear"] == {"clear": 1, "unclear": 1}
    homogeneous = result["measures"]["echo_heterogeneity"]["homogeneous"]
    assert homogeneous["generated"]["n"] == 2 and homogeneous["generated"]["median"] == pytest.approx(0.05)
    assert homogeneous["reference"] == {"n": 1, "q1": 0.07, "median": 0.07, "q3": 0.07}
    assert result["measures"]["boundary_sharpness"]["clear"]["reference"] is None
    assert result["thresholds"] == THRESHOLDS.as_dict()


def test_thresholds_come_from_the_reference_else_busi():
    fitted = {"echo_heterogeneity": 0.2, "boundary_contrast": 0.3, "boundary_sharpness": 0.1}
    thresholds, source = resolve_thresholds({"real": {"kind": "busbra", "attribute_thresholds": fitted}})
    assert thresholds.as_dict() == fitted and "busbra" in source
    thresholds, source = resolve_thresholds(None)
    assert thresholds.as_dict() == load_profile("busi").attribute_thresholds
    assert source == DEFAULT_THRESHOLDS_FROM


def test_samples_measure_the_lesion_with_the_importer_code():
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    image = rng.integers(80, 160, (64, 64)).astype(np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 15:45] = True
    image[mask] = 10

    def png(array: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        return buffer.getvalue()

    taken = AttributeSamples()
    taken.add(png(image), png(mask.astype(np.uint8) * 255), {"echogenicity": "homogeneous", "boundary": None})
    taken.add(png(image), png(np.zeros((64, 64), np.uint8)), {"echogenicity": "homogeneous"})  # normal
    assert len(taken) == 1 and taken.labels == [{"echogenicity": "homogeneous", "boundary": ""}]
    assert taken.measures[0] == measure(image, mask)


def render(out: Path, profile: str | None) -> Path:
    extra = [] if profile is None else [f"renderer.profile={profile}"]
    recipe = load_recipe(REPO / "recipes" / "demo.yaml", ["count=24", "image_size=256", "seed=7", *extra])
    run_render(recipe, out_dir=out, quiet=True)
    return out


def test_profiled_small_render_reads_as_its_prompts(tmp_path):
    """A small render with the busi profile: measured echogenicity and boundary equal the labels
    for at least 90 % of its lesions (BUSI's thresholds), the standing check `evaluate` reports."""
    metrics, _ = run_evaluation(
        render(tmp_path / "busi", "busi"), None, split="test", extractor=None, cache=None, quiet=True
    )
    attributes = metrics["attributes"]
    assert attributes["thresholds_from"] == DEFAULT_THRESHOLDS_FROM
    assert attributes["echogenicity"]["n"] == attributes["boundary"]["n"] == 24
    for name in ("echogenicity", "boundary"):
        assert attributes[name]["adherence"] >= 0.9, (name, attributes[name])
    # The measured values sit on their labels' sides of the thresholds.
    echo = attributes["measures"]["echo_heterogeneity"]
    assert echo["homogeneous"]["generated"]["median"] < attributes["thresholds"]["echo_heterogeneity"]
    assert echo["heterogeneous"]["generated"]["median"] > attributes["thresholds"]["echo_heterogeneity"]


def png(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_rows_are_measured_at_the_thresholds_resolution():
    """A crisp lesion at 256 px, shown at 512 px, is the same lesion: measured as is its edge reads
    less sharp (1/px) and unclear; measured at the thresholds' 256 px it reads as at 256."""
    from PIL import Image
    from scipy import ndimage

    rows, cols = np.mgrid[0:256, 0:256]
    mask = ((rows - 120) / 40.0) ** 2 + ((cols - 128) / 60.0) ** 2 <= 1.0
    image = ndimage.gaussian_filter(np.where(mask, 40.0, 150.0), 1.0)
    image = np.clip(image + np.random.default_rng(1).normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    thresholds = load_profile("busi").attribute_thresholds
    at_256 = measure(image, mask)
    assert at_256.boundary_sharpness > 1.2 * thresholds["boundary_sharpness"]  # clear at its own size
    big_image = np.asarray(Image.fromarray(image).resize((512, 512), Image.Resampling.BILINEAR))
    big_mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((512, 512))) > 127
    as_is, at_side = AttributeSamples(), AttributeSamples(side=256)
    for taken in (as_is, at_side):
        taken.add(
            png(big_image), png(big_mask.astype(np.uint8) * 255), {"echogenicity": "", "boundary": "clear"}
        )
    assert as_is.measures[0].boundary_sharpness < thresholds["boundary_sharpness"]
    measured = at_side.measures[0]
    assert measured.boundary_sharpness == pytest.approx(at_256.boundary_sharpness, rel=0.06)
    assert measured.boundary_contrast == pytest.approx(at_256.boundary_contrast, rel=0.06)


def test_measuring_side_is_the_thresholds_own():
    fitted = {"real": {"attribute_thresholds": {"echo_heterogeneity": 0.1}}}
    assert measuring_side(fitted, [500, 480, 620]) == 500  # the reference's median shorter side
    assert measuring_side({"real": {}}, [500]) == DEFAULT_THRESHOLDS_SIDE == 256  # BUSI's shipped ones
    assert measuring_side(None, []) == 256


def test_adherence_does_not_depend_on_the_image_size(tmp_path):
    """The same recipe at 512² and at 256² reads alike: before, a 512² render was measured against
    BUSI's 256² thresholds as is and its edges read about 0.7x as sharp."""
    sharpness = {}
    for size in (256, 512):
        recipe = load_recipe(REPO / "recipes" / "demo.yaml", ["count=16", f"image_size={size}", "seed=3"])
        run_render(recipe, out_dir=tmp_path / str(size), quiet=True)
        metrics, _ = run_evaluation(
            tmp_path / str(size), None, split="test", extractor=None, cache=None, quiet=True
        )
        assert metrics["attributes"]["measured_at_side"] == 256
        sharpness[size] = metrics["attributes"]["measures"]["boundary_sharpness"]["clear"]["generated"][
            "median"
        ]
    assert sharpness[512] == pytest.approx(sharpness[256], rel=0.15)


def test_a_lesion_smaller_than_a_pixel_at_the_thresholds_side_is_still_measured():
    from busforge.dataset.attributes import at_side

    image = np.full((1024, 1024), 120, np.uint8)
    mask = np.zeros((1024, 1024), bool)
    mask[500:503, 700:703] = True  # 3 px: under one pixel at 256
    _, small = at_side(image, mask, 256)
    assert small.sum() == 1 and small[125, 175]
