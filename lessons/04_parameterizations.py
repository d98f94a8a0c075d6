# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 04 — What should the network predict? ε, x₀ and v, loss weights, zero-terminal SNR
#
# Lessons 02 and 03 trained and sampled a network that predicts the noise ε. That is
# DDPM's choice, but it is only one of three common *targets*. Because the forward
# process is linear, x_t = √ᾱ·x₀ + √(1−ᾱ)·ε, knowing x_t and any one of the three
# quantities ε, x₀ or the "velocity" v fixes the other two. So the targets are
# interchangeable on paper, yet they behave very differently in practice:
#
# * they put the training signal on different timesteps (an equal-looking MSE in one
#   space is a heavily re-weighted MSE in another);
# * they amplify a network's mistakes differently when the sampler turns the prediction
#   into an estimate of the clean image, most dramatically at the very noisy end;
# * only some of them survive a schedule whose last step is pure noise (zero terminal SNR).
#
# This lesson makes each of these points with numbers. The work horse is the exact 2-D
# toy from `diffusion_jax.toy`: a Gaussian mixture whose optimal denoiser is known in
# closed form, so we can separate *model error* (which we inject on purpose) from
# *sampler error*.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from diffusion_jax import losses, samplers, schedules, timesteps, toy, viz
from diffusion_jax import parameterization as P
from diffusion_jax.demo import fast_mode
from diffusion_jax.exercises import check, hint
from diffusion_jax.toy_demo import sample_statistics

FAST = fast_mode()
N = 500 if FAST else 4000  # toy samples per sampler run
sched = schedules.linear(1000)
mix = toy.default_mixture()
print(f"fast mode: {FAST}; {N} samples per run; schedule T = {sched.num_timesteps}")

# %% [markdown]
# ## 1. Three targets, one line of algebra apart
#
# Write a = √ᾱ_t (the signal coefficient) and b = √(1−ᾱ_t) (the noise coefficient), so
# a² + b² = 1 and x_t = a·x₀ + b·ε. The three targets are
#
# | target | the network outputs | recover x₀ from it |
# |---|---|---|
# | ε (DDPM) | the noise that was added | x₀ = (x_t − b·ε) / a |
# | x₀ | the clean sample | (itself) |
# | v (Salimans & Ho) | v = a·ε − b·x₀ | x₀ = a·x_t − b·v |
#
# Geometrically, (x₀, ε) ↦ (x_t, v) is a rotation by the angle φ with cos φ = a: x_t is the
# point on the circle, and v is its tangent direction. That is why v never needs a division.
# All conversions live in `diffusion_jax.parameterization`; let us check that they are exact
# inverses of each other on real noised points.

# %%
key = jax.random.key(0)
k_data, k_eps, k_t = jax.random.split(key, 3)
x0, _ = mix.sample(k_data, 6)  # (6, 2) clean points
eps = jax.random.normal(k_eps, x0.shape)  # (6, 2) noise
t = jnp.array([0, 100, 300, 500, 800, 999])
ab = sched.alpha_bars[t]  # (6,)
x_t = jnp.sqrt(ab)[:, None] * x0 + jnp.sqrt(1 - ab)[:, None] * eps
v = P.velocity(x0, eps, ab)

truth = {"eps": eps, "x0": x0, "v": v}
worst = 0.0
for source in P.PREDICTIONS:
    for target in P.PREDICTIONS:
        got = P.convert(truth[source], x_t, ab, source=source, target=target)
        worst = max(worst, float(jnp.max(jnp.abs(got - truth[target]))))
print(f"largest error over all 9 source->target conversions: {worst:.2e}")
for i in range(len(t)):
    err = float(jnp.max(jnp.abs(P.to_x0(eps, x_t, ab, "eps")[i] - x0[i])))
    print(f"t = {int(t[i]):3d}  alpha_bar = {float(ab[i]):.5f}   |x0 from eps - x0| = {err:.1e}")

