"""Echogenicity and boundary measures on constructed images with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from busforge.dataset.attributes import Measures, Thresholds, choose_thresholds, classify, measure
from busforge.dataset.real_inspect import fit_ellipse, relative_size
from busforge.shapes.stats import shape_stats

SIZE = 160


def disc(radius: float = 35, cx: float = 80, cy: float = 80) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2


def image_with(mask: np.ndarray, inside: float = 60, outside: float = 160, blur: float = 0.0, texture=None):
    image = np.where(mask, inside, outside).astype(np.float64)
    if texture is not None:
        image = image + texture * mask
    if blur:
        image = ndimage.gaussian_filter(image, blur)
    image[:5], image[-5:] = 0, 255  # >1% of pixels at each end: the dynamic range is 0..255
    return np.clip(image, 0, 255).astype(np.uint8)


def test_contrast_is_the_step_height_in_dynamic_range_units():
    m = measure(image_with(disc(), 60, 160), disc())
    assert m.boundary_contrast == pytest.approx(100 / 255, rel=0.08)
    assert m.echo_heterogeneity < 0.01  # a uniform lesion is homogeneous
    low = measure(image_with(disc(), 120, 140), disc())
    assert low.boundary_contrast < m.boundary_contrast / 4


def test_blurred_margin_is_less_sharp():
    sharp = measure(image_with(disc(), blur=0.0), disc())
    blurred = measure(image_with(disc(), blur=6.0), disc())
    assert sharp.boundary_sharpness > 2 * blurred.boundary_sharpness
    assert blurred.boundary_contrast < sharp.boundary_contrast


def test_mottled_interior_is_heterogeneous():
    rng = np.random.default_rng(0)
    blobs = ndimage.gaussian_filter(rng.normal(size=(SIZE, SIZE)), 4)
    blobs = 90 * blobs / blobs.std()
    speckle = rng.normal(0, 25, size=(SIZE, SIZE))  # fine speckle alone must not count as texture
    homogeneous = measure(image_with(disc(), texture=speckle), disc())
    heterogeneous = measure(image_with(disc(), texture=blobs), disc())
    assert heterogeneous.echo_heterogeneity > 3 * homogeneous.echo_heterogeneity


def test_classify_uses_thresholds():
    t = Thresholds(echo_heterogeneity=0.1, boundary_contrast=0.2, boundary_sharpness=0.3)
    assert classify(Measures(0.05, 0.5, 0.5), t) == ("homogeneous", "clear")
    assert classify(Measures(0.15, 0.5, 0.1), t) == ("heterogeneous", "unclear")
    assert classify(Measures(0.15, 0.1, 0.9), t) == ("heterogeneous", "unclear")


def test_thresholds_split_a_dataset_in_half():
    rng = np.random.default_rng(1)
    measures = [Measures(*rng.uniform(0, 1, 3)) for _ in range(200)]
    t = choose_thresholds(measures)
    labels = [classify(m, t) for m in measures]
    assert sum(e == "heterogeneous" for e, _ in labels) == 100
    assert abs(sum(b == "clear" for _, b in labels) - 100) <= 6
    assert measure(np.zeros((8, 8), np.uint8), np.zeros((8, 8), bool)) is None


def test_fitted_ellipse_matches_the_drawn_one():
    yy, xx = np.mgrid[:SIZE, :SIZE]
    theta = np.radians(30)  # counter-clockwise on screen: the major axis rises to the right
    u = (xx - 70) * np.cos(theta) - (yy - 90) * np.sin(theta)
    v = (xx - 70) * np.sin(theta) + (yy - 90) * np.cos(theta)
    mask = (u / 50) ** 2 + (v / 20) ** 2 <= 1
    shape = fit_ellipse(mask)
    assert shape["a"] == pytest.approx(50, rel=0.03) and shape["b"] == pytest.approx(20, rel=0.05)
    assert shape["angle"] == pytest.approx(30, abs=1.5)
    assert (shape["cx"], shape["cy"]) == (pytest.approx(70, abs=0.5), pytest.approx(90, abs=0.5))
    assert shape["sigma"] is None
    assert relative_size(mask) == pytest.approx(shape_stats(mask).size)


def _whole_window_measures(image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The measures as first written (distance transforms, smoothing and Sobel over the lesion's
    whole window): `measure` computes them on the lesion's core only and must agree exactly."""
    area = int(mask.sum())
    ring = max(2, round(0.15 * np.sqrt(area / np.pi)))
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    margin = 2 * ring + 4
    window = (
        slice(max(rows[0] - margin, 0), rows[-1] + margin + 1),
        slice(max(cols[0] - margin, 0), cols[-1] + margin + 1),
    )
    lesion = mask[window]
    depth_in, depth_out = ndimage.distance_transform_edt(lesion), ndimage.distance_transform_edt(~lesion)
    interior = depth_in > ring
    interior = interior if interior.sum() >= 16 else lesion
    inner = (depth_in > ring) & (depth_in <= 2 * ring)
    inner = inner if inner.any() else lesion
    outer = (depth_out > ring) & (depth_out <= 2 * ring)
    contour = (depth_in == 1) | (depth_out == 1)
    lo, hi = np.percentile(image, [1, 99])
    raw = image[window].astype(np.float32) / (float(hi - lo) if hi > lo else 1.0)
    smooth = ndimage.gaussian_filter(raw, 1.5)
    inner_level = float(raw[inner].mean())
    contrast = float(abs(float(raw[outer].mean()) - inner_level)) if outer.any() else 0.0
    gradient = np.hypot(ndimage.sobel(smooth, axis=0), ndimage.sobel(smooth, axis=1)) / 8.0
    return {
        "echo_heterogeneity": float(smooth[interior].std()),
        "boundary_contrast": contrast,
        "boundary_sharpness": float(gradient[contour].mean()) / max(contrast, 0.02),
    }


def test_measures_on_the_lesion_core_equal_the_whole_window_ones():
    rng = np.random.default_rng(3)
    for case in range(60):
        height, width = (int(n) for n in rng.integers(16, 160, 2))
        field = ndimage.gaussian_filter(rng.standard_normal((height, width)), rng.uniform(1, 8))
        mask = field > rng.uniform(0.0, 0.3)
        if case % 5 == 0:  # a lesion cut by the image's edge: the filters reflect there
            mask[:] = False
            mask[: height // 3, : width // 2] = True
        if not mask.any():
            continue
        image = rng.uniform(0, 255, (height, width))
        image = ndimage.gaussian_filter(image, 2).astype(np.uint8) if case % 2 else image.astype(np.uint8)
        assert measure(image, mask).as_dict() == _whole_window_measures(image, mask), case


def test_measures_of_real_lesions_are_unchanged(shared_data):
    from PIL import Image

    masks = sorted((shared_data / "busi_odd_256" / "Dataset_BUSI_with_GT").glob("*/*_mask.png"))[::12]
    checked = 0
    for mask_path in masks:
        image_path = mask_path.with_name(mask_path.name.replace("_mask", ""))
        image = np.asarray(Image.open(image_path).convert("L"))
        mask = np.asarray(Image.open(mask_path).convert("L")) > 127
        if mask.shape == image.shape and mask.any():
            assert measure(image, mask).as_dict() == _whole_window_measures(image, mask), mask_path.name
            checked += 1
    assert checked >= 20
