# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 08 — Latent diffusion: denoise a compressed code, decode once
#
# Every sampling step runs the denoiser on the whole input. For a 512×512 colour image that
# is three quarters of a million numbers, tens of times per image. Latent diffusion
# (Rombach et al. 2022, the recipe behind Stable Diffusion) splits the job in two:
#
# 1. an **autoencoder** (here a small KL-regularised VAE) learns once to squeeze an image
#    into a smaller grid of latent values and to rebuild the image from it; it takes care
#    of fine texture and exact pixel values;
# 2. the **diffusion model** is trained and sampled entirely on those latents. It only has
#    to get the layout and content right. The decoder runs **once**, at the very end.
#
# This lesson counts the values that are saved, loads the VAEs for MNIST and CIFAR-10,
# works out the latent scale factor from data, samples a latent DiT on each data set, and
# *measures* what a denoiser evaluation costs in pixel and in latent space.
#
# Every model here ships with the project (`data/pretrained/`; `manifest.json` records how
# each was made): `pipeline.codec` and `pipeline.train` load them in seconds and nothing is
# trained. The CIFAR-10 DiT was trained on a GPU, far beyond a laptop's budget.
# Set `DIFFUSION_JAX_FAST=1` for a smoke run with fewer samples and sampler steps.

# %%
import json
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from diffusion_jax import costs, data, latent, metrics, pipeline, pretrained, schedules, viz
from diffusion_jax.demo import fast_mode
from diffusion_jax.exercises import check, hint
from diffusion_jax.models import dit, param_count
from diffusion_jax.models.vae import latent_scale_factor

FAST = fast_mode()
LATENT_PRESETS = {"MNIST": "mnist-latent-dit", "CIFAR-10": "cifar10-latent-dit"}
PER_CLASS = 2 if FAST else 10  # MNIST samples per class in the grid
N_EVAL = 40 if FAST else 500  # MNIST samples scored by the digit classifier
SAMPLER_STEPS = 10 if FAST else 50
CIFAR_PER_CLASS = 4 if FAST else 10  # CIFAR-10 samples per class: the grid and its class accuracy
CIFAR_SAMPLER = ("dpmpp_2m", 15) if FAST else ("ddim", 50)  # (sampler, steps)
key = jax.random.key(0)
presets = {label: pipeline.get_preset(name) for label, name in LATENT_PRESETS.items()}
mnist_preset, cifar_preset = presets["MNIST"], presets["CIFAR-10"]

# Real images are needed for the reconstructions (section 2) and the scale (section 3), not
# for sampling: without a local CIFAR-10 copy (see lessons/README.md) those parts skip it.
datasets = {}  # label -> (train, test)
for label, preset in presets.items():
    try:
        datasets[label] = (data.load_dataset(preset.dataset, "train"), data.load_dataset(preset.dataset, "test"))
    except data.DataNotFoundError as err:
        print(f"{label}: no local copy of the data set, so sections 2-3 skip it ({str(err).splitlines()[0]})")
print(f"fast mode: {FAST}")

# %% [markdown]
# ## 1. How many numbers does the denoiser see?
#
# The chapter's example: Stable Diffusion's VAE turns a 512×512×3 image into a 64×64×4
# latent. `latent.value_counts` does the arithmetic. The chapter prints **786432** pixel
# values, **16384** latent values, a **48×** reduction in scalars and a **64×** reduction in
# spatial positions (the difference comes from the latent having 4 channels, not 3).

# %%
chapter = latent.value_counts((512, 512, 3), (64, 64, 4))
print(json.dumps(chapter, indent=2))

ours = {label: (pipeline.image_shape(p), pipeline.model_input_shape(p)) for label, p in presets.items()}
for name, (pix, lat) in ours.items():
    c = latent.value_counts(pix, lat)
    print(f"{name:8s} {pix} -> {lat}: {c['pixel_values']:5d} -> {c['latent_values']:4d} values, "
          f"{c['scalar_reduction']}x fewer scalars, {c['spatial_reduction']}x fewer positions")

