"""Which timesteps to train on and which to sample on.

Training draws (all take ``key`` first):
  * :func:`uniform_timesteps`: integers ``0..T-1`` uniformly (DDPM's ``t ~ U{1..T}``).
  * :func:`uniform_times`: flow-matching times ``t ~ U(0, 1)``.
  * :func:`logit_normal_times`: ``t = sigmoid(m + s n)``, n ~ N(0, 1) (SD3, Esser et al.
    2024, eq. 19), which concentrates training on the middle of the path.
  * :func:`shift_times`: SD3's resolution shift ``t' = s t / (1 + (s - 1) t)``, which
    pushes times towards the noisy end when ``s > 1``.

Sampling grids (all descending, from noise towards data):
  * :func:`ddim_timesteps` reproduces diffusers' ``DDIMScheduler`` grids (``steps_offset=0``)
    for the three ``timestep_spacing`` modes of Lin et al. 2024, Table 2;
  * :func:`dpm_timesteps` the same three modes as ``DPMSolverMultistepScheduler`` places
    them: n + 1 points whose last one is the data itself, so no step evaluates at t = 0;
  * :func:`karras_sigmas` Karras et al. 2022's noise levels (eq. 5) and :func:`sigma_to_t`,
    the timestep a network is told at a noise level between two trained ones.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffusion_jax._checks import check_choice

__all__ = ["SPACINGS", "uniform_timesteps", "uniform_times", "logit_normal_times", "logit_normal_pdf",
           "shift_times", "ddim_timesteps", "dpm_timesteps", "karras_sigmas", "schedule_sigmas", "sigma_to_t"]

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


def _positive_steps(num_steps):
    if isinstance(num_steps, bool) or int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    return int(num_steps)


def dpm_timesteps(num_timesteps: int, num_steps: int, spacing: str = "linspace") -> np.ndarray:
    """The descending int grid diffusers' ``DPMSolverMultistepScheduler`` visits, ``(num_steps,)``.

    Its grid has n + 1 points of which the last, t = 0, is replaced by the data (sigma = 0),
    so the n evaluations all sit at t > 0 (``steps_offset=0``, ``lambda_min_clipped=-inf``):

    * ``linspace`` (diffusers' default): round(linspace(0, T-1, n + 1)) without its 0;
    * ``leading``: k n, ..., 2k, k with k = T // (n + 1);
    * ``trailing``: as :func:`ddim_timesteps`. For 62 values of n at T = 1000 (n = 61 is
      the first) diffusers' own float ``arange`` returns n + 1 timesteps ending in -1; this
      function, like its DDIM grid, keeps the first n.
    """
    check_choice(spacing, SPACINGS, name="spacing")
    if spacing == "trailing":
        return ddim_timesteps(num_timesteps, num_steps, "trailing")
    n = _positive_steps(num_steps)
    if n > num_timesteps - 1:  # n + 1 distinct points in 0..T-1
        raise ValueError(f"num_steps={n} is too many for DPM-Solver's {spacing!r} grid on T={num_timesteps}: "
                         f"it places n + 1 distinct timesteps, so n <= {num_timesteps - 1}")
    if spacing == "linspace":
        grid = np.round(np.linspace(0, num_timesteps - 1, n + 1))
    else:
        grid = np.arange(n + 1) * (num_timesteps // (n + 1))
    return grid[::-1][:-1].astype(np.int64).copy()


def karras_sigmas(sigma_min: float, sigma_max: float, num_steps: int, rho: float = 7.0) -> np.ndarray:
    """Karras et al. 2022, eq. 5: ``(num_steps,)`` float64 noise levels from sigma_max to sigma_min.

    sigma_i = (sigma_max^(1/rho) + i / (n - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
    evenly spaced in sigma^(1/rho), so rho = 7 crowds the steps towards sigma_min. The
    final sigma_N = 0 (the data) is not included; the grid builders append it.
    """
    if not 0 < sigma_min < sigma_max < np.inf:
        raise ValueError(f"karras sigmas need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, "
                         f"sigma_max={sigma_max}")
    if not rho > 0:
        raise ValueError(f"rho must be positive (Karras et al. use 7), got {rho}")
    n = _positive_steps(num_steps)
    ramp = np.linspace(0.0, 1.0, n)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def schedule_sigmas(alpha_bars) -> np.ndarray:
    """sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t), the VE noise level of each timestep ``(T,)``."""
    ab = np.asarray(alpha_bars, np.float64)
    with np.errstate(divide="ignore"):
        return np.sqrt((1.0 - ab) / ab)  # inf where alpha_bar = 0 (zero terminal SNR)


def sigma_to_t(sigmas, alpha_bars) -> np.ndarray:
    """Fractional timesteps for noise levels ``sigmas``: log-sigma interpolated linearly.

    The rule of diffusers' ``_sigma_to_t`` (and k-diffusion's): with the schedule's
    log sigma_t increasing in t, a sigma between sigma_k and sigma_{k+1} maps to
    t = k + (log sigma - log sigma_k) / (log sigma_{k+1} - log sigma_k), clamped to
    [0, T-1]. Round it to tell an integer-time network (:func:`grids.karras_grid` does).
    """
    log_sched = np.log(schedule_sigmas(alpha_bars))  # (T,)
    if not np.all(np.diff(log_sched) > 0):
        raise ValueError("sigma_to_t needs a schedule whose noise level grows with t (alpha_bar decreasing)")
    log_sigma = np.log(np.maximum(np.asarray(sigmas, np.float64), 1e-10))
    return np.interp(log_sigma, log_sched, np.arange(log_sched.shape[0], dtype=np.float64))
