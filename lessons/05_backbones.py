# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 05 — Backbones: U-Net, timestep modulation, cross-attention, DiT and MM-DiT
#
# The denoiser is "any network that maps (x_t, t, condition) to a prediction of x_t's shape".
# Two families dominate:
#
# * the **U-Net**: convolutions on a down-then-up path with skip connections, the timestep
#   injected into every residual block, attention only where the feature map is small;
# * the **Diffusion Transformer (DiT)**: cut the image (usually a VAE latent) into patches,
#   treat them as tokens and run Transformer blocks over them.
#
# Both need the same three ingredients, which this lesson takes apart one at a time:
# an embedding of the timestep, a way for that embedding to *modulate* features
# (scale and shift), and a way for condition tokens such as a text prompt to reach the image
# (cross-attention, or SD3's joint attention). Everything is built with `diffusion_jax.models`.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from diffusion_jax import data
from diffusion_jax.demo import fast_mode
from diffusion_jax.exercises import check, hint
from diffusion_jax.models import DiT, MMDiTBlock, UNet, forward_flops, param_count
from diffusion_jax.models import dit as dit_lib
from diffusion_jax.models.common import attention
from diffusion_jax.models.dit import DIT_PRESETS
from diffusion_jax.models.embeddings import timestep_embedding
from diffusion_jax.models.unet import PRESETS as UNET_PRESETS

FAST = fast_mode()


def rngs(seed=0):
    # The "rbg" key implementation makes parameter initialisation much cheaper to compile on CPU.
    return nnx.Rngs(params=jax.random.key(seed, impl="rbg"))


print("fast mode:", FAST)

# %% [markdown]
# ## 1. U-Net anatomy
#
# The course's MNIST U-Net (`UNET_PRESETS["mnist"]`) has three resolution levels, 28×28 with
# 16 channels, 14×14 with 32 and 7×7 with 64. Each level has a residual block; the 7×7 level
# and the bottleneck also get self-attention, whose cost grows with the square of the number of
# positions, so it is only affordable at low resolution. The way up mirrors the way down and
# concatenates the matching skip features, so fine detail from the encoder reaches the output.
#
# To count parameters and FLOPs we do not need real weights: `nnx.eval_shape` builds the model
# abstractly (shapes only), and `forward_flops` asks XLA's cost model about one compiled
# forward pass of a single image.

# %%
cfg = UNET_PRESETS["mnist"]
unet_shape = nnx.eval_shape(lambda: UNet(cfg, rngs=rngs()))
one = lambda shape, dtype=jnp.float32: jax.ShapeDtypeStruct(shape, dtype)
flops = forward_flops(unet_shape, one((1, 28, 28, 1)), one((1,), jnp.int32), one((1,), jnp.int32))
print(cfg)
print(f"MNIST U-Net: {param_count(unet_shape):,} parameters, {flops / 1e9:.3f} GFLOPs per 28x28 image")

parts = {}
for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.state(unet_shape, nnx.Param)):
    top = str(getattr(path[0], "key", path[0]))
    parts[top] = parts.get(top, 0) + leaf.size
for name, n in sorted(parts.items(), key=lambda kv: -kv[1]):
    print(f"  {name:12s} {n:8,d}")

# %% [markdown]
# Most parameters sit in the low-resolution levels (`down`, `mid`, `up` at 64 channels), while
# most FLOPs are spent at 28×28, where every 3×3 convolution runs at 784 positions. The
# parameters of `time_embed` and `label_embed` are what turns (t, class) into one vector `emb`.
#
# ## 2. The sinusoidal timestep embedding
#
# A single integer t is a poor network input. Like a Transformer's position code, the
# timestep is expanded into cosines and sines at geometrically spaced frequencies,
# [cos(t·f_i), sin(t·f_i)] with f_i = 10000^(−i/half). Low-index channels oscillate quickly
# (they tell nearby timesteps apart), high-index channels vary slowly (they give a coarse
# "how noisy" signal). An MLP then maps this code to `emb`.

