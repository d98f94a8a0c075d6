# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 01 — The forward process: noise schedules and signal-to-noise ratio
#
# A diffusion model learns to *undo* corruption. Before we can teach a network anything,
# we need a precise, cheap way to corrupt data — the **forward process**. This lesson
# builds it up from one step to the closed form used by every training loop, compares
# the noise schedules that practitioners actually use, and ends with the single number
# that summarises how hard each timestep is: the **signal-to-noise ratio (SNR)**.
#
# You will:
#
# 1. derive why $x_t$ can be sampled in *one* shot for any $t$ (and check it by simulation),
# 2. plot four schedules side by side in three different coordinates,
# 3. watch MNIST digits dissolve into static,
# 4. rebuild the chapter's single-pixel example with library calls,
# 5. implement `alpha_bar_from_betas`, `q_sample` and `snr` yourself, and derive how to
#    noise from the *middle* of the chain (`q_sample_from`) — graded on the spot.
#
# Cells tagged as exercises stop with a one-line message such as
# `✘ q_sample: not implemented yet — …` until you fill them in. Everything else runs as is.
# Stuck? `hint("q_sample")` prints a first hint; call it again for a more specific one (the
# last one gives the formula away, so try the earlier ones first).
# To see how far you are in the whole course, save your notebooks and run
# `from diffusion_jax.exercises import show_progress; show_progress()` (or
# `diffusion-jax progress` in a terminal).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from diffusion_jax import data, forward, schedules, viz
from diffusion_jax.demo import fast_mode
from diffusion_jax.exercises import check, hint

FAST = fast_mode()  # DIFFUSION_JAX_FAST=1: smaller Monte-Carlo runs, same lesson
print("fast mode:", FAST)

# %% [markdown]
# ## 1. One small step at a time
#
# Pick a clean sample $x_0$ (an image with pixels in $[-1, 1]$). The forward process is a
# Markov chain of $T$ steps. Step $t$ shrinks the current sample a little and adds a little
# fresh Gaussian noise:
#
# $$q(x_t \mid x_{t-1}) = \mathcal{N}\big(\sqrt{1-\beta_t}\,x_{t-1},\; \beta_t I\big).$$
#
# The sequence $\beta_1, \dots, \beta_T$ is the **noise schedule**: small numbers
# (DDPM uses a straight line from $10^{-4}$ to $0.02$ over $T = 1000$ steps). Shrinking by
# $\sqrt{1-\beta_t}$ while adding variance $\beta_t$ is chosen so that a sample with unit
# variance keeps unit variance — the chain never blows up, it only forgets.
#
# Nothing is learned here: the forward process is fixed. Its only job is to manufacture
# training pairs (noisy input, known noise).
#
# ### Collapsing the chain
#
# Write $\alpha_t = 1 - \beta_t$. One step is
# $x_t = \sqrt{\alpha_t}\,x_{t-1} + \sqrt{1-\alpha_t}\,\varepsilon_t$ with a fresh
# $\varepsilon_t \sim \mathcal N(0, I)$. Substitute the previous step into this one and the
# two independent noise terms merge into one Gaussian, because variances of independent
# Gaussians add: $\alpha_t(1-\alpha_{t-1}) + (1-\alpha_t) = 1 - \alpha_t\alpha_{t-1}$.
# Repeating this all the way down gives, with the cumulative product
# $\bar\alpha_t = \prod_{s \le t} \alpha_s$,
#
# $$q(x_t \mid x_0) = \mathcal{N}\big(\sqrt{\bar\alpha_t}\,x_0,\;(1-\bar\alpha_t) I\big)
# \quad\Longleftrightarrow\quad
# x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\;\; \varepsilon\sim\mathcal N(0, I).$$
#
# This is the whole reason diffusion training is cheap: to make a training example at
# timestep 731 we do **not** run 731 noising steps. We draw one $\varepsilon$, look up
# $\bar\alpha_{731}$ and compute one weighted sum. Every row in a batch can sit at its own
# random $t$, and the whole batch costs one fused multiply-add.
#
# In `diffusion_jax` a `Schedule` stores `betas` and `alpha_bars`; everything else
# (`alphas`, `snr`, `log_snr`, `signal_scale` $=\sqrt{\bar\alpha_t}$, `noise_scale`
# $=\sqrt{1-\bar\alpha_t}$) is derived from them. Timesteps are integers `0..T-1`, so the
# library's `t = 0` is the first noising step (the equations' $t = 1$).

