# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 02 — The training objective
#
# Lesson 01 built the forward process: given a clean image `x0`, a timestep `t` and a
# draw of Gaussian noise `eps`, the closed form hands us the noisy image `x_t` in one
# line. This lesson turns that fact into a training signal.
#
# You will
#
# 1. see why the standard diffusion loss is ordinary supervised regression,
# 2. recompute the chapter's two-timestep loss example with the library,
# 3. look at how much each timestep counts in the loss (loss weighting),
# 4. train (or load) a small MNIST U-Net and read its loss curve and its loss by timestep,
# 5. implement the loss, the training pair and a whole training step yourself, graded on
#    the spot (`hint("name")` when you are stuck; each call gives a more specific hint).
#
# Set `DIFFUSION_JAX_FAST=1` for a quick smoke run (a 30-step model, small evaluations).

# %%
import json

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from diffusion_jax import data, losses, pipeline, schedules
from diffusion_jax.demo import fast_mode
from diffusion_jax.exercises import check, hint
from diffusion_jax.train import model_denoiser

FAST = fast_mode()
print("fast mode:", FAST)

# %% [markdown]
# ## 1. A regression problem with a known answer
#
# Think about what we have at training time. We pick a real image `x0`, we pick a
# timestep `t`, *we* draw the noise `eps`, and we build
# `x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps`. The network sees `(x_t, t)` and has to say
# which noise was added. Because we drew that noise ourselves, the correct answer is
# sitting in memory: the loss is just the squared distance between the network's guess
# and `eps`,
#
# $$L_\text{simple} = \mathbb{E}_{x_0,\,t,\,\epsilon}\big\|\epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\; t)\big\|^2 .$$
#
# Compare that with a GAN. There the generator's output has no fixed target; a second
# network, the discriminator, is trained at the same time to tell real from fake, and the
# two play a minimax game whose balance is easy to upset. A diffusion model needs no
# second network and no game: every training example comes with its own label, so the
# loss goes down the way a regression loss goes down. (That makes training pleasant; it
# does not by itself guarantee good coverage of the data or rule out memorisation —
# those are measured later in the course.)
#
# Historically this "simple" loss is a re-weighted version of a variational bound (the
# ELBO) on the data likelihood; Ho et al. found that dropping the bound's per-timestep
# weights trained better samples. We return to weights in section 3.
#
# ### The chapter's example: the same loss at two noise levels
#
# The chapter compares one prediction at an early timestep (t = 100, little noise) and
# one at a late timestep (t = 700, mostly noise). We feed the same numbers to
# `losses.per_example_mse`, which averages squared errors over every axis but the batch
# axis, so each row below is a batch of one 3-value "image".

# %%
linear = schedules.linear(1000)  # DDPM's schedule, T = 1000

rows = [
    {"timestep": 100, "true_noise": [0.20, -0.10, 0.05], "predicted_noise": [0.18, -0.08, 0.02]},
    {"timestep": 700, "true_noise": [0.90, -0.40, 0.30], "predicted_noise": [0.72, -0.35, 0.10]},
]
for row in rows:
    true_eps = jnp.array([row["true_noise"]])  # (1, 3)
    pred_eps = jnp.array([row["predicted_noise"]])  # (1, 3)
    mse = losses.per_example_mse(pred_eps, true_eps)  # (1,)
    ab = float(linear.alpha_bars[row["timestep"]])
    print(f"t = {row['timestep']:3d}  (alpha_bar = {ab:.4f}, SNR = {ab / (1 - ab):7.3f})  "
          f"mse_loss = {round(float(mse[0]), 4)}")

# %% [markdown]
# The second row's loss is about forty times the first. Resist reading that as "the model
# is worse at t = 700": these are hand-picked numbers, and a loss value only means
# something next to other losses *at the same timestep*. For eps-prediction the real
# trend usually runs the other way. At t = 700 on the linear schedule `alpha_bar ≈ 0.007`,
# so `x_t` is almost pure noise and even the lazy guess `eps_hat = x_t` scores an eps-MSE
# below 0.01 on images in [-1, 1]; the hard noise predictions are at small `t`, where a
# faint noise has to be told apart from fine image detail. Section 4 measures this on a
# real model.
#
# ### The same loss on a batch
#
# In training, `t` and `eps` are drawn fresh for every example. `losses.diffusion_loss`
# does exactly that from one key: it draws `t ~ U{0..T-1}` and `eps ~ N(0, I)`, forms
# `x_t`, calls the denoiser and returns the mean loss plus the per-example losses and
# their timesteps. A "denoiser" that always answers zero makes a useful baseline: its
# eps-MSE is the variance of the noise, about 1, and any trained model must beat it.

