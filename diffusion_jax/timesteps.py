"""Which timesteps to train on and which to sample on.

Training draws (all take ``key`` first):
  * :func:`uniform_timesteps`: integers ``0..T-1`` uniformly (DDPM's ``t ~ U{1..T}``).
  * :func:`uniform_times`: flow-matching times ``t ~ U(0, 1)``.
  * :func:`logit_normal_times`: ``t = sigmoid(m + s n)``, n ~ N(0, 1) (SD3, Esser et al.
    2024, eq. 19), which concentrates training on the middle of the path.
  * :func:`shift_times`: SD3's resolution shift ``t' = s t / (1 + (s - 1) t)``, which
    pushes times towards the noisy end when ``s > 1``.

Sampling grids: :func:`ddim_timesteps` reproduces diffusers' ``DDIMScheduler`` grids
(``steps_offset=0``) for the three ``timestep_spacing`` modes of Lin et al. 2024, Table 2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffusion_jax._checks import check_choice

__all__ = ["SPACINGS", "uniform_timesteps", "uniform_times", "logit_normal_times", "logit_normal_pdf",
           "shift_times", "ddim_timesteps"]

SPACINGS = ("leading", "trailing", "linspace")


def uniform_timesteps(key, batch: int, num_timesteps: int):
    """``(batch,)`` int32 timesteps drawn uniformly from ``0..T-1``."""
    return jax.random.randint(key, (batch,), 0, num_timesteps, dtype=jnp.int32)


def uniform_times(key, batch: int):
    """``(batch,)`` float32 flow times drawn uniformly from [0, 1)."""
    return jax.random.uniform(key, (batch,), jnp.float32)


def logit_normal_times(key, batch: int, mean: float = 0.0, std: float = 1.0):
    """``(batch,)`` flow times ``sigmoid(mean + std * n)``; density in :func:`logit_normal_pdf`."""
    return jax.nn.sigmoid(mean + std * jax.random.normal(key, (batch,), jnp.float32))


def logit_normal_pdf(t, mean: float = 0.0, std: float = 1.0):
    """Density of :func:`logit_normal_times` on (0, 1) (SD3 eq. 19)."""
    t = jnp.asarray(t, jnp.float32)
    logit = jnp.log(t) - jnp.log1p(-t)
    pdf = jnp.exp(-0.5 * ((logit - mean) / std) ** 2) / (std * jnp.sqrt(2 * jnp.pi) * t * (1 - t))
    return jnp.where((t > 0) & (t < 1), pdf, 0.0)  # the limits at both ends are 0


def shift_times(t, shift: float):
    """SD3's timestep shift t' = s t / (1 + (s - 1) t); ``shift=1`` is the identity."""
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    t = jnp.asarray(t)
    return shift * t / (1.0 + (shift - 1.0) * t)


def ddim_timesteps(num_timesteps: int, num_steps: int, spacing: str = "leading") -> np.ndarray:
    """The descending int timestep grid a DDIM sampler visits, shape ``(num_steps,)``.

    * ``leading``:  0, k, 2k, ... with k = T // n (Stable Diffusion's original choice;
      never visits the noisiest timestep T-1).
    * ``trailing``: round(T, T - T/n, ..., T/n) - 1, which starts at T-1 (pair it with
      zero-terminal SNR).
    * ``linspace``: round(linspace(0, T-1, n)), which also starts at T-1.
    """
    check_choice(spacing, SPACINGS, name="spacing")
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    if num_steps > num_timesteps:
        raise ValueError(
            f"num_steps={num_steps} exceeds the schedule's T={num_timesteps} timesteps; "
            f"a sampler cannot visit more timesteps than were trained"
        )
    if spacing == "leading":
        grid = np.arange(num_steps) * (num_timesteps // num_steps)
    elif spacing == "trailing":
        # arange over a float step can overshoot by one element (a -1 timestep, e.g.
        # T=1000, n=61); diffusers shares the formula, so keep it and cut to n entries.
        grid = (np.round(np.arange(num_timesteps, 0, -num_timesteps / num_steps)) - 1)[:num_steps]
        return grid.astype(np.int64)
    else:
        grid = np.round(np.linspace(0, num_timesteps - 1, num_steps))
    return grid[::-1].astype(np.int64).copy()