# %% [markdown]
# All nine conversions agree to float32 precision. Here the ε we feed in is the *true* noise,
# so dividing by a = √ᾱ (≈ 0.006 at t = 999) does no harm. When ε comes from a network that
# is slightly wrong, the same division multiplies its mistake by about 160: that factor comes
# back in section 4.
#
# ## 2. The same mistake, measured in three currencies
#
# Suppose the network's clean-image estimate is off by δx₀. Convert that estimate to ε and
# v and the errors are δε = −(a/b)·δx₀ and δv = −(1/b)·δx₀. Squaring, with SNR = a²/b²:
#
# **ε-MSE = SNR · x₀-MSE,  v-MSE = (SNR + 1) · x₀-MSE,  so  ε-MSE = v-MSE · SNR / (SNR + 1).**
#
# Training with a plain ε-MSE is therefore the same as training x₀ with weight SNR: huge
# weight on nearly clean timesteps, almost none on the noisy ones. Below we perturb an x₀
# estimate by a fixed amount, convert it with the library and measure the three MSEs.

# %%
dx0 = 0.1 * jax.random.normal(jax.random.key(1), x0.shape)  # one fixed x0 mistake
x0_hat = x0 + dx0
eps_hat = P.to_eps(x0_hat, x_t, ab, "x0")
v_hat = P.to_v(x0_hat, x_t, ab, "x0")
mse = lambda a_, b_: jnp.mean((a_ - b_) ** 2, axis=-1)  # per row
m_x0, m_eps, m_v = mse(x0_hat, x0), mse(eps_hat, eps), mse(v_hat, v)
snr = sched.snr[t]
print("   t        SNR     x0-MSE     eps-MSE  x0-MSE*SNR      v-MSE  v-MSE*SNR/(SNR+1)")
for i in range(len(t)):
    print(f"{int(t[i]):4d} {float(snr[i]):10.4g} {float(m_x0[i]):10.3e} {float(m_eps[i]):11.3e}"
          f" {float(m_x0[i] * snr[i]):11.3e} {float(m_v[i]):10.3e} {float(m_v[i] * snr[i] / (snr[i] + 1)):18.3e}")

# %% [markdown]
# The columns agree row by row: one mistake, three price tags. The plot shows the weight each
# plain loss implicitly puts on the x₀ error, against log-SNR, together with the *min-SNR*
# weighting of Hang et al. (2023), which caps that weight at γ.

# %%
log_snr = np.asarray(sched.log_snr)
snr_all = np.asarray(sched.snr)
gamma = 5.0
fig, ax = plt.subplots(figsize=(6, 3.6))
# ε-MSE shares its line with v-MSE on the right and with min-SNR on the left: draw it wide
# and pale underneath, the others narrow on top, so all four stay visible
ax.semilogy(log_snr, snr_all, lw=6, alpha=0.35, color="C0", label="plain ε-MSE  (weight SNR)")
ax.semilogy(log_snr, snr_all + 1, "--", color="C1", label="plain v-MSE  (weight SNR + 1)")
ax.semilogy(log_snr, np.ones_like(snr_all), color="C2", label="plain x₀-MSE  (weight 1)")
ax.semilogy(log_snr, np.minimum(snr_all, gamma), ":", lw=2, color="C3", label=f"min-SNR, γ = {gamma:g}")
ax.set_xlabel("log-SNR   (left: noisy, right: clean)")
ax.set_ylabel("implied weight on x₀-MSE")
ax.set_title("How much each loss cares about the x₀ error, linear schedule", fontsize=10)
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Min-SNR weighting with any target
#
# `losses.snr_weight(snr, prediction, "min_snr", gamma)` returns the per-timestep factor that
# makes each target's loss equal min(SNR, γ)·x₀-MSE. Multiply it into the three MSEs of
# section 2 and the three columns collapse onto one number per row.

# %%
w = {p: losses.snr_weight(snr, p, "min_snr", gamma) for p in P.PREDICTIONS}
print("   t   w_eps     w_x0     w_v  |  w_eps*eps-MSE  w_x0*x0-MSE  w_v*v-MSE")
for i in range(len(t)):
    print(f"{int(t[i]):4d} {float(w['eps'][i]):7.4f} {float(w['x0'][i]):8.4f} {float(w['v'][i]):7.4f}  |"
          f"  {float(w['eps'][i] * m_eps[i]):13.3e} {float(w['x0'][i] * m_x0[i]):12.3e} {float(w['v'][i] * m_v[i]):10.3e}")

