# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 06 — Classifier-free guidance
#
# A class-conditional model can be asked for a "7", but nothing forces the sample to look
# *strongly* like a 7: the model was trained to reproduce the data distribution, including
# its sloppy, ambiguous sevens. Guidance turns a knob between "typical of the whole data
# set" and "unmistakably the requested class".
#
# The first recipe, *classifier guidance*, added the gradient of a separately trained
# noisy-image classifier to every sampling step. *Classifier-free guidance* (CFG; Ho &
# Salimans, 2022) gets the same steering from the diffusion model alone:
#
# 1. **Training:** with a small probability, replace the condition by a special "null"
#    condition. One network then learns both p(x | c) and p(x).
# 2. **Sampling:** at every step ask the network twice, with and without the condition,
#    and move the prediction *further* in the direction that the condition pushes it.
#
# This lesson rebuilds both halves with `diffusion_jax.guidance`, then measures on the
# course's class-conditional MNIST model what the guidance scale buys (class fidelity) and
# what it costs (diversity), and ends with a slider you can drag.

# %%
import io
import random

import ipywidgets
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from diffusion_jax import (
    data,
    guidance,
    metrics,
    pipeline,
    schedules,
    viz,
)
from diffusion_jax.demo import fast_mode
from diffusion_jax.exercises import check, hint

FAST = fast_mode()
print("fast mode:", FAST)

# %% [markdown]
# ## 1. Training: drop the condition now and then
#
# The rule is a coin flip per training row: draw u ~ U[0, 1) and, if u < p, feed the null
# condition instead of the real one. For text models the null condition is the embedding of
# the empty prompt (or a learned token); for our MNIST model it is the extra label 10
# (`pipeline.null_label`). The library's rule is `guidance.drop_decision(uniforms, p)`.
#
# The chapter illustrates it with four product prompts, p = 0.35 and Python's
# `random.Random(7)`. Drawing the same four uniforms and applying the library's rule gives
# the chapter's assignment: **unconditional, unconditional, conditional, unconditional**.

# %%
prompts = [
    "golden retriever on a sofa",
    "oak dining table in natural light",
    "red running shoe product photo",
    "warehouse package damage closeup",
]
p_drop = 0.35
rng = random.Random(7)
uniforms = [rng.random() for _ in prompts]
dropped = guidance.drop_decision(uniforms, p_drop)
for prompt, u, d in zip(prompts, uniforms, dropped):
    used = "<null>" if d else prompt
    print(f"u = {u:.3f}  ->  {'unconditional' if d else 'conditional':13s}  conditioning used: {used}")

# %% [markdown]
# In training, the draws come from a JAX key and `guidance.drop_labels` applies the same rule
# to a whole batch, writing the null label into the dropped rows. On MNIST labels:

# %%
test = data.load_dataset("mnist", "test")
labels = jnp.asarray(test.labels[np.random.default_rng(0).permutation(len(test.labels))[:16]])  # 16 random test labels
print("labels    :", np.asarray(labels).tolist())
print("after drop:", np.asarray(guidance.drop_labels(jax.random.key(0), labels, p_drop, 10)).tolist())

# Over many rows the dropped fraction converges to p (binomial: std sqrt(p(1-p)/n)).
n_rows = 100_000
many = jnp.arange(n_rows, dtype=jnp.int32) % 10
for p in (0.1, 0.35, 0.5):
    frac = float(jnp.mean(guidance.drop_labels(jax.random.key(1), many, p, 10) == 10))
    print(f"p = {p:.2f}: dropped fraction {frac:.4f}  (expected {p:.2f} ± {np.sqrt(p * (1 - p) / n_rows):.4f})")

# %% [markdown]
# Our demo preset trains with p = 0.1 (`pipeline.get_preset("mnist-unet").train.cond_dropout`),
# the value most papers use. It spends 10% of the training batch on the unconditional task,
# which is why guidance comes almost for free: no second network, no extra training run.
#
# ## 2. Sampling: extrapolate from "any image" towards "this class"
#
# At each step the network gives two predictions for the same x_t: ε_u with the null
# condition and ε_c with the real one. Their difference ε_c − ε_u is the direction the
# condition pushes the sample. CFG walks s times along it:
#
# **ε̃ = ε_u + s · (ε_c − ε_u)**   (`guidance.cfg_combine(uncond, cond, s)`)
#
# s = 0 ignores the condition, s = 1 is the plain conditional model, s > 1 overshoots on
# purpose. The chapter works it out on three-component vectors; the library reproduces its
# numbers: [0.2, −0.1, 0.05], [0.05, −0.35, 0.2], [−0.925, −1.975, 1.175], [−2.05, −3.85, 2.3].

