"""Image and mask files, read one way everywhere (import, calibration): decoding, 8-bit grey, the
one binarisation rule of masks, and BUSI's mask file names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

# BUSI: "<case>_mask.png", and "<case>_mask_1.png", "<case>_mask_2.png" for further lesions.
BUSI_MASK_NAME = re.compile(r"^(?P<stem>.+?)_mask(?:_(?P<n>\d+))?$", re.IGNORECASE)


class UnreadableImage(Exception):
    """A file that cannot be decoded as an image."""


def read_image(path: Path):
    """Open and fully decode an image (truncated files fail here, not later)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise UnreadableImage(f"{path.name}: unreadable image ({type(err).__name__}: {err})") from None


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's header without decoding it; None when DATA is not a PNG."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def to_grey(img) -> np.ndarray:
    """8-bit grey: RGB(A) by ITU-R 601 luma (what PIL's 'L' conversion does), 16-bit scaled down."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(img, dtype=np.float64)
        top = array.max() or 1.0
        return np.round(array * (255.0 / max(top, 255.0) if top > 255 else 1.0)).astype(np.uint8)
    return np.asarray(img.convert("L"), dtype=np.uint8)


# A mask is black and white (anti-aliased edges are a thin band); an ultrasound image is mostly
# mid-grey (BUSI/BUS-BRA images: 14% to 95% of pixels; their masks: none).
MASK_MAX_MID_GREY = 0.05


def mid_grey_share(img) -> float:
    """The share of pixels neither near black nor near white: ~0 for a mask, large for an image."""
    if img.mode == "1":
        return 0.0
    grey = to_grey(img)
    return float(((grey > 31) & (grey < 224)).mean())


def to_binary(img) -> np.ndarray:
    """A mask in any PNG mode (1-bit, grey, RGB, RGBA, palette) as bool: lesion = bright pixels.

    Alpha is ignored (BUSI's RGBA masks are opaque); a pixel is lesion when its grey value is
    above half range, so anti-aliased edges do not grow the lesion.
    """
    if img.mode == "1":
        return np.asarray(img, dtype=bool)
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA").convert("RGB")
    return to_grey(img) > 127