# %% [markdown]
# In training you pass `weighting="min_snr"` to `losses.diffusion_loss`. The effect: the many
# easy, high-SNR timesteps stop dominating the gradient, which Hang et al. report speeds up
# convergence. Note the ε weight is written min(1, γ/SNR) so it stays finite at SNR = 0.
#
# ## 4. Why ε-prediction struggles when the image is almost all noise
#
# A sampler needs x₀ at every step. From an ε-prediction it computes
# x₀ = (x_t − √(1−ᾱ)·ε̂)/√ᾱ, so an error δ in ε̂ becomes an error **δ·√(1−ᾱ)/√ᾱ = δ/√SNR**
# in x₀. From a v-prediction, x₀ = √ᾱ·x_t − √(1−ᾱ)·v̂, and the same δ costs only
# δ·√(1−ᾱ) ≤ δ. The factor 1/√SNR is harmless mid-schedule and enormous at the start of
# sampling:

# %%
for tt in [0, 250, 500, 750, 900, 999]:
    a_, b_ = float(sched.signal_scale[tt]), float(sched.noise_scale[tt])
    print(f"t = {tt:3d}: eps error x {b_ / a_:8.2f} in x0      v error x {b_:.3f} in x0")

# %% [markdown]
# There is a second, related problem. At high noise x_t is almost exactly ε, so "predict the
# noise" is nearly solved by copying the input, and the part of ε̂ that carries information
# about the image (the class, the layout) is a tiny correction that the ε-loss barely
# rewards (its weight is SNR ≈ 4·10⁻⁵ at t = 999). Yet the sampler divides that tiny
# correction by √ᾱ ≈ 0.006 to read off x₀.
#
# **Our own measurement** (recorded in `diffusion_jax/pipeline.py` for the demo preset, the
# 0.56M-parameter class-conditional MNIST U-Net): sampled with DDIM-50 and scored by a digit
# classifier, the ε-prediction model reached about **20% correct class unguided** after
# 1,500 training steps, while the same network trained on **v** reached **86%** after 1,300
# steps. That is why the course's `mnist-unet` preset uses v-prediction. It is one
# measurement on one small model, not a general law, but it is the effect predicted above.
#
# ## 5. The exact toy: the three targets sample identically
#
# `mix.denoiser(schedule, prediction)` is the MSE-optimal denoiser of the mixture expressed as
# an ε, x₀ or v prediction. Feed each to DDIM-50 from the same starting noise: if the targets
# really are one object in three coordinates, the samples must coincide.

# %%
shape = (N, 2)
k_sample = jax.random.key(42)
exact = {p: mix.denoiser(sched, p) for p in P.PREDICTIONS}
samples = {p: samplers.ddim_sample(k_sample, exact[p], sched, shape, num_steps=50, prediction=p)
           for p in P.PREDICTIONS}
for p in P.PREDICTIONS:
    diff = float(jnp.max(jnp.abs(samples[p] - samples["eps"])))
    stats = sample_statistics(samples[p], mix)
    print(f"{p:>3}: max |difference to eps run| = {diff:.1e}; component weights {stats['weights']}")
print("true weights:", np.asarray(mix.weights, np.float64).round(3).tolist())

fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
for ax, p in zip(axes, P.PREDICTIONS):
    viz.plot_points(samples[p], ax, f"exact {p}-denoiser, DDIM-50", mixture=mix)
plt.tight_layout()
plt.show()

# %% [markdown]
# Identical up to float32 rounding. With a perfect model the choice of target is invisible to
# the sampler; whatever error remains (here, a little from 50 steps) is the sampler's own.
#
# Now give the model a flaw: add the same small constant δ = 0.05 to every output of the
# ε-denoiser, and, separately, to every output of the v-denoiser. Same size of mistake, in
# the network's own units. First the error each one causes in the x₀ estimate at each
# timestep (measured with the library's conversion, on noised data), then what it does to
# the samples.

# %%
delta = 0.05
eps_fn, v_fn = exact["eps"], exact["v"]


def eps_flawed(x, t, cond):
    return eps_fn(x, t, cond) + delta


def v_flawed(x, t, cond):
    return v_fn(x, t, cond) + delta