# %%
eps_u = jnp.array([0.20, -0.10, 0.05])
eps_c = jnp.array([0.05, -0.35, 0.20])
chapter_scales = [0.0, 1.0, 7.5, 15.0]
for s in chapter_scales:
    guided = guidance.cfg_combine(eps_u, eps_c, s)
    print(f"s = {s:4.1f}: guided = {[round(float(v), 3) for v in guided]}")

grid_s = np.linspace(-1, 16, 100)
lines = np.stack([np.asarray(guidance.cfg_combine(eps_u, eps_c, s)) for s in grid_s])  # (100, 3)
fig, ax = plt.subplots(figsize=(6, 3.4))
for j in range(3):
    ax.plot(grid_s, lines[:, j], label=f"component {j}")
    ax.plot([0, 1], [float(eps_u[j]), float(eps_c[j])], "ko", ms=4)
for s in chapter_scales:
    ax.axvline(s, color="0.8", lw=0.8, zorder=0)
ax.set_xlabel("guidance scale s (diffusers convention)")
ax.set_ylabel("guided prediction")
ax.set_title("Each component moves on a straight line through ε_u (s = 0) and ε_c (s = 1)", fontsize=9)
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Two conventions for one knob
#
# The CFG paper writes the same combination as (1 + w)·ε_c − w·ε_u, so its "no extra
# guidance" is w = 0, and **w = s − 1** (`guidance.paper_weight`, inverse
# `guidance.diffusers_scale`). Stable Diffusion's familiar s = 7.5 is the paper's w = 6.5;
# our demo's s = 3 is w = 2. When you read a guidance value in a paper or a config, find out
# which convention it uses before you compare it with another one.

# %%
for s in [0.0, 1.0, 3.0, 7.5]:
    w = guidance.paper_weight(s)
    paper_form = (1 + w) * eps_c - w * eps_u
    same = bool(jnp.allclose(paper_form, guidance.cfg_combine(eps_u, eps_c, s)))
    print(f"diffusers s = {s:3.1f}  <->  paper w = {w:4.1f}; identical predictions: {same}")

# %% [markdown]
# ## 3. What large scales do to the prediction, and guidance rescale
#
# ε_c and ε_u are both predictions of (roughly) unit-variance noise. Their difference is
# small, but multiplied by s it is not: the guided prediction's standard deviation grows
# with s. A prediction that is "too large" turns into an over-bright, over-saturated image,
# one of the symptoms of over-guidance. Lin et al. (2024) proposed **guidance rescale**: divide
# the guided prediction by std(guided)/std(cond) per sample, and blend that with the
# unrescaled one using φ (they recommend φ = 0.7):
#
# **x̃ = φ · ε̃ · std(ε_c)/std(ε̃) + (1 − φ) · ε̃**   (`guidance.rescale_guidance(guided, cond, φ)`)
#
# First on the chapter's vectors, then on the real model: we noise ten test digits to
# t = 500 and ask the MNIST model (it predicts v, but the argument is the same for every
# target) for its conditional and unconditional predictions.

# %%
for s in chapter_scales:
    g = guidance.cfg_combine(eps_u, eps_c, s)[None]  # (1, 3): one "sample"
    r = guidance.rescale_guidance(g, eps_c[None], 1.0)
    print(f"s = {s:4.1f}: std guided {float(jnp.std(g)):.3f}, std cond {float(jnp.std(eps_c)):.3f}, "
          f"after rescale (phi = 1) {float(jnp.std(r)):.3f}")