# %%
t_all = jnp.arange(1000)
emb = timestep_embedding(t_all, 64)  # (1000, 64)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), gridspec_kw={"width_ratios": [2, 1]})
im = axes[0].imshow(np.asarray(emb).T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
axes[0].set_xlabel("timestep t")
axes[0].set_ylabel("channel (cos | sin)")
axes[0].set_title("timestep_embedding(t, 64)", fontsize=9)
plt.colorbar(im, ax=axes[0])
sim = np.asarray(emb @ emb.T) / 32  # cosine similarity: every row has norm sqrt(32)
axes[1].imshow(sim, cmap="viridis")
axes[1].set_title("similarity of embeddings t vs t'", fontsize=9)
axes[1].set_xlabel("t'")
axes[1].set_ylabel("t")
plt.tight_layout()
plt.show()

# %% [markdown]
# The similarity matrix has a bright diagonal band: nearby timesteps get similar codes, distant
# ones do not, which is exactly what a network needs to share what it learns between
# neighbouring noise levels.
#
# ## 3. FiLM / AdaGN: the timestep acts by scaling and shifting features
#
# How does `emb` change what a residual block does? In FiLM (feature-wise linear modulation)
# a linear layer maps `emb` to one scale and one shift per channel, and the block computes
# h·(1 + scale) + shift. Applied right after a GroupNorm this is AdaGN (the U-Net's `ResBlock`);
# applied after a LayerNorm it is DiT's adaLN. The "1 +" means that zero modulation leaves the
# features untouched.
#
# The chapter illustrates this with a three-value feature map and two sets of controls, one for
# an early, high-noise step and one for a late, low-noise step. We rebuild it with the library's
# `modulate(x, shift, scale)` (used inside every DiT block):

# %%
feature_map = jnp.array([0.20, -0.10, 0.50])
controls = {"early_high_noise": dict(scale=0.50, shift=-0.05), "late_low_noise": dict(scale=0.05, shift=0.02)}
for name, c in controls.items():
    out = dit_lib.modulate(feature_map, c["shift"], c["scale"])
    print(f"{name:17s} scale={c['scale']:.2f} shift={c['shift']:+.2f} -> {[round(float(v), 3) for v in out]}")

# %% [markdown]
# These are the chapter's numbers: [0.25, −0.2, 0.7] early and [0.23, −0.085, 0.545] late. The
# early controls amplify the features by half and pull them down; the late ones barely touch
# them. In a real network the controls are not hand-picked: they are computed from `emb`, per
# sample and per channel. The U-Net's modulation layer is initialised to zero, so a freshly built
# network starts as a plain, timestep-blind residual network and learns how to use t.
#
# ## 4. Cross-attention: a latent patch consults the prompt
#
# Text conditioning in latent-diffusion U-Nets is cross-attention: image positions provide the
# queries, prompt tokens provide keys and values. Each position takes a softmax-weighted average
# of the token values, weighted by how well its query matches each key (dot product divided by
# √(width)). The chapter's example has one latent patch and the three tokens of "oak dining
# table", with 3-wide queries and keys and 2-wide values.
#
# The library's `attention(q, k, v, num_heads)` takes `(B, N, D)` arrays and scales logits by
# 1/√(head width), which for one head of width 3 is the chapter's 1/√3. It does, however, assume
# that values have the same width D as queries and keys (it reshapes all three the same way), and
# here the values are 2-wide. Two exact ways around that, both used below:
#
# * pass the 3×3 identity as the values: each output row is then the attention weights themselves;
# * pad the values with a zero column to width 3: the output is the conditioned patch plus a zero.

# %%
query = jnp.array([[[0.25, 0.10, 0.70]]])  # (B=1, N=1 patch, D=3)
tokens = ["oak", "dining", "table"]
keys = jnp.array([[[0.30, 0.05, 0.65], [0.10, 0.80, 0.10], [0.35, 0.10, 0.55]]])  # (1, 3, 3)
values = jnp.array([[[0.70, 0.20], [0.20, 0.70], [0.80, 0.10]]])  # (1, 3, 2): narrower than the keys

weights = attention(query, keys, jnp.eye(3)[None], num_heads=1)[0, 0]  # (3,)
patch_padded = attention(query, keys, jnp.pad(values, ((0, 0), (0, 0), (0, 1))), num_heads=1)[0, 0]
patch_by_hand = weights @ values[0]  # apply the weights to the 2-wide values ourselves
print("attention weights:", {tok: round(float(w), 3) for tok, w in zip(tokens, weights)})
print("conditioned patch (padded values):", [round(float(v), 3) for v in patch_padded[:2]])
print("conditioned patch (weights @ values):", [round(float(v), 3) for v in patch_by_hand])

# %% [markdown]
# Both routes give the chapter's result: weights oak 0.359, dining 0.292, table 0.349 and the
# conditioned patch [0.589, 0.311]. The query is closest to "oak" and "table", so their values
# dominate, but softmax keeps every token in the mix. In the U-Net (`UNetConfig(context_dim=...)`)
# learned projections produce q, k and v of equal width, so the library call applies directly.
#
# ## 5. DiT: patches as tokens, adaLN-Zero
#
# A DiT first cuts the input into p×p patches (`patchify`), embeds each patch linearly and adds a
# fixed 2-D position code. With the "tiny" preset a 28×28 digit becomes 7×7 = 49 tokens of
# 4·4 = 16 pixels each. `unpatchify` is the exact inverse that turns the output tokens back into
# an image.

# %%
digits = data.load_dataset("mnist")
pick = int(np.flatnonzero(digits.labels == 7)[0])  # the file is sorted by class: the first image is a 0
x = jnp.asarray(data.to_float(digits.images[pick:pick + 1]))  # (1, 28, 28, 1) in [-1, 1]
p = DIT_PRESETS["tiny"].patch_size
patches = dit_lib.patchify(x, p)  # (1, 49, 16)
back = dit_lib.unpatchify(patches, p, 28, 28, 1)
print(f"digit {digits.labels[pick]}: image {x.shape} -> tokens {patches.shape}; round trip exact: {bool(jnp.all(back == x))}")

g = 28 // p
fig = plt.figure(figsize=(9.5, 3.4))
left = fig.add_gridspec(1, 2, left=0.02, right=0.62, bottom=0.15, top=0.86, wspace=0.45)
ax = fig.add_subplot(left[0, 0])
ax.imshow(x[0, ..., 0], cmap="gray", vmin=-1, vmax=1)
ax.set_title(f"digit, {g}x{g} grid of {p}x{p} patches", fontsize=9)
ax.set_xticks(np.arange(-0.5, 28, p), minor=False)
ax.set_yticks(np.arange(-0.5, 28, p), minor=False)
ax.grid(color="C1", lw=0.8)
ax.set_xticklabels([])
ax.set_yticklabels([])
ax = fig.add_subplot(left[0, 1])
ax.imshow(np.asarray(patches[0]), cmap="gray", vmin=-1, vmax=1, aspect="auto")
ax.set_title("tokens (rows) x patch pixels (cols)", fontsize=9)
ax.set_xlabel("16 pixel values")
ax.set_ylabel("token index (row-major)")
sub = fig.add_gridspec(g, g, left=0.69, right=0.98, bottom=0.12, top=0.86, wspace=0.15, hspace=0.15)
for i in range(g * g):
    a = fig.add_subplot(sub[i // g, i % g])
    a.imshow(np.asarray(patches[0, i]).reshape(p, p), cmap="gray", vmin=-1, vmax=1)
    a.axis("off")
fig.text(0.835, 0.9, "the 49 patches, separated", ha="center", fontsize=9)
plt.show()

# %% [markdown]
# Inside each block the conditioning vector c (timestep embedding plus label embedding) goes
# through a linear layer that outputs **six** vectors: shift, scale and a *gate* for the
# attention branch, and the same three for the MLP branch. The gate multiplies the branch's
# output before it is added back to the residual stream. "Zero" in adaLN-Zero means that this
# linear layer (and the final projection) start at zero: every gate is 0, so every block is the
# identity and the whole network outputs exactly zero at initialisation. Training starts from a
# stable, do-nothing network and opens the gates gradually.

# %%
dit = DiT(DIT_PRESETS["tiny"], rngs=rngs())
x_t = jax.random.normal(jax.random.key(1), (2, 28, 28, 1))
out = nnx.jit(lambda m, *a: m(*a))(dit, x_t, jnp.array([10, 900]), jnp.array([3, 7]))  # one compiled call
print(f"DiT 'tiny': {param_count(dit):,} parameters, {dit.config.num_patches} tokens of width {dit.config.hidden}")
print(f"output shape {out.shape}, max |output| at init = {float(jnp.max(jnp.abs(out)))}")
print("first block's adaLN layer is zero:", bool(jnp.all(dit.blocks[0].adaLN_modulation.kernel[...] == 0)))

# %% [markdown]
# ## 6. MM-DiT: two streams, one attention
#
# Cross-attention is one-way: image queries read text, the text never reads the image. Stable
# Diffusion 3's MM-DiT block keeps **separate weights** for the two modalities (own norms,
# modulation, QKV projection and MLP for image tokens and for text tokens) but runs **one
# attention over the concatenation** [image tokens; text tokens], so information flows both ways.
# `MMDiTBlock` holds an `x_stream` and a `y_stream`, each a DiT block. Let us check both claims.
#
# One catch: at initialisation adaLN-Zero closes every gate, so the block is the identity and
# nothing flows anywhere. To imitate a trained block we fill the two modulation layers with
# small random weights (a stand-in for training), then perturb only the text tokens.

# %%
D, n_img, n_txt = 32, 16, 6
block = MMDiTBlock(D, num_heads=4, rngs=rngs(1))
print("parameters per stream: x (image)", f"{param_count(block.x_stream):,};", "y (text)", f"{param_count(block.y_stream):,}")
print("separate QKV weights:", block.x_stream.qkv.kernel is not block.y_stream.qkv.kernel,
      "| equal values:", bool(jnp.allclose(block.x_stream.qkv.kernel[...], block.y_stream.qkv.kernel[...])))

k1, k2, k3, k4 = jax.random.split(jax.random.key(7), 4)
img = jax.random.normal(k1, (1, n_img, D))
txt = jax.random.normal(k2, (1, n_txt, D))
txt_changed = txt.at[:, 0].set(jax.random.normal(k4, (D,)))  # replace one text token (a constant offset would
# be removed by the LayerNorm, so draw a new random token)
c = jax.random.normal(k3, (1, D))


run_block = nnx.jit(lambda blk, x, y, c: blk(x, y, c))  # compiled once, reused with new weights


def image_change(blk):
    x_a, _ = run_block(blk, img, txt, c)
    x_b, _ = run_block(blk, img, txt_changed, c)
    return float(jnp.max(jnp.abs(x_b - x_a)))


print(f"at init (gates closed):       max change of image tokens = {image_change(block):.2e}")
for stream, kk in [(block.x_stream, jax.random.fold_in(k4, 1)), (block.y_stream, jax.random.fold_in(k4, 2))]:
    kern = stream.adaLN_modulation.kernel
    kern[...] = 0.1 * jax.random.normal(kk, kern.shape)
print(f"'trained' modulation:         max change of image tokens = {image_change(block):.2e}")
x_a, _ = run_block(block, img, txt, c)
x_b, _ = run_block(block, img, txt_changed, c)
per_token = np.asarray(jnp.linalg.norm(x_b - x_a, axis=-1)[0])  # (16,)

fig, ax = plt.subplots(figsize=(6, 2.4))
ax.bar(np.arange(n_img), per_token)
ax.set_xlabel("image token")
ax.set_ylabel("‖change‖")
ax.set_title("image tokens react to a change in one text token (joint attention)", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# Every image token changes, although no image input changed: the text reached them through the
# shared attention. (With a one-way cross-attention the reverse, text reacting to the image, would
# be impossible; in MM-DiT it happens too, in `y`.)
#
# ## Exercises

# %% tags=["exercise"]
def sinusoidal_embedding(t, dim):
    """Sinusoidal timestep embedding.

    t: shape (B,), integer or fractional timesteps; dim: even width.
    returns: (B, dim) float32, the library's embedding (section 2): dim // 2 frequencies from 1 down
    to about 1/10000, all cosines first, then all sines.
    """
    ### BEGIN SOLUTION
    half = dim // 2
    freqs = jnp.exp(-jnp.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    ### END SOLUTION


check("sinusoidal_embedding", sinusoidal_embedding)


# %% tags=["exercise"]
def film(h, scale, shift):
    """FiLM / AdaGN modulation.

    h: features of shape (B, ..., C) (e.g. (B, H, W, C) or (B, N, C)); scale, shift: (B, C).
    returns: h modulated as in section 3, per sample and per channel at every position of h;
    scale = shift = 0 returns h unchanged.
    """
    ### BEGIN SOLUTION
    shape = scale.shape[:1] + (1,) * (h.ndim - 2) + scale.shape[-1:]
    return h * (1 + scale.reshape(shape)) + shift.reshape(shape)
    ### END SOLUTION


check("film", film)


# %% tags=["exercise"]
def patchify(x, p):
    """Cut images into DiT tokens.

    x: (B, H, W, C) with H and W divisible by p.
    returns: (B, (H/p)*(W/p), p*p*C): token i * (W/p) + j is patch (i, j), its pixels flattened
    row-major over (row in patch, column, channel).
    """
    ### BEGIN SOLUTION
    b, h, w, c = x.shape
    x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)
    ### END SOLUTION


check("patchify", patchify)

# %% [markdown]
# A DiT's output tokens must become an image again. Write the inverse of `patchify`; the
# grader feeds it tokens made by the library's `patchify`, including a non-square image.


# %% tags=["exercise"]
def unpatchify(tokens, p, H, W, C):
    """Tokens back to images: the exact inverse of patchify.

    tokens: (B, (H/p)*(W/p), p*p*C) as patchify makes them; p, H, W, C: ints.
    returns: (B, H, W, C) with patchify(unpatchify(tokens, p, H, W, C), p) == tokens.
    """
    ### BEGIN SOLUTION
    b = tokens.shape[0]
    x = tokens.reshape(b, H // p, W // p, p, p, C).transpose(0, 1, 3, 2, 4, 5)  # (B, H/p, py, W/p, px, C)
    return x.reshape(b, H, W, C)
    ### END SOLUTION


check("unpatchify", unpatchify)

# %% [markdown]
# ## Check your understanding
#
# 1. Why does the U-Net put self-attention only at its 7×7 level and bottleneck, and not at 28×28?
# 2. What does the "1 +" in h·(1 + scale) + shift buy you at initialisation?
# 3. In the oak/dining/table example, what happens to the attention weights if every key is
#    multiplied by 10? What if the query is the zero vector?
# 4. Why does a freshly initialised DiT output exactly zero, and why is that a good start?
# 5. What is the difference between cross-attention and MM-DiT's joint attention, in one sentence
#    each? Which weights are shared between the image and text streams of an MM-DiT block?
#
# <details>
# <summary>Answers</summary>
#
# 1. Attention compares every position with every other: (H·W)² pairs. At 28×28 that is 614,656
#    pairs per head and image; at 7×7 only 2,401. Convolutions handle local detail at high
#    resolution; attention supplies global context where it is cheap.
# 2. With zero-initialised modulation, scale = shift = 0, so the features pass through unchanged
#    and the block starts as an ordinary residual block; without the "1 +" a zero scale would
#    wipe out all features.
# 3. Ten times larger keys make the logits ten times larger, so the softmax gets much sharper and
#    concentrates on the best-matching token(s). A zero query gives equal logits, so all three
#    weights are 1/3 and the patch becomes the plain average of the values.
# 4. adaLN-Zero initialises the modulation layers (hence every gate) and the final projection to
#    zero: each block is the identity and the output layer emits zeros. Deep networks then start
#    as a trivial, well-behaved function, and each block's contribution is learned gradually;
#    the DiT paper found this trained better than other initialisations.
# 5. Cross-attention: image queries attend to text keys/values, one direction only. Joint
#    attention: image and text tokens are concatenated and attend to each other in one softmax.
#    No projection weights are shared in MM-DiT; each stream has its own, only the attention
#    operation (and the conditioning vector c) is common.
# </details>
#
# ## Summary
#
# * A U-Net denoiser (`models.UNet`) is a multiscale conv net with skip connections; the MNIST
#   preset has about 0.56M parameters and costs about 0.1 GFLOPs per image (`param_count`,
#   `forward_flops`).
# * The timestep enters as a sinusoidal code (`timestep_embedding`) passed through an MLP, and
#   acts on features by FiLM/AdaGN scale-and-shift, h·(1 + scale) + shift.
# * Cross-attention lets image positions read prompt tokens; the chapter's oak/dining/table
#   example gives weights 0.359 / 0.292 / 0.349 and the patch [0.589, 0.311].
# * DiT swaps convolutions for Transformer blocks over patches (`patchify`/`unpatchify`) and
#   conditions through adaLN-Zero, so it outputs exactly zero at initialisation.
# * MM-DiT keeps separate weights per modality but one joint attention, so text and image tokens
#   influence each other in both directions.