# %% [markdown]
# Our MNIST VAE downsamples by 4 in each direction (16× fewer positions) and keeps 4
# channels, so a digit shrinks only 4× in scalars: one grey channel becomes four latent
# channels. The CIFAR-10 VAE downsamples by only 2 ("f = 2"): 4× fewer positions, 3× fewer
# scalars. A small photo holds far more detail per pixel than a digit, and every bit the
# VAE throws away is lost for good (section 2), so it compresses gently. The chapter's 48×
# comes from an 8× downsampling.
#
# For a Transformer denoiser the number that sets the cost is the number of **tokens**:
# `dit.patchify` cuts a (H, W, C) input into (H/p)·(W/p) tokens of p·p·C values.

# %%
p_cifar = cifar_preset.model.patch_size
for label, shape, p in [("MNIST pixels, p = 4", (28, 28, 1), 4), ("MNIST pixels, p = 2", (28, 28, 1), 2),
                        ("MNIST latent, p = 1", ours["MNIST"][1], 1), ("CIFAR pixels, p = 2", (32, 32, 3), 2),
                        (f"CIFAR latent, p = {p_cifar}", ours["CIFAR-10"][1], p_cifar)]:
    tokens = dit.patchify(jnp.zeros((1,) + shape), p)  # (1, N, p*p*C)
    print(f"{label:22s} {str(shape):12s} -> {tokens.shape[1]:4d} tokens of {tokens.shape[2]:3d} values")

# %% [markdown]
# Attention costs grow with the square of the token count, so the CIFAR pixels' 256 tokens at
# p = 2 cost 16 times as much per attention layer as the latent's 64. Note the MNIST pixel
# DiT with p = 4 also has 49 tokens, like the latent DiT with p = 1: a bigger patch can shrink
# the sequence as well. What the VAE adds is a *better* summary per token, learned to keep
# what matters for reconstruction; section 6 measures the costs.
#
# ## 2. The autoencoders
#
# `pipeline.codec(preset)` returns the preset's VAE with its latent scale (section 3): the
# shipped weights when `data/pretrained/` has them, else it trains the VAE on the training
# split and caches it. The loss is a per-pixel MSE plus a small KL term towards N(0, I)
# (`models.vae.vae_loss`). The encoder outputs a mean and a variance per latent value; as in
# Stable Diffusion, the codec uses the **mean** as the latent of an image.

# %%
codecs = {}
for label, preset in presets.items():
    t0 = time.perf_counter()
    codecs[label] = pipeline.codec(preset)
    vae_name = f"vae-{preset.dataset}-{preset.vae_preset}"
    source = "shipped" if pretrained.find(vae_name) else "trained here"
    print(f"{label}: VAE {vae_name!r} ({source}; {preset.vae.steps} training steps) ready in "
          f"{time.perf_counter() - t0:.1f} s; latent shape {codecs[label].latent_shape}")

# %%
n_show = 8
recon_mse = {}
shown = [label for label in codecs if label in datasets]
fig, axes = plt.subplots(len(shown), 1, figsize=(8, 2.1 * len(shown)), squeeze=False)
for ax, label in zip(axes[:, 0], shown):
    c, ds = codecs[label], datasets[label][1]
    idx = np.linspace(0, len(ds.images) - 1, n_show).astype(int)  # spread out: files may be sorted by class
    x = data.to_float(ds.images[idx])  # (8, H, W, C) in [-1, 1]
    recon = c.decode(c.encode(x))
    viz.show_images(np.concatenate([x, recon]), n_show, ax, row_labels=["test image", "VAE output"],
                    title=f"{label}: held-out test images and their VAE reconstructions")
    x_all = data.to_float(ds.images[np.random.default_rng(1).permutation(len(ds.images))[:500]])  # every class
    recon_mse[label] = float(np.mean((c.decode(c.encode(x_all)) - x_all) ** 2))
    print(f"{label}: reconstruction MSE on 500 held-out images = {recon_mse[label]:.4f} "
          f"(PSNR {10 * np.log10(4 / recon_mse[label]):.1f} dB for the [-1, 1] range)")
plt.tight_layout()
plt.show()

