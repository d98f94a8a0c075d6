# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 09 — Flow matching and rectified flow
#
# DDPM describes generation as undoing a noisy Markov chain one small step at a time. Flow
# matching describes it as **transport**: learn a velocity field v(x, t) and move samples
# of a simple distribution (Gaussian noise) along it until they become data, by solving an
# ordinary differential equation. Rectified flow (Liu et al. 2022) makes the simplest choice
# of path between a noise sample and a data sample: a **straight line**. Stable Diffusion 3
# trains exactly this, together with a timestep distribution that favours the middle of the
# path and a resolution-dependent "shift".
#
# **Time convention in this library (and in SD3/diffusers): t = 0 is data, t = 1 is noise.**
# Sampling therefore integrates from t = 1 down to t = 0.
#
# The lesson builds the straight path and its velocity target, integrates the *exact*
# velocity of our 2-D Gaussian-mixture toy with Euler and Heun steps, plots the timestep
# densities SD3 uses, and finally trains a rectified-flow model on MNIST and compares it
# with the DDIM sampler of lesson 07 at equal numbers of network evaluations.

# %%
import time

import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from diffusion_jax import data, flow, metrics, pipeline, sampling, schedules, timesteps, toy, viz
from diffusion_jax.demo import fast_mode
from diffusion_jax.exercises import check, hint
from diffusion_jax.toy_demo import sample_statistics

FAST = fast_mode()
N = 500 if FAST else 4000  # toy samples per run
mix = toy.default_mixture()
velocity = mix.velocity_fn()  # the exact v(x_t, t, cond) of the mixture
key = jax.random.key(0)
print(f"fast mode: {FAST}; {N} toy samples per run")

# %% [markdown]
# ## 1. The straight path and its velocity
#
# Pick a data point x₀ and a noise sample ε. Rectified flow connects them by
#
# **x_t = (1 − t)·x₀ + t·ε**, so **dx_t/dt = ε − x₀**,
#
# a constant velocity along the segment. The network v_θ(x_t, t) is trained by plain
# regression onto that target, E‖v_θ(x_t, t) − (ε − x₀)‖², with t drawn from some
# distribution on [0, 1] (section 4). Compare with the VP (DDPM) path of lessons 01–04,
# x_t = √ᾱ·x₀ + √(1−ᾱ)·ε: plotted in the plane of its two coefficients (how much data, how
# much noise), VP runs along a quarter circle, rectified flow along a straight chord.

# %%
sched = schedules.linear(1000)
t_grid = np.linspace(0, 1, 201)
ab = np.asarray(sched.alpha_bars)[np.minimum((t_grid * 1000).astype(int), 999)]

k_x0, k_eps = jax.random.split(jax.random.key(1))
x0, _ = mix.sample(k_x0, 12)  # (12, 2) data points
eps = jax.random.normal(k_eps, x0.shape)  # (12, 2) their noise partners
path = np.stack([np.asarray(flow.interpolate(x0, eps, t)) for t in t_grid])  # (201, 12, 2)
v_target = flow.velocity_target(x0, eps)  # (12, 2)
# the straight line's velocity is constant: finite differences along the path agree with it
fd = (path[-1] - path[0]) / (t_grid[-1] - t_grid[0])
print("max |finite-difference velocity - (eps - x0)| =", float(np.max(np.abs(fd - np.asarray(v_target)))))
x_half = flow.interpolate(x0, eps, 0.5)
print("x0 recovered from (x_t, v) at t = 0.5: max error",
      float(jnp.max(jnp.abs(flow.x0_from_velocity(v_target, x_half, jnp.full((12,), 0.5)) - x0))))

fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
axes[0].plot(t_grid, 1 - t_grid, "C0", label="rectified flow: data coef. 1 − t")
axes[0].plot(t_grid, t_grid, "C0--", label="rectified flow: noise coef. t")
axes[0].plot(t_grid, np.sqrt(ab), "C1", label="VP linear: √ᾱ")
axes[0].plot(t_grid, np.sqrt(1 - ab), "C1--", label="VP linear: √(1−ᾱ)")
axes[0].set_xlabel("t (0 = data, 1 = noise; VP: timestep / 1000)")
axes[0].legend(fontsize=7)
axes[1].plot(1 - t_grid, t_grid, "C0", label="rectified flow")
axes[1].plot(np.sqrt(ab), np.sqrt(1 - ab), "C1", label="VP (linear schedule)")
axes[1].set_xlabel("coefficient of x₀")
axes[1].set_ylabel("coefficient of ε")
axes[1].set_aspect("equal")
axes[1].legend(fontsize=7)
axes[1].set_title("the two paths in coefficient space", fontsize=9)
viz.plot_density(axes[2], mix)
for i in range(12):
    axes[2].plot(path[:, i, 0], path[:, i, 1], "C0", lw=0.8, alpha=0.7)
