# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 03 — The reverse process and DDPM sampling
#
# Lesson 02 trained a network to recognise the noise in `x_t`. This lesson uses that
# network to *generate*: start from pure Gaussian noise and walk the chain backwards,
# `x_{T-1} → x_{T-2} → … → x_0`, removing a little noise at each step.
#
# You will
#
# 1. see why the true reverse step `q(x_{t-1} | x_t)` is out of reach but
#    `q(x_{t-1} | x_t, x0)` is a simple Gaussian,
# 2. recompute the chapter's three-step scalar reverse trace with the library,
# 3. implement the posterior mean, one ancestral DDPM step and the whole sampler loop
#    (graded; `hint("name")` when stuck),
# 4. watch ancestral sampling on an exact 2-D toy and on the MNIST model,
# 5. count what 1,000 sequential denoiser evaluations cost.
#
# Set `DIFFUSION_JAX_FAST=1` for a quick smoke run.

# %%
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from diffusion_jax import (
    forward,
    guidance,
    parameterization,
    pipeline,
    samplers,
    schedules,
    toy,
    viz,
)
from diffusion_jax.demo import fast_mode
from diffusion_jax.exercises import check, hint

FAST = fast_mode()
print("fast mode:", FAST)

# %% [markdown]
# ## 1. Which reverse step can we write down?
#
# The forward chain adds noise with known Gaussians, so it is tempting to think the
# backward step is just as simple. It is not. To know where `x_{t-1}` probably was, given
# only `x_t`, you must consider every clean image that could have led to `x_t` and how
# likely each one is:
#
# $$q(x_{t-1}\mid x_t) = \int q(x_{t-1}\mid x_t, x_0)\; q(x_0\mid x_t)\; dx_0 .$$
#
# The second factor, `q(x0 | x_t)`, involves the whole data distribution — the very thing
# we are trying to learn — so the integral has no closed form.
#
# The first factor is a different story. Once `x0` is *fixed*, everything in sight is
# Gaussian: `q(x_t | x_{t-1})` is one forward step and `q(x_{t-1} | x0)` is the closed form
# from lesson 01. Bayes' rule on two Gaussians gives a Gaussian:
#
# $$q(x_{t-1}\mid x_t, x_0) = \mathcal N\big(\tilde\mu_t,\ \tilde\beta_t I\big),\quad
# \tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,x_0 + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t,\quad
# \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t .$$
#
# DDPM's trick is to use this tractable posterior with `x0` replaced by the network's
# estimate. At sampling time there is no real `x0`; the network looks at `(x_t, t)`,
# predicts the noise (or v, or x0), that prediction is converted into an estimate
# `x0_hat`, and the next state is drawn from `q(x_{t-1} | x_t, x0_hat)`. In the library
# that is `forward.q_posterior(schedule, x0_hat, x_t, t)`, which returns the mean, the
# variance and its clipped log.
#
# The mean is a weighted average of the clean estimate and the current state. Early in
# the reverse walk (large `t`) it leans on `x_t`; as `t → 0` the weight moves onto `x0_hat`.
# The variance `beta_tilde_t` is smaller than the forward step's `beta_t` and exactly zero
# at `t = 0`: the last step adds no noise. On a plot of both against `t` the two curves lie
# on top of each other, so the right panel shows their ratio instead: `beta_tilde_t` is
# less than half of `beta_t` at `t = 1`, within 4% of it from `t ≈ 50` on.

