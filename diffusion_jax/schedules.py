"""Noise schedules: the betas of the forward chain and everything derived from them.

A :class:`Schedule` is an immutable pytree holding ``betas`` (beta_t, t = 0..T-1) and
their running product ``alpha_bars`` (alpha_bar_t = prod_{s<=t} (1 - beta_s), DDPM
eq. 4). Every other quantity (alpha_t, SNR, log-SNR, the square roots) is derived on
demand, so nothing is stored twice. Products are formed in float64 on the host and
cast once to float32, which matches diffusers' ``DDPMScheduler`` to float32 precision.

Constructors mirror diffusers' ``beta_schedule`` names: ``"linear"``,
``"scaled_linear"`` (Stable Diffusion) and ``"squaredcos_cap_v2"`` (the cosine
schedule of Nichol & Dhariwal 2021, alias ``"cosine"``), plus
:func:`rescale_zero_terminal_snr` (Lin et al. 2024, Algorithm 1).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from diffusion_jax._checks import check_choice, check_timesteps, take_timesteps

__all__ = ["Schedule", "from_betas", "linear", "scaled_linear", "cosine", "rescale_zero_terminal_snr",
           "make_schedule", "SCHEDULE_NAMES"]


@functools.partial(
    jax.tree_util.register_dataclass, data_fields=["betas", "alpha_bars"], meta_fields=["name"]
)
@dataclasses.dataclass(frozen=True)
class Schedule:
    """A discrete variance schedule with ``T = len(betas)`` integer timesteps ``0..T-1``."""

    betas: jax.Array  # (T,) beta_t, the per-step noise variance
    alpha_bars: jax.Array  # (T,) alpha_bar_t = prod_{s<=t} (1 - beta_s)
    name: str = "custom"

    @property
    def num_timesteps(self) -> int:
        return self.betas.shape[0]

    @property
    def alphas(self):
        return 1.0 - self.betas  # (T,) alpha_t

    @property
    def alpha_bars_prev(self):
        """alpha_bar_{t-1} with alpha_bar_{-1} = 1 (the clean data), shape ``(T,)``."""
        return jnp.concatenate([jnp.ones((1,), self.alpha_bars.dtype), self.alpha_bars[:-1]])

    @property
    def snr(self):
        """SNR(t) = alpha_bar_t / (1 - alpha_bar_t) (Kingma et al. 2021, eq. 2)."""
        return self.alpha_bars / (1.0 - self.alpha_bars)

    @property
    def log_snr(self):
        return jnp.log(self.alpha_bars) - jnp.log1p(-self.alpha_bars)

    @property
    def signal_scale(self):
        return jnp.sqrt(self.alpha_bars)  # sqrt(alpha_bar_t), the x0 coefficient

    @property
    def noise_scale(self):
        return jnp.sqrt(1.0 - self.alpha_bars)  # sqrt(1 - alpha_bar_t), the eps coefficient

    def at(self, t):
        """``alpha_bar_t`` for integer timesteps ``t`` (validated when concrete, NaN when a
        traced ``t`` is out of range: see :mod:`diffusion_jax._checks`)."""
        t = check_timesteps(t, self.num_timesteps)
        return take_timesteps(self.alpha_bars, t)


def from_betas(betas, name: str = "custom") -> Schedule:
    """Build a schedule from any betas in (0, 1]; alpha_bar is the float64 running product."""
    betas = np.asarray(betas, dtype=np.float64)
    if betas.ndim != 1 or betas.size < 1:
        raise ValueError(f"betas must be a non-empty 1-D array, got shape {betas.shape}")
    if not np.all(np.isfinite(betas)) or np.any(betas < 0) or np.any(betas > 1):
        raise ValueError("betas must be finite and lie in [0, 1]")
    alpha_bars = np.cumprod(1.0 - betas)
    return Schedule(jnp.asarray(betas, jnp.float32), jnp.asarray(alpha_bars, jnp.float32), name)


def _check_t(num_timesteps):
    if int(num_timesteps) != num_timesteps or num_timesteps < 1:
        raise ValueError(f"num_timesteps must be a positive integer, got {num_timesteps!r}")
    return int(num_timesteps)


def linear(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """DDPM's linear betas (Ho et al. 2020, sec. 4): ``linspace(beta_start, beta_end, T)``."""
    T = _check_t(num_timesteps)
    # diffusers builds this linspace in float32; rounding to float32 first keeps betas bit-equal.
    betas = np.linspace(beta_start, beta_end, T, dtype=np.float64).astype(np.float32)
    return from_betas(betas, "linear")


def scaled_linear(
    num_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> Schedule:
    """Stable Diffusion's schedule: linear in sqrt(beta), then squared."""
    T = _check_t(num_timesteps)
    root = np.linspace(beta_start**0.5, beta_end**0.5, T, dtype=np.float64).astype(np.float32)
    return from_betas(root.astype(np.float64) ** 2, "scaled_linear")


def cosine(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """Nichol & Dhariwal 2021, eq. 17: alpha_bar(u) = cos^2(((u + s)/(1 + s)) * pi/2).

    beta_t = min(1 - alpha_bar((t+1)/T) / alpha_bar(t/T), max_beta); the cap keeps the
    last step from being a pure-noise jump (beta = 1) with the offset ``s``.
    """
    T = _check_t(num_timesteps)

    def f(u):
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)]
    return from_betas(np.asarray(betas, np.float32), "squaredcos_cap_v2")


def rescale_zero_terminal_snr(schedule: Schedule) -> Schedule:
    """Shift and scale sqrt(alpha_bar) so that alpha_bar_{T-1} = 0 exactly (Lin et al. 2024).

    sqrt(alpha_bar_0) is kept; the last one becomes 0, so the final timestep is pure noise
    and the model sees at training time what the sampler starts from. Use it with
    ``prediction="v"``: an eps-model cannot recover x0 at SNR = 0.
    """
    root = np.sqrt(np.cumprod(1.0 - np.asarray(schedule.betas, np.float64)))  # (T,)
    first, last = root[0], root[-1]
    root = (root - last) * first / (first - last)
    alpha_bars = root**2
    alphas = np.concatenate([alpha_bars[:1], alpha_bars[1:] / alpha_bars[:-1]])
    betas = 1.0 - alphas  # the last beta is exactly 1
    return Schedule(
        jnp.asarray(betas, jnp.float32),
        jnp.asarray(alpha_bars, jnp.float32),
        schedule.name + "+zero_snr",
    )


_CONSTRUCTORS = {
    "linear": linear,
    "scaled_linear": scaled_linear,
    "squaredcos_cap_v2": cosine,
    "cosine": cosine,
}


#: Every name :func:`make_schedule` accepts.
SCHEDULE_NAMES = tuple(_CONSTRUCTORS)


def make_schedule(
    name: str, num_timesteps: int = 1000, *, zero_terminal_snr: bool = False, **kwargs
) -> Schedule:
    """Build a schedule by name (diffusers' ``beta_schedule`` strings are accepted)."""
    check_choice(name, _CONSTRUCTORS, name="schedule")
    schedule = _CONSTRUCTORS[name](num_timesteps, **kwargs)
    return rescale_zero_terminal_snr(schedule) if zero_terminal_snr else schedule
