"""diffusion_jax: a small functional JAX library for learning diffusion models.

Notation (names in the code follow the papers)

=================  ==================================================================
symbol / name      meaning
=================  ==================================================================
``T``              number of training timesteps; integer timesteps are ``0..T-1``
``betas``          beta_t, variance added by forward step t (DDPM eq. 2)
``alphas``         alpha_t = 1 - beta_t
``alpha_bars``     alpha_bar_t = prod_{s<=t} alpha_s; q(x_t|x0) = N(sqrt(ab) x0, (1-ab) I)
``snr``            SNR(t) = alpha_bar_t / (1 - alpha_bar_t);  ``log_snr`` its log
``x0``             clean data, images ``(B, H, W, C)`` in [-1, 1] (any ``(B, ...)`` works)
``x_t``            noised data at timestep t
``eps``            standard normal noise; also an eps-prediction
``v``              velocity target sqrt(ab) eps - sqrt(1-ab) x0 (Salimans & Ho 2022)
``cond``           condition (class labels ``(B,)`` or tokens); a null value = uncond.
``scale``          CFG scale s (diffusers: 1 = conditional); the paper's w = s - 1
``eta``            DDIM stochasticity in [0, 1]; 0 deterministic, 1 DDPM-like
``t`` (flow)       continuous time in [0, 1]: **0 = data, 1 = noise**
=================  ==================================================================

Conventions: every random function takes an explicit ``jax.random`` key first; a
denoiser is any callable ``denoise(x_t, t, cond) -> prediction`` whose meaning is named
by ``prediction`` (``"eps"``, ``"x0"``, ``"v"``); every sampler is one compiled
program (its step loop is ``jax.lax.scan``).

Modules: :mod:`~diffusion_jax.schedules`, :mod:`~diffusion_jax.forward`,
:mod:`~diffusion_jax.parameterization`, :mod:`~diffusion_jax.losses`,
:mod:`~diffusion_jax.timesteps`, :mod:`~diffusion_jax.samplers`,
:mod:`~diffusion_jax.guidance`, :mod:`~diffusion_jax.flow`, :mod:`~diffusion_jax.toy` (the math core);
:mod:`~diffusion_jax.models`, :mod:`~diffusion_jax.data`, :mod:`~diffusion_jax.train`,
:mod:`~diffusion_jax.checkpoint`, :mod:`~diffusion_jax.latent`, :mod:`~diffusion_jax.pipeline`
(models and training); :mod:`~diffusion_jax.metrics`, :mod:`~diffusion_jax.tradeoffs`
(measuring quality and cost); :mod:`~diffusion_jax.governance`,
:mod:`~diffusion_jax.provenance` (routing and labelling generated media);
:mod:`~diffusion_jax.exercises` (the lessons' grader). The heavier modules are not
imported here, so ``import diffusion_jax`` stays light.
"""

from diffusion_jax import flow, forward, guidance, losses, parameterization, samplers, schedules, timesteps, toy
from diffusion_jax.flow import euler_sample, flow_loss, heun_sample, interpolate
from diffusion_jax.forward import add_noise, q_posterior, q_sample
from diffusion_jax.guidance import cfg_combine, drop_labels, guided_denoiser
from diffusion_jax.losses import diffusion_loss
from diffusion_jax.parameterization import convert, to_eps, to_v, to_x0, velocity
from diffusion_jax.samplers import ddim_invert, ddim_sample, ddpm_sample, initial_noise
from diffusion_jax.schedules import Schedule, make_schedule, rescale_zero_terminal_snr
from diffusion_jax.timesteps import ddim_timesteps

__version__ = "0.1.0"

__all__ = [
    "Schedule", "make_schedule", "rescale_zero_terminal_snr",
    "q_sample", "add_noise", "q_posterior",
    "convert", "to_eps", "to_x0", "to_v", "velocity",
    "diffusion_loss", "flow_loss",
    "ddim_timesteps", "initial_noise", "ddpm_sample", "ddim_sample", "ddim_invert",
    "euler_sample", "heun_sample", "interpolate",
    "drop_labels", "cfg_combine", "guided_denoiser",
    "flow", "forward", "guidance", "losses", "parameterization", "samplers", "schedules",
    "timesteps", "toy",
]