# %%
preset = pipeline.get_preset("mnist-unet")
state = pipeline.train(preset)
schedule = schedules.make_schedule(preset.schedule)
net = pipeline.denoiser(state, preset, guidance_scale=1.0)  # the network, no guidance
null = pipeline.null_label(preset)
pick = np.array([np.flatnonzero(test.labels == k)[0] for k in range(10)])  # one test digit per class
x0_real = jnp.asarray(data.to_float(test.images[pick]))  # (10, 28, 28, 1)
digits = jnp.arange(10, dtype=jnp.int32)
t_mid = jnp.full((10,), 500, jnp.int32)
ab = schedule.alpha_bars[500]
x_t = jnp.sqrt(ab) * x0_real + jnp.sqrt(1 - ab) * jax.random.normal(jax.random.key(2), x0_real.shape)
pred_c = net.output(x_t, t_mid, digits)
pred_u = net.output(x_t, t_mid, jnp.full((10,), null, jnp.int32))
std = lambda a: jnp.std(a, axis=(1, 2, 3))  # per-sample std, (10,)

scales_r = np.array([0, 1, 2, 3, 5, 8, 12, 16])
curves = {phi: [] for phi in (0.0, 0.7, 1.0)}
for s in scales_r:
    g = guidance.cfg_combine(pred_u, pred_c, float(s))
    for phi, values in curves.items():
        values.append(float(jnp.mean(std(guidance.rescale_guidance(g, pred_c, phi)))))
print(f"mean std of the conditional prediction: {float(jnp.mean(std(pred_c))):.3f}")
for phi, c in curves.items():
    print(f"phi = {phi:.1f}: mean std of guided prediction at s = {scales_r.tolist()}: {np.round(c, 3).tolist()}")

fig, ax = plt.subplots(figsize=(5.5, 3.3))
for phi, c in curves.items():
    ax.plot(scales_r, c, "o-", label=f"rescale φ = {phi:g}" + (" (plain CFG)" if phi == 0 else ""))
ax.axhline(float(jnp.mean(std(pred_c))), color="k", ls=":", label="std of the conditional prediction")
ax.set_xlabel("guidance scale s")
ax.set_ylabel("per-sample std of the prediction")
ax.set_title(f"{preset.name}: v-predictions at t = 500, mean over 10 digits", fontsize=9)
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Without rescale the spread of the prediction grows roughly linearly in s once s is past a
# few units; φ = 1 pins it to the conditional prediction's spread, φ = 0.7 sits in between.
# Rescale does not remove the *direction* of guidance, only its excess magnitude. Whether it
# helps the images is an empirical question; it was designed for zero-terminal-SNR models at
# large s (lesson 04), where the blow-up is severe.
#
# ## 4. The guidance sweep: fidelity against diversity
#
# Now the real trade-off, measured. For each scale s we draw the same number of samples per
# digit with the same key (so every scale starts from the same noise, only s changes), and
# score them with the project's MNIST classifier (`metrics.reference("mnist")`, the one
# the demo and `diffusion-jax eval` use):
#
# * **fidelity**: class accuracy, the fraction of samples the classifier reads as the digit
#   we asked for;
# * **diversity**: the mean pairwise distance between the classifier features of samples of
#   the same digit (`metrics.within_class_spread`), averaged over digits. Identical
#   samples would score 0.
#
# We also compute domain FID against held-out test digits (on few samples its level is
# inflated, lesson 07 measures by how much, so compare it across scales only) and the "ink",
# the mean brightness of the images in [0, 1]: thicker, bolder strokes raise it.

# %%
scales = [0.0, 1.0, 2.0, 3.0, 5.0, 8.0]
per_class = 2 if FAST else 16
sweep_steps = 5 if FAST else 25
classifier = metrics.reference("mnist")
real_feats, _ = metrics.features_and_logits(classifier, test.images)
sweep_labels = np.tile(np.arange(10), per_class)  # (10 * per_class,) 0..9, 0..9, ...
sweep_key = jax.random.key(6)
sweep = {}
for s in scales:
    imgs = pipeline.sample(sweep_key, state, preset, sweep_labels, guidance_scale=s, num_steps=sweep_steps)
    feats, logits = metrics.features_and_logits(classifier, imgs)
    spread = metrics.within_class_spread(feats, sweep_labels, num_classes=10)
    sweep[s] = {"images": imgs, "accuracy": metrics.class_accuracy(logits, sweep_labels),
                    "spread": float(np.nanmean(spread)), "fid": metrics.fid(feats, real_feats),
                    "ink": float(np.mean((imgs + 1) / 2))}
