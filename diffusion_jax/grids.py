"""Sampling grids: where a sampler evaluates the denoiser and how far each step goes.

Every sampler in :mod:`diffusion_jax.samplers` takes a :class:`Grid`, the discrete
version of k-diffusion's ``sigmas`` vector, for any Gaussian path ``x_t = a x0 + s eps``:

* ``t`` ``(S,)``: what the network is told at each of the S steps (integer timesteps for
  diffusion, float times in [0, 1] for rectified flow), from noise towards data;
* ``a``, ``s`` ``(S,)``: the path coefficients there; ``a_next``, ``s_next`` ``(S,)``:
  where each step lands (``a = 1``, ``s = 0`` after the last one: the data);
* ``c_x0``, ``c_xt``, ``sigma`` ``(S,)``: the first-order update every DDPM/DDIM step
  takes, ``x_next = c_x0 x0_hat + c_xt x_t + sigma z`` (DDPM eq. 7 and DDIM eq. 12 are
  both this form); ``sigma = 0`` is deterministic.

Builders: :func:`timestep_grid` (a descending sub-grid of a schedule with DDIM's
``eta``, or any noise vector such as :func:`sigma_hat` for the DDIM paper's larger
variance), :func:`ddpm_grid` (all T steps, DDPM's exact posterior), :func:`flow_grid`
(rectified-flow times). Everything is float32, as the samplers compute.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from diffusion_jax._checks import is_concrete
from diffusion_jax.forward import posterior_coefficients, posterior_variance
from diffusion_jax.schedules import Schedule
from diffusion_jax.timesteps import ddim_timesteps

__all__ = ["PATHS", "Grid", "ancestral_coefficients", "eta_sigmas", "sigma_hat", "timestep_grid", "ddim_grid",
           "ddpm_grid", "flow_grid"]

PATHS = ("vp", "flow")  # variance-preserving diffusion, rectified flow


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["t", "a", "s", "a_next", "s_next", "c_x0", "c_xt", "sigma"],
                   meta_fields=["path"])
@dataclasses.dataclass(frozen=True)
class Grid:
    t: jax.Array  # (S,) network time per step: int32 timesteps (vp) or float32 times (flow)
    a: jax.Array  # (S,) signal coefficient at t
    s: jax.Array  # (S,) noise coefficient at t
    a_next: jax.Array  # (S,) coefficients where the step lands; (1, 0) = the data
    s_next: jax.Array
    c_x0: jax.Array  # (S,) first-order update: x_next = c_x0 x0 + c_xt x_t + sigma z
    c_xt: jax.Array
    sigma: jax.Array  # (S,) std of the fresh noise each step adds
    path: str = "vp"  # "vp" or "flow": which ODE variable a 2nd-order sampler integrates in

    @property
    def num_steps(self) -> int:
        return int(self.t.shape[0])


def _f32(x):
    return jnp.asarray(x, jnp.float32)


def ancestral_coefficients(a, s, a_next, s_next, sigma_mean):
    """``(c_x0, c_xt)`` of the step whose mean is DDIM's with noise std ``sigma_mean``.

    DDIM eq. 12: x_next = a_next x0 + sqrt(s_next^2 - sigma^2) eps + sigma z, with
    eps = (x_t - a x0) / s, collected on x0 and x_t.
    """
    c_xt = jnp.sqrt(jnp.maximum(s_next**2 - sigma_mean**2, 0.0)) / s
    return a_next - c_xt * a, c_xt


def eta_sigmas(alpha_bar, alpha_bar_next, eta):
    """DDIM's sigma_t(eta) (eq. 16) per step; eta = 1 is the posterior std of the chain."""
    return eta * jnp.sqrt((1 - alpha_bar_next) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_next))


def sigma_hat(alpha_bar, alpha_bar_next):
    """The DDIM paper's larger noise (Table 1, last row): sqrt(1 - alpha_bar / alpha_bar_next),
    the beta of the respaced chain; 0 on a step that lands on the data (alpha_bar_next = 1)."""
    return jnp.where(alpha_bar_next < 1.0, jnp.sqrt(jnp.clip(1.0 - alpha_bar / alpha_bar_next, 0.0, 1.0)), 0.0)


def _check_descending(timesteps, num_timesteps: int):
    ts = np.asarray(timesteps)
    if ts.ndim != 1 or ts.size == 0:
        raise ValueError(f"timesteps must be a non-empty 1-D array, got shape {ts.shape}")
    if not np.issubdtype(ts.dtype, np.integer):
        raise TypeError(f"timesteps must be integers in [0, {num_timesteps - 1}], got dtype {ts.dtype}")
    if ts.min() < 0 or ts.max() >= num_timesteps:
        raise ValueError(f"timesteps must lie in [0, {num_timesteps - 1}], got [{ts.min()}, {ts.max()}]")
    if ts.size > 1 and not np.all(np.diff(ts) < 0):
        raise ValueError("timesteps must decrease strictly (from noise towards data)")
    return ts