# %%
sched = schedules.linear(1000)
print(sched.name, "T =", sched.num_timesteps)
print("beta_0, beta_T-1      :", float(sched.betas[0]), float(sched.betas[-1]))
print("alpha_bar at t = 0, 499, 999:", np.round(np.asarray(sched.alpha_bars[jnp.array([0, 499, 999])]), 5))

# %% [markdown]
# ### Exercise 1 — from betas to $\bar\alpha_t$
#
# Turn the per-step noise variances into $\bar\alpha_t$, the share of the signal's power
# that is left after steps $0..t$. It is one line, but it is the line every scheduler in
# every library starts from.

# %% tags=["exercise"]
def alpha_bar_from_betas(betas):
    """alpha_bar for every timestep of a schedule.

    betas: (T,) float array, the noise variance added at each step (0 <= beta <= 1).
    returns: (T,) array; entry t is the share of the signal power left after steps 0..t.
    """
    ### BEGIN SOLUTION
    return jnp.cumprod(1.0 - jnp.asarray(betas))
    ### END SOLUTION


check("alpha_bar_from_betas", alpha_bar_from_betas)

# %% [markdown]
# ### The chain and the shortcut agree
#
# Let's not take the algebra on faith. Below, one scalar pixel $x_0 = 0.8$ is pushed
# through all 1000 small steps for many independent noise draws (a `jax.lax.scan` over
# the steps), and we compare the empirical mean and variance at a few timesteps with the
# closed form $\sqrt{\bar\alpha_t}\,x_0$ and $1-\bar\alpha_t$ — and with samples drawn in
# one shot by `forward.q_sample`.

# %%
n_paths = 4_000 if FAST else 50_000
x0_value = 0.8
probe_ts = jnp.array([0, 50, 200, 500, 999])


def run_chain(key, schedule, x0, n):
    """Simulate x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps_t step by step; returns (T, n)."""

    def step(x, inputs):
        beta, k = inputs
        x = jnp.sqrt(1.0 - beta) * x + jnp.sqrt(beta) * jax.random.normal(k, x.shape)
        return x, x

    keys = jax.random.split(key, schedule.num_timesteps)
    _, xs = jax.lax.scan(step, jnp.full((n,), x0), (schedule.betas, keys))
    return xs


chain = run_chain(jax.random.key(0), sched, x0_value, n_paths)[probe_ts]  # (5, n)

# the shortcut: one q_sample call per probe timestep, on a batch of n one-pixel "images"
k_eps = jax.random.split(jax.random.key(1), len(probe_ts))
shortcut = jnp.stack([
    forward.q_sample(sched, jnp.full((n_paths, 1), x0_value), jnp.full((n_paths,), t),
                     jax.random.normal(k, (n_paths, 1)))[:, 0]
    for t, k in zip(probe_ts, k_eps)
])  # (5, n)

mean_cf = np.asarray(sched.signal_scale[probe_ts]) * x0_value
var_cf = 1.0 - np.asarray(sched.alpha_bars[probe_ts])
print(f"{'t':>4} | {'closed-form mean':>16} {'chain mean':>10} {'q_sample':>9} | "
      f"{'closed-form var':>15} {'chain var':>9} {'q_sample':>9}")
for i, t in enumerate(np.asarray(probe_ts)):
    print(f"{t:>4} | {mean_cf[i]:16.4f} {float(chain[i].mean()):10.4f} {float(shortcut[i].mean()):9.4f} | "
          f"{var_cf[i]:15.4f} {float(chain[i].var()):9.4f} {float(shortcut[i].var()):9.4f}")

# Monte-Carlo error of a mean is ~ std / sqrt(n); allow 5 standard errors
tol_mean = 5 * np.sqrt(np.maximum(var_cf, 1e-4) / n_paths)
assert np.all(np.abs(np.asarray(chain.mean(1)) - mean_cf) < tol_mean + 1e-3)
assert np.all(np.abs(np.asarray(chain.var(1)) - var_cf) < 5 * var_cf * np.sqrt(2 / n_paths) + 1e-4)
print("the step-by-step chain matches q(x_t | x0) at every probed t ✔")