real_spread = float(np.nanmean(metrics.within_class_spread(real_feats, test.labels, num_classes=10)))
real_ink = float(np.mean(data.to_float(test.images) + 1) / 2)
print(f"{len(sweep_labels)} samples per scale, DDIM-{sweep_steps}; real test digits: spread {real_spread:.2f}, "
      f"ink {real_ink:.3f}")
print("    s   paper w   accuracy   spread   spread vs real   domain FID    ink")
for s in scales:
    r = sweep[s]
    print(f"{s:5.1f}  {guidance.paper_weight(s):7.1f}   {r['accuracy']:8.1%}  {r['spread']:7.2f}  "
          f"{r['spread'] / real_spread - 1:+14.0%}  {r['fid']:11.2f}   {r['ink']:.3f}")

# %%
acc = [sweep[s]["accuracy"] for s in scales]
spr = [sweep[s]["spread"] for s in scales]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
axes[0].plot(scales, acc, "o-", color="C0")
axes[0].set_xlabel("guidance scale s")
axes[0].set_ylabel("class accuracy (fidelity)", color="C0")
axes[0].set_ylim(0, 1.02)
twin = axes[0].twinx()
twin.plot(scales, spr, "s--", color="C3")
twin.axhline(real_spread, color="C3", lw=0.8, ls=":")
twin.set_ylabel("within-class feature spread (diversity)", color="C3")
axes[0].set_title("both against s  (dotted: spread of real test digits)", fontsize=9)
# points of neighbouring scales often sit almost on top of each other once accuracy
# saturates: one colour per scale and a legend instead of text labels next to the points
axes[1].plot(spr, acc, "-", color="0.6", zorder=1)
marker_colors = plt.cm.viridis(np.linspace(0, 0.9, len(scales)))
for s, x_, y_, col in zip(scales, spr, acc, marker_colors):
    axes[1].scatter([x_], [y_], color=col, s=45, zorder=2, label=f"s = {s:g}", edgecolor="k", linewidth=0.5)
axes[1].axvline(real_spread, color="C3", lw=0.8, ls=":", label="real test digits")
axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
axes[1].set_xlabel("diversity (within-class spread)")
axes[1].set_ylabel("fidelity (class accuracy)")
axes[1].set_title("the trade-off curve traced by s", fontsize=9)
fig.suptitle(f"{preset.name}, DDIM-{sweep_steps}, {per_class} samples per digit per scale", fontsize=9)
plt.tight_layout()
plt.show()

# %%
show_cols = 2  # samples per digit shown for each scale
rows = []
for s in scales:
    imgs, lab = sweep[s]["images"], sweep_labels
    rows.append(np.concatenate([imgs[lab == k][:show_cols] for k in range(10)]))  # (10 * show_cols, 28, 28, 1)
fig, axes = plt.subplots(len(scales), 1, figsize=(10, 1.15 * len(scales)))
for ax, s, r in zip(axes, scales, rows):
    viz.show_images(r, 10 * show_cols, ax)
    ax.set_title(f"s = {s:g}  (paper w = {guidance.paper_weight(s):g})", fontsize=8, loc="left")