def timestep_grid(schedule: Schedule, timesteps, *, eta: float = 0.0, noise: str = "eta") -> Grid:
    """A descending sub-grid of ``schedule``'s timesteps (e.g. from :func:`ddim_timesteps`).

    ``noise="eta"``: DDIM with ``eta`` (0 deterministic, 1 = the respaced chain's
    posterior, i.e. DDPM on the sub-grid). ``noise="sigma_hat"``: the posterior mean
    (eta = 1) plus the larger std :func:`sigma_hat`, as the DDIM paper's last row.
    """
    if noise not in ("eta", "sigma_hat"):
        raise ValueError(f"unknown noise {noise!r}; expected 'eta' or 'sigma_hat'")
    if is_concrete(eta) and not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta must lie in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like), got {eta}")
    t = jnp.asarray(_check_descending(timesteps, schedule.num_timesteps), jnp.int32)
    ab = schedule.alpha_bars[t]  # (S,)
    nxt = jnp.concatenate([t[1:], jnp.array([-1], jnp.int32)])
    ab_next = jnp.where(nxt >= 0, schedule.alpha_bars[jnp.maximum(nxt, 0)], 1.0)  # 1 = the data
    a, s, a_next, s_next = jnp.sqrt(ab), jnp.sqrt(1 - ab), jnp.sqrt(ab_next), jnp.sqrt(1 - ab_next)
    sigma_mean = eta_sigmas(ab, ab_next, 1.0 if noise == "sigma_hat" else _f32(eta))
    sigma = sigma_hat(ab, ab_next) if noise == "sigma_hat" else sigma_mean
    c_x0, c_xt = ancestral_coefficients(a, s, a_next, s_next, sigma_mean)
    return Grid(t, a, s, a_next, s_next, c_x0, c_xt, sigma, "vp")


def ddim_grid(schedule: Schedule, num_steps: int, *, eta: float = 0.0, spacing: str = "leading",
              noise: str = "eta") -> Grid:
    """:func:`timestep_grid` on diffusers' ``DDIMScheduler`` grid (:func:`ddim_timesteps`)."""
    return timestep_grid(schedule, ddim_timesteps(schedule.num_timesteps, num_steps, spacing), eta=eta, noise=noise)


def ddpm_grid(schedule: Schedule) -> Grid:
    """Every timestep ``T-1 .. 0`` with DDPM's exact posterior (eq. 7) and std beta_tilde."""
    t = jnp.arange(schedule.num_timesteps - 1, -1, -1, dtype=jnp.int32)
    coef_x0, coef_xt = posterior_coefficients(schedule)
    std = jnp.sqrt(posterior_variance(schedule))  # std[0] = 0: the last step adds no noise
    ab, ab_prev = schedule.alpha_bars[t], schedule.alpha_bars_prev[t]
    return Grid(t, jnp.sqrt(ab), jnp.sqrt(1 - ab), jnp.sqrt(ab_prev), jnp.sqrt(1 - ab_prev),
                coef_x0[t], coef_xt[t], std[t], "vp")


def flow_grid(times) -> Grid:
    """Rectified flow on decreasing ``times`` ``(S + 1,)`` from noise (1) to data (0).

    On this path a = 1 - t and s = t, and the deterministic step x_next = a_next x0 +
    s_next eps is exactly Euler's x + (t_next - t) v with v = eps - x0.
    """
    times = _f32(times)
    if times.ndim != 1 or times.shape[0] < 2:
        raise ValueError(f"times must be a 1-D grid of at least 2 times from 1 to 0, got shape {times.shape}")
    if is_concrete(times):
        if not bool(jnp.all(jnp.diff(times) < 0)):
            raise ValueError("times must decrease strictly (from noise at 1 towards data at 0)")
        if float(times[0]) > 1 or float(times[-1]) < 0:
            raise ValueError(f"times must lie in [0, 1] (0 = data, 1 = noise), got [{float(times[-1])}, {float(times[0])}]")
    t, t_next = times[:-1], times[1:]
    zero = jnp.zeros_like(t)
    a, s, a_next, s_next = 1 - t, t, 1 - t_next, t_next
    c_x0, c_xt = ancestral_coefficients(a, s, a_next, s_next, zero)
    return Grid(t, a, s, a_next, s_next, c_x0, c_xt, zero, "flow")
