"""`--augment ordinary` (the paper's Table 4 baseline): flips, brightness/contrast, rotation and noise,
on batches of tensors, drawn from the run's own generator so a seed fixes them.

Only horizontal flips: ultrasound images have the skin at the top, so a vertical flip makes an
image no probe produces."""

from __future__ import annotations

import math

import torch

MAX_ROTATION_DEG = 15.0
GAIN = (0.8, 1.2)  # contrast factor
OFFSET = (-0.1, 0.1)  # brightness shift, images in [0, 1]
NOISE_SD = (0.0, 0.05)


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def augment_batch(
    images: torch.Tensor, masks: torch.Tensor | None, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """IMAGES (B, C, H, W) float in [0, 1], MASKS (B, H, W) float or None; returns augmented copies."""
    import torch.nn.functional as F

    n = images.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    angle = _uniform(generator, n, -MAX_ROTATION_DEG, MAX_ROTATION_DEG) * math.pi / 180
    gain = _uniform(generator, n, *GAIN)
    offset = _uniform(generator, n, *OFFSET)
    noise_sd = _uniform(generator, n, *NOISE_SD)
    noise = torch.randn(images.shape, generator=generator)

    # One affine grid per image: rotation, then the horizontal flip as a sign on x.
    sign = torch.where(flip, -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([cos * sign, -sin, torch.zeros(n)], 1),
            torch.stack([sin * sign, cos, torch.zeros(n)], 1),
        ],
        1,
    ).to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if masks is not None:
        masks = F.grid_sample(masks[:, None], grid, mode="nearest", align_corners=False)[:, 0]
    view = (n, 1, 1, 1)
    images = images * gain.view(view).to(images) + offset.view(view).to(images)
    images = images + noise.to(images) * noise_sd.view(view).to(images)
    return images.clamp(0.0, 1.0), masks
