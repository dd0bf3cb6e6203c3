"""Behaviour of the procedural B-mode renderer: determinism, lesion appearance, physics."""

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage

from busforge.errors import BadInput
from busforge.renderers.bmode import speckle_envelope
from busforge.renderers.procedural import ProceduralRenderer, psf_sigmas, render_bmode
from busforge.renderers.profile import load_profile

SIZE = 256
SEEDS = (0, 1, 2, 3)


def ellipse(size: int = SIZE, centre=(0.5, 0.33), axes=(0.2, 0.12)) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size] / size
    return ((cols - centre[0]) / axes[0]) ** 2 + ((rows - centre[1]) / axes[1]) ** 2 <= 1.0


def render(mask=None, *, pathology="benign", echogenicity="homogeneous", boundary="clear", seed=0, **options):
    mask = ellipse() if mask is None else mask
    return render_bmode(
        mask, pathology=pathology, echogenicity=echogenicity, boundary=boundary, seed=seed, **options
    )


def test_same_seed_same_bytes_and_other_seed_differs():
    first = render(pathology="malignant", echogenicity="heterogeneous", boundary="unclear", seed=5)
    again = render(pathology="malignant", echogenicity="heterogeneous", boundary="unclear", seed=5)
    other = render(pathology="malignant", echogenicity="heterogeneous", boundary="unclear", seed=6)
    assert first.tobytes() == again.tobytes()
    assert np.mean(first != other) > 0.5


@pytest.mark.parametrize("size", [128, 256, 512])
def test_grey_uint8_image_of_the_mask_size(size):
    image = render(ellipse(size), seed=1)
    assert image.dtype == np.uint8
    assert image.shape == (size, size)
    assert 20 < image.mean() < 220
    assert image.std() > 10  # not a flat image


def test_empty_mask_renders_tissue_only():
    image = render(np.zeros((SIZE, SIZE), dtype=bool), seed=3)
    assert image.shape == (SIZE, SIZE)
    assert image.std() > 10


def test_lesion_is_hypoechoic():
    mask = ellipse()
    core = ndimage.binary_erosion(mask, iterations=4)
    # Tissue beside the lesion at the same depths (not below it: enhancement or shadow live there).
    rows = np.flatnonzero(mask.any(axis=1))
    beside = np.zeros_like(mask)
    beside[rows[0] : rows[-1] + 1] = True
    beside &= ~ndimage.binary_dilation(mask, iterations=6)
    for pathology in ("benign", "malignant"):
        for seed in SEEDS:
            image = render(mask, pathology=pathology, seed=seed).astype(float)
            assert image[core].mean() < image[beside].mean() - 25, (pathology, seed)


def normalised_variance(image: np.ndarray, region: np.ndarray) -> float:
    values = image[region].astype(float)
    return values.var() / values.mean() ** 2


def test_heterogeneous_interior_varies_more_than_homogeneous():
    core = ndimage.binary_erosion(ellipse(), iterations=4)
    for pathology in ("benign", "malignant"):
        homogeneous = np.mean([normalised_variance(render(pathology=pathology, seed=s), core) for s in SEEDS])
        heterogeneous = np.mean(
            [
                normalised_variance(render(pathology=pathology, echogenicity="heterogeneous", seed=s), core)
                for s in SEEDS
            ]
        )
        assert heterogeneous > 1.3 * homogeneous, pathology