ts = np.arange(0, 1000, 10)  # 100 timesteps, 64 noised data points at each: one batch
per_t = 64
xd, _ = mix.sample(jax.random.key(3), per_t * len(ts))  # (6400, 2)
tb = jnp.repeat(jnp.asarray(ts), per_t)  # (6400,)
abt = sched.alpha_bars[tb]
xt = jnp.sqrt(abt)[:, None] * xd + jnp.sqrt(1 - abt)[:, None] * jax.random.normal(jax.random.key(4), xd.shape)
errs = {}
for p, good, bad in [("eps", eps_fn, eps_flawed), ("v", v_fn, v_flawed)]:
    gap = P.to_x0(bad(xt, tb, None), xt, abt, p) - P.to_x0(good(xt, tb, None), xt, abt, p)
    errs[p] = np.sqrt(np.mean(np.asarray(gap).reshape(len(ts), per_t, 2) ** 2, axis=(1, 2)))  # (100,)

flawed = {
    "eps": samplers.ddim_sample(k_sample, eps_flawed, sched, shape, num_steps=50, prediction="eps"),
    "v": samplers.ddim_sample(k_sample, v_flawed, sched, shape, num_steps=50, prediction="v"),
}
for p in ("eps", "v"):
    s = sample_statistics(flawed[p], mix)
    means = np.round(np.array([m if m is not None else [np.nan] * 2 for m in s["component_means"]]), 3)
    print(f"{p:>3} + {delta}: weights {s['weights']}, component means {means.tolist()}, "
          f"mean log-lik {s['mean_log_likelihood']:.2f}")
print("exact   : means", np.asarray(mix.means, np.float64).round(3).tolist(),
      f"mean log-lik {sample_statistics(samples['eps'], mix)['mean_log_likelihood']:.2f}")

fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
axes[0].semilogy(ts, errs["eps"], label=f"ε̂ + {delta}")
axes[0].semilogy(ts, errs["v"], label=f"v̂ + {delta}")
axes[0].semilogy(ts, delta * np.ones_like(ts, dtype=float), "k:", lw=1, label="δ itself")
axes[0].set_xlabel("timestep t")
axes[0].set_ylabel("RMS error of x₀ estimate")
axes[0].set_title("same flaw, x₀ error per step", fontsize=9)
axes[0].legend(fontsize=8)
viz.plot_points(flawed["eps"], axes[1], f"flawed ε-denoiser (+{delta})", mixture=mix, color="C3")
viz.plot_points(flawed["v"], axes[2], f"flawed v-denoiser (+{delta})", mixture=mix, color="C2")
plt.tight_layout()
plt.show()

# %% [markdown]
# The left panel is the 1/√SNR factor made visible: near t = 999 the ε-model's small flaw
# becomes an x₀ error of several units (the whole data lies in [−1, 1]²), while the v-model's
# error never exceeds δ. Compare the printed component weights with the true 0.5 / 0.3 / 0.2:
# the flawed ε-model sends clearly too many samples to the left cluster, the flawed v-model
# stays close. That is no accident: *which* cluster a sample ends in is decided in the first,
# noisiest steps, exactly where the ε error is amplified most. On MNIST the cluster is the digit
# class, which is the failure we measured above. The cluster positions move only slightly in
# both runs because the late, low-noise steps (where both errors are small) fix them. The
# sampler was identical in all runs, so every difference comes from how the target turns a
# model error into an image error.
#
# ## 6. Zero terminal SNR: make the last step pure noise
#
# With the linear schedule, ᾱ at t = 999 is 4·10⁻⁵, not 0: the "noisiest" training inputs
# still contain a faint copy of the image (for Stable Diffusion's schedule it is much more).
# At sampling time we start from pure noise, which the model never saw, and this mismatch is
# why such models struggle with very dark or very bright images. Lin et al. (2024) rescale
# √ᾱ so that ᾱ_T = 0 exactly (`schedules.rescale_zero_terminal_snr`), and pair it with two
# other changes:
#
# * **v-prediction.** At SNR = 0 the ε-to-x₀ formula divides by √ᾱ = 0; x_t *is* ε there, so
#   ε carries no information about x₀. v = −x₀ at that step, a meaningful target.
# * **trailing timestep spacing**, so that a few-step sampler actually starts at t = T−1
#   (the default "leading" grid never visits it).

