# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 07 — DDIM and the price of fewer steps
#
# Lesson 03 sampled by walking DDPM's reverse chain through all 1,000 timesteps, one network
# call each. That is the expensive part of a diffusion model: the network is cheap once, but
# it runs in sequence, hundreds of times per image, twice per step with guidance.
#
# DDIM (Song, Meng & Ermon, 2021) showed that the trained network does not care *how* we walk
# back, only that the noise levels it is asked about are ones it was trained on. Their sampler
# is defined on any decreasing subset of the training timesteps, has a dial η between a
# deterministic walk (η = 0) and DDPM-like noise (η = 1), and, at η = 0, can be run backwards
# to turn an image into the noise that generates it (inversion).
#
# This lesson takes the update apart, shows what η and the choice of sub-grid do (on the exact
# 2-D toy, where the right answer is known), counts evaluation budgets the way a deployment
# plan would, and ends with a measured steps-versus-quality table on the course's MNIST
# model: a small version of Table 1 of the DDIM paper.

# %%
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from diffusion_jax import (
    data,
    denoisers,
    forward,
    metrics,
    pipeline,
    samplers,
    schedules,
    timesteps,
    toy,
    sampling,
    studies,
    viz,
)
from diffusion_jax.demo import fast_mode
from diffusion_jax.exercises import check, hint
from diffusion_jax.toy_demo import sample_statistics

FAST = fast_mode()


def log_steps_axis(ax, ticks):
    """Log-scaled x axis labelled with the step counts themselves."""
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(list(ticks), [str(t) for t in ticks])


sched = schedules.linear(1000)
mix = toy.default_mixture()
exact = mix.denoiser(sched, "eps")  # the MSE-optimal eps-predictor of the mixture
N_TOY = 500 if FAST else 4000
print(f"fast mode: {FAST}; {N_TOY} toy samples per run")

# %% [markdown]
# ## 1. One DDIM step, piece by piece
#
# Write ᾱ for ᾱ at the current timestep t and ᾱ' for the next, less noisy grid point t'
# (which need not be t − 1). Given the network's noise estimate ε̂ at x_t:
#
# 1. **clean estimate** x̂₀ = (x_t − √(1 − ᾱ)·ε̂) / √ᾱ;
# 2. **re-noise it to level t'**, with the *same* noise direction plus optional fresh noise:
#
#    x_t' = √ᾱ' · x̂₀  +  √(1 − ᾱ' − σ²) · ε̂  +  σ · z,   z ~ N(0, I)
#
# 3. with σ = η · √((1 − ᾱ')/(1 − ᾱ)) · √(1 − ᾱ/ᾱ').
#
# The noise budget of level t' is 1 − ᾱ'. DDIM splits it between the *old* direction ε̂
# (deterministic) and *new* noise σz; η = 0 spends none of it on new noise. With η = 1 and
# adjacent steps, σ² is exactly DDPM's posterior variance β̃_t, so DDIM(η = 1) on the full grid
# *is* DDPM. `samplers.ddim_step` implements the update; here it is on three toy points,
# stepping from t = 600 to t' = 400.

# %%
x0_pts, _ = mix.sample(jax.random.key(0), 3)  # (3, 2)
t, t_prev = 600, 400
ab, ab_prev = sched.alpha_bars[t], sched.alpha_bars[t_prev]
x_t = jnp.sqrt(ab) * x0_pts + jnp.sqrt(1 - ab) * jax.random.normal(jax.random.key(1), x0_pts.shape)
eps_hat = exact(x_t, jnp.full((3,), t), None)
z = jax.random.normal(jax.random.key(2), x0_pts.shape)
r3 = lambda a: [round(float(v), 3) for v in np.ravel(a)]  # short lists for printing
for eta in (0.0, 0.5, 1.0):
    x_prev, x0_hat = samplers.ddim_step(eps_hat, x_t, ab, ab_prev, eta, z, prediction="eps")
    sigma = float(samplers.ddim_sigma(ab, ab_prev, eta))
    direction = float(jnp.sqrt(1 - ab_prev - sigma**2))
    print(f"eta = {eta:.1f}: sqrt(ab') = {float(jnp.sqrt(ab_prev)):.3f} (on x0_hat), "
          f"direction coef = {direction:.3f} (on eps_hat), sigma = {sigma:.3f} (on z); "
          f"x_prev[0] = {r3(x_prev[0])}")