# %% [markdown]
# The digits come back almost unchanged. The CIFAR-10 photos lose more, even at f = 2: fine
# texture and sharp edges are softened (compare the printed MSEs, on the same [−1, 1] scale).
# Whatever the VAE loses, the diffusion model cannot restore: **the decoder's reconstruction
# quality is a ceiling on the sample quality** of a latent diffusion model.
#
# ## 3. The latent scale factor
#
# The forward process x_t = √ᾱ·z + √(1−ᾱ)·ε assumes the data has a variance near 1: its
# signal-to-noise ratio is really σ²·ᾱ/(1−ᾱ) when the data has standard deviation σ. The
# schedule was designed for σ ≈ 1 (pixels in [−1, 1]); a VAE's latents can have any scale,
# since the light KL penalty does not pin it down. Stable Diffusion therefore multiplies its
# latents by **0.18215**, one over the standard deviation it measured on training latents
# (about 5.49), and divides by it again before decoding. `latent.make_codec` does the same
# for our VAEs, on 2,000 training images (the shipped VAEs store the scale measured that way).

# %%
for label, c in codecs.items():
    if label not in datasets:
        print(f"{label}: codec scale {c.scale:.4f} (no training images here to measure it again)")
        continue
    train_images = datasets[label][0].images
    subset = train_images[np.random.default_rng(0).choice(len(train_images), 2000, replace=False)]
    raw = latent.LatentCodec(c.graphdef, c.params, 1.0).encode(subset)  # scale 1: the raw means
    scaled = c.encode(subset)
    print(f"{label}: raw latent mean {np.mean(raw):+.3f}, std {np.std(raw):.3f} -> scale factor "
          f"{latent_scale_factor(raw):.4f} (codec: {c.scale:.4f}); scaled std {np.std(scaled):.3f}")
print(f"Stable Diffusion: scale 0.18215 <-> latent std {1 / 0.18215:.2f}")

fig, axes = plt.subplots(1, len(shown), figsize=(4.5 * len(shown), 3), squeeze=False)
for ax, label in zip(axes[0], shown):
    c, train_images = codecs[label], datasets[label][0].images
    sub = train_images[np.random.default_rng(2).permutation(len(train_images))[:1000]]  # not the first (sorted) rows
    raw = latent.LatentCodec(c.graphdef, c.params, 1.0).encode(sub).ravel()
    ax.hist(raw, bins=80, density=True, alpha=0.5, label=f"raw (std {raw.std():.2f})")
    ax.hist(raw * c.scale, bins=80, density=True, alpha=0.5, label=f"scaled (std {(raw * c.scale).std():.2f})")
    grid = np.linspace(-4, 4, 200)
    ax.plot(grid, np.exp(-grid**2 / 2) / np.sqrt(2 * np.pi), "k:", lw=1, label="N(0, 1)")
    ax.set_title(f"{label} latent values", fontsize=9)
    ax.set_xlabel("latent value")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# Why it matters, in numbers: with data of standard deviation σ the log-SNR curve of the
# schedule moves up by 2·ln σ. The table shows how much of x_t is signal (the correlation
# between x_t and the clean latent) at a few timesteps of our linear schedule, for latents
# that are too small, unit-scale, and as large as SD's raw latents.

# %%
sched = schedules.linear(1000)
ts = [250, 500, 750, 999]
print("data std   " + "".join(f"  t = {t:<5d}" for t in ts) + "   (fraction of x_t's std that is signal)")
for sigma in [0.2, 1.0, 1 / 0.18215]:
    ab = np.asarray(sched.alpha_bars)[ts]
    corr = np.sqrt(ab) * sigma / np.sqrt(ab * sigma**2 + 1 - ab)
    print(f"{sigma:8.2f}  " + "".join(f"  {c:8.3f}" for c in corr))

# %% [markdown]
# With σ = 5.5, x_t is still 30% signal at t = 750 and keeps six times more signal at
# t = 999 than intended, so the model rarely sees anything like the pure noise that sampling
# starts from (the train/test mismatch of the non-zero terminal SNR of lesson 04, made
# worse). With σ = 0.2 the signal is down to 20% by t = 250 and most timesteps are spent on
# near-noise. Unit variance puts the
# latents where the schedule expects data to be. Only the scale is corrected; SD3 and later
# also subtract a measured mean (a "shift factor"), our codec leaves the mean alone.
#
# ## 4. A latent DiT on MNIST
#
# The `mnist-latent-dit` preset is `DIT_PRESETS["latent-mnist"]` (patch 1, 49 tokens of
# 4 values) trained on the scaled latents of the training digits: v-prediction, linear
# schedule, 10% label dropout for classifier-free guidance, like the pixel `mnist-unet`.
# `pipeline.sample` runs DDIM with guidance *in latent space* and decodes once at the end.
# Latents are unbounded, so latent presets do not clip the x₀ estimate to [−1, 1]
# (`clip_x0=None`).

