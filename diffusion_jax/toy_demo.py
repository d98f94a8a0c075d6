"""Every sampler on the exact 2-D toy: a figure and a JSON of statistics.

With the analytically optimal denoiser there is no network to blame, so differences
between panels are the samplers' own: discretisation bias of few-step DDIM, the extra
noise of eta = 1, the straighter paths of rectified flow, and what guidance does.
Every file it writes carries a provenance label (PNG text chunks, ``provenance`` in
stats.json); see :mod:`diffusion_jax.provenance`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from diffusion_jax import flow, guidance, provenance, samplers, schedules, toy, viz

__all__ = ["ToyDemoConfig", "OUTPUT_FILES", "MAX_SAMPLES", "check_config", "sample_statistics", "run",
           "provenance_record"]

#: What :func:`run` writes into ``out_dir``.
OUTPUT_FILES = ("samplers.png", "trajectories.png", "stats.json")
#: More points than this only slows the seven samplers down (weight errors are already ~0.05%).
MAX_SAMPLES = 1_000_000


@dataclasses.dataclass(frozen=True)
class ToyDemoConfig:
    """The toy figure's settings; every field is a ``diffusion-jax toy`` flag of the same
    name (``num_samples`` is ``--num-samples``). :func:`check_config` says what each accepts."""

    num_samples: int = 4000  # points per sampler, 1..MAX_SAMPLES; weight errors shrink like 1/sqrt(n)
    seed: int = 0  # every sampler starts from the same x_T for this seed; 0 <= seed < 2**32
    schedule: str = "linear"  # DDPM/DDIM schedule name (schedules.SCHEDULE_NAMES)
    guidance_scale: float = 3.0  # CFG scale s for the guided panel (1 = plain conditional)
    guided_label: int = 2  # mixture component the guided panel asks for: 0, 1 or 2
    out_dir: str = "outputs/toy"


def check_config(cfg: ToyDemoConfig, *, as_flags: bool = False) -> ToyDemoConfig:
    """Refuse a config that cannot run, before any work, with one line naming the field
    (``as_flags``: the command-line flag) and what it accepts; returns ``cfg``."""
    from diffusion_jax._checks import arg_name, check_int, check_number, check_output_dir

    def n(field):
        return arg_name(field, as_flags)

    check_int(cfg.num_samples, name=n("num_samples"), min=1, max=MAX_SAMPLES)
    check_int(cfg.seed, name=n("seed"), min=0, max=2**32 - 1)
    if cfg.schedule not in schedules.SCHEDULE_NAMES:
        raise ValueError(f"{n('schedule')} must be one of {list(schedules.SCHEDULE_NAMES)}, got {cfg.schedule!r}")
    check_number(cfg.guidance_scale, name=n("guidance_scale"))
    # The guided panel asks for one real component; the null label K would be unconditional.
    K = len(toy.DEFAULT_MIXTURE["weights"])
    label = check_int(cfg.guided_label, name=n("guided_label"))
    if not 0 <= label < K:
        raise ValueError(f"{n('guided_label')} must be a component of the {K}-component mixture, 0..{K - 1}, "
                         f"got {label}")
    check_output_dir(cfg.out_dir, name=n("out_dir"), files=OUTPUT_FILES)
    return cfg


def _sampler_table(cfg: ToyDemoConfig, mix: toy.GaussianMixture, sched: schedules.Schedule):
    shape = (cfg.num_samples, mix.means.shape[1])
    eps_fn, v_fn, vel = mix.denoiser(sched, "eps"), mix.denoiser(sched, "v"), mix.velocity_fn()
    labels = jnp.full((cfg.num_samples,), cfg.guided_label, jnp.int32)
    guided = guidance.guided_denoiser(eps_fn, cfg.guidance_scale, mix.null_label)
    return [
        ("DDPM-1000", 1000, lambda k: samplers.ddpm_sample(k, eps_fn, sched, shape)),
        ("DDIM-50 eta=0", 50, lambda k: samplers.ddim_sample(k, eps_fn, sched, shape, num_steps=50)),
        ("DDIM-50 eta=1 (v)", 50, lambda k: samplers.ddim_sample(k, v_fn, sched, shape, num_steps=50, eta=1.0, prediction="v")),
        ("DDIM-10 eta=0 trailing", 10, lambda k: samplers.ddim_sample(k, eps_fn, sched, shape, num_steps=10, spacing="trailing")),
        ("RF Euler-50", 50, lambda k: flow.euler_sample(k, vel, shape, num_steps=50)),
        ("RF Heun-10", 19, lambda k: flow.heun_sample(k, vel, shape, num_steps=10)),
        (f"CFG s={cfg.guidance_scale:g}, label {cfg.guided_label}", 100,
         lambda k: samplers.ddim_sample(k, guided, sched, shape, labels, num_steps=50)),
    ]


def sample_statistics(x, mix: toy.GaussianMixture) -> dict:
    """Component weights (nearest mean), per-component means and spreads, log-likelihood."""
    x = np.asarray(x, np.float64)
    means = np.asarray(mix.means, np.float64)
    nearest = np.argmin(np.linalg.norm(x[:, None] - means[None], axis=-1), axis=1)  # (N,)
    weights = np.bincount(nearest, minlength=means.shape[0]) / x.shape[0]
    comp_means = [x[nearest == k].mean(0).tolist() if np.any(nearest == k) else None for k in range(len(means))]
    comp_stds = [float(x[nearest == k].std(0).mean()) if np.sum(nearest == k) > 1 else None for k in range(len(means))]
    return {
        "weights": weights.round(4).tolist(),
        "component_means": comp_means,
        "component_stds": comp_stds,
        "mean_log_likelihood": float(np.mean(np.asarray(mix.log_prob(jnp.asarray(x, jnp.float32))))),
    }


def run(cfg: ToyDemoConfig = ToyDemoConfig()) -> dict:
    check_config(cfg)
    viz.use_headless_backend()
    import matplotlib.pyplot as plt

    mix, sched = toy.default_mixture(), schedules.make_schedule(cfg.schedule)
    key = jax.random.key(cfg.seed)
    data, _ = mix.sample(jax.random.fold_in(key, 1), cfg.num_samples)
    stats = {
        "config": dataclasses.asdict(cfg),
        "truth": {
            "weights": np.asarray(mix.weights).round(4).tolist(),
            "means": np.asarray(mix.means).tolist(),
            "std": float(mix.stds[0]),
            "data_samples": sample_statistics(data, mix),
        },
        "samplers": {},
        "provenance": provenance_record(cfg),
    }
    table = _sampler_table(cfg, mix, sched)
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.8))
    viz.plot_points(data, axes[0, 0], "data (exact draws)", mixture=mix, color="k")
    for ax, (name, evals, fn) in zip(axes.flat[1:], tqdm(table, desc="toy samplers", unit="sampler")):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(key))  # first call: compile + run
        t1 = time.perf_counter()
        x = jax.block_until_ready(fn(key))  # second call: the compiled program only
        t2 = time.perf_counter()
        s = sample_statistics(x, mix)
        s.update(denoiser_evaluations=evals, first_call_s=round(t1 - t0, 3), run_s=round(t2 - t1, 4))
        stats["samplers"][name] = s
        w = ", ".join(f"{v:.2f}" for v in s["weights"])
        viz.plot_points(x, ax, f"{name}\n{evals} evals, weights [{w}]", mixture=mix)
    fig.suptitle(
        "Samplers on a 3-component Gaussian mixture with the exact denoiser "
        f"(true weights {', '.join(f'{w:.2f}' for w in stats['truth']['weights'])})",
        fontsize=11,
    )
    fig.tight_layout()
    out = pathlib.Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    viz.save_figure(fig, out / "samplers.png", stats["provenance"], dpi=110)
    plt.close(fig)
    _trajectory_figure(cfg, mix, sched, key, out / "trajectories.png", stats["provenance"])
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats


def provenance_record(cfg: ToyDemoConfig) -> dict:
    """The label every file of a toy run carries: the exact mixture denoiser, no trained model."""
    return provenance.record(command="toy", model="exact Gaussian-mixture denoiser (no training)",
                             seed=cfg.seed, schedule=cfg.schedule, num_samples=cfg.num_samples,
                             guidance_scale=cfg.guidance_scale, guided_label=cfg.guided_label)


def _trajectory_figure(cfg, mix, sched, key, path, record=None):
    """DDIM-50 and rectified-flow Euler-50 paths from the same x_T, side by side."""
    import matplotlib.pyplot as plt

    shape = (60, 2)
    _, ddim = samplers.ddim_sample(key, mix.denoiser(sched), sched, shape, num_steps=50, return_trajectory=True)
    _, rf = flow.euler_sample(key, mix.velocity_fn(), shape, num_steps=50, return_trajectory=True)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    for ax, traj, name in [(axes[0], ddim, "DDIM-50 (eta = 0) paths"), (axes[1], rf, "rectified-flow Euler-50 paths")]:
        viz.plot_density(ax, mix, lim=3.0)
        viz.plot_paths(traj.x, ax, num=shape[0])
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=10)
    fig.tight_layout()
    viz.save_figure(fig, path, record, dpi=110)
    plt.close(fig)
