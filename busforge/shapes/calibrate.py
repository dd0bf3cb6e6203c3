"""Fit a calibrated shape prior from folders of real lesion masks."""

from collections import defaultdict
from pathlib import Path

import numpy as np

from busforge.errors import BadInput
from busforge.imagefiles import BUSI_MASK_NAME
from busforge.shapes.stats import STAT_NAMES, STATS_VERSION, shape_stats
from busforge.vocab import PATHOLOGIES

PRIOR_FORMAT = "busforge-shape-prior"
PRIOR_VERSION = 1
MIN_MASKS = 5  # fewer non-empty masks than this cannot describe a distribution

# Simulation that maps the relative deformation strength (sigma / sqrt(a*b)) to the
# statistics it produces; the prior inverts it to pick sigma for a target solidity.
TABLE_RELATIVE_SIGMA = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.38, 0.5)
TABLE_LONGEST_SIDE = (24, 48, 96, 192, 384)  # lesion sizes simulated, pixels
TABLE_DRAWS = 30
TABLE_IMAGE_SIZE = 512
TABLE_ASPECT = 1.6  # reference ellipse a / b
CORRECTION_DRAWS = 300
CORRECTION_SEED = 20250


def read_mask(path: Path) -> np.ndarray:
    """A PNG mask as a boolean array, binarised like imported masks (busforge.imagefiles.to_binary)."""
    from busforge.imagefiles import MASK_MAX_MID_GREY, UnreadableImage, mid_grey_share, read_image, to_binary

    try:
        img = read_image(path)
    except UnreadableImage as error:
        raise BadInput(f"{path}: not a readable image ({error}); give PNG mask files") from None
    if (share := mid_grey_share(img)) > MASK_MAX_MID_GREY:
        raise BadInput(
            f"{path}: an image, not a lesion mask ({share:.0%} of its pixels are mid-grey; a mask is black "
            "and white); give the folders of mask PNGs (BUSI: the `_mask` files), or an imported DATASET"
        )
    return to_binary(img)


def _mask_files(folder: Path) -> list[Path]:
    pngs = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png")
    masks = [p for p in pngs if BUSI_MASK_NAME.match(p.stem)]
    # A BUSI class folder mixes images and masks; a mask-only folder has any names.
    return masks or pngs