# %%
train_ds = data.load_dataset("mnist", "train")
# the data set is stored sorted by class: draw the batch at random, not the first 16 (all zeros)
batch_idx = np.random.default_rng(0).permutation(len(train_ds))[:16]
x_batch = jnp.asarray(data.to_float(train_ds.images[batch_idx]))  # (16, 28, 28, 1) in [-1, 1]


def predict_zero(x_t, t, cond):
    return jnp.zeros_like(x_t)


loss, aux = losses.diffusion_loss(jax.random.key(0), predict_zero, linear, x_batch)
print("batch shape:", x_batch.shape, " digits:", train_ds.labels[batch_idx].tolist())
print("timesteps drawn:", np.asarray(aux["t"]))
print("per-example loss:", np.round(np.asarray(aux["per_example"]), 3))
print(f"mean loss of the all-zero denoiser: {float(loss):.3f}  (the noise variance is 1)")

# %% [markdown]
# ## Exercise 1 — the simple loss
#
# Write the per-example mean squared error between predicted and true noise. Inputs have
# shape `(B, ...)` (any number of trailing axes); the output has shape `(B,)`. The
# checker also feeds it the chapter's two rows.

# %% tags=["exercise"]
def simple_loss(pred_eps, true_eps):
    """The simple diffusion loss of each example: its mean squared error.

    pred_eps, true_eps: arrays of shape (B, ...) (any number of trailing axes).
    returns: shape (B,), one loss per example.
    """
    ### BEGIN SOLUTION
    return jnp.mean((pred_eps - true_eps) ** 2, axis=tuple(range(1, pred_eps.ndim)))
    ### END SOLUTION


check("simple_loss", simple_loss)

# %% [markdown]
# ## Exercise 2 — build a training pair
#
# One training example is an input `x_t` and a target. The input never depends on what the
# network predicts; the target does. Given explicit timesteps `t` (shape `(B,)`) and
# noise `eps` (shape of `x0`), return `(x_t, target)` where
#
# * `x_t` is the forward sample of lesson 01,
# * the target is `eps` for `prediction="eps"`, `x0` for `"x0"`, and the velocity `v` for
#   `"v"` (section 5 below and lesson 04 say more about v; `hint` helps if you have not met it).

# %% tags=["exercise"]
def noisy_input_and_target(schedule, x0, t, eps, prediction):
    """One training pair for a model that predicts `prediction` ("eps", "x0" or "v").

    schedule: a Schedule; x0, eps: (B, ...); t: (B,) integer timesteps.
    returns: (x_t, target), both of shape (B, ...).
    """
    ### BEGIN SOLUTION
    ab = schedule.alpha_bars[t].reshape((-1,) + (1,) * (x0.ndim - 1))
    x_t = jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps
    if prediction == "eps":
        target = eps
    elif prediction == "x0":
        target = x0
    else:
        target = jnp.sqrt(ab) * eps - jnp.sqrt(1.0 - ab) * x0
    return x_t, target
    ### END SOLUTION


check("noisy_input_and_target", noisy_input_and_target)

# %% [markdown]
# ## Exercise 3 — a whole training step
#
# Put the pieces together. The "network" is the smallest one possible, a linear map:
# `eps_hat = x_t @ w` with a `(D, D)` weight matrix, on a batch of `(B, D)` vectors. Write one
# step of plain gradient descent on the simple loss (averaged over the batch) and return the
# new weights and the loss before the step. Timesteps and noise are given, so the step is
# deterministic. Nothing here is new; the work is in getting every part right at once.