# %% [markdown]
# ### Exercise 2 — sample $q(x_t \mid x_0)$ for a whole batch
#
# Now write the closed form yourself. The one subtlety is **broadcasting**: `t` holds one
# timestep per row of the batch, while `x0` may be `(B, H, W, C)` images or `(B, D)`
# vectors, and every row must be noised to its own level.

# %% tags=["exercise"]
def q_sample(schedule, x0, t, eps):
    """Noise a batch to per-row timesteps in one shot: a sample of q(x_t | x0).

    schedule: a diffusion_jax Schedule (schedule.alpha_bars has shape (T,)).
    x0:  (B, ...) clean data.      t: (B,) integer timesteps in 0..T-1.
    eps: (B, ...) standard normal noise, same shape as x0.
    returns: x_t, same shape as x0; row b is noised to timestep t[b] with the noise eps[b].
    """
    ### BEGIN SOLUTION
    ab = schedule.alpha_bars[t].reshape((-1,) + (1,) * (x0.ndim - 1))
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps
    ### END SOLUTION


check("q_sample", q_sample)

# %% [markdown]
# ## 2. Four schedules, three views
#
# The schedule decides *how fast* the signal fades. We compare:
#
# - **linear** — DDPM's original $\beta_t$ from $10^{-4}$ to $0.02$;
# - **scaled_linear** — Stable Diffusion's: linear in $\sqrt{\beta}$ with a smaller range,
#   designed for latents;
# - **cosine** — Nichol & Dhariwal's $\bar\alpha$ shaped like $\cos^2$, which destroys
#   information more gently at the start and does not waste the last steps;
# - **linear + zero terminal SNR** — the linear schedule rescaled so that
#   $\bar\alpha_{T-1} = 0$ exactly: the last step is *pure* noise, matching what sampling
#   starts from.
#
# Three coordinates tell different stories. $\bar\alpha_t$ is the fraction of signal
# *power* left. The pair $\sqrt{\bar\alpha_t}$ and $\sqrt{1-\bar\alpha_t}$ are the actual
# coefficients multiplying $x_0$ and $\varepsilon$ (their squares always sum to one). And
# $\log \mathrm{SNR}$ stretches the two ends, where most of the differences hide.

# %%
four = [
    schedules.linear(1000),
    schedules.scaled_linear(1000),
    schedules.cosine(1000),
    schedules.rescale_zero_terminal_snr(schedules.linear(1000)),
]

t_axis = np.arange(1000)
# the zero-terminal-SNR schedule equals linear almost everywhere: draw it dashed on top
styles = [dict(lw=2.5), dict(lw=1.5), dict(lw=1.5), dict(lw=1.5, ls="--", color="k")]
fig, axes = plt.subplots(2, 2, figsize=(11, 7))
ax = axes[0, 0]
for s, st in zip(four, styles):
    ax.plot(t_axis, np.asarray(s.alpha_bars), label=s.name, **st)
ax.set(xlabel="timestep t", ylabel=r"$\bar\alpha_t$", title=r"$\bar\alpha_t$: share of the signal power left")
ax.legend(fontsize=8)
ax = axes[0, 1]
for i, s in enumerate(four[:3]):
    ax.plot(t_axis, np.asarray(s.signal_scale), color=f"C{i}", label=s.name)
    ax.plot(t_axis, np.asarray(s.noise_scale), color=f"C{i}", ls=":")
ax.axhline(np.sqrt(0.5), color="0.6", lw=0.8)
ax.set(xlabel="timestep t", ylabel="coefficient",
       title=r"coefficients of $x_0$: $\sqrt{\bar\alpha_t}$ (solid); of $\varepsilon$: $\sqrt{1-\bar\alpha_t}$ (dotted)")
ax.title.set_fontsize(10)
ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
ax = axes[1, 0]
tail = t_axis[900:]
for s, st in zip(four, styles):
    ax.semilogy(tail, np.maximum(np.asarray(s.signal_scale)[900:], 1e-8), label=s.name, **st)