axes[2].scatter(*np.asarray(x0).T, s=12, c="k", zorder=3, label="x₀ (t = 0)")
axes[2].scatter(*np.asarray(eps).T, s=12, c="C3", zorder=3, label="ε (t = 1)")
axes[2].set_xlim(-3, 3)
axes[2].set_ylim(-3, 3)
axes[2].legend(fontsize=7)
axes[2].set_title("training pairs joined by straight lines", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# Notice in the right panel that training lines **cross**. At a crossing point x_t, the
# regression cannot output two velocities; its optimum is the *average* of the targets of
# all lines through that point, v*(x, t) = E[ε − x₀ | x_t = x]. That conditional
# expectation is what a perfectly trained network learns, and for our mixture it is known in
# closed form (`mix.velocity_fn()`, the flow twin of the exact denoiser of lesson 04). So
# although every *training* path is straight, the paths the sampler follows bend.
#
# ## 2. Sampling = solving an ODE: Euler and Heun
#
# Start at x₁ ~ N(0, I) and integrate dx/dt = v(x, t) from t = 1 to 0 on a grid
# 1 = t₀ > t₁ > … > t_S = 0:
#
# * **Euler** (`flow.euler_sample`): x ← x + (t_next − t)·v(x, t), one evaluation per step;
# * **Heun** (`flow.heun_sample`): take the Euler step, evaluate v again at its end point and
#   use the average of the two slopes; two evaluations per step, except that the last step
#   (which ends at t = 0) is plain Euler, so S steps cost 2S − 1 evaluations.
#
# Both start from the same noise for the same key. First the paths, with the exact velocity.

# %%
shape = (N, 2)
k_sample = jax.random.key(42)
paths = {
    "Euler, 4 steps (4 evals)": flow.euler_sample(k_sample, velocity, shape, num_steps=4, return_trajectory=True),
    "Heun, 2 steps (3 evals)": flow.heun_sample(k_sample, velocity, shape, num_steps=2, return_trajectory=True),
    "Euler, 100 steps": flow.euler_sample(k_sample, velocity, shape, num_steps=100, return_trajectory=True),
}
fig, axes = plt.subplots(1, 3, figsize=(12, 4))
for ax, (name, (x, traj)) in zip(axes, paths.items()):
    viz.plot_density(ax, mix)
    viz.plot_paths(traj.x, ax, num=60)
    ax.set_xlim(-2.5, 2.5)
    ax.set_ylim(-2.5, 2.5)
    w = sample_statistics(x, mix)["weights"]
    ax.set_title(f"{name}\ncluster weights {w}", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# The 100-step paths are smooth curves: nearly straight far from the data, bending where a
# sample must "decide" between clusters and again at the very end, where it is pulled into
# its narrow cluster. A few big steps follow the tangent and cut the bends: with 3 or 4
# evaluations many samples stop between the clusters.
#
# How large is each solver's error? From the same starting noise, compare the end points with
# a very fine solution (Heun, 400 steps) of the same ODE: what is left is pure
# *discretisation* error, no model error at all.

# %%
budgets = [2, 4, 8, 16, 32] if not FAST else [2, 4, 8]
x_ref = flow.heun_sample(k_sample, velocity, shape, num_steps=400)
rows = []
for evals in budgets:
    x_e = flow.euler_sample(k_sample, velocity, shape, num_steps=evals)
    heun_steps = (evals + 1) // 2  # 2S - 1 evaluations <= evals
    x_h = flow.heun_sample(k_sample, velocity, shape, num_steps=heun_steps)
    err_e = float(jnp.mean(jnp.linalg.norm(x_e - x_ref, axis=-1)))
    err_h = float(jnp.mean(jnp.linalg.norm(x_h - x_ref, axis=-1)))
    ll_e, ll_h = (sample_statistics(x, mix)["mean_log_likelihood"] for x in (x_e, x_h))
    rows.append((evals, err_e, 2 * heun_steps - 1, err_h, ll_e, ll_h))
data_ll = sample_statistics(mix.sample(jax.random.key(7), N)[0], mix)["mean_log_likelihood"]
print("Euler evals   error   log-lik |  Heun evals   error   log-lik")
for evals, err_e, h_evals, err_h, ll_e, ll_h in rows:
    print(f"{evals:11d} {err_e:7.4f} {ll_e:9.2f} | {h_evals:11d} {err_h:7.4f} {ll_h:9.2f}")
print(f"(mean log-likelihood of true data draws: {data_ll:.2f})")

fig, ax = plt.subplots(figsize=(5, 3.4))
ax.loglog([r[0] for r in rows], [r[1] for r in rows], "o-", label="Euler")
ax.loglog([r[2] for r in rows], [r[3] for r in rows], "s-", label="Heun")
e = np.array([r[0] for r in rows], float)
ax.loglog(e, rows[0][1] * e[0] / e, "k:", lw=1, label="∝ 1/evals")
ax.loglog(e, rows[0][3] * (e[0] / e) ** 2, "k--", lw=1, label="∝ 1/evals²")
ax.set_xlabel("velocity evaluations")
ax.set_ylabel("mean distance to the exact ODE solution")
# label the Euler budgets only: minor log labels on x collide on a short range
ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
ax.set_xticks(e, [f"{v:g}" for v in e])
ax.legend(fontsize=8)
ax.set_title("exact toy velocity: solver error only", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# A surprise worth studying: on this toy **Euler beats Heun at every equal budget**, and
# neither shows its textbook order (error ∝ 1/evals for Euler, 1/evals² for Heun) until many
# evaluations. The reason is the end of the path. Our clusters are narrow (std 0.08), so
# near t = 0 the optimal velocity v = (x_t − E[x₀|x_t])/t changes on a time scale of about
# 0.08: any step larger than that is not "small", and the order of a method only describes
# small steps. Heun spends two evaluations per step, so at equal cost its steps are twice as
# long, and its last step into t = 0 is a plain Euler step of that doubled length. Heun's
# advantage needs a velocity that is smooth on the scale of the step; real data sets and
# trained networks may or may not offer that, which is why samplers are compared by
# measurement. The log-likelihood column tells the sample-quality side: with 2–4 evaluations
# the samples sit between the clusters (very low likelihood); with 8 or more it is even a
# little *above* that of true draws, a sign that the coarse solvers pull samples slightly
# too close to the cluster centres.
#
# ## 3. Where on the path should we train? Logit-normal times and SD3's shift
#
# Plain flow matching draws t ~ U(0, 1). SD3 (Esser et al. 2024) found two changes helpful:
#
# * **logit-normal** times, t = sigmoid(m + s·n) with n ~ N(0, 1)
#   (`timesteps.logit_normal_times`, density `timesteps.logit_normal_pdf`): more training
#   near the middle, where the velocity is hardest to predict (the sample is deciding what
#   it becomes), less at the ends, where it is nearly ε − x_t or x_t − x₀;
# * the **shift** t' = s·t / (1 + (s − 1)·t) (`timesteps.shift_times`), which pushes times
#   towards the noisy end for s > 1. Higher resolutions keep more of the image visible at a
#   given noise level (neighbouring pixels are redundant), so they need more noise to destroy
#   the same information; SD3 uses s = 3 for its 1024² models, and the same shift on the
#   *sampling* grid (`flow.time_grid(n, shift)`).
#
# `flow.sample_times` draws training times with any combination; `flow.time_density` is the
# density of what it draws (the shift is a change of variables). Histograms of 200,000 draws
# sit on the curves.

# %%
t_plot = np.linspace(0.0005, 0.9995, 500)
settings = [("uniform", 1.0), ("uniform", 3.0), ("logit_normal", 1.0), ("logit_normal", 3.0)]
n_draws = 20_000 if FAST else 200_000
fig, axes = plt.subplots(1, 4, figsize=(14, 3), sharey=True)
for i, (ax, (kind, s)) in enumerate(zip(axes, settings)):
    draws = np.asarray(flow.sample_times(jax.random.key(10 + i), n_draws, kind, shift=s))
    ax.hist(draws, bins=50, range=(0, 1), density=True, alpha=0.4, color="C0")
    ax.plot(t_plot, np.asarray(flow.time_density(t_plot, kind, shift=s)), "C3", lw=2)
    ax.set_title(f"{kind}, shift {s:g}\nP(t > 0.5) = {np.mean(draws > 0.5):.2f}", fontsize=9)
    ax.set_xlabel("t (0 = data, 1 = noise)")
axes[0].set_ylim(0, 3.5)
axes[0].set_ylabel("density")
plt.tight_layout()
plt.show()
print("logit-normal(0, 1) density at t = 0.5:", float(timesteps.logit_normal_pdf(0.5)), "(= 4 / sqrt(2 pi))")
print("10-step sampling grid, shift 1:", np.round(np.asarray(flow.time_grid(10, shift=1.0)), 3).tolist())
print("10-step sampling grid, shift 3:", np.round(np.asarray(flow.time_grid(10, shift=3.0)), 3).tolist())

# %% [markdown]
# With shift 3, about three quarters of the training times (and of the sampling steps) fall in
# the noisier half. Our MNIST preset below keeps the plain uniform times: at 28×28 there is
# no resolution argument for a shift, and it keeps the comparison with DDIM simple.
#
# ## 4. Rectified flow on MNIST, against DDIM at equal cost
#
# `mnist-unet-flow` is the `mnist-unet` preset of lessons 02–07 with one change: the
# objective. Same 0.56M-parameter U-Net, same 1,200 steps of batch 128, same optimiser, EMA
# and 10% label dropout, but the loss is flow matching (velocity target ε − x₀, uniform t).
# Our backbones embed time with sinusoids designed for integer timesteps, so the model is
# fed 1000·t (as SD3 feeds 1000·σ). `pipeline.sample` integrates the guided velocity with
# `sampler="euler"` or `"heun"`; classifier-free guidance wraps the velocity exactly as it
# wraps a v- or ε-prediction, with the same scale s = 3.
#
# We compare, at equal numbers of network evaluations, Euler and Heun on the flow model with
# DDIM (η = 0) on the v-prediction diffusion model, all from the same starting noise. Scores:
# class accuracy and domain-feature FID from the project's MNIST classifier (comparable only
# within this project; compare at equal N).

# %%
flow_preset = pipeline.get_preset("mnist-unet-flow")
diff_preset = pipeline.get_preset("mnist-unet")
t0 = time.perf_counter()
flow_state = pipeline.train(flow_preset)
print(f"{flow_preset.name}: trained or loaded in {time.perf_counter() - t0:.1f} s ({pipeline.run_dir(flow_preset).name})")
diff_state = pipeline.train(diff_preset)

classifier = metrics.reference("mnist")
test, train = data.load_dataset("mnist", "test"), data.load_dataset("mnist", "train")
per_class = 2 if FAST else 20  # 200 images per setting: 12 settings fit the time budget
labels = np.repeat(np.arange(10), per_class)  # (N,) 0, 0, ..., 9
real = test.images[np.random.default_rng(0).permutation(len(test.images))[:len(labels)]]
eval_budgets = [2, 4] if FAST else [4, 8, 16, 32]

runs = {"DDIM (v-model)": [], "Euler (flow)": [], "Heun (flow)": []}
grids = {}
k_mnist = jax.random.fold_in(key, 1)
t0 = time.perf_counter()
for budget in eval_budgets:
    plan = [("DDIM (v-model)", diff_state, diff_preset, "ddim", budget),
            ("Euler (flow)", flow_state, flow_preset, "euler", budget),
            ("Heun (flow)", flow_state, flow_preset, "heun", (budget + 1) // 2)]
    for name, state, preset, sampler, steps in plan:
        images = pipeline.sample(k_mnist, state, preset, labels, sampler=sampler, num_steps=steps)
        s = metrics.evaluate(jax.random.key(0), images, labels, real, train.images, classifier, kid_subset_size=min(250, len(labels)))
        runs[name].append((sampling.denoiser_evaluations(sampler, steps), s["accuracy"], s["fid"]))
        grids[(name, budget)] = images[::per_class]  # one sample per digit
print(f"sampled and scored {len(eval_budgets) * 3} settings of {len(labels)} images in {time.perf_counter() - t0:.0f} s")

print(f"{'sampler':16s} {'evals':>5s} {'accuracy':>9s} {'domain FID':>11s}")
for name, rs in runs.items():
    for evals, acc, fid in rs:
        print(f"{name:16s} {evals:5d} {acc:9.1%} {fid:11.2f}")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
for name, rs in runs.items():
    axes[0].plot([r[0] for r in rs], [r[1] for r in rs], "o-", label=name)
    axes[1].plot([r[0] for r in rs], [r[2] for r in rs], "o-", label=name)
for ax, lab in zip(axes, ["class accuracy", "domain FID (lower is better)"]):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("denoiser evaluations (with CFG: 2 rows each)")
    ax.set_ylabel(lab)
    ax.legend(fontsize=8)
axes[1].set_yscale("log")
plt.tight_layout()
plt.show()

# %% [markdown]
# And what the numbers look like: one sample per digit (columns 0–9), same starting noise in
# every row.

# %%
shown = [eval_budgets[0], eval_budgets[-1]]
rows_img = [grids[(name, b)] for b in shown for name in runs]
row_names = [f"{name}, {runs[name][eval_budgets.index(b)][0]} evals" for b in shown for name in runs]
fig, ax = plt.subplots(figsize=(7, 0.62 * len(rows_img) + 0.6))
viz.show_images(np.concatenate(rows_img), 10, ax, row_labels=row_names)
ax.set_title("synthetic samples, CFG s = 3", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# How to read this comparison. In our run (200 images per setting, CFG s = 3) all three
# samplers produced clearly readable digits of the intended class already at 3–4
# evaluations (98.5–99.5% class accuracy everywhere), and the domain FIDs all lay between
# about 4.6 and 5.5, with DDIM on the v-model slightly ahead at every budget and every
# sampler improving slowly with more evaluations. With 200 samples, FID differences of a
# few tenths are within the noise of the estimate, so the honest summary is "no clear
# winner at this scale". Strong guidance helps every sampler here: it makes the paths
# towards a class easy to follow.
#
# The two models share architecture, data and training budget, but not the objective, so a
# gap would mix two effects: the **path** (straight flow vs VP) and the **solver**
# (Euler/Heun vs DDIM). DDIM is itself a first-order ODE solver in disguise, which is why
# it keeps up. Whatever ranking you see is one measurement on one small model, not a law;
# the chapter's caution that few-step quality "remains a measurement, not a guarantee"
# applies here too.
#
# ## Exercises
#
# Implement each function and run its cell; `hint("name")` when you are stuck.

# %% tags=["exercise"]
def rf_interpolate_and_target(x0, eps, t):
    """The rectified-flow training pair.

    x0, eps: arrays of shape (B, ...); t: shape (B,) times in [0, 1] (0 = data, 1 = noise).
    returns: (x_t, v): the point of the straight path at time t and the velocity target d x_t / dt.
    """
    ### BEGIN SOLUTION
    t = jnp.asarray(t).reshape((-1,) + (1,) * (x0.ndim - 1))
    return (1 - t) * x0 + t * eps, eps - x0
    ### END SOLUTION


check("rf_interpolate_and_target", rf_interpolate_and_target)


# %% tags=["exercise"]
def euler_flow_step(x, v, t, t_next):
    """One Euler step of dx/dt = v from time t to t_next (t_next < t when sampling).

    x, v: arrays of shape (B, ...) (v is the velocity evaluated at (x, t)); t, t_next: floats.
    returns: the new x, shape (B, ...).
    """
    ### BEGIN SOLUTION
    return x + (t_next - t) * v
    ### END SOLUTION


check("euler_flow_step", euler_flow_step)


# %% tags=["exercise"]
def shift_time(t, shift):
    """SD3's timestep shift of section 3, elementwise on t in [0, 1] (any shape); shift > 0.

    returns: the shifted times, same shape as t; shift = 1 returns t.
    """
    ### BEGIN SOLUTION
    t = jnp.asarray(t)
    return shift * t / (1 + (shift - 1) * t)
    ### END SOLUTION


check("shift_time", shift_time)


# %% tags=["exercise"]
def logit_normal_density(t, mean, std):
    """Density of t = sigmoid(mean + std * n), n ~ N(0, 1), at points t strictly inside (0, 1).

    t: array of times; mean, std: floats. returns: the density at each t, same shape.
    """
    ### BEGIN SOLUTION
    t = jnp.asarray(t)
    u = jnp.log(t / (1 - t))
    return jnp.exp(-0.5 * ((u - mean) / std) ** 2) / (std * jnp.sqrt(2 * jnp.pi)) / (t * (1 - t))
    ### END SOLUTION


check("logit_normal_density", logit_normal_density)

# %% [markdown]
# ### The whole sampler
#
# Finally the loop that `flow.euler_sample` runs: Euler steps along a decreasing grid of
# times such as `flow.time_grid(10, shift=3.0)`. The velocity model is a function
# `velocity(x, t)` with `t` a `(B,)` float array.


# %% tags=["exercise"]
def flow_sample_loop(velocity, x1, times):
    """Euler sampling of a rectified-flow model along a time grid.

    velocity(x, t) -> (B, ...), t a (B,) float array; x1: (B, ...) noise at the grid's first time;
    times: 1-D array of decreasing times, from 1 (noise) to 0 (data).
    returns: the sample at the grid's last time, shape (B, ...).
    """
    ### BEGIN SOLUTION
    times = [float(v) for v in np.asarray(times)]
    x = x1
    for t, t_next in zip(times[:-1], times[1:]):
        x = euler_flow_step(x, velocity(x, jnp.full((x1.shape[0],), t, jnp.float32)), t, t_next)
    return x
    ### END SOLUTION


check("flow_sample_loop", flow_sample_loop)

# %% [markdown]
# ## Check your understanding
#
# 1. With t = 0 data and t = 1 noise, write x_t and the velocity target. Given a predicted
#    velocity v̂ at (x_t, t), what is the implied clean sample?
# 2. Every training path is a straight line. Why are the sampling trajectories of even a
#    perfectly trained model curved, and why does that matter for few-step sampling?
# 3. A Heun sampler with 8 steps: how many network evaluations, and with CFG how many rows
#    per evaluation?
# 4. What does a shift of 3 do to the training times and the sampling grid, and why do larger
#    images want it?
# 5. The logit-normal density is zero at both ends. Which parts of the path does it neglect,
#    and why is that a reasonable bet?
#
# <details>
# <summary>Answers</summary>
#
# 1. x_t = (1 − t)·x₀ + t·ε and v = ε − x₀. Since x_t = x₀ + t·v, the implied
#    x̂₀ = x_t − t·v̂ (`flow.x0_from_velocity`).
# 2. The optimal velocity at a point is the average of the targets of all training lines
#    through it, E[ε − x₀ | x_t]. Where lines from different data points cross (most of
#    the middle of the path), that average changes with x and t, so the ODE's trajectories
#    bend. Euler steps follow the tangent and cut the bends, so few steps cost accuracy;
#    higher-order solvers (Heun) or "reflow" (retraining on the model's own noise–sample
#    pairs to straighten the paths) reduce it.
# 3. 2·8 − 1 = 15 evaluations (the final step into t = 0 is plain Euler); each evaluation
#    runs two rows per sample (conditional and unconditional) in one batch.
# 4. t' = 3t/(1 + 2t) maps every time towards 1: more training and more sampling steps
#    at high noise (t = 0.5 becomes 0.75). At higher resolution, neighbouring pixels are
#    redundant, so the image is still recognisable at noise levels that would destroy a small
#    image; the shift spends more effort where the large image's global layout is decided.
# 5. It rarely trains very near t = 0 (almost clean: velocity ≈ (x_t − x₀)/t is nearly
#    determined by x_t) and t = 1 (almost pure noise: the velocity is close to ε − E[x₀]).
#    Both are easy regression problems; the middle, where the sample commits to what it
#    becomes, is the hard part and gets the most training.
# </details>
#
# ## Summary
#
# * Rectified flow: x_t = (1 − t)·x₀ + t·ε (t = 0 data, 1 noise), target v = ε − x₀,
#   plain MSE (`flow.interpolate`, `flow.velocity_target`, `flow.flow_loss`;
#   `TrainConfig(objective="flow")`).
# * Sampling integrates dx/dt = v from 1 to 0: `flow.euler_sample` (1 evaluation per step),
#   `flow.heun_sample` (2S − 1 for S steps). Trajectories of the optimal field are curved
#   even though each training path is straight; on the exact toy, whose narrow clusters make
#   the velocity change fast near t = 0, Euler beat Heun at equal evaluations.
# * SD3 trains on logit-normal times with a resolution shift (`flow.sample_times`,
#   `timesteps.logit_normal_pdf`, `timesteps.shift_times`, `flow.time_density`).
# * `pipeline.get_preset("mnist-unet-flow")` is the demo U-Net trained with flow matching;
#   `pipeline.sample(..., sampler="euler" | "heun")` samples it with CFG. Compare samplers at
#   equal **denoiser evaluations** (`sampling.denoiser_evaluations`), and measure.