# %% tags=["exercise"]
def sgd_step(w, schedule, x0, t, eps, lr):
    """One gradient-descent step of an eps-predicting linear model eps_hat = x_t @ w.

    w: (D, D) weights; schedule: a Schedule; x0, eps: (B, D); t: (B,) integer timesteps;
    lr: the learning rate (a float).
    returns: (new_w, loss): the updated (D, D) weights and the batch loss (a scalar) at w.
    """
    ### BEGIN SOLUTION
    def loss_fn(w):
        ab = schedule.alpha_bars[t][:, None]  # (B, 1)
        x_t = jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps
        return jnp.mean((x_t @ w - eps) ** 2)

    loss, grad = jax.value_and_grad(loss_fn)(w)
    return w - lr * grad, loss
    ### END SOLUTION


check("sgd_step", sgd_step)

# %% [markdown]
# ## 3. How much does each timestep count?
#
# The simple loss draws `t` uniformly and gives every draw weight 1. That choice is not
# neutral: it decides where along the noise axis the model spends its capacity. It helps
# to translate every objective into one common currency, the squared error of the implied
# clean image `x0`. For one underlying estimate the three targets' errors are tied by the
# signal-to-noise ratio `SNR(t) = ab_t / (1 - ab_t)`:
#
# * eps-MSE  = SNR · x0-MSE  — huge weight on the nearly clean timesteps, almost none on the noisy end;
# * v-MSE    = (SNR + 1) · x0-MSE — the same, but never below 1 at the noisy end;
# * x0-MSE   = 1 · x0-MSE.
#
# Min-SNR weighting (Hang et al. 2023) multiplies the loss so the effective x0 weight
# becomes `min(SNR, gamma)`: easy, almost clean timesteps stop dominating the gradient.
# `losses.snr_weight` returns these multipliers; below we plot the effective x0-space
# weight of four recipes across the linear schedule.

# %%
snr = linear.snr  # (T,)
ts = np.arange(linear.num_timesteps)
x0_factor = {"eps": snr, "x0": jnp.ones_like(snr), "v": snr + 1.0}  # loss = factor * x0-MSE
recipes = [("eps", None), ("v", None), ("x0", None), ("eps", "min_snr")]

fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
axes[0].semilogy(ts, np.asarray(snr))
axes[0].set_xlabel("timestep t")
axes[0].set_ylabel("SNR(t)")
axes[0].set_title("linear schedule: SNR falls by ~8 orders of magnitude", fontsize=9)
# eps-MSE shares its curve with v-MSE at small t and with min-SNR at large t: draw it wide
# and pale underneath, the others narrow and dashed on top, so every curve stays visible
styles = {("eps", None): dict(lw=6, alpha=0.35, color="C0"), ("v", None): dict(lw=1.8, ls="--", color="C1"),
          ("x0", None): dict(lw=1.8, color="C2"), ("eps", "min_snr"): dict(lw=1.8, ls=":", color="C3")}
for prediction, weighting in recipes:
    w = losses.snr_weight(snr, prediction, weighting, gamma=5.0) * x0_factor[prediction]
    axes[1].semilogy(ts, np.asarray(w), label=f"{prediction}-MSE" + (f", {weighting} (γ=5)" if weighting else ""),
                     **styles[(prediction, weighting)])
