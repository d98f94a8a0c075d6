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
# 5. implement `alpha_bar_from_betas`, `q_sample` and `snr` yourself — graded on the spot.
#
# Cells tagged as exercises stop with a one-line message such as
# `✘ q_sample: not implemented yet — …` until you fill them in. Everything else runs as is.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from diffusion_jax import data, forward, schedules, viz
from diffusion_jax.demo import fast_mode
from diffusion_jax.exercises import check

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
# Implement the cumulative product. It is one line, but it is the line every scheduler in
# every library starts from.

# %% tags=["exercise"]
def alpha_bar_from_betas(betas):
    """Return alpha_bar_t = prod_{s<=t} (1 - beta_s) for every t.

    betas: (T,) float array of per-step noise variances in [0, 1].
    returns: (T,) array; entry t is the product of (1 - beta_0) ... (1 - beta_t).
    """
    ### BEGIN SOLUTION
    # HINT: alphas = 1 - betas, then a running product along the only axis (jnp.cumprod)
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
# timestep per row of the batch, so `alpha_bars[t]` has shape `(B,)`, while `x0` may be
# `(B, H, W, C)` images or `(B, D)` vectors. Reshape the coefficient so it multiplies a
# whole row.

# %% tags=["exercise"]
def q_sample(schedule, x0, t, eps):
    """Noise a batch to per-row timesteps in one shot.

    schedule: a diffusion_jax Schedule (schedule.alpha_bars has shape (T,)).
    x0:  (B, ...) clean data.      t: (B,) integer timesteps in 0..T-1.
    eps: (B, ...) standard normal noise, same shape as x0.
    returns x_t = sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * eps, shape of x0.
    """
    ### BEGIN SOLUTION
    # HINT: ab = schedule.alpha_bars[t] has shape (B,); reshape it to (B, 1, ..., 1) with x0.ndim axes before multiplying
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

fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
viz.plot_schedules(four, ax=axes[0], quantity="alpha_bars")
axes[0].set_title(r"$\bar\alpha_t$ (signal power left)")
t_axis = np.arange(1000)
for i, s in enumerate(four):
    axes[1].plot(t_axis, np.asarray(s.signal_scale), color=f"C{i}", label=f"{s.name}")
    axes[1].plot(t_axis, np.asarray(s.noise_scale), color=f"C{i}", ls="--")
axes[1].set_title(r"$\sqrt{\bar\alpha_t}$ (solid) vs $\sqrt{1-\bar\alpha_t}$ (dashed)")
axes[1].set_xlabel("timestep t")
axes[1].legend(fontsize=7)
viz.plot_schedules(four, ax=axes[2], quantity="log_snr")
axes[2].set_title(r"$\log\,\mathrm{SNR}(t)$")
axes[2].set_ylim(-16, 12)  # zero-terminal SNR ends at -inf
plt.tight_layout()
plt.show()

# %% [markdown]
# Things to notice:
#
# - With **linear** betas, $\bar\alpha_t$ is already below 0.05 around $t \approx 600$: the
#   last ~40% of timesteps are spent on inputs that are almost pure static.
# - **cosine** keeps $\bar\alpha_t$ nearly linear in the middle, so timesteps are spread
#   more evenly over "how much is left".
# - The solid and dashed curves cross where $\bar\alpha_t = 0.5$, i.e. SNR = 1: signal
#   and noise carry equal power.
# - Only the **zero terminal SNR** curve reaches $\log\mathrm{SNR} = -\infty$. For the
#   others, the final $x_{T-1}$ still leaks a trace of $x_0$ — a training/sampling mismatch
#   that lesson 04 returns to.
#
# The table below makes the last point numeric.

# %%
print(f"{'schedule':<24} {'alpha_bar[-1]':>14} {'SNR[-1]':>10} {'t where SNR<1':>14}")
for s in four:
    below = int(np.argmax(np.asarray(s.snr) < 1.0))
    print(f"{s.name:<24} {float(s.alpha_bars[-1]):14.3e} {float(s.snr[-1]):10.3e} {below:>14}")

# %% [markdown]
# ## 3. Watching digits dissolve
#
# Now the same closed form on real images. Each row is one MNIST digit (scaled to
# $[-1, 1]$); each column is a timestep of the linear schedule, all produced by a single
# `q_sample` call per column with shared noise per digit, so you see only the effect of $t$.

# %%
mnist = data.load_dataset("mnist")
x0_digits = jnp.asarray(data.to_float(mnist.images[:4]))  # (4, 28, 28, 1)
ts_show = [0, 50, 100, 200, 350, 500, 700, 999]
eps_digits = jax.random.normal(jax.random.key(2), x0_digits.shape)

columns = [forward.q_sample(sched, x0_digits, jnp.full((4,), t), eps_digits) for t in ts_show]
grid = jnp.stack(columns, axis=1).reshape(-1, 28, 28, 1)  # row-major: digit, then timestep

fig, ax = plt.subplots(figsize=(8, 4.4))
viz.show_images(grid, nrow=len(ts_show), ax=ax,
                title="linear schedule, t = " + ", ".join(map(str, ts_show)))
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
# The coefficient of $x_0$ is $\sqrt{\bar\alpha_t}$ and that of $\varepsilon$ is
# $\sqrt{1-\bar\alpha_t}$; the SNR compares their *powers* (squares). Return it for every
# timestep of a schedule. It must also handle a zero-terminal-SNR schedule, whose last
# entry is exactly 0.

# %% tags=["exercise"]
def snr(schedule):
    """Signal-to-noise ratio of every timestep.

    schedule: a diffusion_jax Schedule with alpha_bars of shape (T,).
    returns: (T,) array, SNR(t) = alpha_bar_t / (1 - alpha_bar_t).
    """
    ### BEGIN SOLUTION
    # HINT: signal power is alpha_bar_t and noise power is 1 - alpha_bar_t; divide elementwise
    ab = schedule.alpha_bars
    return ab / (1.0 - ab)
    ### END SOLUTION


check("snr", snr)

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
# 2. Around $t \approx 260$ (the table in section 2 prints it). Everything after that is
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