print("x0_hat[0] =", r3(x0_hat[0]), "  true x0[0] =", r3(x0_pts[0]))

# eta = 1 on adjacent steps is DDPM's posterior std, at every t:
ts = np.arange(1, 1000)
sig1 = samplers.ddim_sigma(sched.alpha_bars[ts], sched.alpha_bars[ts - 1], 1.0)
gap = float(jnp.max(jnp.abs(sig1**2 - forward.posterior_variance(sched)[ts])))
print(f"max |sigma(eta=1)^2 - beta_tilde_t| over t = 1..999: {gap:.1e}")

# %% [markdown]
# ## 2. What η does, on the exact toy
#
# Same 10-step grid, same starting noise, the exact denoiser; only the noise schedule of the
# sampler changes. Besides η = 0 and 1 we run the larger-variance variant that the DDIM paper
# calls σ̂ (the `sigma_hat` sampler): DDPM's original noise level β of the respaced
# chain, 1 − ᾱ/ᾱ', instead of the posterior variance. The true clusters have standard
# deviation 0.08.

# %%
shape = (N_TOY, 2)
k_toy = jax.random.key(42)
runs = {}
for name, fn in [
    ("DDIM η = 0", lambda n: samplers.ddim_sample(k_toy, exact, sched, shape, num_steps=n, eta=0.0, return_trajectory=True)),
    ("DDIM η = 0.5", lambda n: samplers.ddim_sample(k_toy, exact, sched, shape, num_steps=n, eta=0.5, return_trajectory=True)),
    ("DDIM η = 1 (DDPM, respaced)", lambda n: samplers.ddim_sample(k_toy, exact, sched, shape, num_steps=n, eta=1.0,
                                                                  return_trajectory=True)),
]:
    runs[name] = fn(10)
runs["σ̂ (DDPM's larger variance)"] = (sampling.sample("sigma_hat", k_toy, denoisers.denoiser(exact, "eps"), shape,
                                                       schedule=sched, num_steps=10), None)

fig, axes = plt.subplots(1, 4, figsize=(14, 3.5))
for ax, (name, (x, traj)) in zip(axes, runs.items()):
    st = sample_statistics(x, mix)
    spread = np.mean([s for s in st["component_stds"] if s is not None])
    if traj is not None:
        viz.plot_paths(traj.x, ax, num=12)
    viz.plot_points(x, ax, f"{name}\ncluster std {spread:.3f}, log-lik {st['mean_log_likelihood']:.2f}",
                    mixture=mix, size=1.0)
    print(f"{name:30s} weights {st['weights']}  mean cluster std {spread:.3f}  mean log-lik {st['mean_log_likelihood']:.2f}")
