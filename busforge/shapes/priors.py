"""Lesion shape priors: the BI-RADS rule of the paper and priors calibrated on real masks."""

import hashlib
import json
import math
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

from busforge.errors import BadInput
from busforge.shapes.lesion import ShapeParams, half_extents
from busforge.vocab import PATHOLOGIES

SHIPPED_PRIORS = ("busi",)
MAX_SIZE = 0.98  # largest lesion_size a prior offers (the mask keeps a border pixel free)


class ShapePrior(Protocol):
    """Where lesion shape parameters come from."""

    name: str

    def identity(self) -> str:
        """Stable string for the dataset fingerprint."""
        ...

    def size_bins(self, pathology: str) -> dict[str, tuple[float, float]]:
        """Terciles of the fitted lesion_size distribution: {"small", "medium", "large"}."""
        ...

    def sample(
        self,
        pathology: str,
        size_range: tuple[float, float],
        image_size: int,
        rng: np.random.Generator,
    ) -> ShapeParams:
        """Shape parameters for one lesion whose lesion_size should fall in size_range."""
        ...


def _check_pathology(pathology: str, prior: str) -> None:
    if pathology not in PATHOLOGIES:
        raise BadInput(
            f"prior {prior}: pathology: {pathology!r} has no lesion shape; allowed: {', '.join(PATHOLOGIES)}"
        )


def _centre(fraction: float, half: float, image_size: int) -> float:
    """Centre coordinate at `fraction` of the image, kept `half` (+1 px) from both edges."""
    low, high = half + 1.0, image_size - 1.0 - half
    if low >= high:
        return image_size / 2
    return float(min(max(fraction * image_size, low), high))


def _placed(
    a: float,
    b: float,
    angle: float,
    half: tuple[float, float],
    centre: tuple[float, float],
    relative: float,
    image_size: int,
) -> ShapeParams:
    """Ellipse parameters with the centre (image fractions) kept inside the image.

    Args:
        half: bounding-box half extents (x, y) in pixels.
        centre: wanted centre (x, y) as fractions of the image side.
        relative: sigma / sqrt(a * b).
    """
    return ShapeParams(
        a=a,
        b=b,
        angle=angle,
        cx=_centre(centre[0], half[0], image_size),
        cy=_centre(centre[1], half[1], image_size),
        sigma=relative * math.sqrt(a * b),
    )


def _axes_for_box(half_w: float, half_h: float, angle: float) -> tuple[float, float, float]:
    """Semi-axes whose rotated ellipse has the given bounding-box half extents.

    Falls back to angle 0 when the box is too square for that rotation.
    """
    theta = math.radians(angle)
    cos2, sin2 = math.cos(theta) ** 2, math.sin(theta) ** 2
    denominator = cos2 - sin2
    a2 = (half_w**2 * cos2 - half_h**2 * sin2) / denominator
    b2 = (half_h**2 * cos2 - half_w**2 * sin2) / denominator
    if a2 <= (0.5 * half_w) ** 2 or b2 <= (0.5 * half_h) ** 2:
        return half_w, half_h, 0.0
    return math.sqrt(a2), math.sqrt(b2), angle


class BiradsPrior:
    """The textbook rule used by the paper.

    Benign: wider than tall (a/b in [1.4, 2.2]), smooth (sigma 1-4% of sqrt(a*b)).
    Malignant: taller than wide (b/a in [1.7, 2.3]), irregular (sigma 8-15%).
    Angles stay within +-8 degrees so the wider/taller rule survives in the mask.
    """

    name = "birads"
    # (aspect a/b range, relative sigma range = sigma / sqrt(a*b))
    RULES = {
        "benign": ((1.4, 2.2), (0.01, 0.04)),
        "malignant": ((1 / 2.3, 1 / 1.7), (0.08, 0.15)),
    }
    MAX_ANGLE = 8.0

    def identity(self) -> str:
        return "birads-v1"

    def size_bins(self, pathology: str) -> dict[str, tuple[float, float]]:
        raise BadInput(
            "'prior' needs a calibrated shape prior (e.g. shape_prior: busi); "
            "the birads prior has no fitted size distribution, give explicit bins",
            key="size_bins",
        )

    def sample(
        self,
        pathology: str,
        size_range: tuple[float, float],
        image_size: int,
        rng: np.random.Generator,
    ) -> ShapeParams:
        _check_pathology(pathology, self.name)
        (aspect_low, aspect_high), (relative_low, relative_high) = self.RULES[pathology]
        aspect = float(rng.uniform(aspect_low, aspect_high))
        relative = float(rng.uniform(relative_low, relative_high))
        angle = float(rng.uniform(-self.MAX_ANGLE, self.MAX_ANGLE))
        longest = float(rng.uniform(*size_range)) * image_size
        half_w, half_h = half_extents(aspect, 1.0, angle)
        scale = longest / (2 * max(half_w, half_h))
        # cx is drawn before cy: the order of the draws is part of the masks a seed gives.
        cx, cy = float(rng.uniform()), float(rng.uniform())
        return _placed(
            aspect * scale, scale, angle, (half_w * scale, half_h * scale), (cx, cy), relative, image_size
        )