# %%
zsched = schedules.rescale_zero_terminal_snr(sched)
print(f"linear:      alpha_bar[0] = {float(sched.alpha_bars[0]):.6f}, alpha_bar[999] = {float(sched.alpha_bars[-1]):.3e}")
print(f"zero-SNR:    alpha_bar[0] = {float(zsched.alpha_bars[0]):.6f}, alpha_bar[999] = {float(zsched.alpha_bars[-1]):.3e}"
      f"  (last beta = {float(zsched.betas[-1]):.1f})")
for spacing in timesteps.SPACINGS:
    print(f"{spacing:>8} grid, 10 steps: {timesteps.ddim_timesteps(1000, 10, spacing).tolist()}")

z_samples = {p: samplers.ddim_sample(k_sample, mix.denoiser(zsched, p), zsched, shape, num_steps=50,
                                     prediction=p, spacing="trailing") for p in ("eps", "v")}
for p, x in z_samples.items():
    bad = int(jnp.sum(~jnp.isfinite(x)))
    print(f"zero-SNR + trailing, exact {p}-denoiser: {bad} non-finite values of {x.size}")

fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
axes[0].plot(np.sqrt(np.asarray(sched.alpha_bars)), label="linear")
axes[0].plot(np.sqrt(np.asarray(zsched.alpha_bars)), label="linear, zero terminal SNR")
axes[0].set_xlabel("timestep t")
axes[0].set_ylabel("√ᾱ_t (signal coefficient)")
axes[0].set_yscale("log")
axes[0].legend(fontsize=8)
viz.plot_points(z_samples["v"], axes[1], "zero-SNR, trailing, exact v-denoiser", mixture=mix)
plt.tight_layout()
plt.show()

# %% [markdown]
# Even the *perfect* ε-denoiser yields NaNs here: the first step asks for 0/0. The same
# perfect model in v-form samples the mixture cleanly. (An ε-model can be rescued by special-
# casing that step, but v is the natural fix.)
#
# ## Exercises
#
# Implement each function and run its cell; `check` compares your function with the library
# on several inputs and names the case that fails. Use `jax.numpy`; `hint("name")` when stuck.

# %% tags=["exercise"]
def eps_to_x0(eps, x_t, alpha_bar):
    """Clean-sample estimate implied by an eps-prediction.

    eps, x_t: arrays of shape (B, ...); alpha_bar: a scalar or shape (B,), one value per row.
    returns: x0_hat, shape (B, ...): the x0 for which x_t would be the forward sample with noise eps.
    """
    ### BEGIN SOLUTION
    ab = jnp.asarray(alpha_bar)
    ab = ab.reshape(ab.shape + (1,) * (x_t.ndim - ab.ndim))
    return (x_t - jnp.sqrt(1 - ab) * eps) / jnp.sqrt(ab)
    ### END SOLUTION


check("eps_to_x0", eps_to_x0)


# %% tags=["exercise"]
def x0_eps_to_v(x0, eps, alpha_bar):
    """The v-prediction target (section 1's table) for clean data x0 and noise eps.

    x0, eps: arrays of shape (B, ...); alpha_bar: a scalar or shape (B,).
    returns: v, shape (B, ...).
    """
    ### BEGIN SOLUTION
    ab = jnp.asarray(alpha_bar)
    ab = ab.reshape(ab.shape + (1,) * (x0.ndim - ab.ndim))
    return jnp.sqrt(ab) * eps - jnp.sqrt(1 - ab) * x0
    ### END SOLUTION


check("x0_eps_to_v", x0_eps_to_v)

# %% [markdown]
# The table in section 1 gives x₀ from v, but not ε from v. Derive it (two equations, one
# unknown to eliminate; no division is needed) and implement it. Samplers that run an
# ε-based update on a v-model need exactly this conversion.


# %% tags=["exercise"]
def v_to_eps(v, x_t, alpha_bar):
    """The noise estimate implied by a v-prediction.

    v, x_t: arrays of shape (B, ...); alpha_bar: a scalar or shape (B,), one value per row.
    returns: eps_hat, shape (B, ...); it must also work at alpha_bar = 0 and alpha_bar = 1.
    """
    ### BEGIN SOLUTION
    ab = jnp.asarray(alpha_bar)
    ab = ab.reshape(ab.shape + (1,) * (x_t.ndim - ab.ndim))
    return jnp.sqrt(1 - ab) * x_t + jnp.sqrt(ab) * v
    ### END SOLUTION


