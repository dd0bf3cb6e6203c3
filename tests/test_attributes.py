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
