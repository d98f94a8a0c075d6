"""A small convolutional KL-regularised VAE for latent diffusion (Rombach et al. 2022).

The encoder maps an image ``(B, H, W, C)`` in ``[-1, 1]`` to the mean and log-variance
of a diagonal Gaussian over latents ``(B, H/f, W/f, latent_channels)`` with
``f = 2 ** (len(channels) - 1)``; the decoder maps a latent back to an image. A light KL
penalty towards ``N(0, I)`` keeps the latent space smooth without forcing it to be
unit-variance, which is why latents are rescaled by :func:`latent_scale_factor` before a
diffusion model sees them.

Decoder output: a plain linear convolution, no ``tanh``. Training with MSE pulls it into
``[-1, 1]``, but values slightly outside can occur; clip for display. (A ``tanh`` would
need very large pre-activations to reach the saturated ``-1`` background of MNIST and
slows training; SD's VAE decoder is linear for the same reason.)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .common import GroupNorm, ModuleList

__all__ = ["VAEConfig", "VAE_PRESETS", "ResBlock", "Upsample", "Encoder", "Decoder", "VAE", "sample_latent",
           "kl_to_standard_normal", "vae_loss", "latent_scale_factor"]



@dataclasses.dataclass(frozen=True)
class VAEConfig:
    in_channels: int = 1  # C of the images: 1 for MNIST, 3 for CIFAR-10
    latent_channels: int = 4  # channels of z, as in Stable Diffusion's VAE
    channels: tuple[int, ...] = (32, 64, 64)  # width per level; stride-2 steps between levels
    input_size: int = 28  # H = W of the images
    num_groups: int = 8  # GroupNorm groups (must divide every width)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channels) - 1)

    @property
    def latent_size(self) -> int:
        return self.input_size // self.downsample_factor


VAE_PRESETS: dict[str, VAEConfig] = {
    "mnist": VAEConfig(),  # 28x28x1 -> 7x7x4
    "cifar": VAEConfig(in_channels=3, channels=(32, 64, 128), input_size=32),  # 32x32x3 -> 8x8x4
    # One downsampling step: 16x16x4 latents keep three times more numbers per image, so
    # reconstructions keep CIFAR's detail that 8x8x4 blurs away.
    "cifar-f2": VAEConfig(in_channels=3, channels=(64, 128), input_size=32),  # 32x32x3 -> 16x16x4
}


def _conv(c_in: int, c_out: int, rngs: nnx.Rngs, *, kernel: int = 3, stride: int = 1) -> nnx.Conv:
    return nnx.Conv(c_in, c_out, (kernel, kernel), strides=stride, padding="SAME", rngs=rngs)


class ResBlock(nnx.Module):
    """GroupNorm -> SiLU -> conv, twice, plus a 1x1 skip when the width changes."""

    def __init__(self, c_in: int, c_out: int, groups: int, *, rngs: nnx.Rngs):
        self.norm1 = GroupNorm(c_in, num_groups=groups, rngs=rngs)
        self.conv1 = _conv(c_in, c_out, rngs)
        self.norm2 = GroupNorm(c_out, num_groups=groups, rngs=rngs)
        self.conv2 = _conv(c_out, c_out, rngs)
        self.skip = _conv(c_in, c_out, rngs, kernel=1) if c_in != c_out else None

    def __call__(self, x):
        h = self.conv1(nnx.silu(self.norm1(x)))
        h = self.conv2(nnx.silu(self.norm2(h)))
        return h + (x if self.skip is None else self.skip(x))


class Upsample(nnx.Module):
    """Nearest-neighbour x2 then a 3x3 conv (avoids transposed-conv checkerboards)."""

    def __init__(self, c: int, *, rngs: nnx.Rngs):
        self.conv = _conv(c, c, rngs)

    def __call__(self, x):
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # (B, 2h, 2w, c)
        return self.conv(x)


class Encoder(nnx.Module):
    def __init__(self, cfg: VAEConfig, *, rngs: nnx.Rngs):
        ch, g = cfg.channels, cfg.num_groups
        self.conv_in = _conv(cfg.in_channels, ch[0], rngs)
        layers = []
        for i, c in enumerate(ch):
            layers.append(ResBlock(ch[max(i - 1, 0)], c, g, rngs=rngs))
            if i < len(ch) - 1:
                layers.append(_conv(c, c, rngs, stride=2))  # halves H and W
        layers.append(ResBlock(ch[-1], ch[-1], g, rngs=rngs))
        self.layers = ModuleList(layers)
        self.norm_out = GroupNorm(ch[-1], num_groups=g, rngs=rngs)
        self.conv_out = _conv(ch[-1], 2 * cfg.latent_channels, rngs)

    def __call__(self, x):
        h = self.conv_in(x)  # (B, H, W, ch[0])
        for layer in self.layers:
            h = layer(h)
        return self.conv_out(nnx.silu(self.norm_out(h)))  # (B, h, w, 2 * latent)


class Decoder(nnx.Module):
    def __init__(self, cfg: VAEConfig, *, rngs: nnx.Rngs):
        ch, g = cfg.channels, cfg.num_groups
        self.conv_in = _conv(cfg.latent_channels, ch[-1], rngs)
        layers = [ResBlock(ch[-1], ch[-1], g, rngs=rngs)]
        for i in reversed(range(len(ch))):
            layers.append(ResBlock(ch[min(i + 1, len(ch) - 1)], ch[i], g, rngs=rngs))
            if i > 0:
                layers.append(Upsample(ch[i], rngs=rngs))
        self.layers = ModuleList(layers)
        self.norm_out = GroupNorm(ch[0], num_groups=g, rngs=rngs)
        self.conv_out = _conv(ch[0], cfg.in_channels, rngs)

    def __call__(self, z):
        h = self.conv_in(z)  # (B, h, w, ch[-1])
        for layer in self.layers:
            h = layer(h)
        return self.conv_out(nnx.silu(self.norm_out(h)))  # (B, H, W, C)


class VAE(nnx.Module):
    """``encode(x) -> (mean, logvar)``, ``decode(z) -> x_hat``, ``vae(x, key)`` for training."""

    def __init__(self, config: VAEConfig = VAEConfig(), *, rngs: nnx.Rngs):
        f = config.downsample_factor
        if config.input_size % f:
            raise ValueError(
                f"config.input_size={config.input_size} is not divisible by the "
                f"downsampling factor {f} implied by config.channels={config.channels}"
            )
        bad = [c for c in config.channels if c % config.num_groups]
        if bad:
            raise ValueError(
                f"config.channels {config.channels} must all be divisible by "
                f"config.num_groups={config.num_groups}"
            )
        self.config = config
        self.encoder = Encoder(config, rngs=rngs)
        self.decoder = Decoder(config, rngs=rngs)

    def encode(self, x):
        """Posterior parameters ``(mean, logvar)``, each ``(B, H/f, W/f, latent_channels)``."""
        cfg = self.config
        if x.ndim != 4:
            raise ValueError(f"x must have shape (B, H, W, C), got shape {x.shape}")
        if x.shape[-1] != cfg.in_channels:
            raise ValueError(
                f"x has {x.shape[-1]} channels but config.in_channels={cfg.in_channels}"
            )
        if x.shape[1] % cfg.downsample_factor or x.shape[2] % cfg.downsample_factor:
            raise ValueError(
                f"x spatial size {x.shape[1]}x{x.shape[2]} is not divisible by the "
                f"downsampling factor {cfg.downsample_factor}"
            )
        moments = self.encoder(x)  # (B, h, w, 2 * latent)
        mean, logvar = jnp.split(moments, 2, axis=-1)  # 2 x (B, h, w, latent)
        # Same clamp as SD's VAE: keeps exp(logvar) finite early in training.
        return mean, jnp.clip(logvar, -30.0, 20.0)

    def decode(self, z):
        """Image ``(B, H, W, C)``, approximately in ``[-1, 1]`` (linear output, see module doc)."""
        cfg = self.config
        if z.ndim != 4 or z.shape[-1] != cfg.latent_channels:
            raise ValueError(
                f"z must have shape (B, h, w, {cfg.latent_channels}), got shape {z.shape}"
            )
        return self.decoder(z)

    def __call__(self, x, key):
        """``(x_hat, mean, logvar)`` with ``z ~ q(z|x)`` drawn with the explicit ``key``."""
        mean, logvar = self.encode(x)
        return self.decode(sample_latent(key, mean, logvar)), mean, logvar


def sample_latent(key, mean, logvar):
    """Reparameterisation ``z = mean + exp(logvar / 2) * eps``, ``eps ~ N(0, I)`` from ``key``."""
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    return mean + jnp.exp(0.5 * logvar) * eps


def kl_to_standard_normal(mean, logvar):
    """``KL(N(mean, exp(logvar)) || N(0, I))`` summed over all but the batch axis: ``(B,)``."""
    kl = 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)
    return kl.reshape(kl.shape[0], -1).sum(axis=1)  # (B,)


def vae_loss(x, x_hat, mean, logvar, kl_weight: float):
    """``recon + kl_weight * kl`` and a metrics dict.

    ``recon`` is the per-element MSE (mean over batch, pixels and channels); ``kl`` is the
    closed-form KL summed over latent elements and averaged over the batch. Because one is
    a per-pixel mean and the other a per-image sum, ``kl_weight`` must be small (SD's VAE
    used 1e-6 against a per-image *summed* reconstruction loss). Larger weights buy a
    latent closer to ``N(0, I)`` at the cost of blurrier reconstructions; the value is a
    training choice, tuned by watching both, not fixed here.
    """
    recon = jnp.mean(jnp.square(x - x_hat))
    kl = jnp.mean(kl_to_standard_normal(mean, logvar))
    total = recon + kl_weight * kl
    return total, {"loss": total, "recon": recon, "kl": kl}


def latent_scale_factor(latents) -> float:
    """``1 / std`` of encoded latents, so that ``latents * factor`` has unit variance.

    This is how Stable Diffusion's ``0.18215`` was obtained: encode a batch of training
    images, draw ``z ~ q(z|x)``, and take one over the standard deviation of all the
    latent values. Measure it once on real data from the trained VAE, store it with the
    model, multiply latents by it before diffusion and divide by it before decoding.
    Only the scale is fixed; the mean is left as is (SD3 and later also subtract a
    measured shift).
    """
    std = float(np.std(np.asarray(latents, dtype=np.float64)))
    if not np.isfinite(std) or std == 0.0:
        raise ValueError(f"latents must be finite and not constant (std={std})")
    return 1.0 / std