class CalibratedPrior:
    """A prior fitted on real masks by `busforge.shapes.calibrate.fit_prior`.

    Sampling is a smoothed bootstrap of the per-mask statistic vectors, restricted to
    the masks whose lesion_size lies in the requested range: pick one real lesion,
    jitter it, and turn its size, aspect, solidity and centre into ellipse parameters
    (sigma from the simulated solidity table, axes corrected for the deformation's
    typical change of size and aspect).
    """

    MIN_ROWS = 5  # nearest lesions used when too few fall inside the size range
    BANDWIDTH = 0.3  # jitter = BANDWIDTH * std * n^(-1/5), per transformed statistic
    ANGLE_SD = 5.0
    SOLIDITY_SHRINK = 0.7  # spread kept from the data; the deformation adds the rest

    def __init__(self, data: dict, digest: str, source: str):
        self.name = str(data.get("name", "calibrated"))
        self._digest = digest
        self._source = source
        self._stat_names = list(data["stat_names"])
        self._rows = {
            label: np.array([entry["stats"][key] for key in self._stat_names], dtype=float).T
            for label, entry in data["pathologies"].items()
        }
        # Closed-loop shifts found by drawing from the prior at fit time (fit_prior).
        self._corrections = {
            label: dict(entry.get("corrections", {})) for label, entry in data["pathologies"].items()
        }
        table = data["sigma_table"]
        self._table = {
            key: np.asarray(values, dtype=float) for key, values in table.items() if key != "model"
        }

    def identity(self) -> str:
        return f"calibrated:{self._digest}"

    def stats(self, pathology: str) -> dict[str, np.ndarray]:
        """The fitted per-mask statistics of one pathology (column per statistic)."""
        rows = self._pathology_rows(pathology)
        return {key: rows[:, i] for i, key in enumerate(self._stat_names)}

    def _pathology_rows(self, pathology: str) -> np.ndarray:
        _check_pathology(pathology, self.name)
        if pathology not in self._rows:
            raise BadInput(
                f"{self._source}: pathologies: no {pathology!r} masks in this prior; "
                f"fitted: {', '.join(sorted(self._rows))}"
            )
        return self._rows[pathology]

    def size_bins(self, pathology: str) -> dict[str, tuple[float, float]]:
        sizes = self.stats(pathology)["size"]
        low, third, two_thirds, high = np.quantile(sizes, [0.0, 1 / 3, 2 / 3, 1.0])
        # A real lesion may span a wide image; a square render holds at most MAX_SIZE.
        high = min(high, MAX_SIZE)
        return {
            "small": (float(low), float(third)),
            "medium": (float(third), float(two_thirds)),
            "large": (float(two_thirds), float(high)),
        }

    def _table_row(self, key: str, longest_px: float) -> np.ndarray:
        """Row of a simulated statistic for a lesion of this size (interpolated in log size)."""
        sizes = np.log(self._table["longest_side_px"])
        position = float(np.clip(np.log(longest_px), sizes[0], sizes[-1]))
        rows = self._table[key]
        upper = int(np.clip(np.searchsorted(sizes, position), 1, len(sizes) - 1))
        weight = (position - sizes[upper - 1]) / (sizes[upper] - sizes[upper - 1])
        return (1 - weight) * rows[upper - 1] + weight * rows[upper]

    def sample(
        self,
        pathology: str,
        size_range: tuple[float, float],
        image_size: int,
        rng: np.random.Generator,
    ) -> ShapeParams:
        rows = self._pathology_rows(pathology)
        column = {key: i for i, key in enumerate(self._stat_names)}
        sizes = rows[:, column["size"]]
        low, high = size_range
        eligible = np.flatnonzero((sizes >= low) & (sizes <= high))
        if eligible.size < self.MIN_ROWS:
            distance = np.maximum(low - sizes, 0) + np.maximum(sizes - high, 0)
            eligible = np.argsort(distance, kind="stable")[: self.MIN_ROWS]
        row = rows[int(rng.choice(eligible))]

        # Jitter in spaces where the statistics are unbounded and roughly symmetric.
        transformed = {
            "size": np.log(rows[:, column["size"]]),
            "aspect": np.log(rows[:, column["aspect"]]),
            "solidity": np.log(np.maximum(1 - rows[:, column["solidity"]], 1e-4)),
            "cx": rows[:, column["cx"]],
            "cy": rows[:, column["cy"]],
        }
        factor = self.BANDWIDTH * len(rows) ** (-1 / 5)

        def jitter(key: str, value: float) -> float:
            return value + float(rng.normal()) * factor * float(np.std(transformed[key]))

        size = math.exp(jitter("size", math.log(row[column["size"]])))
        size = min(max(size, low), high)
        log_aspect = jitter("aspect", math.log(row[column["aspect"]]))
        # The deformation scatters solidity around the table's median, so the target is
        # pulled towards the pathology's median to leave the drawn spread like the data's.
        roughness = transformed["solidity"]
        centre = float(np.median(roughness))
        target = jitter("solidity", math.log(max(1 - row[column["solidity"]], 1e-4)))
        correction = self._corrections.get(pathology, {})
        solidity = 1 - math.exp(
            centre + self.SOLIDITY_SHRINK * (target - centre) + correction.get("log_roughness", 0.0)
        )
        log_aspect += correction.get("log_aspect", 0.0)
        cx = jitter("cx", row[column["cx"]])
        cy = jitter("cy", row[column["cy"]])
        angle = float(np.clip(rng.normal(0.0, self.ANGLE_SD), -3 * self.ANGLE_SD, 3 * self.ANGLE_SD))

        longest_px = size * image_size
        table_x = self._table["relative_sigma"]
        solidity_row = np.minimum.accumulate(self._table_row("solidity", longest_px))
        # np.interp needs increasing x: solidity falls as sigma grows.
        relative = float(np.interp(solidity, solidity_row[::-1], table_x[::-1]))
        aspect_gain = max(
            float(np.interp(relative, table_x, self._table_row("aspect_gain", longest_px))), 0.3
        )
        size_gain = float(np.interp(relative, table_x, self._table_row("size_gain", longest_px)))
        aspect = math.exp(log_aspect / aspect_gain)
        longest = size / size_gain * image_size
        half_w, half_h = (
            (longest / 2, longest / 2 / aspect) if aspect >= 1 else (longest / 2 * aspect, longest / 2)
        )
        a, b, angle = _axes_for_box(half_w, half_h, angle)
        return _placed(a, b, angle, (half_w, half_h), (cx, cy), relative, image_size)