ax.set(xlabel="timestep t (last 100 steps)", ylabel=r"$\sqrt{\bar\alpha_t}$ (log scale)",
       title="the end of the chain: how much of $x_0$ is left in $x_t$")
ax.legend(fontsize=8)
ax = axes[1, 1]
for s, st in zip(four, styles):
    ax.plot(t_axis, np.asarray(s.log_snr), label=s.name, **st)
ax.set(xlabel="timestep t", ylabel=r"$\log\,\mathrm{SNR}(t)$", title=r"$\log\,\mathrm{SNR}(t)$",
       ylim=(-16, 12))  # zero-terminal SNR ends at -inf
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Things to notice (the table below prints the numbers):
#
# - With **linear** betas, $\bar\alpha_t$ is already below 0.05 at $t \approx 540$: the
#   last ~45% of timesteps are spent on inputs that are almost pure static.
# - **cosine** keeps $\bar\alpha_t$ nearly linear in the middle, so timesteps are spread
#   more evenly over "how much is left"; it drops below 0.05 only at $t \approx 850$.
# - A solid and a dotted curve of one colour cross where $\bar\alpha_t = 0.5$ (the grey
#   line at $\sqrt{0.5}$), i.e. SNR = 1: signal and noise carry equal power.
# - **linear** and **linear + zero terminal SNR** (dashed black) cannot be told apart in
#   $\bar\alpha_t$ (top left): the rescale changes only values that are already tiny. A log
#   scale separates them (bottom left, the last 100 steps; bottom right, log-SNR): linear
#   leaves $\sqrt{\bar\alpha_{T-1}} \approx 0.006$ of the signal in $x_{T-1}$, the rescaled
#   schedule falls to exactly 0, and only it reaches $\log\mathrm{SNR} = -\infty$.
#   That trace of $x_0$ in the last step is a training/sampling mismatch that lesson 04
#   returns to.

# %%
print(f"{'schedule':<24} {'alpha_bar[-1]':>14} {'SNR[-1]':>10} {'t: SNR < 1':>11} {'t: alpha_bar < 0.05':>20}")
for s in four:
    below = int(np.argmax(np.asarray(s.snr) < 1.0))
    faint = int(np.argmax(np.asarray(s.alpha_bars) < 0.05))
    print(f"{s.name:<24} {float(s.alpha_bars[-1]):14.3e} {float(s.snr[-1]):10.3e} {below:>11} {faint:>20}")

# %% [markdown]
# ## 3. Watching digits dissolve
#
# Now the same closed form on real images. Each row is one MNIST digit (scaled to
# $[-1, 1]$); each column is a timestep of the linear schedule, all produced by a single
# `q_sample` call per column with shared noise per digit, so you see only the effect of $t$.
# (The data set is stored sorted by class, so we pick four different digits by label rather
# than the first four images, which would all be zeros.)

# %%
mnist = data.load_dataset("mnist")
shown_digits = [2, 4, 7, 9]
pick = [int(np.flatnonzero(mnist.labels == k)[0]) for k in shown_digits]
x0_digits = jnp.asarray(data.to_float(mnist.images[pick]))  # (4, 28, 28, 1)
ts_show = [0, 50, 100, 200, 350, 500, 700, 999]
eps_digits = jax.random.normal(jax.random.key(2), x0_digits.shape)

columns = [forward.q_sample(sched, x0_digits, jnp.full((4,), t), eps_digits) for t in ts_show]
grid = jnp.stack(columns, axis=1).reshape(-1, 28, 28, 1)  # (4 * 8, 28, 28, 1): digit, then timestep

fig, ax = plt.subplots(figsize=(8, 4.6))
viz.show_images(grid, nrow=len(ts_show), ax=ax, title="linear schedule: one digit per row",
                col_labels=[f"t = {t}" for t in ts_show], row_labels=[f"digit {k}" for k in shown_digits])
plt.show()

# %% [markdown]
# By $t = 350$ the stroke is faint but still readable; by $t = 700$ you would struggle to
# name the digit. That is the whole spectrum the denoiser must cover: at small $t$ its job
# is light retouching, at large $t$ it must invent plausible structure from almost nothing.