def edge_gradient(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean gradient magnitude on the mask boundary, after smoothing out speckle."""
    smooth = ndimage.gaussian_filter(image.astype(float), 2.0)
    gradient = np.hypot(ndimage.sobel(smooth, axis=0), ndimage.sobel(smooth, axis=1))
    boundary = mask & ~ndimage.binary_erosion(mask)
    return float(gradient[boundary].mean())


def test_unclear_boundary_has_a_weaker_edge_than_clear():
    mask = ellipse()
    for pathology in ("benign", "malignant"):
        clear = np.mean([edge_gradient(render(pathology=pathology, seed=s), mask) for s in SEEDS])
        unclear = np.mean(
            [edge_gradient(render(pathology=pathology, boundary="unclear", seed=s), mask) for s in SEEDS]
        )
        assert unclear < 0.8 * clear, pathology


def posterior_and_reference(image: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Mean below the lesion's central columns, and at the same depths well beside it."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    width = cols[-1] - cols[0]
    centre = slice(cols[0] + width // 4, cols[-1] - width // 4)
    depth = slice(rows[-1] + 8, min(image.shape[0], rows[-1] + 8 + (rows[-1] - rows[0])))
    side = np.r_[0 : max(1, cols[0] - 20), min(image.shape[1] - 1, cols[-1] + 20) : image.shape[1]]
    image = image.astype(float)
    return image[depth, centre].mean(), image[depth][:, side].mean()


def test_malignant_shadows_and_benign_enhances_below_the_lesion():
    mask = ellipse()
    for seed in SEEDS:
        benign_below, benign_side = posterior_and_reference(render(mask, pathology="benign", seed=seed), mask)
        malignant_below, malignant_side = posterior_and_reference(
            render(mask, pathology="malignant", seed=seed), mask
        )
        assert malignant_below < benign_below - 15, seed
        assert malignant_below < malignant_side, seed  # shadow
        assert benign_below > benign_side + 5, seed  # posterior enhancement


def test_depth_profile_is_usable_and_darkens_without_saturating():
    empty = np.zeros((SIZE, SIZE), dtype=bool)
    profiles = np.array([render(empty, seed=s).mean(axis=1) for s in range(6)]).mean(axis=0)
    deep = profiles[int(0.85 * SIZE) :].mean()
    middle = profiles[int(0.1 * SIZE) : int(0.6 * SIZE)].mean()
    assert 30 < deep < 180, deep  # TGC keeps the deep region visible
    assert deep < middle  # but residual attenuation darkens it
    image = render(empty, seed=0)
    assert np.mean(image[int(0.6 * SIZE) :] == 255) < 0.01  # deep region not saturated
    assert np.mean(image[int(0.6 * SIZE) :] == 0) < 0.05


def autocorrelation(field: np.ndarray, axis: int, lag: int) -> float:
    centred = field - field.mean()
    head = np.take(centred, np.arange(field.shape[axis] - lag), axis=axis)
    tail = np.take(centred, np.arange(lag, field.shape[axis]), axis=axis)
    return float((head * tail).mean() / centred.var())


def test_speckle_envelope_is_rayleigh_and_laterally_elongated():
    reflectivity = np.ones((256, 256), dtype=np.float32)
    envelope = speckle_envelope(
        reflectivity, np.random.default_rng(0), axial_sigma_px=1.5, lateral_sigma_px=3.0
    )
    # Fully developed speckle: Rayleigh envelope, mean / std = 1.91.
    assert envelope.mean() / envelope.std() == pytest.approx(1.91, rel=0.05)
    assert autocorrelation(envelope, axis=1, lag=3) > autocorrelation(envelope, axis=0, lag=3) + 0.2


def test_rendered_grain_is_longer_laterally_than_axially():
    image = render(np.zeros((SIZE, SIZE), dtype=bool), seed=2).astype(float)
    # Remove tissue structure so that only the speckle grain remains.
    residual = image - ndimage.uniform_filter(image, 15)
    assert autocorrelation(residual, axis=1, lag=2) > autocorrelation(residual, axis=0, lag=2) + 0.1


def test_options_change_the_image_and_are_validated():
    base = render(seed=4)
    assert not np.array_equal(base, render(seed=4, dynamic_range_db=40.0))
    assert not np.array_equal(base, render(seed=4, speckle_scale=1.5))
    with pytest.raises(BadInput, match=r"renderer\.colour"):
        ProceduralRenderer({"colour": "blue"}, image_size=SIZE)
    with pytest.raises(BadInput, match=r"renderer\.dynamic_range_db"):
        ProceduralRenderer({"dynamic_range_db": 500}, image_size=SIZE)
    with pytest.raises(BadInput, match=r"renderer\.speckle_scale"):
        ProceduralRenderer({"speckle_scale": "big"}, image_size=SIZE)


def test_texture_scale_sets_the_lateral_size_of_the_tissue_texture():
    def lateral_correlation(texture_scale: float) -> float:
        image = render(np.zeros((SIZE, SIZE), dtype=bool), seed=1, texture_scale=texture_scale)
        smooth = ndimage.gaussian_filter(image.astype(float), 2)  # texture, not speckle
        return autocorrelation(smooth - ndimage.uniform_filter(smooth, 63), axis=1, lag=12)

    assert lateral_correlation(0.5) + 0.05 < lateral_correlation(1.0) < lateral_correlation(2.0) - 0.05
    with pytest.raises(BadInput, match=r"renderer\.texture_scale: got 3"):
        ProceduralRenderer({"texture_scale": 3}, image_size=SIZE)
    identity = ProceduralRenderer({"texture_scale": 2}, image_size=SIZE).identity()
    assert identity["texture_scale"] == 2 and identity != ProceduralRenderer({}, image_size=SIZE).identity()


def test_invalid_condition_is_refused():
    with pytest.raises(ValueError, match="pathology"):
        render(pathology="normal")
    with pytest.raises(ValueError, match="boundary"):
        render(boundary="fuzzy")


def test_renderer_identity_and_batch_render():
    renderer = ProceduralRenderer({"speckle_scale": 1.25}, image_size=SIZE)
    identity = renderer.identity()
    assert identity["backend"] == "procedural"
    assert identity["speckle_scale"] == 1.25
    assert (
        identity["dynamic_range_db"] == ProceduralRenderer({}, image_size=SIZE).identity()["dynamic_range_db"]
    )
    assert identity != ProceduralRenderer({}, image_size=SIZE).identity()
    renderer.load()

    specs = [
        SimpleNamespace(pathology="benign", echogenicity="homogeneous", boundary="clear", seed=11, index=0),
        SimpleNamespace(
            pathology="malignant", echogenicity="heterogeneous", boundary="unclear", seed=12, index=1
        ),
    ]
    items = [SimpleNamespace(spec=spec, mask=ellipse(), prompt="") for spec in specs]
    images = renderer.render(items)
    assert len(images) == 2
    for spec, image in zip(specs, images, strict=True):
        expected = render(
            pathology=spec.pathology,
            echogenicity=spec.echogenicity,
            boundary=spec.boundary,
            seed=spec.seed,
            speckle_scale=1.25,
        )
        assert np.array_equal(image, expected)
    with pytest.raises(ValueError, match="image size"):
        renderer.render([SimpleNamespace(spec=specs[0], mask=ellipse(128), prompt="")])


@pytest.mark.parametrize("seed", range(6))
def test_an_unclear_margin_stays_at_the_lesion(seed):
    """The jagged, blurred membership of an unclear lesion reaches only its neighbourhood: tissue
    far from it holds no lesion (the margin noise once dotted 5-12 % of it with dark blobs)."""
    from busforge.renderers.procedural import _lesion_weight

    size = 256
    mask = np.zeros((size, size), bool)
    mask[100:140, 90:160] = True
    weight = _lesion_weight(np.random.default_rng(seed), mask, (size, size // 2), "unclear")
    half = mask[:, ::2]
    far = ndimage.distance_transform_edt(~half, sampling=(1, 2)) > 0.2 * size  # a fifth of the image away
    assert far.mean() > 0.5
    assert weight[far].max() == 0.0
    assert weight[half].mean() > 0.5


@pytest.mark.parametrize("size", [128, 256, 512])
def test_speckle_is_rayleigh_at_the_sizes_rendered(size):
    # With the PSF render_bmode uses at each size: few scatterers under a narrow PSF must still give
    # fully developed speckle (one uniform byte per scatterer gave mean / std 2.15 at 256²).
    axial, lateral = psf_sigmas(size, 1.0)
    envelope = speckle_envelope(np.ones((256, 128), np.float32), np.random.default_rng(size), axial, lateral)
    assert envelope.mean() / envelope.std() == pytest.approx(1.91, rel=0.015)


def test_default_look_reads_as_its_labels():
    """Without a profile (the default every user gets) the lesions read back as their labels under the
    importer's measures and BUSI's thresholds: >= 90 % per attribute over every label combination,
    on realistic (busi prior) masks of every size."""
    from busforge.dataset.attributes import Thresholds, classify, measure
    from busforge.shapes.lesion import draw_mask
    from busforge.shapes.priors import load_prior

    thresholds = Thresholds(**load_profile("busi").attribute_thresholds)
    prior = load_prior("busi")
    hits = {"echogenicity": [], "boundary": []}
    for combo, (pathology, echogenicity, boundary) in enumerate(
        (p, e, b)
        for p in ("benign", "malignant")
        for e in ("homogeneous", "heterogeneous")
        for b in ("clear", "unclear")
    ):
        bins = list(prior.size_bins(pathology).values())
        for index in range(12):
            seed = 1000 * combo + index
            size_range = bins[index % len(bins)]
            params = prior.sample(pathology, size_range, SIZE, np.random.default_rng(seed))
            mask, _ = draw_mask(params, SIZE, seed, size_range)
            image = render(mask, pathology=pathology, echogenicity=echogenicity, boundary=boundary, seed=seed)
            read_echo, read_boundary = classify(measure(image, mask), thresholds)
            hits["echogenicity"].append(read_echo == echogenicity)
            hits["boundary"].append(read_boundary == boundary)
    for attribute, hit in hits.items():
        assert np.mean(hit) >= 0.9, (attribute, np.mean(hit))
