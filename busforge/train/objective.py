"""The paper's training objective (§2.1, Eq. 1-5) as one module: noise MSE + alpha * VAE KL.

All randomness (posterior sample, noise, timesteps) is drawn by the caller from a seeded generator
and passed in, so the forward pass is a pure function of its inputs: a resumed run repeats an
uninterrupted one exactly, and the module can sit inside DistributedDataParallel as one unit.

The KL term is averaged over latent elements (not summed), so alpha does not depend on the
resolution. It is always computed (and logged); with alpha > 0 it is also trained: the VAE encoder
then trains too, the KL keeping its posterior close to N(0, I) while the noise loss reaches it through
the latents. The default is alpha = 0 (encoder frozen, its latents carry no gradient): the SD 1.5
encoder's raw latents have std ~5.5 (before the 0.18215 scaling) and the base decoder, which
rendering uses, was trained on those, so pulling them toward N(0, I) teaches the ControlNet latents
the decoder does not know; a trainable encoder also saves ~3.2 GiB of fp32 activations per 512x512
image outside gradient checkpointing. A run with alpha > 0 exports its VAE (busforge.train.controlnet).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def latent_shape(vae: Any, batch: int, size: int) -> tuple[int, int, int, int]:
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return (batch, vae.config.latent_channels, size // factor, size // factor)


class DiffusionLoss(nn.Module):
    """UNet (+ ControlNet) denoising loss on VAE latents of real images, with the KL regulariser."""

    def __init__(self, unet: Any, controlnet: Any, vae: Any, noise_scheduler: Any, kl_alpha: float) -> None:
        super().__init__()
        self.unet = unet
        self.controlnet = controlnet
        self.vae = vae
        self.noise_scheduler = noise_scheduler
        self.kl_alpha = kl_alpha

    def forward(
        self,
        pixel_values: torch.Tensor,
        conditioning: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timesteps: torch.Tensor,
        noise: torch.Tensor,
        posterior_noise: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (loss, mse, kl), each a scalar."""
        train_encoder = self.kl_alpha > 0
        with torch.set_grad_enabled(train_encoder and torch.is_grad_enabled()):
            posterior = self.vae.encode(pixel_values.to(self.vae.dtype)).latent_dist
            latents = posterior.mean + posterior.std * posterior_noise.to(posterior.mean.dtype)
            latents = latents * self.vae.config.scaling_factor
        kl = posterior_kl(posterior)
        if not train_encoder:
            latents, kl = latents.detach(), kl.detach()

        noisy = self.noise_scheduler.add_noise(latents, noise.to(latents.dtype), timesteps)
        residuals: dict[str, Any] = {}
        if self.controlnet is not None:
            down, mid = self.controlnet(
                noisy,
                timesteps,
                encoder_hidden_states=encoder_hidden_states,
                controlnet_cond=conditioning,
                return_dict=False,
            )
            residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        pred = self.unet(noisy, timesteps, encoder_hidden_states=encoder_hidden_states, **residuals).sample

        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise.to(latents.dtype), timesteps)
        else:
            target = noise
        mse = nn.functional.mse_loss(pred.float(), target.float())
        loss = mse + self.kl_alpha * kl if train_encoder else mse
        return loss, mse.detach(), kl.detach()


def posterior_kl(posterior: Any) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) of a diagonal Gaussian posterior, averaged over latent elements."""
    mean, var, logvar = posterior.mean.float(), posterior.var.float(), posterior.logvar.float()
    return (0.5 * (mean**2 + var - 1.0 - logvar)).mean()


def draw_inputs(
    vae: Any, noise_scheduler: Any, batch: int, size: int, generator: torch.Generator, device: torch.device
) -> dict[str, torch.Tensor]:
    """Timesteps, noise and posterior noise for one micro-batch, all from `generator` (on CPU).

    Drawing on the CPU makes the numbers the same on every device; the copy is tiny.
    """
    shape = latent_shape(vae, batch, size)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch,), generator=generator)
    noise = torch.randn(shape, generator=generator)
    posterior_noise = torch.randn(shape, generator=generator)
    return {
        "timesteps": timesteps.to(device),
        "noise": noise.to(device),
        "posterior_noise": posterior_noise.to(device),
    }
