"""Activations the SD 1.5 VAE encoder saves for backward when it trains (issue 15, part 5).

`busforge train controlnet --kl-alpha A` with A > 0 makes the encoder trainable; its activations
then stay alive until the backward pass. This counts the bytes of every tensor autograd saves for
one image, on the meta device (shapes only: no weights, no download, seconds on a CPU).

Run:
    python benchmarks/encoder_memory.py [--size 512] [--batch 1]
"""

from __future__ import annotations

import argparse

import torch
from diffusers import AutoencoderKL
from diffusers.utils import logging as diffusers_logging

from busforge.train.arch import SD15_VAE


def saved_bytes(size: int, batch: int, dtype: torch.dtype) -> int:
    with torch.device("meta"):
        vae = AutoencoderKL(**SD15_VAE).to(dtype)
    vae.requires_grad_(False)
    vae.encoder.requires_grad_(True)  # what --kl-alpha > 0 trains
    vae.quant_conv.requires_grad_(True)
    image = torch.empty(batch, 3, size, size, device="meta", dtype=dtype)
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved[id(tensor)] = (
            tensor.numel() * tensor.element_size()
        )  # one count per tensor, however often saved
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        _ = vae.encode(image).latent_dist.mean
    return sum(saved.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    diffusers_logging.set_verbosity_error()  # its fp32-modules notice on .to(): none here
    for dtype in (torch.float32, torch.bfloat16):
        gib = saved_bytes(args.size, args.batch, dtype) / 2**30
        print(
            f"SD 1.5 encoder, {args.batch} x {args.size}², weights and activations in {str(dtype).removeprefix('torch.')}: {gib:.2f} GiB saved"
        )


if __name__ == "__main__":
    main()