def _case_masks(files: list[Path]) -> list[np.ndarray]:
    """One mask per case: files of one BUSI case with the same shape are united."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        match = BUSI_MASK_NAME.match(path.stem)
        groups[match["stem"] if match else path.stem].append(path)
    masks = []
    for paths in groups.values():
        parts = [read_mask(path) for path in paths]
        if all(part.shape == parts[0].shape for part in parts):
            masks.append(np.logical_or.reduce(parts))
        else:
            masks.extend(parts)
    return masks


def collect_masks(mask_dirs: list[Path], pathology: str | None = None) -> dict[str, list[Path]]:
    """Mask files per pathology.

    A folder named after a pathology holds that pathology's masks; a folder with
    pathology subfolders (e.g. `busi_masks_calib/`) contributes each of them;
    `pathology` assigns every folder to that one.
    """
    files: dict[str, list[Path]] = defaultdict(list)
    for folder in mask_dirs:
        if not folder.is_dir():
            raise BadInput(f"{folder}: mask folder not found; give existing folders of mask PNGs")
        if pathology is not None:
            files[pathology].extend(_mask_files(folder))
            continue
        if folder.name.lower() in PATHOLOGIES:
            files[folder.name.lower()].extend(_mask_files(folder))
            continue
        subfolders = [folder / name for name in PATHOLOGIES if (folder / name).is_dir()]
        if not subfolders:
            raise BadInput(
                f"{folder}: pathology unknown; name the folder {' or '.join(PATHOLOGIES)}, "
                "give a folder with such subfolders, or pass --pathology"
            )
        for sub in subfolders:
            files[sub.name].extend(_mask_files(sub))
    return dict(files)


def table_model() -> str:
    """Identity of the sigma table: the shape model and the simulation settings."""
    from busforge.shapes.lesion import SHAPE_MODEL

    return (
        f"{SHAPE_MODEL}|stats-v{STATS_VERSION}|sigma{list(TABLE_RELATIVE_SIGMA)}|px{list(TABLE_LONGEST_SIDE)}"
        f"|aspect{TABLE_ASPECT}|draws{TABLE_DRAWS}|image{TABLE_IMAGE_SIZE}"
    )


def sigma_table() -> dict[str, list]:
    """The simulated sigma table; the shipped prior's copy when it is still current.

    The table depends on the shape model only, not on the masks, and simulating it
    takes thousands of draws.
    """
    import json
    from importlib import resources

    shipped = resources.files("busforge.shapes").joinpath("data", "busi.json")
    try:
        table = json.loads(shipped.read_text()).get("sigma_table", {})
    except (OSError, ValueError):
        table = {}
    if table.get("model") == table_model():
        return table
    return simulate_sigma_table()


def simulate_sigma_table(longest_sides: tuple[int, ...] = TABLE_LONGEST_SIDE) -> dict[str, list]:
    """Median statistics of masks drawn at each relative deformation strength and size.

    Rows are lesion sizes (longest side in pixels), columns relative sigmas: small
    lesions lose solidity to pixelation alone, so the prior reads the row of its size.
    """
    from busforge.shapes.lesion import ShapeParams, draw_mask

    centre = TABLE_IMAGE_SIZE / 2
    table: dict[str, list] = defaultdict(list)
    for longest in longest_sides:
        a, b = longest / 2, longest / 2 / TABLE_ASPECT
        rows = []
        for relative in TABLE_RELATIVE_SIGMA:
            draws = []
            for seed in range(TABLE_DRAWS):
                params = ShapeParams(a, b, 0.0, centre, centre, relative * float(np.sqrt(a * b)))
                mask, _ = draw_mask(params, TABLE_IMAGE_SIZE, seed, (0.01, 0.99))
                stats = shape_stats(mask)
                draws.append(
                    (
                        stats.solidity,
                        stats.circularity,
                        np.log(stats.aspect) / np.log(TABLE_ASPECT),
                        stats.size * TABLE_IMAGE_SIZE / longest,
                    )
                )
            rows.append(np.median(np.array(draws), axis=0))
        solidity, circularity, aspect_gain, size_gain = np.array(rows).T.round(6).tolist()
        # Solidity must fall with sigma for the prior to invert it.
        table["solidity"].append(np.minimum.accumulate(solidity).tolist())
        table["circularity"].append(circularity)
        table["aspect_gain"].append(aspect_gain)
        table["size_gain"].append(size_gain)
    return {
        "model": table_model(),
        "relative_sigma": list(TABLE_RELATIVE_SIGMA),
        "longest_side_px": list(longest_sides),
        **table,
    }


def fit_prior(mask_dirs: list[Path], pathology: str | None = None, name: str = "calibrated") -> dict:
    """Fit a calibrated shape prior.

    Each case's mask is reduced to its largest connected component and described by
    `busforge.shapes.stats.STAT_NAMES`; the prior keeps those vectors per pathology
    (it samples them by smoothed bootstrap) with their quantiles, and a simulated
    table from deformation strength to solidity/circularity.

    Args:
        mask_dirs: folders of mask PNGs (see `collect_masks`).
        pathology: assign all folders to this pathology instead of their names.
        name: name stored in the prior.

    Returns:
        The prior as a JSON-ready dict.
    """
    files = collect_masks(mask_dirs, pathology)
    masks = {label: _case_masks(paths) for label, paths in files.items()}
    return fit_prior_from_masks(masks, ", ".join(str(d) for d in mask_dirs), name)


def fit_prior_from_masks(masks: dict[str, list[np.ndarray]], where: str, name: str) -> dict:
    """`fit_prior` on masks already read, one per case, by pathology; `where` names them in errors."""
    pathologies = {}
    for label, case_masks in sorted(masks.items()):
        vectors = []
        for mask in case_masks:
            stats = shape_stats(mask)
            if stats is not None:
                vectors.append([round(float(getattr(stats, key)), 6) for key in STAT_NAMES])
        if len(vectors) < MIN_MASKS:
            raise BadInput(
                f"{where}: {label}: {len(vectors)} non-empty masks; need at least {MIN_MASKS} per pathology"
            )
        columns = np.array(vectors).T
        pathologies[label] = {
            "count": len(vectors),
            "stats": {key: column.tolist() for key, column in zip(STAT_NAMES, columns, strict=True)},
            "quantiles": {
                key: np.quantile(column, [0.05, 0.25, 0.5, 0.75, 0.95]).round(6).tolist()
                for key, column in zip(STAT_NAMES, columns, strict=True)
            },
        }
    if not pathologies:
        raise BadInput(f"{where}: no mask PNGs found")
    prior = {
        "format": PRIOR_FORMAT,
        "version": PRIOR_VERSION,
        "name": name,
        "stat_names": list(STAT_NAMES),
        "length_unit": "fraction of sqrt(image height * width)",
        "pathologies": pathologies,
        "sigma_table": sigma_table(),
    }
    for label in pathologies:
        pathologies[label]["corrections"] = closed_loop_corrections(prior, label)
    return prior


def closed_loop_corrections(prior: dict, pathology: str) -> dict[str, float]:
    """Median shifts that make masks drawn from the prior match the data.

    The sigma table holds medians of one reference shape; drawing the actual prior
    shows what is left over in log(1 - solidity) and log(aspect), which sampling adds.
    """
    from busforge.shapes.lesion import draw_mask
    from busforge.shapes.priors import CalibratedPrior

    sampler = CalibratedPrior(prior, digest="fit", source="fit")
    bins = sampler.size_bins(pathology)
    size_range = (bins["small"][0], bins["large"][1])
    rng = np.random.default_rng(CORRECTION_SEED)
    drawn = []
    for seed in range(CORRECTION_DRAWS):
        params = sampler.sample(pathology, size_range, TABLE_IMAGE_SIZE, rng)
        mask, _ = draw_mask(params, TABLE_IMAGE_SIZE, seed, size_range)
        stats = shape_stats(mask)
        drawn.append((np.log(max(1 - stats.solidity, 1e-4)), np.log(stats.aspect)))
    drawn_roughness, drawn_aspect = np.median(np.array(drawn), axis=0)
    real = prior["pathologies"][pathology]["stats"]
    real_roughness = np.median(np.log(np.maximum(1 - np.asarray(real["solidity"]), 1e-4)))
    real_aspect = np.median(np.log(real["aspect"]))
    return {
        "log_roughness": round(float(real_roughness - drawn_roughness), 6),
        "log_aspect": round(float(real_aspect - drawn_aspect), 6),
    }