axes[1].set_xlabel("timestep t")
axes[1].set_ylabel("effective weight on the x0 error")
axes[1].set_title("where each objective puts its weight (eps-MSE: the wide pale curve)", fontsize=9)
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Reading the right panel: plain eps-MSE (its weight is the SNR itself, the left panel
# again) cares most about the first few hundred steps, where the image is barely noisy,
# and almost nothing about the last few hundred. v-MSE follows it at the clean end but
# keeps a floor of 1 at the noisy end, which is one reason the demo model below predicts
# v. Min-SNR follows eps-MSE at the noisy end and caps the clean end at `gamma`. None of these changes what the optimal
# network is (each is minimised by the posterior mean); they change how training
# distributes its effort, and therefore what a finite network ends up good at.
#
# ## 4. Train a small model and read its losses
#
# The course's demo model is a ≈0.56M-parameter class-conditional U-Net on MNIST,
# trained for 1,200 steps of batch 128 with **v-prediction**. `pipeline.train` trains it
# once (about ten minutes on two CPU cores, with a progress bar) and afterwards loads it
# from the checkpoint cache. In fast mode we train a 30-step version instead, which is
# useless as a generator but exercises every line.

# %%
preset = pipeline.get_preset("mnist-unet")
state = pipeline.train(preset)
print(f"preset {preset.name}: {preset.train.steps} steps, batch {preset.train.batch_size}, "
      f"prediction = {preset.train.prediction!r}")
print("run folder:", pipeline.run_dir(preset))

# %% [markdown]
# The training loop appends one JSON line per logging window to `log.jsonl` in the run
# folder (the loss there is the window's mean of the v-MSE minibatch losses). The first
# steps fall fast: the model quickly learns the easy part, the mean structure of digits;
# after that progress is slow, and much of the wiggle is just which timesteps each
# minibatch happened to draw.

# %%
log_path = pipeline.run_dir(preset) / "log.jsonl"
log = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
log = sorted({r["step"]: r for r in log}.values(), key=lambda r: r["step"])  # a resumed run may repeat steps

fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot([r["step"] for r in log], [r["loss"] for r in log], marker="o", ms=3)
ax.set_xlabel("training step")
ax.set_ylabel(f"training loss ({preset.train.prediction}-MSE)")
ax.set_yscale("log")
ax.set_title(f"{preset.name}, {preset.train.steps} steps ({len(log)} log entries)", fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Loss by timestep on held-out digits
#
# A single number hides where the model struggles. We evaluate the trained network on
# held-out digits with `losses.diffusion_loss` — which also returns each example's
# timestep — and average the per-example losses in bins of `t`. The demo model predicts
# v, so we must ask for `prediction=preset.train.prediction`; asking for eps would
# compare a v-output with an eps-target and report nonsense.
#
# Since the errors of the three targets are tied by the SNR (section 3), the same
# per-example numbers also tell us the model's error measured as eps-MSE
# (`v-MSE · ab_t`) and as x0-MSE (`eps-MSE / SNR`).

# %%
schedule = schedules.make_schedule(preset.schedule)
test_ds = data.load_dataset("mnist", "test")
n_eval = 64 if FAST else 500
repeats = 1 if FAST else 4
eval_idx = np.random.default_rng(1).permutation(len(test_ds))[:n_eval]  # every class, not the first n
x_test = jnp.asarray(data.to_float(test_ds.images[eval_idx]))
y_test = jnp.asarray(test_ds.labels[eval_idx])
denoise = model_denoiser(state.graphdef, state.ema_params, state.rest)


@jax.jit
def eval_loss(key, denoise, x0, cond):
    return losses.diffusion_loss(key, denoise, schedule, x0, cond, prediction=preset.train.prediction)


t_all, v_mse = [], []
for r in range(repeats):
    _, aux = eval_loss(jax.random.key(1000 + r), denoise, x_test, y_test)
    t_all.append(np.asarray(aux["t"]))
    v_mse.append(np.asarray(aux["per_example"]))
t_all, v_mse = np.concatenate(t_all), np.concatenate(v_mse)
ab_t = np.asarray(schedule.alpha_bars)[t_all]
eps_mse = v_mse * ab_t
x0_mse = eps_mse * (1 - ab_t) / ab_t

n_bins = 8 if FAST else 20
edges = np.linspace(0, schedule.num_timesteps, n_bins + 1)
which = np.digitize(t_all, edges[1:-1])
centers = 0.5 * (edges[1:] + edges[:-1])


def binned(values):
    return np.array([values[which == b].mean() if np.any(which == b) else np.nan for b in range(n_bins)])


fig, ax = plt.subplots(figsize=(5.5, 3.4))
for values, label in [(v_mse, "v-MSE (what was trained)"), (eps_mse, "implied eps-MSE"), (x0_mse, "implied x0-MSE")]:
    ax.semilogy(centers, binned(values), marker="o", ms=3, label=label)
ax.set_xlabel("timestep t (bin centre)")
ax.set_ylabel("mean loss on held-out digits")
ax.set_title(f"{len(t_all)} held-out examples, {n_bins} bins", fontsize=9)
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
print(f"overall held-out v-MSE: {v_mse.mean():.4f}")

# %% [markdown]
# Each curve tells a different story about the *same* network. The implied eps error is
# largest at the clean end, where a faint noise must be separated from image detail, and
# collapses towards the noisy end, where `x_t` is nearly the noise itself. The implied x0
# error does the opposite: near t = 0 the clean image is almost visible, while near
# t = T − 1 the model can only guess an average digit of the requested class. The v-MSE
# that was actually trained is exactly the sum of the other two (`v-MSE = eps-MSE + x0-MSE`
# for any one estimate), so it never collapses at either end: it stays within a narrow band
# across the whole range and no region of timesteps is starved of gradient. (In fast mode the model has trained for 30 steps and
# all three curves mostly show an untrained network.)
#
# ## 5. eps or v?
#
# DDPM's network predicts the noise eps. That works well in the middle of the schedule
# but has a weak spot at the noisy end: there `sqrt(ab_t)` is below 0.01, the clean-image
# estimate `x0 = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)` divides by that tiny number, and
# small eps errors become large x0 errors. The v target, `v = sqrt(ab_t) eps - sqrt(1 - ab_t) x0`,
# blends the two and stays well behaved at both ends. That is why the demo model predicts
# v: on this very preset, an eps-model trained for 1,500 steps drew the requested digit
# far less often than the v-model (the measurements are noted next to the preset in
# `diffusion_jax/pipeline.py`).
# The three targets are exact linear re-expressions of one another given `x_t`, so the
# sampler is the same — only what the network outputs, and therefore how its errors are
# weighted, changes. **Lesson 04** works through the conversions, the zero-terminal-SNR
# fix and the weighting trade-offs in detail.
#
# ## Check your understanding
#
# 1. Why is the simple diffusion loss called a *regression* loss, and what plays the role
#    of the label?
# 2. In the chapter's example the loss at t = 700 is about 40× the loss at t = 100. Does
#    that mean the model is worse at t = 700? What trend did the trained model show?
# 3. Under plain eps-MSE on the linear schedule, which timesteps dominate the loss when
#    measured in x0 space, and what does min-SNR weighting change?
# 4. You evaluate the demo model with `losses.diffusion_loss(..., prediction="eps")` and
#    get losses far above 1. What went wrong?
# 5. Exercises 2 and 3 take `t` and `eps` as inputs instead of a random key. Why is that
#    convenient for testing?
#
# <details>
# <summary>Answers</summary>
#
# 1. The training code draws the noise `eps` itself and builds `x_t` from it, so every
#    input `(x_t, t)` comes with a known correct output `eps`; the loss is the squared error
#    against it. No discriminator or adversarial game is involved.
# 2. No. Losses at different timesteps measure different tasks, each with its own
#    irreducible error, so compare them per timestep (or per bin), never across. For a
#    trained model the implied eps error actually *falls* towards high noise, because
#    `x_t` is then almost the noise itself; it is the x0 error that grows.
# 3. eps-MSE equals SNR · x0-MSE, so the nearly clean, high-SNR timesteps get the largest
#    weight and the noisy end almost none. Min-SNR caps the effective weight at
#    `min(SNR, gamma)`, so the easy timesteps stop dominating the gradient.
# 4. The demo model predicts v. Its outputs must be compared with the v target
#    (`prediction=preset.train.prediction`); comparing them with eps measures the wrong thing.
# 5. The output is then a deterministic function of its inputs, so it can be compared
#    exactly with a reference, independent of how anyone splits keys.
#
# </details>
#
# ## Summary
#
# * Diffusion training is supervised regression: draw `t` and `eps`, build `x_t` in closed
#   form, and regress the network's output onto a known target (`losses.diffusion_loss`).
# * `losses.per_example_mse` reproduces the chapter's numbers: 0.0006 at t = 100 and
#   0.025 at t = 700; losses at different timesteps are not comparable with each other.
# * The choice of target (eps, x0, v) and of weighting (`losses.snr_weight`, min-SNR)
#   decides where along the SNR axis the model spends its capacity.
# * Loss by timestep on held-out data is far more informative than one averaged number.
# * The demo model predicts v; always evaluate with the model's own `prediction`.
#   Next: lesson 03 turns a trained denoiser into a sampler.
