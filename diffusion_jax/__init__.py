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
denoiser is a :class:`~diffusion_jax.denoisers.Denoiser`, a network together with what
it predicts (``"eps"``, ``"x0"``, ``"v"`` or a flow ``"velocity"``); every sampler has
the signature ``sample_*(key, denoiser, x, grid, cond)`` and is one compiled program
(its step loop is ``jax.lax.scan``); :data:`diffusion_jax.sampling.SAMPLERS` names them.

Layers (data flows down; a module imports only from its own layer or below, and
``tests/test_layers.py`` checks :data:`LAYERS` against every module's imports)::

    7 shell      cli, demo, toy_demo                       flags at the edge, the main job
    6 studies    studies, costs, exercises.*               steps vs quality, cost, graders
    5 pipeline   presets, pipeline                         presets, train-or-load, sampling front end
    4 metrics    metrics                                   FID/KID/accuracy with the reference classifiers
    3 training   train, train_step, latent, classifier, pretrained,  fitting, VAE codec, shipped weights,
                 distill                                   guidance and progressive distillation
    2 models     models.*, data, checkpoint, distributed   backbones, loaders, atomic saves, the mesh
    1 maths      schedules, timesteps, forward, parameterization, losses, guidance, denoisers,
                 grids, samplers, dpm_solver, flow, sampling, toy, governance
    0 leaves     _checks, _version, configs, paths, timing, provenance, viz   usable by anyone

The heavier modules are not imported here, so ``import diffusion_jax`` stays light.
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

from diffusion_jax._version import __version__  # noqa: F401  (the package version, one place)

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

#: The layer of every module (see the diagram above); tests/test_layers.py enforces it.
LAYERS = {
    **dict.fromkeys(["_checks", "_version", "configs", "paths", "timing", "provenance", "viz"], 0),
    **dict.fromkeys(["schedules", "timesteps", "forward", "parameterization", "losses", "guidance", "denoisers",
                     "grids", "samplers", "dpm_solver", "flow", "sampling", "toy", "governance", "__init__"], 1),
    **dict.fromkeys(["models", "data", "checkpoint", "distributed"], 2),
    **dict.fromkeys(["train", "train_step", "latent", "classifier", "pretrained", "distill"], 3),
    "metrics": 4,
    **dict.fromkeys(["presets", "pipeline"], 5),
    **dict.fromkeys(["studies", "costs", "exercises"], 6),
    **dict.fromkeys(["cli", "demo", "toy_demo", "__main__"], 7),
}