# %%
linear = schedules.linear(1000)
coef_x0, coef_xt = forward.posterior_coefficients(linear)
t_axis = np.arange(linear.num_timesteps)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.3))
axes[0].plot(t_axis + 1, np.asarray(coef_x0), label="weight on x0_hat")
axes[0].plot(t_axis + 1, np.asarray(coef_xt), label="weight on x_t")
axes[0].set_xlabel("t + 1 (log scale; at t = 0 the weights are 1 and 0)")
axes[0].set_ylabel("weight")
axes[0].set_title("posterior mean = a·x0_hat + b·x_t", fontsize=9)
axes[0].set_xscale("log")
axes[0].legend(fontsize=8)
ratio = np.asarray(forward.posterior_variance(linear)) / np.asarray(linear.betas)  # (T,), 0 at t = 0
axes[1].plot(t_axis[1:], ratio[1:])
axes[1].axhline(1.0, color="0.6", lw=0.8)
axes[1].set_xscale("log")
axes[1].set_xlabel("timestep t (log scale; the ratio is 0 at t = 0)")
axes[1].set_ylabel(r"$\tilde\beta_t / \beta_t$")
axes[1].set_title("posterior variance over forward-step variance", fontsize=9)
print("beta_tilde / beta at t = 1, 10, 50, 100, 999:", np.round(ratio[[1, 10, 50, 100, 999]], 3))
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. The chapter's three-step reverse trace
#
# The chapter strips the reverse process down to one scalar and three steps: betas
# `[0.02, 0.03, 0.04]`, a made-up noise predictor `eps(x, step) = 0.45 x + 0.02 step`, and
# a starting value `x = 1.25`. Each step applies the classic DDPM update without noise,
#
# $$x \leftarrow \frac{1}{\sqrt{\alpha_t}}\Big(x - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\hat\epsilon\Big).$$
#
# That formula is not a separate invention: it is the posterior mean `mu_tilde` with `x0`
# replaced by the estimate implied by the predicted noise. Below we compute each step
# twice — with the chapter's formula, and with `parameterization.to_x0` followed by
# `forward.q_posterior` — and show that they agree.

# %%
chain = schedules.from_betas([0.02, 0.03, 0.04])


def toy_noise_predictor(x, step):
    return 0.45 * x + 0.02 * step


x = jnp.array([1.25])  # a batch of one scalar
for step in reversed(range(chain.num_timesteps)):
    eps_hat = toy_noise_predictor(x, step)
    beta, alpha, ab = chain.betas[step], chain.alphas[step], chain.alpha_bars[step]
    x_chapter = (x - beta / jnp.sqrt(1 - ab) * eps_hat) / jnp.sqrt(alpha)  # the chapter's update
    x0_hat = parameterization.to_x0(eps_hat, x, ab, "eps")  # clean estimate implied by eps_hat
    mean, variance, _ = forward.q_posterior(chain, x0_hat, x, step)  # DDPM posterior at x0_hat
    print(f"step {step}: predicted_noise {round(float(eps_hat[0]), 3)}  next_x {round(float(x_chapter[0]), 3)}"
          f"   | posterior mean {float(mean[0]):.6f} (diff {abs(float(mean[0] - x_chapter[0])):.1e}),"
          f" posterior variance {float(variance):.4f}")
    x = x_chapter

# %% [markdown]
# The numbers match the chapter: `0.603 → 1.193`, `0.557 → 1.135`, `0.511 → 1.073`. Two
# things to notice. Each step needs the previous step's output, so the loop cannot be
# parallelised over steps — only over the batch. And a real sampler would add
# `sqrt(beta_tilde_t) · z` with fresh noise `z` at every step except the last, where the
# printed variance is 0.
#
# ## Exercise 1 — the posterior mean
#
# Implement $\tilde\mu_t$ from section 1 for a batch: every row has its own `t`. The grader
# includes rows with `t = 0`, the step whose "previous" level is the clean data.

# %% tags=["exercise"]
def posterior_mean(schedule, x0, x_t, t):
    """Mean of q(x_{t-1} | x_t, x0) for every row of a batch.

    schedule: a Schedule; x0, x_t: (B, ...); t: (B,) integer timesteps in 0..T-1.
    returns: (B, ...), same shape as x_t.
    """
    ### BEGIN SOLUTION
    def rows(a):
        return a.reshape((-1,) + (1,) * (x_t.ndim - 1))

    ab, ab_prev, beta = rows(schedule.alpha_bars[t]), rows(schedule.alpha_bars_prev[t]), rows(schedule.betas[t])
    return (jnp.sqrt(ab_prev) * beta / (1 - ab)) * x0 + (jnp.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)) * x_t
    ### END SOLUTION


check("posterior_mean", posterior_mean)

# %% [markdown]
# ## Exercise 2 — one ancestral DDPM step
#
# Given the current state `x_t`, timesteps `t` (shape `(B,)`), the network's noise
# prediction `eps_pred` and a standard-normal draw `noise` (all explicit, so the result is
# deterministic), return `x_{t-1}`: a draw from the posterior of section 1 at the clean
# estimate implied by `eps_pred`, using `noise` as the draw. Either route is fine — the
# chapter's direct update of section 2, or `x0_hat` followed by the posterior mean.

