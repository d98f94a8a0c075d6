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
variance), :func:`ddim_grid` and :func:`dpm_grid` (the timesteps diffusers' DDIM and
DPM-Solver schedulers visit), :func:`ddpm_grid` (all T steps, DDPM's exact posterior),
:func:`sigma_grid` (any VE noise levels with the network times to report) and
:func:`karras_grid` (Karras et al.'s levels on a schedule), :func:`flow_grid`
(rectified-flow times). Everything is float32, as the samplers compute.

``final`` says where the last step lands: ``"zero"`` on the data (a = 1, s = 0), or
``"sigma_min"`` on the schedule's least noisy level alpha_bar_0 (diffusers'
``final_sigmas_type``; for DDIM it is ``set_alpha_to_one=False``).
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
from diffusion_jax.timesteps import ddim_timesteps, dpm_timesteps, karras_sigmas, schedule_sigmas, sigma_to_t

__all__ = ["PATHS", "Grid", "ancestral_coefficients", "eta_sigmas", "sigma_hat", "timestep_grid", "ddim_grid",
           "ddpm_grid", "flow_grid", "dpm_grid", "karras_grid", "sigma_grid", "FINALS"]

PATHS = ("vp", "flow")  # variance-preserving diffusion, rectified flow
FINALS = ("zero", "sigma_min")  # where the last step lands: the data, or alpha_bar_0


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


def _check_eta(eta):
    if is_concrete(eta) and not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta must lie in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like), got {eta}")


def _check_final(final):
    if final not in FINALS:
        raise ValueError(f"unknown final {final!r}; expected 'zero' (land on the data) or "
                         f"'sigma_min' (stop at alpha_bar_0)")


def timestep_grid(schedule: Schedule, timesteps, *, eta: float = 0.0, noise: str = "eta",
                  final: str = "zero") -> Grid:
    """A descending sub-grid of ``schedule``'s timesteps (e.g. from :func:`ddim_timesteps`).

    ``noise="eta"``: DDIM with ``eta`` (0 deterministic, 1 = the respaced chain's
    posterior, i.e. DDPM on the sub-grid). ``noise="sigma_hat"``: the posterior mean
    (eta = 1) plus the larger std :func:`sigma_hat`, as the DDIM paper's last row.
    ``final``: the last step lands on the data (``"zero"``) or on alpha_bar_0.
    """
    if noise not in ("eta", "sigma_hat"):
        raise ValueError(f"unknown noise {noise!r}; expected 'eta' or 'sigma_hat'")
    _check_eta(eta)
    _check_final(final)
    t = jnp.asarray(_check_descending(timesteps, schedule.num_timesteps), jnp.int32)
    ab = schedule.alpha_bars[t]  # (S,)
    nxt = jnp.concatenate([t[1:], jnp.array([-1], jnp.int32)])
    ab_last = 1.0 if final == "zero" else schedule.alpha_bars[0]  # 1 = the data
    ab_next = jnp.where(nxt >= 0, schedule.alpha_bars[jnp.maximum(nxt, 0)], ab_last)
    a, s, a_next, s_next = jnp.sqrt(ab), jnp.sqrt(1 - ab), jnp.sqrt(ab_next), jnp.sqrt(1 - ab_next)
    sigma_mean = eta_sigmas(ab, ab_next, 1.0 if noise == "sigma_hat" else _f32(eta))
    sigma = sigma_hat(ab, ab_next) if noise == "sigma_hat" else sigma_mean
    c_x0, c_xt = ancestral_coefficients(a, s, a_next, s_next, sigma_mean)
    return Grid(t, a, s, a_next, s_next, c_x0, c_xt, sigma, "vp")


def ddim_grid(schedule: Schedule, num_steps: int, *, eta: float = 0.0, spacing: str = "leading",
              noise: str = "eta", final: str = "zero") -> Grid:
    """:func:`timestep_grid` on diffusers' ``DDIMScheduler`` grid (:func:`ddim_timesteps`)."""
    return timestep_grid(schedule, ddim_timesteps(schedule.num_timesteps, num_steps, spacing), eta=eta, noise=noise,
                         final=final)