def _no_constant(name: str) -> float:
    """NaN and Infinity are not JSON numbers; in a prior they would reach the sampler."""
    raise json.JSONDecodeError(f"{name} is not a finite number", name, 0)


def _parse_prior(text: str, source: str) -> CalibratedPrior:
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise BadInput(
            f"{source}: not valid JSON ({error}); give a prior written by busforge calibrate"
        ) from None
    if not isinstance(data, dict) or data.get("format") != "busforge-shape-prior":
        raise BadInput(f"{source}: format: not a busforge shape prior; create one with busforge calibrate")
    if data.get("version") != 1:
        raise BadInput(f"{source}: version: {data.get('version')!r} is not supported; allowed: 1")
    try:
        names = list(data["stat_names"])
        for key in ("size", "aspect", "solidity", "cx", "cy"):
            if key not in names:
                raise KeyError(f"stat_names.{key}")
        pathologies = data["pathologies"]
        if not isinstance(pathologies, dict) or not pathologies:
            raise KeyError("pathologies")
        for label, entry in pathologies.items():
            lengths = {len(entry["stats"][key]) for key in names}
            if len(lengths) != 1 or lengths == {0}:
                raise KeyError(f"pathologies.{label}.stats")
        table = data["sigma_table"]
        shape = (len(table["longest_side_px"]), len(table["relative_sigma"]))
        for key in ("solidity", "circularity", "aspect_gain", "size_gain"):
            if np.asarray(table[key], dtype=float).shape != shape or min(shape) < 2:
                raise KeyError(f"sigma_table.{key}")
        return CalibratedPrior(data, hashlib.sha256(text.encode()).hexdigest(), source)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        what = error.args[0] if isinstance(error, KeyError) and error.args else f"malformed content ({error})"
        raise BadInput(
            f"{source}: {what}: missing or malformed; regenerate the prior with busforge calibrate"
        ) from None


def is_named_prior(spec: str) -> bool:
    """A built-in prior (birads, or a shipped one), as opposed to a path to a JSON file."""
    return spec == "birads" or spec in SHIPPED_PRIORS


def load_prior(spec: str) -> ShapePrior:
    """Resolve a recipe's `shape_prior`.

    Args:
        spec: "birads", a shipped prior name ("busi"), or a path to a calibrated
            prior JSON (relative to the current folder, like every path in a recipe).
    """
    if spec == "birads":
        return BiradsPrior()
    if spec in SHIPPED_PRIORS:
        text = resources.files("busforge.shapes").joinpath("data", f"{spec}.json").read_text()
        return _parse_prior(text, f"busforge/shapes/data/{spec}.json")
    path = Path(spec)
    if not path.is_file():
        raise BadInput(
            f"{path}: shape prior not found; use birads, "
            f"{', '.join(SHIPPED_PRIORS)} or a path to a JSON from busforge calibrate"
        )
    return _parse_prior(path.read_text(), str(path))