# %%
def shipped_run(preset):
    """One line on how the shipped weights of `preset` were made (from the manifest)."""
    e = pretrained.find(preset.name)
    if e is None:
        return f"{preset.name}: trained here ({preset.train.steps} steps)"
    return (f"{preset.name}: shipped weights, {e['steps']:,} steps of batch {preset.train.batch_size} "
            f"({e['images_seen']:,} images seen) in {e['wall_s'] / 60:.0f} min on {e['machine']}")


t0 = time.perf_counter()
mnist_state = pipeline.train(mnist_preset)
print(f"loaded in {time.perf_counter() - t0:.1f} s; {shipped_run(mnist_preset)}")


def class_grid(images, labels, class_names, per_class, title):
    """One row per class, `per_class` samples each."""
    rows = viz.class_rows(images, labels, len(class_names), per_class)  # (K * per_class, H, W, C)
    fig, ax = plt.subplots(figsize=(per_class * 0.6 + 1.8, len(class_names) * 0.6 + 0.6))
    viz.show_images(rows, per_class, ax, title=title, row_labels=class_names)
    plt.tight_layout()
    plt.show()


labels = np.repeat(np.arange(10), N_EVAL // 10)  # (N_EVAL,) 0, 0, ..., 9
t0 = time.perf_counter()
mnist_samples = pipeline.sample(jax.random.fold_in(key, 1), mnist_state, mnist_preset, labels,
                                num_steps=SAMPLER_STEPS)
print(f"{len(labels)} samples (DDIM-{SAMPLER_STEPS}, CFG s = {mnist_preset.guidance_scale:g}, decode) "
      f"in {time.perf_counter() - t0:.1f} s")
class_grid(mnist_samples, labels, [str(k) for k in range(10)], PER_CLASS,
           f"{mnist_preset.name}: DDIM-{SAMPLER_STEPS} in latent space, decoded (synthetic)")

# %% [markdown]
# How good are they? We score the samples with the project's own MNIST classifier (the one
# the demo uses): the fraction classified as the intended digit, and the domain-feature FID
# against held-out digits (comparable only within this project; small-sample FID is
# biased upwards, so compare at equal N).

# %%
classifier = metrics.reference("mnist")
mnist_train, mnist_test = datasets["MNIST"]
real = mnist_test.images[np.random.default_rng(0).permutation(len(mnist_test.images))[:N_EVAL]]
scores = metrics.evaluate(jax.random.key(0), mnist_samples, labels, real, mnist_train.images, classifier,
                          kid_subset_size=min(250, N_EVAL))
recon_scores = metrics.evaluate(jax.random.key(0), codecs["MNIST"].decode(codecs["MNIST"].encode(real)), None, real,
                                mnist_train.images, classifier, kid_subset_size=min(250, N_EVAL))
print(f"latent DiT samples: class accuracy {scores['accuracy']:.1%}, domain FID {scores['fid']:.2f}, "
      f"nearest-train ratio {scores['nn_ratio']:.2f}")
print(f"for scale: VAE reconstructions of {len(real)} held-out digits have domain FID {recon_scores['fid']:.2f}")

# %% [markdown]
# The FID of the VAE's own reconstructions is the floor that a perfect latent model could
# reach with this decoder. A nearest-train ratio near 1 means the samples are not copies
# of training digits.
#
# ## 5. A latent DiT on CIFAR-10
#
# The same recipe on natural photos, at a size no laptop trains during a lesson. The shipped
# `cifar10-latent-dit` is a DiT on the 16×16×4 latents of the f = 2 VAE (patch 2, so 64
# tokens), trained on a GPU on the 10,000 CIFAR-10 training images the project uses and their
# left-right mirrors, with 10% label dropout; it samples with guidance s = 2. We draw the
# same number of samples of every class and let the project's CIFAR-10 classifier say which
# class each one looks like.

# %%
t0 = time.perf_counter()
cifar_state = pipeline.train(cifar_preset)
print(f"loaded in {time.perf_counter() - t0:.1f} s; {shipped_run(cifar_preset)}")
cfg = cifar_preset.model
print(f"DiT: {param_count(cifar_state.model()) / 1e6:.1f}M parameters, {cfg.depth} blocks of width {cfg.hidden}, "
      f"patch {cfg.patch_size} on {pipeline.model_input_shape(cifar_preset)} latents; "
      f"trained on mirrored copies too: {cifar_preset.mirror_data}")
cifar_names = (list(datasets["CIFAR-10"][1].class_names) if "CIFAR-10" in datasets
               else [f"class {k}" for k in range(pipeline.null_label(cifar_preset))])
cifar_labels = np.repeat(np.arange(10), CIFAR_PER_CLASS)  # (10 * CIFAR_PER_CLASS,) 0, 0, ..., 9
cifar_sampler, cifar_steps = CIFAR_SAMPLER
t0 = time.perf_counter()
cifar_samples = pipeline.sample(jax.random.fold_in(key, 3), cifar_state, cifar_preset, cifar_labels,
                                sampler=cifar_sampler, num_steps=cifar_steps)
print(f"{len(cifar_labels)} samples ({cifar_sampler}-{cifar_steps}, CFG s = {cifar_preset.guidance_scale:g}, "
      f"decode) in {time.perf_counter() - t0:.1f} s")
class_grid(cifar_samples, cifar_labels, cifar_names, CIFAR_PER_CLASS,
           f"{cifar_preset.name}: {cifar_sampler}-{cifar_steps} in latent space, decoded (synthetic)")

# %%
_, cifar_logits = metrics.features_and_logits(metrics.reference("cifar10"), cifar_samples)
cifar_acc = metrics.class_accuracy(cifar_logits, cifar_labels)
made = pretrained.find(cifar_preset.name) or {}
clf = pretrained.find("classifier-cifar10") or {}
vae = pretrained.find(f"vae-cifar10-{cifar_preset.vae_preset}") or {}
print(f"this run: {cifar_acc:.0%} of {len(cifar_labels)} samples are classified as the class asked for "
      f"(chance: 10%; {len(cifar_labels)} samples give about ±{2 * np.sqrt(0.25 / len(cifar_labels)):.0%})")
hits = np.argmax(cifar_logits, -1) == cifar_labels  # (N,)
per_class = sorted(((hits[cifar_labels == k].mean(), cifar_names[k]) for k in range(10)), reverse=True)
print("per class, best first: " + ", ".join(f"{name} {a:.0%}" for a, name in per_class))
if "accuracy" in made.get("scores", {}):
    sc = made["scores"]
    print(f"manifest: {sc['accuracy']:.1%} of {sc['num_samples']} samples ({sc['sampler']}, s = {sc['guidance_scale']:g})"
          + (f", domain FID {sc['fid']:.1f}" if "fid" in sc else ""))
if "scores" in clf:
    print(f"the classifier itself is right on {clf['scores']['test_accuracy']:.1%} of the "
          f"{clf['scores']['num_test']:,} real CIFAR-10 test images")
if "scores" in vae:
    print(f"the VAE's reconstruction MSE on test images: {vae['scores']['test_reconstruction_mse']:.4f} "
          f"(MNIST's VAE, section 2: {recon_mse.get('MNIST', float('nan')):.4f})")

# %% [markdown]
# How to read these numbers. The classifier is a small network of our own, and even on *real*
# CIFAR-10 test photos it is far from perfect (its accuracy is printed above): class
# accuracy of samples is a rough gauge of "does it look like the class", not a verdict on
# realism. A sample accuracy near the classifier's own accuracy on real photos says the
# samples carry their class's most typical cues (shape, colour, setting), which guidance
# encourages; it does not say they are as good as photos. Compare the per-class line with
# the grid: with few samples per class it is noisy, but it shows which classes the model
# draws convincingly and which it does not.
#
# What limits the quality here, roughly in order:
#
# * **the decoder**: whatever detail the VAE cannot rebuild (its reconstruction MSE, printed
#   above; section 2's pictures), no sample can have;
# * **the data**: 10,000 training photos (20,000 with the mirrors), a fifth of CIFAR-10's
#   training set, spread over ten very varied classes;
# * **the size of the problem**: f = 2 latents still hold a third as many values as the
#   pixels, so the DiT must model a lot of fine structure, with a few million parameters
#   where models that make photo-like CIFAR-10 samples have tens of millions.
#
# ## 6. What does one denoiser evaluation cost?
#
# `costs.forward_cost` measures one forward pass of a preset's network at a fixed batch:
# XLA's FLOP count (`models.forward_flops`) and the median wall time of the jitted call.
# `costs.decode_cost` does the same for the VAE decoder, which runs **once per sample**,
# not once per step. The weights do not change the cost, so the pixel models, which we never
# load here, are measured from a fresh initialisation. Each CFG step evaluates two rows per
# sample (conditional and unconditional), in both spaces alike.

# %%
BATCH = 16 if FAST else 64
measured = {
    "MNIST pixel U-Net (mnist-unet)": costs.forward_cost(pipeline.get_preset("mnist-unet"), batch_size=BATCH),
    "MNIST pixel DiT, p=4 (mnist-dit)": costs.forward_cost(pipeline.get_preset("mnist-dit"), batch_size=BATCH),
    "MNIST latent DiT (mnist-latent-dit)": costs.forward_cost(mnist_preset, mnist_state, batch_size=BATCH),
    "MNIST VAE decoder": costs.decode_cost(mnist_preset, batch_size=BATCH),
    "CIFAR pixel U-Net (cifar10-unet)": costs.forward_cost(pipeline.get_preset("cifar10-unet"), batch_size=BATCH),
    "CIFAR latent DiT (cifar10-latent-dit)": costs.forward_cost(cifar_preset, cifar_state, batch_size=BATCH),
    "CIFAR VAE decoder": costs.decode_cost(cifar_preset, batch_size=BATCH),
}
print(f"{'network':38s} {'input':>12s} {'GFLOP/image':>12s} {'ms/image':>9s}   (batch {BATCH})")
for name, c in measured.items():
    print(f"{name:38s} {str(c['input_shape']):>12s} {c['gflops_per_image']:12.4f} {c['ms_per_image']:9.3f}")

# %% [markdown]
# Now the cost of one **sample** with a 50-step DDIM and CFG (2 rows per step), decoding
# included for the latent models.

# %%
steps = 50
per_sample = {
    "MNIST pixel U-Net": (measured["MNIST pixel U-Net (mnist-unet)"], None),
    "MNIST latent DiT + decode": (measured["MNIST latent DiT (mnist-latent-dit)"], measured["MNIST VAE decoder"]),
    "CIFAR pixel U-Net": (measured["CIFAR pixel U-Net (cifar10-unet)"], None),
    "CIFAR latent DiT + decode": (measured["CIFAR latent DiT (cifar10-latent-dit)"], measured["CIFAR VAE decoder"]),
}
names, gflops, ms, dec_shares = [], [], [], {}
for name, (den, dec) in per_sample.items():
    g = 2 * steps * den["gflops_per_image"] + (dec["gflops_per_image"] if dec else 0.0)
    t = 2 * steps * den["ms_per_image"] + (dec["ms_per_image"] if dec else 0.0)
    dec_shares[name] = (dec["gflops_per_image"] / g) if dec else 0.0
    names.append(name)
    gflops.append(g)
    ms.append(t)
    print(f"{name:28s} {g:8.3f} GFLOP  {t:8.2f} ms per sample   (decoder: {dec_shares[name]:.1%} of the FLOPs)")

fig, axes = plt.subplots(1, 2, figsize=(10, 3))
colors = ["C0" if "pixel" in n else "C1" for n in names]
axes[0].barh(names, gflops, color=colors)
axes[0].set_xlabel("GFLOP per sample (DDIM-50, CFG)")
axes[1].barh(names, ms, color=colors)
axes[1].set_xlabel(f"measured ms per sample on this machine (batch {BATCH})")
axes[1].set_yticks([])
plt.tight_layout()
plt.show()

# %%
g = {name: c["gflops_per_image"] for name, c in measured.items()}
for ds, pixel, lat, dec, total in [
        ("MNIST", "MNIST pixel U-Net (mnist-unet)", "MNIST latent DiT (mnist-latent-dit)", "MNIST VAE decoder",
         "MNIST latent DiT + decode"),
        ("CIFAR-10", "CIFAR pixel U-Net (cifar10-unet)", "CIFAR latent DiT (cifar10-latent-dit)", "CIFAR VAE decoder",
         "CIFAR latent DiT + decode")]:
    ratio = g[pixel] / g[lat]
    print(f"{ds}: one evaluation of the latent DiT costs {g[lat]:.3f} GFLOP, the pixel U-Net {g[pixel]:.3f} "
          f"({ratio:.2f}x the latent DiT's); one decode costs {g[dec]:.3f} GFLOP "
          f"({g[dec] / g[lat]:.1f} latent evaluations), {dec_shares[total]:.1%} of a 50-step CFG sample")

# %% [markdown]
# Read the table with care: the pixel and latent networks are *different architectures*,
# so the gap is whatever network the smaller input lets you afford, not the value count
# itself. At 28×28 the pixel U-Net is already small, and a latent DiT spends its FLOPs on
# the width of its tokens, not on the input size, so the two end up in the same range. The
# VAE decoder costs more than one denoiser evaluation, yet it runs once against 2 × 50
# denoiser rows, so it adds little per sample. The shipped CIFAR-10 DiT was sized for a GPU
# (wide tokens, six blocks): it buys quality with FLOPs, and the lines above say how it
# compares with a pixel U-Net of the size a CPU run affords. The FLOP numbers depend only on
# the architectures, so they are the same on every machine.
#
# Three lessons: latent or pixel is a choice of *which network you can afford* at a given
# input size; the latent route pays off as images get larger (the chapter's 512×512 case),
# not at digit size; and wall time follows FLOPs only loosely on a CPU (small matrices use the
# cores badly, and this machine may be shared with other work). Throughput must be
# benchmarked, not inferred from value counts.
#
# ## Exercises
#
# Implement each function and run its cell; `check` compares it with the library and names
# the case that fails. `hint("name")` when you are stuck.

# %% tags=["exercise"]
def pixel_latent_counts(pixel_shape, latent_shape):
    """Value counts for one image and one latent.

    pixel_shape, latent_shape: tuples (H, W, C) and (h, w, c) of positive ints.
    returns: a dict with keys "pixel_values", "latent_values" (the numbers one image and one
    latent hold), "scalar_reduction" (how many times fewer values the latent holds) and
    "spatial_reduction" (the same for positions only). All the cases divide exactly.
    """
    ### BEGIN SOLUTION
    H, W, C = pixel_shape
    h, w, c = latent_shape
    return {"pixel_values": H * W * C, "latent_values": h * w * c,
            "scalar_reduction": (H * W * C) // (h * w * c), "spatial_reduction": (H * W) // (h * w)}
    ### END SOLUTION


check("pixel_latent_counts", pixel_latent_counts)


# %% tags=["exercise"]
def scale_factor_from_latents(latents):
    """The latent scale factor measured on a batch of encoded latents.

    latents: an array of any shape (e.g. (N, h, w, c)) of raw VAE latents.
    returns: the scalar s such that latents * s has standard deviation 1 over all values.
    """
    ### BEGIN SOLUTION
    return 1.0 / jnp.std(jnp.asarray(latents, jnp.float32))
    ### END SOLUTION


check("scale_factor_from_latents", scale_factor_from_latents)


# %% tags=["exercise"]
def dit_sequence_shape(input_shape, patch_size):
    """Sequence a DiT sees for an input of shape (H, W, C) cut into p x p patches.

    returns: the pair (number of tokens, values per token) as two ints.
    """
    ### BEGIN SOLUTION
    H, W, C = input_shape
    p = patch_size
    return (H // p) * (W // p), p * p * C
    ### END SOLUTION


check("dit_sequence_shape", dit_sequence_shape)

# %% [markdown]
# ### The training pair of a latent diffusion model
#
# Put the pieces of this lesson together with lesson 02: write the input and target that a
# latent, ε-predicting diffusion model is trained on. `encode` stands for the VAE's encoder
# (the grader passes a made-up one whose latents have a spread of several units, like Stable
# Diffusion's), `scale` for the latent scale factor measured above.


# %% tags=["exercise"]
def latent_training_pair(encode, scale, schedule, images, t, eps):
    """The noisy latent and the target for an eps-predicting latent diffusion model.

    encode(images) -> raw latents (B, h, w, c); scale: the latent scale factor (a float);
    schedule: a Schedule; images: (B, H, W, C); t: (B,) integer timesteps; eps: (B, h, w, c) noise.
    returns: (z_t, target), both (B, h, w, c).
    """
    ### BEGIN SOLUTION
    z0 = encode(images) * scale
    ab = schedule.alpha_bars[t].reshape((-1, 1, 1, 1))  # (B, 1, 1, 1)
    return jnp.sqrt(ab) * z0 + jnp.sqrt(1.0 - ab) * eps, eps
    ### END SOLUTION


check("latent_training_pair", latent_training_pair)

# %% [markdown]
# ## Check your understanding
#
# 1. A latent diffusion model samples with 30 steps and CFG. How many times does the VAE
#    decoder run per image, and how many times the denoiser?
# 2. Your VAE's latents have a standard deviation of 3. What goes wrong if you train the
#    diffusion model on them unscaled with a standard linear schedule, and what factor fixes it?
# 3. Why can a latent diffusion model never produce sharper images than its VAE reconstructs?
# 4. SD's VAE reduces 512×512×3 to 64×64×4. Why is the reduction 48× in scalars but 64× in
#    positions, and which of the two matters more for a convolutional denoiser's cost?
# 5. In section 1 the pixel DiT with patch 4 and the latent DiT with patch 1 both see 49
#    tokens. What does the latent route buy then?
#
# <details>
# <summary>Answers</summary>
#
# 1. The decoder once, at the end; the denoiser 30 times (each time on a batch of two rows per
#    image, conditional and unconditional, so 60 row-evaluations).
# 2. The data's SNR is σ²·ᾱ/(1−ᾱ), 9 times what the schedule intends: even the last timestep
#    keeps a clear trace of the latent, so training never shows the model pure noise, yet
#    sampling starts from it. Multiply the latents by 1/3 (measured as 1/std on training
#    latents) before diffusion and divide by it before decoding.
# 3. Every sample is passed through the decoder; details the decoder cannot produce from any
#    latent (its reconstruction error) are out of reach, however good the latent samples.
# 4. The latent has 4 channels against the image's 3, so 64× fewer positions hold 4/3 as many
#    values each: 64 · 3/4 = 48. A convolution's cost scales with the number of positions
#    times the channel widths of its layers, which are set by the network, not by the input:
#    the 64× in positions is what shrinks the feature maps of every layer.
# 5. Each latent token is a learned summary of a 4×4 patch that keeps what the decoder needs,
#    so the denoiser does not spend capacity on exact pixel values; and a VAE can also shrink
#    much larger images to the same token budget. The cost per step is similar; the work per
#    token is easier.
# </details>
#
# ## Summary
#
# * Latent diffusion = a VAE trained once + a diffusion model trained and sampled on its
#   latents + one decode per sample. `latent.value_counts` gives the chapter's
#   786432 → 16384 values (48× scalars, 64× positions); ours are 4× (MNIST) and 3× (CIFAR-10, f = 2).
# * The VAE's reconstruction quality caps the sample quality (compare the samples' FID with
#   the reconstructions' FID).
# * Scale the latents to unit variance with 1/std measured on training latents
#   (`latent.make_codec`, `models.vae.latent_scale_factor`; SD: 0.18215), so the noise
#   schedule means what it was designed to mean.
# * `pipeline.train` / `pipeline.sample` handle latent presets transparently: the shipped (or
#   cached) VAE, scaled latents, DDIM + CFG in latent space, decode at the end.
# * Cost per sample is (steps × 2 CFG rows × denoiser) + (one decode); measure it
#   (`costs.forward_cost`, `costs.decode_cost`) rather than inferring it from value counts.