# %% [markdown]
# ## 4. The chapter's single pixel, with library calls
#
# The chapter follows one normalised pixel with brightness $x_0 = 1.0$ and one fixed noise
# draw $\varepsilon = -0.4$ at three noise levels $\bar\alpha \in \{0.9, 0.5, 0.001\}$. We
# rebuild it with the library: a three-step `Schedule` whose betas are chosen so that its
# $\bar\alpha_t$ are exactly those three values, then `forward.q_sample` on a batch of
# three one-pixel "images" and the schedule's own `signal_scale`, `noise_scale` and `snr`.

# %%
targets = np.array([0.9, 0.5, 0.001])
# alpha_bar_t / alpha_bar_{t-1} = 1 - beta_t
betas = 1.0 - targets / np.concatenate([[1.0], targets[:-1]])
pixel_sched = schedules.from_betas(betas, name="chapter-pixel")

x0_pixel = jnp.ones((3, 1))  # x0 = 1.0, one row per noise level
eps_pixel = jnp.full((3, 1), -0.4)  # the same noise draw for every row
t_pixel = jnp.arange(3)

x_t = forward.q_sample(pixel_sched, x0_pixel, t_pixel, eps_pixel)[:, 0]
signal = pixel_sched.signal_scale * x0_pixel[:, 0]
noise = pixel_sched.noise_scale * eps_pixel[:, 0]
snr = pixel_sched.snr

rows = [
    {"alpha_bar": round(float(pixel_sched.alpha_bars[i]), 3), "signal": round(float(signal[i]), 3),
     "noise": round(float(noise[i]), 3), "xt": round(float(x_t[i]), 3), "snr": round(float(snr[i]), 3)}
    for i in range(3)
]
print(f"{'alpha_bar':>9} {'signal':>7} {'noise':>7} {'x_t':>7} {'SNR':>7}")
for r in rows:
    print(f"{r['alpha_bar']:>9} {r['signal']:>7} {r['noise']:>7} {r['xt']:>7} {r['snr']:>7}")

chapter = [
    {"alpha_bar": 0.9, "signal": 0.949, "noise": -0.126, "xt": 0.822, "snr": 9.0},
    {"alpha_bar": 0.5, "signal": 0.707, "noise": -0.283, "xt": 0.424, "snr": 1.0},
    {"alpha_bar": 0.001, "signal": 0.032, "noise": -0.4, "xt": -0.368, "snr": 0.001},
]
assert rows == chapter, rows
print("matches the chapter's numbers ✔")

# %% [markdown]
# Read the rows top to bottom. At $\bar\alpha = 0.9$ the pixel is still mostly itself
# (0.822 vs 1.0) and signal power is nine times the noise power. At $\bar\alpha = 0.5$ the
# two are balanced (SNR exactly 1). At $\bar\alpha = 0.001$ the value $-0.368$ is almost
# entirely the noise draw: the original brightness contributes 0.032, and nothing in $x_t$
# alone could tell you it started at 1.0.

# %% [markdown]
# ### Exercise 3 — the signal-to-noise ratio
#
# The SNR compares how much of $x_t$'s power comes from the signal with how much comes from
# the noise. Return it for every timestep of a schedule. It must also handle a
# zero-terminal-SNR schedule, whose last $\bar\alpha$ is exactly 0.

# %% tags=["exercise"]
def snr(schedule):
    """Signal-to-noise ratio of every timestep.

    schedule: a diffusion_jax Schedule with alpha_bars of shape (T,).
    returns: (T,) array, signal power over noise power in x_t at each timestep.
    """
    ### BEGIN SOLUTION
    ab = schedule.alpha_bars
    return ab / (1.0 - ab)
    ### END SOLUTION


check("snr", snr)

# %% [markdown]
# ### Exercise 4 — noising from the middle of the chain (a derivation)
#
# Everything so far started from the clean $x_0$. Some methods (SDEdit-style editing,
# distillation, consistency training) start from a sample $x_s$ that is *already* noised to
# timestep $s$ and need $x_t$ for a later $t \ge s$. The lesson has not given you this
# formula: derive it with the same argument as the collapse of the chain in section 1 —
# write out the steps $s+1, \dots, t$ and merge them — and implement it. The grader checks
# it on rows with $s = t$, with one step ($t = s + 1$) and with long jumps.

