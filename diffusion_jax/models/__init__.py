"""Flax NNX backbones. Every denoiser is called as ``model(x_t, t, cond=None)``.

* :mod:`~diffusion_jax.models.unet`: U-Net with FiLM/AdaGN timestep modulation,
  self-attention at low resolution, optional cross-attention, learned null label.
* :mod:`~diffusion_jax.models.dit`: DiT (patchify, adaLN-Zero) and an MM-DiT block.
* :mod:`~diffusion_jax.models.vae`: small KL-regularised convolutional VAE for latents.
* :mod:`~diffusion_jax.models.common`: parameter counts and forward FLOPs.
"""

from diffusion_jax.models.common import forward_flops, param_count
from diffusion_jax.models.dit import DiT, DiTConfig, MMDiTBlock
from diffusion_jax.models.unet import UNet, UNetConfig
from diffusion_jax.models.vae import VAE, VAEConfig

__all__ = ["UNet", "UNetConfig", "DiT", "DiTConfig", "MMDiTBlock", "VAE", "VAEConfig", "param_count", "forward_flops"]