def dpm_grid(schedule: Schedule, num_steps: int, *, spacing: str = "linspace", final: str = "zero",
             eta: float = 0.0) -> Grid:
    """:func:`timestep_grid` on diffusers' ``DPMSolverMultistepScheduler`` grid (:func:`dpm_timesteps`).

    With the defaults (``spacing="linspace"``, ``final="zero"``) it is that scheduler's
    default: n evaluations at t = T-1, ..., round((T-1) / n), then a step onto the data.
    """
    return timestep_grid(schedule, dpm_timesteps(schedule.num_timesteps, num_steps, spacing), eta=eta, final=final)


def sigma_grid(t, sigmas, *, eta: float = 0.0) -> Grid:
    """A diffusion grid through VE noise levels ``sigmas`` ``(S + 1,)``, the network told ``t`` ``(S,)``.

    sigma = s / a is the noise-to-signal ratio (x / a = x0 + sigma eps, Karras et al.'s
    variable), so each level sits on the VP path at a = 1 / sqrt(1 + sigma^2),
    s = sigma a: diffusers' ``_sigma_to_alpha_sigma_t``. The last sigma may be 0 (the data).
    The update coefficients use these levels themselves, whatever ``t`` the network is
    told (an integer-time network is told a rounded timestep, see :func:`karras_grid`).
    """
    _check_eta(eta)
    sig = np.asarray(sigmas, np.float64)
    t = np.asarray(t)
    if sig.ndim != 1 or sig.size < 2 or t.shape != (sig.size - 1,):
        raise ValueError(f"sigmas must be (S + 1,) noise levels and t the (S,) network times, got shapes "
                         f"{sig.shape} and {t.shape}")
    if not (np.all(np.isfinite(sig)) and sig.min() >= 0 and np.all(np.diff(sig[:-1]) < 0) and sig[-1] <= sig[-2]):
        raise ValueError("sigmas must be finite, non-negative and decrease strictly (the last may equal "
                         "the one before it), from noise towards data")
    a_all = 1.0 / np.sqrt(1.0 + sig**2)  # (S + 1,)
    a, s = _f32(a_all), _f32(sig * a_all)
    ab = _f32(a_all**2)
    sigma_mean = eta_sigmas(ab[:-1], ab[1:], _f32(eta))
    c_x0, c_xt = ancestral_coefficients(a[:-1], s[:-1], a[1:], s[1:], sigma_mean)
    t = jnp.asarray(t, jnp.int32 if np.issubdtype(t.dtype, np.integer) else jnp.float32)
    return Grid(t, a[:-1], s[:-1], a[1:], s[1:], c_x0, c_xt, sigma_mean, "vp")


def karras_grid(schedule: Schedule, num_steps: int, *, rho: float = 7.0, final: str = "zero",
                eta: float = 0.0) -> Grid:
    """Karras et al. 2022's noise levels (eq. 5, rho = 7) between the schedule's extremes.

    The n levels run from sigma_max = sigma_{T-1} to sigma_min = sigma_0 (see
    :func:`~diffusion_jax.timesteps.schedule_sigmas`), then the last step lands on
    sigma = 0 (``final="zero"``) or stays at sigma_min (``"sigma_min"``: a step that
    does not move). The network is told t = round(sigma_to_t(sigma)) (log-sigma
    interpolation, :func:`~diffusion_jax.timesteps.sigma_to_t`) while the update uses
    sigma itself, exactly as diffusers' ``use_karras_sigmas=True``; for
    ``squaredcos_cap_v2`` diffusers truncates instead of rounding, this rounds always.

    A zero-terminal-SNR schedule has sigma_max = inf and is refused: diffusers clamps
    alpha_bar_{T-1} to 2^-24 there, which makes its sigmas non-monotonic.
    """
    _check_final(final)
    ab = np.asarray(schedule.alpha_bars, np.float64)
    if ab[-1] <= 0:
        raise ValueError("karras=True needs a finite sigma_max, but this schedule has zero terminal SNR "
                         "(alpha_bar_{T-1} = 0); sample it on its own timesteps (karras=False)")
    sched = schedule_sigmas(ab)  # (T,)
    sig = karras_sigmas(float(sched[0]), float(sched[-1]), num_steps, rho)  # (n,)
    t = np.round(sigma_to_t(sig, ab)).astype(np.int64)
    last = 0.0 if final == "zero" else sig[-1]
    return sigma_grid(t, np.concatenate([sig, [last]]), eta=eta)


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