# %% tags=["exercise"]
def ddpm_step(schedule, x_t, t, eps_pred, noise):
    """One step of DDPM ancestral sampling, from timestep t to t - 1, for every row.

    schedule: a Schedule; x_t, eps_pred, noise: (B, ...); t: (B,) integer timesteps.
    returns: x_{t-1}, shape (B, ...).
    """
    ### BEGIN SOLUTION
    def rows(a):
        return a.reshape((-1,) + (1,) * (x_t.ndim - 1))

    ab, ab_prev, beta = rows(schedule.alpha_bars[t]), rows(schedule.alpha_bars_prev[t]), rows(schedule.betas[t])
    mean = (x_t - beta / jnp.sqrt(1 - ab) * eps_pred) / jnp.sqrt(1 - beta)
    return mean + jnp.sqrt((1 - ab_prev) / (1 - ab) * beta) * noise
    ### END SOLUTION


check("ddpm_step", ddpm_step)

# %% [markdown]
# ## Exercise 3 — the whole sampler
#
# Now the loop around the step: DDPM's Algorithm 2 from `x_T` to `x_0`. The model is a
# function `eps_model(x, t)` with `t` a `(B,)` integer array; the noise for the step that
# leaves timestep `t` is `noises[t]`, so the whole run is deterministic. The grader uses short
# schedules (3 to 20 steps) and a made-up noise predictor, so you can print intermediate
# states while you work. (`samplers.ddpm_sample` does the same with a `lax.scan`.)

# %% tags=["exercise"]
def ddpm_sample_loop(schedule, eps_model, x_T, noises):
    """Ancestral sampling through every timestep of `schedule`.

    schedule: a Schedule with T steps; eps_model(x, t) -> eps prediction, t a (B,) int array;
    x_T: (B, ...) the starting noise; noises: (T, B, ...), noises[t] is used by the step leaving t.
    returns: the final sample x_0, shape (B, ...).
    """
    ### BEGIN SOLUTION
    x = x_T
    for t in reversed(range(schedule.num_timesteps)):
        tt = jnp.full((x_T.shape[0],), t, jnp.int32)
        x = ddpm_step(schedule, x, tt, eps_model(x, tt), noises[t])
    return x
    ### END SOLUTION


check("ddpm_sample_loop", ddpm_sample_loop)

# %% [markdown]
# ## 3. Ancestral sampling on an exact toy
#
# Before trusting a sampler with a neural network, run it where the right answer is
# known. `toy.default_mixture()` is a mixture of three 2-D Gaussian clusters with weights
# 0.5 / 0.3 / 0.2; for such data the best possible denoiser has a closed form, and
# `mixture.denoiser(schedule)` *is* that denoiser — what a perfectly trained network would
# output. Any mismatch between samples and data is the sampler's fault.
#
# `samplers.ddpm_sample` runs all 1,000 steps (DDPM's Algorithm 2) as one compiled
# `lax.scan`; with `return_trajectory=True` it also returns every intermediate state.

# %%
mixture = toy.default_mixture()
toy_denoise = mixture.denoiser(linear)  # exact eps-prediction
n_points = 400 if FAST else 2000

t0 = time.perf_counter()
toy_samples, toy_traj = samplers.ddpm_sample(jax.random.key(0), toy_denoise, linear, (n_points, 2),
                                             return_trajectory=True)
toy_samples = np.asarray(toy_samples)
print(f"DDPM-1000 on {n_points} 2-D points: {time.perf_counter() - t0:.1f} s (including compilation)")
print("trajectory states:", toy_traj.x.shape, " x0 estimates:", toy_traj.x0.shape)

# share of samples in each cluster versus the mixture weights
cluster = np.argmax(np.asarray(mixture.responsibilities(jnp.asarray(toy_samples), 1.0, 0.0)), axis=1)
print("sample share per cluster:", np.round(np.bincount(cluster, minlength=3) / n_points, 3),
      " mixture weights:", np.round(np.asarray(mixture.weights), 3))

# %% [markdown]
# Snapshots of the point cloud along the reverse chain. `toy_traj.x[k]` is the state that
# enters step `t = 999 - k` (index 0 is the starting noise, the last index is the output).

# %%
T = linear.num_timesteps
snap_ts = [999, 600, 300, 150, 60, 20]
fig, axes = plt.subplots(1, len(snap_ts) + 2, figsize=(2.2 * (len(snap_ts) + 2), 2.5))
for ax, t in zip(axes, snap_ts):
    viz.plot_points(toy_traj.x[T - 1 - t], ax, title=f"x at t = {t}", lim=2.5, mixture=mixture)