# %% tags=["exercise"]
def q_sample_from(schedule, x_s, s, t, eps):
    """Continue the forward process from timestep s to timestep t >= s in one shot.

    schedule: a Schedule; x_s: (B, ...) samples already noised to their timestep s.
    s, t: (B,) integer timesteps with s <= t (library numbering: x_s has been through steps 0..s).
    eps: (B, ...) standard normal noise.
    returns: x_t, shape of x_s, distributed as the chain would leave x_s after steps s+1..t.
    """
    ### BEGIN SOLUTION
    ratio = (schedule.alpha_bars[t] / schedule.alpha_bars[s]).reshape((-1,) + (1,) * (x_s.ndim - 1))
    return jnp.sqrt(ratio) * x_s + jnp.sqrt(1.0 - ratio) * eps
    ### END SOLUTION


check("q_sample_from", q_sample_from)

# %% [markdown]
# ## Check your understanding
#
# 1. Why can a training step pick a *different* random timestep for every image in the
#    batch without simulating the chain?
# 2. For the linear schedule, roughly where does the SNR drop below 1, and what does
#    that imply about how the 1000 timesteps are "spent"?
# 3. With $x_0 = 1$ and $\varepsilon = -0.4$ at $\bar\alpha = 0.5$, why is SNR exactly 1 even
#    though $x_t = 0.424$ is closer to the signal than to the noise?
# 4. What goes wrong if the final $\bar\alpha_{T-1}$ is not zero, and how does the zero
#    terminal SNR rescale fix it?
# 5. A colleague proposes sampling training pairs by running the chain step by step
#    "to be exact". What would you tell them?
#
# <details>
# <summary>Answers</summary>
#
# 1. Because $q(x_t \mid x_0)$ is a single Gaussian with mean $\sqrt{\bar\alpha_t}\,x_0$ and
#    variance $1-\bar\alpha_t$: one noise draw and one lookup of $\bar\alpha_t$ per row. The
#    per-row coefficient is just broadcast over the image.
# 2. At $t \approx 260$ (the table in section 2 prints it). Everything after that is
#    noise-dominated, and the last few hundred steps are almost pure static — the
#    motivation for cosine schedules and SNR-aware loss weighting.
# 3. SNR compares *powers* averaged over all possible noise draws ($\bar\alpha$ vs
#    $1-\bar\alpha$), not one particular sample. A single draw of $\varepsilon = -0.4$
#    happens to be small; another draw could swamp the signal.
# 4. Sampling starts from pure $\mathcal N(0, I)$, but the model was trained at $t = T-1$ on
#    inputs that still contain a bit of $x_0$ — the two do not match, which e.g. biases
#    generated images towards medium brightness. Rescaling $\sqrt{\bar\alpha_t}$ so the last
#    value is 0 makes training see exactly what sampling starts from (then the model should
#    predict $v$ or $x_0$, since predicting $\varepsilon$ at SNR 0 says nothing about $x_0$).
# 5. The closed form *is* exact — the simulation above agrees with it to Monte-Carlo
#    precision — and it costs one operation instead of $t$ of them, with no sequential
#    dependency, so it vectorises over the batch.
#
# </details>

# %% [markdown]
# ## Summary
#
# - The forward process is a fixed Markov chain that shrinks the sample by $\sqrt{1-\beta_t}$
#   and adds variance $\beta_t$ at every step; nothing in it is learned.
# - Gaussians compose, so $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon$
#   with $\bar\alpha_t = \prod_s (1-\beta_s)$: training can jump to any $t$ in one step.
# - The schedule decides how quickly $\bar\alpha_t$ falls; linear, scaled-linear, cosine and
#   zero-terminal-SNR variants spend the timesteps differently.
# - $\mathrm{SNR}(t) = \bar\alpha_t / (1-\bar\alpha_t)$ summarises each timestep's
#   difficulty; it is 9, 1 and 0.001 at $\bar\alpha = 0.9, 0.5, 0.001$.
#
# **Next:** lesson 02 uses `q_sample` to build training pairs and trains a network to
# predict the noise $\varepsilon$ with a plain mean-squared error.