fig.suptitle("10 steps, exact denoiser, same x_T; orange: 12 trajectories (they start outside the frame)", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# η = 0 trajectories are smooth curves: the whole path is a deterministic function of x_T
# (an ODE solve, in the continuous-time view). With η = 1 each step forgets part of the path
# and re-draws it, so paths zig-zag. With only 10 steps every variant makes the clusters too
# wide (the true std is 0.08; that is the sampler's discretisation error, the denoiser is
# exact), and in our full-mode run the three DDIM variants come out close to each other, η = 1
# with a slightly lower log-likelihood (more points between clusters). σ̂ is far worse: its
# noise is as large as the forward process's β for the whole 100-timestep jump, and the
# short chain has no steps left to remove it. The DDIM paper found the same collapse of σ̂ at
# few steps on CIFAR-10, together with a clear win for η = 0; section 6 checks both on MNIST.
#
# ## 3. Which timesteps? Three spacings
#
# A sub-grid of n steps out of T = 1,000 can be chosen in several ways
# (`timesteps.ddim_timesteps(T, n, spacing)`, the same grids as diffusers):

# %%
n_grid = 10
for sp in timesteps.SPACINGS:
    print(f"{sp:>8}: {timesteps.ddim_timesteps(1000, n_grid, sp).tolist()}")

fig, axes = plt.subplots(1, 2, figsize=(11, 2.9))
for row, sp in enumerate(timesteps.SPACINGS):
    g = timesteps.ddim_timesteps(1000, n_grid, sp)
    axes[0].plot(g, np.full_like(g, row), "o", label=sp)
    axes[1].plot(g, np.asarray(sched.log_snr)[g], "o-", label=sp, ms=4)
axes[0].set_yticks(range(3), timesteps.SPACINGS)
axes[0].axvline(999, color="k", ls=":", lw=0.8)
axes[0].set_xlabel("timestep t (dotted: T − 1 = 999, pure noise end)")
axes[0].set_title(f"{n_grid}-step grids", fontsize=9)
axes[0].set_ylim(-0.6, 2.6)
axes[1].set_xlabel("timestep t")
axes[1].set_ylabel("log-SNR at the grid points")
axes[1].set_title("the first step's noise level differs", fontsize=9)
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# *Leading* (Stable Diffusion's original choice) starts at 900 and ends at 0; it never visits
# the noisiest timestep, so with few steps the sampler starts from pure noise but treats it as
# if some signal were left. *Trailing* starts at 999 and ends at 99; *linspace* covers both
# ends. With 1,000-step models whose last ᾱ is tiny (ours: 4·10⁻⁵) the difference is small;
# with zero-terminal-SNR schedules (lesson 04) trailing is needed. All our samplers take
# `spacing=`.
#
# ## 4. Inversion: running the deterministic sampler backwards
#
# At η = 0 the update is a deterministic map between levels. The same formula with the roles of
# ᾱ and ᾱ' swapped moves an image *up* the noise levels: x̂₀ from the current point, re-noised to
# the next, higher level with the same ε̂ (`samplers.ddim_invert`). Feeding the result to
# `ddim_sample(..., x_T=...)` should give the image back. It is not exact: going up, ε̂ is
# evaluated at the point we are leaving, not the one we arrive at, so each step makes a small
# error that shrinks as steps get smaller. On the toy we can measure the round-trip error for
# many step counts.

# %%
inv_steps = [3, 30] if FAST else [2, 5, 10, 20, 50, 100, 250, 1000]
x0_inv, _ = mix.sample(jax.random.key(7), 1000)  # (1000, 2)
toy_err = []
for n in inv_steps:
    x_T = samplers.ddim_invert(exact, sched, x0_inv, num_steps=n)
    back = samplers.ddim_sample(k_toy, exact, sched, x0_inv.shape, num_steps=n, x_T=x_T)
    toy_err.append(float(jnp.sqrt(jnp.mean((back - x0_inv) ** 2))))
    print(f"{n:5d} steps: RMS round-trip error {toy_err[-1]:.2e}")

# %% [markdown]
# The same experiment with the MNIST model, on a few held-out digits. We invert with the plain
# conditional model (the digit's own label, no guidance): with CFG the inverted noise no longer
# matches the sampler's guided path well, a known weakness of inverting guided samplers.

# %%
preset = pipeline.get_preset("mnist-unet")
state = pipeline.train(preset)
schedule = schedules.make_schedule(preset.schedule)
net = pipeline.denoiser(state, preset, guidance_scale=1.0)  # conditional, no guidance
test = data.load_dataset(preset.dataset, "test")
pick = np.array([np.flatnonzero(test.labels == k)[0] for k in (0, 3, 5, 8)])
x_digits = jnp.asarray(data.to_float(test.images[pick]))  # (4, 28, 28, 1)
y_digits = jnp.asarray(test.labels[pick], jnp.int32)
mnist_steps = [5] if FAST else [10, 20, 50, 100, 250]
mnist_err, recon, noise_maps = [], {}, {}
for n in mnist_steps:
    x_T = samplers.ddim_invert(net, schedule, x_digits, y_digits, num_steps=n)
    back = samplers.ddim_sample(jax.random.key(0), net, schedule, x_digits.shape, y_digits, num_steps=n, x_T=x_T)
    recon[n], noise_maps[n] = np.asarray(back), np.asarray(x_T)
    mnist_err.append(float(jnp.sqrt(jnp.mean((back - x_digits) ** 2))))
    print(f"MNIST, {n:4d} steps: RMS round-trip error {mnist_err[-1]:.3f} (pixels in [-1, 1]); "
          f"std of the inverted noise {float(jnp.std(x_T)):.2f}")

# %%
fig = plt.figure(figsize=(12, 3.6))
ax = fig.add_subplot(1, 3, 1)
ax.plot(inv_steps, toy_err, "o-", label="exact 2-D toy")
ax.plot(mnist_steps, mnist_err, "s-", label="MNIST model, 4 digits")
ax.set_yscale("log")
log_steps_axis(ax, sorted(set(inv_steps) | set(mnist_steps)))
ax.tick_params(axis="x", labelsize=7)
ax.set_xlabel("DDIM steps (inversion and sampling)")
ax.set_ylabel("RMS round-trip error")
ax.legend(fontsize=8)
ax.set_title("invert, then sample back", fontsize=9)
n_show = [mnist_steps[0], mnist_steps[-1]]
rows = [np.asarray(x_digits), noise_maps[n_show[-1]] / 3.0, recon[n_show[0]], recon[n_show[-1]]]
ax2 = fig.add_subplot(1, 3, (2, 3))
viz.show_images(np.concatenate(rows), len(pick), ax2)
ax2.set_title(f"rows: held-out digits; inverted x_T ({n_show[-1]} steps, shown /3); "
              f"reconstruction at {n_show[0]} and at {n_show[-1]} steps", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The error falls steadily with the number of steps, on both the toy and the network (in our
# full-mode run from about 0.16 at 10 steps to about 0.01 at 250, in pixel units on [−1, 1]).
# The inverted x_T is a starting point that the sampler maps back onto the digit: the basis of
# diffusion image editing (invert a photo, change the condition, sample forward). It is *not*
# a typical Gaussian draw, though: its std is well below 1 (printed above) and the digit's
# outline is still visible in it. Editing methods have to live with, or correct, that gap.
#
# ## 5. Counting the budget
#
# Cost is counted in **denoiser evaluations**: steps × predictions per step. CFG needs two
# predictions per step. Second-order solvers such as Heun (EDM, Karras et al. 2022) evaluate
# twice per step, except on the last step. The chapter compares two deployment routes; the
# library reproduces its numbers (100 and 6 evaluations, quality gate required on both):

# %%
routes = [
    {"name": "offline_ddim_cfg", "steps": 50, "predictions_per_step": 2},
    {"name": "interactive_distilled", "steps": 6, "predictions_per_step": 1},
]
for row in sampling.route_budget(routes):
    print(row)

# %% [markdown]
# Our batched CFG runs both predictions in one network call on a doubled batch: the same
# arithmetic (evaluations), but half the *sequential* calls, which is what latency on an
# accelerator mostly depends on. Some common configurations:

# %%
configs = [("DDPM, 1000 steps, CFG", 1000, "ddpm", True), ("DDIM, 50 steps, CFG", 50, "ddim", True),
           ("DDIM, 20 steps, CFG", 20, "ddim", True), ("Heun (EDM), 18 steps, no CFG", 18, "heun", False),
           ("distilled, 6 steps, no CFG", 6, "ddim", False)]
print(f"{'route':32s} {'evaluations':>11s} {'sequential calls (batched CFG)':>31s}")
for name, steps_, smp, cfg in configs:
    ev = sampling.denoiser_evaluations(smp, steps_, predictions_per_step=2 if cfg else 1)
    calls = sampling.sequential_calls(smp, steps_, guidance=cfg)
    print(f"{name:32s} {ev:11d} {calls:31d}")

# %% [markdown]
# Evaluations are a *cost* measure. Whether a cheaper route is good enough is a separate,
# measured question: that is the chapter's "quality gate", and the next section.
#
# ## 6. Measured: steps against quality and time on MNIST
#
# `studies.quality_vs_steps` samples the same labels from the same key with every
# (sampler, steps) pair and scores each set with the project's reference MNIST classifier:
# domain FID and KID against the 500 held-out test digits, and class accuracy. Samplers, as
# named in the registry `sampling.SAMPLERS` (options in parentheses):
#
# * `ddim`: deterministic DDIM (η = 0);
# * `ddim(eta=1)`: DDIM with η = 1, which on a sub-grid *is* ancestral DDPM sampling on the
#   respaced chain with the posterior variance;
# * `sigma_hat`: ancestral sampling with DDPM's larger variance on the respaced chain;
# * `ddpm`: the library's 1,000-step DDPM, the reference row.
#
# To fit the 2-core budget we sample with the plain conditional model (s = 1: one prediction
# per step, half the cost of CFG), 100 images per row, and run 1,000 steps only for DDPM.
# Wall time excludes JAX compilation, which is reported separately. (Timings are on a shared
# machine; compare rows with each other, not with other machines.)

# %%
classifier = metrics.reference("mnist")  # the shipped classifier every score in the course uses
real_feats, _ = metrics.features_and_logits(classifier, test.images)  # (500, 128) reference
n_samples = 10 if FAST else 100
study_steps = (3,) if FAST else (10, 20, 50, 100)
study_key = jax.random.key(11)
common = {"num_samples": n_samples, "guidance_scale": 1.0, "progress": True}
t0 = time.perf_counter()
rows = studies.quality_vs_steps(study_key, state, preset, classifier, real_feats, steps=study_steps,
                                samplers=("ddim", "ddim(eta=1)", "sigma_hat"), **common)
if not FAST:  # 1,000 steps x 100 images is most of this lesson's run time
    rows += studies.quality_vs_steps(study_key, state, preset, classifier, real_feats, steps=(1000,),
                                     samplers=("ddpm",), **common)
print(f"study: {time.perf_counter() - t0:.0f} s in total")

# %%
print(f"{'sampler':>10} {'steps':>5} {'evals':>5} {'FID':>7} {'KID':>7} {'accuracy':>8} {'seconds':>8} {'compile s':>9}")
for r in rows:
    print(f"{r['sampler']:>10} {r['steps']:5d} {r['evaluations']:5d} {r['fid']:7.2f} {r['kid']:7.3f} "
          f"{r['accuracy']:8.1%} {r['seconds']:8.2f} {r['compile_seconds']:9.1f}")

# FID's small-sample bias: real digits against real digits, at the same N and at N = 500.
train = data.load_dataset(preset.dataset, "train")
perm = np.random.default_rng(0).permutation(len(train.images))
floor = {}
for n in sorted({n_samples, 500}):
    f_train, _ = metrics.features_and_logits(classifier, train.images[perm[:n]])
    floor[n] = metrics.fid(f_train, real_feats)
    print(f"FID of {n} real training digits against the 500 test digits: {floor[n]:.2f}")

# %%
styles = {"ddim": ("C0", "o-", "DDIM η = 0"), "ddim(eta=1)": ("C1", "s-", "DDIM η = 1 = DDPM (respaced)"),
          "sigma_hat": ("C3", "^-", "σ̂ (larger variance)"), "ddpm": ("k", "*", "DDPM, all 1000 steps")}
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
for name, (color, style, label) in styles.items():
    sel = [r for r in rows if r["sampler"] == name]
    if not sel:
        continue
    st = [r["steps"] for r in sel]
    kws = {"color": color, "label": label, "ms": 12 if name == "ddpm" else 5}
    axes[0].plot(st, [r["fid"] for r in sel], style, **kws)
    axes[1].plot(st, [r["accuracy"] for r in sel], style, **kws)
    axes[2].plot(st, [max(r["seconds"], 1e-3) for r in sel], style, **kws)
axes[2].set_yscale("log")
axes[0].axhline(floor[n_samples], color="0.5", ls=":", label=f"real vs real at N = {n_samples}")
axes[0].set_ylabel(f"domain FID (N = {n_samples}; lower is better)")
axes[1].set_ylabel("class accuracy")
axes[1].set_ylim(0, 1.02)
axes[2].set_ylabel("sampling wall time, s (no compile)")
for ax in axes:
    ax.set_xlabel("sampler steps")
    log_steps_axis(ax, sorted({r["steps"] for r in rows}))
axes[0].legend(fontsize=7)
fig.suptitle(f"{preset.name}, conditional (s = 1), {n_samples} samples per point", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# What to read off (our full-mode run; rerun it and your numbers will differ a little):
#
# * **Time is linear in steps** for every sampler: one network call per step, nothing else
#   matters. The 1,000-step row took seven to eight times as long as the 100-step rows.
# * **FID is biased upward at small N, and N = 100 is at its noise floor.** Real digits
#   against real digits score about 6 at N = 100 (the dotted line) and about 1.3 at N = 500.
#   So FIDs between roughly 4 and 7 here cannot be told apart; only large gaps mean
#   something. Compare rows only at equal N against the same reference set, and look at KID,
#   which is unbiased.
# * **σ̂ collapses at few steps** (FID above 30 at 10 steps, about 14 at 20) and needs 50 to 100
#   steps to catch up: the DDIM paper's finding, reproduced. Its 10-step samples below are
#   visibly noisy.
# * **DDIM η = 0 is flat from 10 steps on** (FID and KID barely move between 10 and 100): its
#   ODE has converged by 10 steps, so for a fixed quality it is the cheapest.
# * **Unlike the DDIM paper's table, ancestral sampling (η = 1) at 10 to 20 steps was *not*
#   worse here** - its KID was lower than η = 0's and close to DDPM-1000's, and its samples are
#   better-formed digits. A plausible reason: our model is small and imperfect, and fresh noise
#   lets later steps correct earlier mistakes, while the deterministic path carries every
#   model error to the end (Karras et al. 2022 make this argument for stochastic samplers).
#   One model, 100 samples, one seed: a hint, not a law. The bench script
#   (`bench/quality_vs_steps.py`) reruns the study with more samples.
# * Accuracy moves between about 80% and 92%, within the ±4% binomial noise of 100 samples
#   (this is the plain conditional model, s = 1; lesson 06 shows what guidance adds).
#
# In fast mode the model is the 30-step smoke test and the numbers mean nothing; the point is
# that the code runs.
#
# A sample of what the step counts look like, same noise, same digits:

# %%
digits = jnp.arange(10, dtype=jnp.int32)
grid_steps = (3,) if FAST else (10, 50)
rows_img, names = [], []
for name in ("ddim", "ddim(eta=1)", "sigma_hat"):
    for n in grid_steps:
        smp, opts = sampling.parse_spec(name)
        x = sampling.sample(smp, jax.random.key(5), net, (10, 28, 28, 1), digits, schedule=schedule, num_steps=n,
                            **opts)
        rows_img.append(np.clip(np.asarray(x), -1, 1))
        names.append(f"{name}, {n} steps")
fig, ax = plt.subplots(figsize=(7, 0.75 * len(rows_img) + 0.6))
viz.show_images(np.concatenate(rows_img), 10, ax, row_labels=names)
ax.set_title("conditional samples, digits 0-9 (synthetic)", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercises
#
# Implement each function and run its cell. Use `jax.numpy`; `hint("name")` when you are stuck.

# %% tags=["exercise"]
def ddim_update(eps, x_t, alpha_bar, alpha_bar_prev, eta, noise):
    """One DDIM step for an eps-prediction model.

    eps, x_t, noise: arrays (B, ...); alpha_bar, alpha_bar_prev: floats (the current and the
    next, less noisy level; alpha_bar_prev = 1 on the last step); eta in [0, 1].
    returns: x_prev, shape (B, ...), the DDIM update of section 1 with sigma set by eta.
    """
    ### BEGIN SOLUTION
    x0_hat = (x_t - jnp.sqrt(1 - alpha_bar) * eps) / jnp.sqrt(alpha_bar)
    sigma = eta * jnp.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * jnp.sqrt(1 - alpha_bar / alpha_bar_prev)
    direction = jnp.sqrt(jnp.maximum(1 - alpha_bar_prev - sigma**2, 0.0)) * eps
    return jnp.sqrt(alpha_bar_prev) * x0_hat + direction + sigma * noise
    ### END SOLUTION


check("ddim_update", ddim_update)


# %% tags=["exercise"]
def evaluation_budget(steps, sampler, cfg):
    """Denoiser evaluations (predictions) for one sample.

    steps: int; sampler: "ddpm", "ddim" or "heun" (Heun evaluates twice per step, except on
    the last step); cfg: True when classifier-free guidance is used (two predictions per
    evaluation point). Return an int.
    """
    ### BEGIN SOLUTION
    stages = 2 * steps - 1 if sampler == "heun" else steps
    return stages * (2 if cfg else 1)
    ### END SOLUTION


check("evaluation_budget", evaluation_budget)


# %% tags=["exercise"]
def inversion_step(eps, x, alpha_bar_from, alpha_bar_to):
    """One deterministic DDIM inversion step, from level alpha_bar_from up to the noisier
    level alpha_bar_to (alpha_bar_to < alpha_bar_from), reusing the noise estimate eps.

    returns: the state at level alpha_bar_to, shape of x. (Compare with ddim_update at eta = 0:
    what changed?)
    """
    ### BEGIN SOLUTION
    x0_hat = (x - jnp.sqrt(1 - alpha_bar_from) * eps) / jnp.sqrt(alpha_bar_from)
    return jnp.sqrt(alpha_bar_to) * x0_hat + jnp.sqrt(1 - alpha_bar_to) * eps
    ### END SOLUTION


check("inversion_step", inversion_step)

# %% [markdown]
# ### The whole sampler
#
# Now the loop around the update: deterministic DDIM (η = 0) over a sub-sampled grid such as
# `timesteps.ddim_timesteps(1000, 50, "trailing")`. The model is a function `eps_model(x, t)`
# with `t` a `(B,)` integer array. The grader runs it on a trailing grid, a leading grid and a
# grid that visits every step of a short schedule, with a made-up model.


# %% tags=["exercise"]
def ddim_sample_loop(eps_model, schedule, x_T, grid):
    """Deterministic DDIM (eta = 0) along a grid of timesteps.

    eps_model(x, t) -> eps prediction, t a (B,) int array; schedule: a Schedule;
    x_T: (B, ...) the starting noise; grid: 1-D int array of timesteps, noisiest first.
    returns: the final clean sample, shape (B, ...).
    """
    ### BEGIN SOLUTION
    x = x_T
    grid = [int(g) for g in np.asarray(grid)]
    for k, t in enumerate(grid):
        ab = schedule.alpha_bars[t]
        ab_prev = schedule.alpha_bars[grid[k + 1]] if k + 1 < len(grid) else 1.0
        eps = eps_model(x, jnp.full((x_T.shape[0],), t, jnp.int32))
        x = ddim_update(eps, x, ab, ab_prev, 0.0, jnp.zeros_like(x))
    return x
    ### END SOLUTION


check("ddim_sample_loop", ddim_sample_loop)

# %% [markdown]
# ## Check your understanding
#
# 1. Why can a model trained on 1,000 timesteps be sampled on 20 of them without retraining?
# 2. What is σ in a DDIM step at η = 0, and what at η = 1 on adjacent timesteps?
# 3. Why does the σ̂ sampler need many more steps than DDIM with η = 0 or 1? And why might an
#    ancestral sampler still beat the deterministic one at few steps for an imperfect model?
# 4. "Leading" spacing with 10 steps: which timestep does the first step use, and why can that
#    matter?
# 5. Why is DDIM inversion not exact, and what makes its error smaller?
# 6. A route uses 25 Heun steps with CFG. How many denoiser evaluations per image? How many
#    sequential calls with batched CFG?
# 7. Your 100-sample FID is 25 and a colleague's 5,000-sample FID is 8, on the same model
#    family. What can you conclude?
#
# <details>
# <summary>Answers</summary>
#
# 1. The network only learned to denoise at given noise levels; DDIM's update needs
#    predictions at the grid's levels, all of which were trained. The marginals q(x_t | x₀)
#    are the same whatever path connects them.
# 2. η = 0: σ = 0 (no fresh noise; deterministic). η = 1 on adjacent steps: σ² = β̃_t, DDPM's
#    posterior variance.
# 3. σ̂ adds noise of size β of the whole jump, more than the posterior of the short chain
#    allows; with few, large steps there are too few later steps to remove it, so samples stay
#    noisy (sections 2 and 6). η = 1 adds exactly the posterior amount, η = 0 none. Fresh
#    noise also partly "forgets" the errors the model made earlier on the path, so an
#    ancestral sampler can correct them, while a deterministic one carries them to the end;
#    which effect wins is an empirical question, as section 6 showed.
# 4. t = 900 (grid 900, 800, ..., 0): it never asks the model about t = 999 even though it
#    starts from pure noise. With a schedule whose last ᾱ is not tiny (or is exactly 0, zero
#    terminal SNR) that mismatch costs quality; trailing spacing starts at 999.
# 5. Going up, the step needs ε̂ at the point it arrives at, which is unknown, so it uses ε̂ at
#    the point it leaves. The error per step shrinks with the step size: more steps, smaller
#    error (and a more accurate network).
# 6. Heun: 2·25 − 1 = 49 stages, ×2 predictions = 98 evaluations; batched CFG: 49 sequential
#    calls.
# 7. Nothing about quality: FID is biased upward at small N, and domain features differ
#    between setups. Compare at equal N, same reference set, same feature network.
# </details>
#
# ## Summary
#
# * A DDIM step (`samplers.ddim_step`): x̂₀ from ε̂, re-noised to the next grid level along ε̂,
#   plus σ·z with σ set by η. η = 0 is deterministic; η = 1 on a grid is ancestral DDPM on the
#   respaced chain; σ̂ (the `sigma_hat` sampler) is DDPM's larger variance.
# * Grids (`timesteps.ddim_timesteps`): leading, trailing, linspace differ at the ends.
# * Deterministic DDIM can be inverted (`samplers.ddim_invert`); its round-trip error shrinks
#   with the number of steps.
# * Budgets (`sampling.denoiser_evaluations`, `sequential_calls`, `route_budget`): steps ×
#   stages × predictions; CFG doubles evaluations, batching keeps the sequential count.
# * Measured on our MNIST model (`studies.quality_vs_steps`): time is linear in steps; σ̂
#   collapses at few steps, DDIM η = 0 is flat from 10 steps, and η = 1 held up at 10 to 20
#   steps on this model. FID at small N is biased and noisy: compare only at equal N.