viz.plot_points(toy_samples, axes[-2], title="output x_0 (zoomed in)", lim=1.2, mixture=mixture, color="C2")
viz.plot_density(axes[-1], mixture, lim=2.5)
viz.plot_paths(toy_traj.x[::20], axes[-1], num=12)  # every 20th state of 12 chains
axes[-1].set_xlim(-2.5, 2.5)
axes[-1].set_ylim(-2.5, 2.5)
axes[-1].set_aspect("equal")
axes[-1].set_xticks([])
axes[-1].set_yticks([])
axes[-1].set_title("12 paths (every 20th step)", fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# For most of the walk the cloud only shrinks: at high noise the exact denoiser can do
# little more than pull points towards the data's overall mean. The clusters appear late,
# in roughly the last 150 steps, and the final steps only polish. The paths are jagged
# because every step adds fresh noise — that is what *ancestral* sampling means: each
# state is a random draw from its parent's conditional distribution.
#
# ## 4. Ancestral sampling with the trained MNIST model
#
# Now replace the exact denoiser with the U-Net from lesson 02 (the shipped reference model:
# v-prediction, class-conditional). `pipeline.denoiser` hands it over as a denoiser that
# knows what it predicts and applies classifier-free guidance (lesson 06), so the sampler
# needs no `prediction=` argument. We ask for one sample per digit and look at two things
# along the trajectory: the noisy state `x_t`, and the model's current clean estimate
# `x0_hat`. In fast mode we use a 20-step sub-grid (DDIM with `eta = 1`, which adds
# DDPM-sized noise; lesson 07) instead of all 1,000 steps.

# %%
preset = pipeline.get_preset("mnist-unet")
state = pipeline.train(preset)
schedule = schedules.make_schedule(preset.schedule)
digits = jnp.arange(4 if FAST else 10, dtype=jnp.int32)
denoise = pipeline.denoiser(state, preset)  # v-prediction, x0 clipped to [-1, 1], CFG at s = 3
shape = (len(digits),) + pipeline.image_shape(preset)



def run_sampler(key):
    if FAST:
        return samplers.ddim_sample(key, denoise, schedule, shape, digits, num_steps=20, eta=1.0,
                                    return_trajectory=True)
    return samplers.ddpm_sample(key, denoise, schedule, shape, digits, return_trajectory=True)


sampler_name = "DDIM-20, eta = 1" if FAST else "DDPM-1000"
t0 = time.perf_counter()
images, traj = run_sampler(jax.random.key(3))
images = np.asarray(images)
sample_s = time.perf_counter() - t0
print(f"{sampler_name}: {len(digits)} digits in {sample_s:.1f} s (including compilation)")

# %%
n_steps = traj.t.shape[0]
cols = np.unique(np.linspace(0, n_steps - 1, 8).round().astype(int))  # 8 steps along the walk
col_ts = np.asarray(traj.t)[cols]
x_grid = np.concatenate([np.asarray(traj.x)[cols, i] for i in range(len(digits))])  # row = digit
x0_grid = np.concatenate([np.asarray(traj.x0)[cols, i] for i in range(len(digits))])

fig, axes = plt.subplots(1, 2, figsize=(12, 0.8 * len(digits) + 1.4))
t_labels = [str(int(t)) for t in col_ts]
viz.show_images(x_grid, len(cols), axes[0], title="x_t entering step t (clipped to [-1, 1])",
                col_labels=t_labels, row_labels=[f"digit {int(d)}" for d in digits], fontsize=7)
viz.show_images(x0_grid, len(cols), axes[1], title="model's estimate x0_hat at step t",
                col_labels=t_labels, fontsize=7)
for ax in axes:
    ax.set_xlabel("timestep t", fontsize=8)
fig.suptitle(f"{preset.name} ({preset.train.steps} training steps), {sampler_name}", fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# The left grid is what the chain actually holds: the digit only shows through the noise
# in the last third or so of the walk. The right grid shows what the model believes the
# final image will be. With the full model, even the very first estimate is a blurry but
# recognisable digit of the requested class (a v-predicting, guided model knows the class
# layout from pure noise); later steps decide stroke width, slant and fine detail, and in
# the last stretch the estimate barely changes. (In fast mode, with a model trained for 30
# steps, expect smudges rather than digits.)
#
# ## 5. The price: one network evaluation per step, in sequence
#
# DDPM's reverse chain has as many steps as the forward chain — here 1,000 — and every
# step needs a full forward pass of the network on the current state. Guidance doubles the
# batch (a conditional and an unconditional row per image). The steps cannot overlap,
# because each one needs the previous output. We turn the sampler's wall time into a cost
# per evaluation and extrapolate (in fast mode we time a second, already compiled run;
# in full mode compilation is small next to 1,000 steps, so the first run's time serves).

# %%
n_evals = traj.t.shape[0]
if FAST:
    t0 = time.perf_counter()
    jax.block_until_ready(run_sampler(jax.random.key(4)))
    elapsed = time.perf_counter() - t0
else:
    elapsed = sample_s
per_eval = elapsed / n_evals
print(f"{sampler_name}: {n_evals} guided evaluations for {len(digits)} images ({2 * len(digits)} network rows "
      f"each) in {elapsed:.1f} s -> {1e3 * per_eval:.1f} ms per evaluation")
for name, steps in [("DDPM-1000", 1000), ("DDIM-50", 50), ("DDIM-20", 20)]:
    print(f"  {name:>9}: {steps:5d} sequential evaluations ≈ {steps * per_eval:6.1f} s")

# %% [markdown]
# A one-pass generator would pay for a single evaluation. The whole later half of the
# field — DDIM, better ODE solvers, distillation, consistency models — is about cutting
# that 1,000 down without losing quality; lesson 07 measures the trade-off.
#
# ## Check your understanding
#
# 1. Why can't we compute `q(x_{t-1} | x_t)` exactly, and why is `q(x_{t-1} | x_t, x0)`
#    easy?
# 2. At sampling time there is no `x0`. What does DDPM put in its place?
# 3. The chapter's update `x ← (x − beta_t / sqrt(1 − ab_t) · eps) / sqrt(alpha_t)` and the
#    posterior mean at `x0_hat` gave the same numbers. Is that a coincidence?
# 4. Why does the last reverse step (t = 0) add no noise?
# 5. The toy clusters only appeared in the last ~150 of 1,000 steps. Does that mean the
#    first 850 steps are wasted?
# 6. Why can't you speed DDPM up by running its 1,000 steps in parallel on more hardware?
#
# <details>
# <summary>Answers</summary>
#
# 1. `q(x_{t-1} | x_t)` averages the Gaussian `q(x_{t-1} | x_t, x0)` over every clean image
#    weighted by `q(x0 | x_t)`, which depends on the unknown data distribution. With `x0`
#    fixed, the forward step and the closed-form marginal are Gaussians, so Bayes' rule
#    gives a Gaussian with the mean and variance above.
# 2. The network's estimate `x0_hat`, obtained by converting its prediction (eps, v or x0)
#    with the forward equation; the next state is drawn from `q(x_{t-1} | x_t, x0_hat)`.
# 3. No: substituting `x0_hat = (x_t − sqrt(1 − ab_t) eps) / sqrt(ab_t)` into `mu_tilde`
#    and simplifying gives exactly the chapter's formula — it is an identity.
# 4. `beta_tilde_0 = (1 − alpha_bar_{-1}) / (1 − ab_0) · beta_0` with `alpha_bar_{-1} = 1`,
#    so the variance is zero: the last step returns the mean, the final clean estimate.
# 5. Not wasted, but cheap to approximate: the early steps move the cloud coarsely and can
#    be taken with far fewer, larger steps. That observation is what fast samplers such as
#    DDIM exploit (lesson 07).
# 6. Each step's input is the previous step's output; only the batch dimension is
#    parallel. More hardware helps throughput (more images at once), not the latency of one
#    chain.
#
# </details>
#
# ## Summary
#
# * The true reverse step needs the data distribution and is intractable; the posterior
#   given `x0` is Gaussian with mean `mu_tilde` and variance `beta_tilde`
#   (`forward.q_posterior`).
# * DDPM samples by plugging the network's clean estimate into that posterior and drawing
#   from it, step by step; the chapter's scalar update is the same formula with eps in place
#   of `x0_hat` (`0.603 → 1.193`, `0.557 → 1.135`, `0.511 → 1.073`).
# * On an exact toy, `samplers.ddpm_sample` reproduces the data's clusters and weights;
#   structure appears late in the reverse walk.
# * Ancestral sampling costs one network evaluation per step, in sequence: 1,000 for
#   DDPM, which motivates DDIM and the other fast samplers of lesson 07.