fig.suptitle("same starting noise for every row; only the guidance scale changes", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5. Drag the scale yourself
#
# The slider below switches between the grids above (one PNG per scale, computed once), so it
# responds instantly: no sampling happens when you move it.

# %%
def png_bytes(images, ncol):
    """PNG file contents of an image grid (images in [-1, 1], drawn with vmin 0 / vmax 1)."""
    grid = viz.image_grid(images, ncol)  # (H', W', 1) in [0, 1]
    buf = io.BytesIO()
    plt.imsave(buf, grid[..., 0], cmap="gray", vmin=0.0, vmax=1.0, format="png")
    return buf.getvalue()


pngs = {s: png_bytes(r, 10 * show_cols) for s, r in zip(scales, rows)}
slider = ipywidgets.SelectionSlider(options=scales, description="guidance s", value=scales[len(scales) // 2])
image = ipywidgets.Image(value=pngs[slider.value], format="png", width=700)


def _show_scale(change):
    image.value = pngs[change["new"]]


slider.observe(_show_scale, names="value")
ipywidgets.VBox([slider, image])

# %%
# A self-check that needs no browser: moving the slider swaps the picture.
before = image.value
slider.value = scales[0]
assert image.value != before and image.value == pngs[scales[0]], "the slider did not update the image"
slider.value = scales[len(scales) // 2]  # back to where it started
assert image.value == before
print("slider check passed: every scale has its own precomputed PNG and moving the slider swaps it")

# %% [markdown]
# ## 6. What the scale does, on our model
#
# The chapter summarises the guidance scale in four bands: 0 is unconditional, 1 is the plain
# conditional model, roughly 3 to 8 is the usual working range, and 15 or more is
# over-guided. Read against the sweep above (full mode; fast mode's 30-step model is only a
# smoke test):
#
# * **s = 0** ignores the label. Accuracy is at chance (about 10% for ten digits): the
#   samples are digits of any class. Their within-"class" spread is the largest in the table
#   because each "class" is really a mix of all ten.
# * **s = 1**, the conditional model on its own, gets most digits right (our measurement:
#   about 80%). Its spread is even *above* that of real test digits (the dotted line): some
#   samples are malformed, and malformed shapes count as "diverse" too.
# * **s = 2 to 3** is where accuracy saturates near 100% on this model, and where domain FID is
#   lowest: fidelity has been won, and the spread has dropped below that of real digits (the
#   table's "spread vs real" column says by how much; in our full-mode run, by about a third
#   at s = 3). The demo's s = 3 sits here: it buys its accuracy with variety.
# * **s = 5 to 8**: accuracy cannot rise further, spread keeps falling below the real digits',
#   FID rises again and the strokes get bolder and more uniform (the ink column). That is
#   over-guidance, and on MNIST it starts far below the chapter's "15+": the task is easy
#   and the model's conditional signal is strong, so there is little left to gain from
#   extrapolating past s ≈ 3.
#
# The bands are rules of thumb for large text-to-image models, not constants: where
# accuracy saturates depends on the model, the data and how hard the condition is to satisfy.
# The way to choose s is the measurement you just saw, on your own model.
#
# ## Exercises
#
# Implement each function and run its cell; `check` compares it with the library on several
# named inputs. Use `jax.numpy`; `hint("name")` when you are stuck.

# %% tags=["exercise"]
def cfg_combine(uncond, cond, scale):
    """The classifier-free-guided prediction in diffusers' convention.

    uncond, cond: arrays of equal shape (the two predictions); scale: a float s.
    returns: the guided prediction, same shape; s = 0 must give uncond and s = 1 cond.
    """
    ### BEGIN SOLUTION
    return uncond + scale * (cond - uncond)
    ### END SOLUTION


check("cfg_combine", cfg_combine)


# %% tags=["exercise"]
def cfg_paper(uncond, cond, w):
    """The same guided prediction, written with the CFG paper's weight w.

    returns: the guided prediction in the paper's convention (w = 0 is the conditional
    prediction). Which diffusers scale s gives the same result? (Answer for yourself.)
    """
    ### BEGIN SOLUTION
    return (1.0 + w) * cond - w * uncond
    ### END SOLUTION


check("cfg_paper", cfg_paper)


# %% tags=["exercise"]
def guidance_rescale(guided, cond, phi):
    """Guidance rescale (Lin et al. 2024) per sample.

    guided, cond: arrays (B, ...); phi in [0, 1].
    returns: (B, ...), section 3's rescale done per sample (spreads measured over all non-batch
    axes, as the population standard deviation); phi = 0 returns guided unchanged.
    """
    ### BEGIN SOLUTION
    axes = tuple(range(1, guided.ndim))
    ratio = jnp.std(cond, axis=axes, keepdims=True) / jnp.std(guided, axis=axes, keepdims=True)
    return phi * guided * ratio + (1.0 - phi) * guided
    ### END SOLUTION


check("guidance_rescale", guidance_rescale)

# %% [markdown]
# ### Find the bugs: a guided denoiser
#
# A colleague wrote the guided prediction as one batched call, the way
# `guidance.guided_denoiser` does it. It runs, and its samples even look like digits, but
# guidance does not do what the scale says. Two lines are wrong.
#
# ```python
# def guided_prediction(denoise, x_t, t, labels, null_label, scale):
#     B = x_t.shape[0]
#     x2 = jnp.concatenate([x_t, x_t])                                      # (2B, ...)
#     t2 = jnp.concatenate([t, t])                                          # (2B,)
#     c2 = jnp.concatenate([labels, jnp.full_like(labels, null_label)])     # (2B,)
#     out = denoise(x2, t2, c2)
#     uncond, cond = out[:B], out[B:]
#     return cond + scale * (cond - uncond)
# ```
#
# `scale` is diffusers' s. Write the corrected function (one call to `denoise`, as above).


# %% tags=["exercise"]
def fix_guided_prediction(denoise, x_t, t, labels, null_label, scale):
    """The guided prediction of denoise(x, t, labels), in one batched call.

    denoise(x, t, c) -> prediction of x's shape; x_t: (B, ...); t, labels: (B,) ints;
    null_label: the int that stands for "no condition"; scale: diffusers' s.
    returns: (B, ...), the classifier-free-guided prediction.
    """
    ### BEGIN SOLUTION
    B = x_t.shape[0]
    out = denoise(jnp.concatenate([x_t, x_t]), jnp.concatenate([t, t]),
                  jnp.concatenate([labels, jnp.full_like(labels, null_label)]))  # (2B, ...)
    cond, uncond = out[:B], out[B:]
    return uncond + scale * (cond - uncond)
    ### END SOLUTION


check("fix_guided_prediction", fix_guided_prediction)

# %% [markdown]
# ## Check your understanding
#
# 1. A model was trained with condition dropout p = 0. Can you still use classifier-free
#    guidance with it? Why or why not?
# 2. What does the guided prediction equal at s = 0, at s = 1, and at the paper's w = 0?
# 3. A config says "guidance_scale: 5" and a paper reports "w = 4". Are these the same
#    setting? What is s = 7.5 in the paper's notation?
# 4. How many network predictions does one CFG sampling step cost, and how does our sampler
#    get them in a single call?
# 5. In the sweep, why do accuracy and within-class spread move in opposite directions as s
#    grows? What would you measure before raising s on a new model?
# 6. What problem does guidance rescale address, and what does φ = 0 mean?
#
# <details>
# <summary>Answers</summary>
#
# 1. No (not meaningfully). Guidance needs the unconditional prediction ε_u; a model that
#    never saw the null condition has never learned what to predict for it, so ε_u is
#    undefined garbage and the direction ε_c − ε_u is meaningless.
# 2. s = 0: the unconditional prediction. s = 1: the conditional prediction. w = 0 is s = 1,
#    also the conditional prediction.
# 3. Yes: w = s − 1, so s = 5 is w = 4. s = 7.5 is w = 6.5.
# 4. Two: conditional and unconditional. `guidance.guided_denoiser` stacks the batch with the
#    real labels and the batch with the null label into one batch of size 2B, runs the network
#    once, and splits the output. Same arithmetic as two calls, but one call in sequence.
# 5. Larger s pushes every sample towards the region where the condition is most certain, the
#    "most typical 7"; samples of a class become more alike (less spread) and more
#    recognisable (higher accuracy). Before raising s, measure both on your own model (plus
#    a look at the images for saturation artefacts), as in section 4.
# 6. At large s the guided prediction's magnitude (std) grows far beyond that of a real
#    prediction, which shows up as over-exposed, saturated images. Rescale shrinks it back
#    towards the conditional prediction's std; φ = 0 disables rescale (plain CFG).
# </details>
#
# ## Summary
#
# * Condition dropout (`guidance.drop_decision`, `guidance.drop_labels`): with probability p
#   a training row gets the null condition, so one network learns p(x | c) and p(x).
# * Guided prediction (`guidance.cfg_combine`): ε_u + s(ε_c − ε_u), with diffusers' s; the
#   paper's w = s − 1 (`guidance.paper_weight`). Our sampler batches both predictions into one
#   call (`guidance.guided_denoiser`).
# * Large s inflates the prediction's magnitude; guidance rescale (`guidance.rescale_guidance`)
#   pulls it back by φ.
# * Measured on the MNIST model, s trades diversity (within-class feature spread) for fidelity
#   (class accuracy); accuracy saturates early on this easy task, so the useful range is low.
#   Choose s by measuring, not by a table.