check("v_to_eps", v_to_eps)


# %% tags=["exercise"]
def min_snr_weight(snr, prediction, gamma):
    """Min-SNR loss weight for a model that predicts `prediction` ("eps", "x0" or "v").

    snr: array of SNR values (any shape, may contain 0); gamma: the cap (e.g. 5.0).
    returns: the weight w, same shape as snr, such that w * (target-MSE) = min(SNR, gamma) * (x0-MSE)
    (section 2 relates each target's MSE to the x0-MSE); finite everywhere, also at SNR = 0.
    """
    ### BEGIN SOLUTION
    snr = jnp.asarray(snr)
    if prediction == "x0":
        return jnp.minimum(snr, gamma)
    if prediction == "eps":
        return jnp.minimum(1.0, gamma / snr)
    return jnp.minimum(snr, gamma) / (snr + 1.0)
    ### END SOLUTION


check("min_snr_weight", min_snr_weight)

# %% [markdown]
# ## Check your understanding
#
# 1. A model is trained with plain ε-MSE. Which timesteps dominate its loss, measured in x₀
#    error, and what does min-SNR do about it?
# 2. Your ε-model is off by 0.01 in every output at a timestep with ᾱ = 10⁻⁴. How large is
#    the resulting error in its x₀ estimate? And for a v-model off by 0.01?
# 3. Why can an ε-prediction model not be used with a zero-terminal-SNR schedule as is?
# 4. In section 5 the three exact denoisers gave the same samples. Why does that *not* show
#    that the choice of target is irrelevant for a trained network?
# 5. Why pair zero terminal SNR with "trailing" timestep spacing?
#
# <details>
# <summary>Answers</summary>
#
# 1. ε-MSE = SNR · x₀-MSE, so the nearly clean timesteps (SNR in the thousands) dominate and
#    the noisy ones, where layout and class are decided, get weights near zero. Min-SNR caps
#    the effective x₀ weight at γ (weight min(1, γ/SNR) on the ε-loss), flattening the
#    high-SNR end.
# 2. x₀ error = δ·√(1−ᾱ)/√ᾱ ≈ 0.01 · 1/0.01 = 1.0, as large as the data range. A v-model's
#    x₀ error is δ·√(1−ᾱ) ≈ 0.01.
# 3. At the last step ᾱ = 0: x_t equals the noise, the conversion x₀ = (x_t − √(1−ᾱ)ε)/√ᾱ
#    is 0/0, and even a perfect ε-prediction carries no information about x₀ there. The
#    v target (= −x₀ at that step) still does.
# 4. With the exact denoiser there is no model error, so only the sampler's error remains. A
#    trained network does make errors, and each target converts them into x₀ errors with a
#    different factor (section 5's flawed runs), and each target's plain MSE weights the
#    timesteps differently during training (section 2).
# 5. Zero terminal SNR only helps if sampling starts at the step the model was trained to
#    treat as pure noise, t = T−1. The "leading" grid never visits it (its first step is
#    T − T/n); "trailing" starts there.
# </details>
#
# ## Summary
#
# * ε, x₀ and v are exact linear re-expressions of one another given x_t and ᾱ
#   (`diffusion_jax.parameterization`); the sampler's update rule does not change.
# * One error, three sizes: ε-MSE = SNR·x₀-MSE = v-MSE·SNR/(SNR+1). The plain loss of a target
#   is therefore an implicit timestep weighting; min-SNR (`losses.snr_weight`) caps it at γ.
# * ε-prediction magnifies model error by 1/√SNR when converted to x₀, which is huge at the
#   noisy end; in our own MNIST measurement that meant 20% vs 86% correct-class samples
#   (ε vs v, unguided).
# * Zero terminal SNR (`schedules.rescale_zero_terminal_snr`) makes the last training step
#   pure noise, requires v (or x₀) prediction and a trailing sampling grid.
# * The exact mixture toy separates the two error sources: with its perfect denoiser all three
#   targets sample identically; a deliberate flaw shows how each target propagates model error.
