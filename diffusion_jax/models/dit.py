"""Diffusion Transformer (DiT, Peebles & Xie 2023) and the MM-DiT joint-attention block
(Stable Diffusion 3, Esser et al. 2024).

A DiT treats an image (or a VAE latent) as a sequence of patches: ``patchify`` cuts it
into ``p x p`` patches, a linear layer embeds each patch, a fixed 2-D sin-cos position
code says where the patch sits, and a stack of Transformer blocks refines the tokens.
The timestep and class label enter through *adaLN-Zero*: a linear map of the
conditioning vector ``c`` produces per-channel shift / scale / gate values for every
block, and that linear map starts at zero so each residual branch is switched off at
initialisation (every block is the identity and the network outputs exactly zero).

Token order used throughout: patch ``(i, j)`` of the ``(H/p, W/p)`` grid is token
``i * (W/p) + j`` (row-major), and its features are the patch pixels flattened
row-major over ``(py, px, c)``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np
from flax import nnx

from .common import ModuleList, attention
from .embeddings import LabelEmbedder, TimestepEmbedder

__all__ = ["patchify", "unpatchify", "sincos_pos_embed_2d", "DiTConfig", "DIT_PRESETS", "modulate", "Mlp",
           "DiTBlock", "MMDiTBlock", "FinalLayer", "DiT"]



# ----------------------------------------------------------------------------- patches
def _check_patch(p) -> int:
    if not isinstance(p, (int, np.integer)) or isinstance(p, bool) or p < 1:
        raise ValueError(f"p (patch size) must be a positive int, got {p!r}")
    return int(p)


def patchify(x, p: int):
    """Cut ``x`` of shape ``(B, H, W, C)`` into ``(B, (H/p)*(W/p), p*p*C)`` tokens."""
    p = _check_patch(p)
    if x.ndim != 4:
        raise ValueError(f"x must have shape (B, H, W, C), got shape {x.shape}")
    b, h, w, c = x.shape
    if h % p or w % p:
        raise ValueError(f"x spatial size {h}x{w} is not divisible by the patch size p={p}")
    x = x.reshape(b, h // p, p, w // p, p, c)  # (B, H/p, py, W/p, px, C)
    x = x.transpose(0, 1, 3, 2, 4, 5)  # (B, H/p, W/p, py, px, C)
    return x.reshape(b, (h // p) * (w // p), p * p * c)  # (B, N, p*p*C)


def unpatchify(tokens, p: int, H: int, W: int, C: int):
    """Exact inverse of :func:`patchify`: ``(B, N, p*p*C) -> (B, H, W, C)``."""
    p = _check_patch(p)
    if H % p or W % p:
        raise ValueError(f"H x W = {H}x{W} is not divisible by the patch size p={p}")
    gh, gw = H // p, W // p
    if tokens.ndim != 3 or tokens.shape[1:] != (gh * gw, p * p * C):
        raise ValueError(
            f"tokens must have shape (B, {gh * gw}, {p * p * C}) for H={H}, W={W}, "
            f"C={C}, p={p}; got shape {tokens.shape}"
        )
    b = tokens.shape[0]
    x = tokens.reshape(b, gh, gw, p, p, C)  # (B, H/p, W/p, py, px, C)
    x = x.transpose(0, 1, 3, 2, 4, 5)  # (B, H/p, py, W/p, px, C)
    return x.reshape(b, H, W, C)  # (B, H, W, C)


@functools.lru_cache(maxsize=32)
def sincos_pos_embed_2d(grid_h: int, grid_w: int, dim: int) -> np.ndarray:
    """Fixed 2-D sin-cos position code, ``(grid_h * grid_w, dim)`` float32.

    Half the channels encode the row, half the column, each with the 1-D Transformer
    code ``[sin(pos * w_k), cos(pos * w_k)]``, ``w_k = 10000 ** (-k / (dim / 4))``.
    Computed rather than learned, so the model can be run on any grid size.
    """
    if dim % 4:
        raise ValueError(f"dim must be divisible by 4 for a 2-D sin-cos code, got {dim}")
    omega = 1.0 / 10_000.0 ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))

    def code_1d(pos):  # (N,) -> (N, dim/2)
        args = pos[:, None] * omega[None, :]  # (N, dim/4)
        return np.concatenate([np.sin(args), np.cos(args)], axis=1)

    rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")  # (h, w)
    emb = np.concatenate([code_1d(rows.reshape(-1)), code_1d(cols.reshape(-1))], axis=1)
    emb = emb.astype(np.float32)  # (N, dim), row-major token order like patchify
    emb.flags.writeable = False  # shared through the cache
    return emb


# ----------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class DiTConfig:
    patch_size: int = 2  # p: each token covers p x p pixels; N = (H/p)(W/p) tokens
    hidden: int = 128  # D: token width (divisible by 4 for the 2-D sin-cos code)
    depth: int = 4  # number of adaLN-Zero Transformer blocks
    num_heads: int = 4  # attention heads; head width = hidden / num_heads
    mlp_ratio: float = 4.0  # MLP hidden width = mlp_ratio * hidden
    num_classes: int | None = 10  # None = unconditional (no label table)
    in_channels: int = 1  # C of x_t: 1 for MNIST pixels, 4 for VAE latents
    input_size: int = 28  # H = W the presets are sized for (any multiple of p runs)
    learn_sigma: bool = False  # True: also output C channels of variance (Improved DDPM)

    @property
    def out_channels(self) -> int:
        return 2 * self.in_channels if self.learn_sigma else self.in_channels

    @property
    def num_patches(self) -> int:
        return (self.input_size // self.patch_size) ** 2


# Toy sizes that train on a 2-core CPU; all class-conditional with 10 classes.
DIT_PRESETS: dict[str, DiTConfig] = {
    "tiny": DiTConfig(patch_size=4, hidden=96, depth=4, num_heads=4),  # 28x28x1, 49 tokens
    "small": DiTConfig(patch_size=2, hidden=128, depth=4, num_heads=4),  # 28x28x1, 196 tokens
    "latent-mnist": DiTConfig(patch_size=1, in_channels=4, input_size=7),  # 7x7x4, 49 tokens
    "latent-cifar": DiTConfig(patch_size=2, in_channels=4, input_size=8),  # 8x8x4, 16 tokens
    # The shipped CIFAR-10 model: 64 tokens of width 192, 6 blocks (trained on a GPU).
    "latent-cifar-f2-ref": DiTConfig(patch_size=2, hidden=192, depth=6, num_heads=6, in_channels=4,
                                     input_size=16),
}


# ----------------------------------------------------------------------------- layers
def _linear(d_in: int, d_out: int, rngs: nnx.Rngs, *, zero: bool = False) -> nnx.Linear:
    # Xavier-uniform as in DiT; zero init is what makes adaLN-Zero start as identity.
    init = nnx.initializers.zeros_init() if zero else nnx.initializers.xavier_uniform()
    return nnx.Linear(d_in, d_out, kernel_init=init, rngs=rngs)


def _layer_norm(dim: int, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # No affine parameters: adaLN supplies the per-sample scale and shift instead.
    return nnx.LayerNorm(dim, use_scale=False, use_bias=False, epsilon=1e-6, rngs=rngs)


def modulate(x, shift, scale):
    """adaLN: ``x * (1 + scale) + shift``; ``1 +`` so zero modulation leaves x as is."""
    return x * (1.0 + scale) + shift


class Mlp(nnx.Module):
    def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
        self.fc1 = _linear(dim, hidden, rngs)
        self.fc2 = _linear(hidden, dim, rngs)

    def __call__(self, x):
        return self.fc2(nnx.gelu(self.fc1(x), approximate=True))


class DiTBlock(nnx.Module):
    """Pre-norm Transformer block with adaLN-Zero conditioning.

    ``x = x + gate_msa * attn(modulate(norm1(x), shift_msa, scale_msa))`` then the same
    for the MLP. The block is split into ``modulation`` / ``qkv_of`` / ``finish`` so an
    :class:`MMDiTBlock` can reuse it as one stream of a joint attention.
    """

    def __init__(self, hidden: int, num_heads: int, mlp_ratio: float = 4.0, *, rngs: nnx.Rngs):
        if hidden % num_heads:
            raise ValueError(f"hidden={hidden} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.norm1 = _layer_norm(hidden, rngs)
        self.qkv = _linear(hidden, 3 * hidden, rngs)
        self.proj = _linear(hidden, hidden, rngs)
        self.norm2 = _layer_norm(hidden, rngs)
        self.mlp = Mlp(hidden, int(hidden * mlp_ratio), rngs=rngs)
        self.adaLN_modulation = _linear(hidden, 6 * hidden, rngs, zero=True)

    def modulation(self, c):
        """Six ``(B, 1, D)`` arrays: shift/scale/gate for attention, then for the MLP."""
        mod = self.adaLN_modulation(nnx.silu(c))[:, None, :]  # (B, 1, 6D)
        return tuple(jnp.split(mod, 6, axis=-1))

    def qkv_of(self, x, mod):
        shift_msa, scale_msa = mod[0], mod[1]
        return self.qkv(modulate(self.norm1(x), shift_msa, scale_msa))  # (B, N, 3D)

    def finish(self, x, attn_out, mod):
        _, _, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod
        x = x + gate_msa * self.proj(attn_out)
        return x + gate_mlp * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))

    def __call__(self, x, c):
        mod = self.modulation(c)
        q, k, v = jnp.split(self.qkv_of(x, mod), 3, axis=-1)  # 3 x (B, N, D)
        return self.finish(x, attention(q, k, v, self.num_heads), mod)


class MMDiTBlock(nnx.Module):
    """SD3's MM-DiT block: two token streams, their own weights, one joint attention.

    Image tokens ``x (B, N, D)`` and context tokens ``y (B, L, D)`` each go through their
    own adaLN modulation, norms, QKV and output projections and MLP (``x_stream`` and
    ``y_stream``, each a :class:`DiTBlock`), but attention runs once over ``[x; y]``, so
    every image token can attend to every text token and vice versa. Both streams are
    modulated by the same conditioning vector ``c (B, D)`` (timestep + pooled text in
    SD3). Simplification: SD3's last block drops the context stream's outputs; here both
    streams are always updated. Returns the updated ``(x, y)``.
    """

    def __init__(self, hidden: int, num_heads: int, mlp_ratio: float = 4.0, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.x_stream = DiTBlock(hidden, num_heads, mlp_ratio, rngs=rngs)
        self.y_stream = DiTBlock(hidden, num_heads, mlp_ratio, rngs=rngs)

    def __call__(self, x, y, c):
        if x.ndim != 3 or y.ndim != 3 or x.shape[::2] != y.shape[::2]:
            raise ValueError(
                f"x (B, N, D) and y (B, L, D) must share B and D; got {x.shape}, {y.shape}"
            )
        n = x.shape[1]
        mod_x, mod_y = self.x_stream.modulation(c), self.y_stream.modulation(c)
        qkv = jnp.concatenate(
            [self.x_stream.qkv_of(x, mod_x), self.y_stream.qkv_of(y, mod_y)], axis=1
        )  # (B, N + L, 3D)
        q, k, v = jnp.split(qkv, 3, axis=-1)  # 3 x (B, N + L, D)
        out = attention(q, k, v, self.num_heads)  # (B, N + L, D)
        x = self.x_stream.finish(x, out[:, :n], mod_x)  # (B, N, D)
        y = self.y_stream.finish(y, out[:, n:], mod_y)  # (B, L, D)
        return x, y


class FinalLayer(nnx.Module):
    """adaLN-modulated norm and a zero-initialised projection back to patch pixels."""

    def __init__(self, hidden: int, out_dim: int, *, rngs: nnx.Rngs):
        self.norm = _layer_norm(hidden, rngs)
        self.adaLN_modulation = _linear(hidden, 2 * hidden, rngs, zero=True)
        self.linear = _linear(hidden, out_dim, rngs, zero=True)

    def __call__(self, x, c):
        mod = self.adaLN_modulation(nnx.silu(c))[:, None, :]  # (B, 1, 2D)
        shift, scale = jnp.split(mod, 2, axis=-1)
        return self.linear(modulate(self.norm(x), shift, scale))  # (B, N, p*p*C_out)


# ----------------------------------------------------------------------------- model
class DiT(nnx.Module):
    """Denoiser ``model(x_t, t, cond=None) -> prediction`` with the shape of ``x_t``.

    ``x_t`` is ``(B, H, W, C)`` with ``C = config.in_channels`` and ``H, W`` multiples of
    the patch size (the position code is computed, so sizes other than
    ``config.input_size`` also run). ``t`` is ``(B,)`` (or a scalar, broadcast).
    ``cond`` is ``(B,)`` integer labels in ``0..num_classes`` where ``num_classes`` is
    the learned null label; ``None`` means all-null (unconditional). With
    ``learn_sigma`` the output has ``2C`` channels: the prediction, then the variance
    interpolation values.
    """

    def __init__(self, config: DiTConfig = DiTConfig(), *, rngs: nnx.Rngs):
        cfg = config
        if cfg.hidden % 4:  # the 2-D sin-cos code splits D into four sin/cos blocks
            raise ValueError(f"config.hidden must be divisible by 4, got {cfg.hidden}")
        if cfg.input_size % cfg.patch_size:
            raise ValueError(
                f"config.input_size={cfg.input_size} is not divisible by "
                f"config.patch_size={cfg.patch_size}"
            )
        p, d = cfg.patch_size, cfg.hidden
        self.config = cfg
        self.x_embedder = _linear(p * p * cfg.in_channels, d, rngs)
        self.t_embedder = TimestepEmbedder(d, rngs=rngs)
        self.y_embedder = (
            None if cfg.num_classes is None else LabelEmbedder(cfg.num_classes, d, rngs=rngs)
        )
        self.blocks = ModuleList(
            [DiTBlock(d, cfg.num_heads, cfg.mlp_ratio, rngs=rngs) for _ in range(cfg.depth)]
        )
        self.final_layer = FinalLayer(d, p * p * cfg.out_channels, rngs=rngs)

    @property
    def null_label(self) -> int | None:
        return None if self.y_embedder is None else self.y_embedder.null_label

    def _check(self, x_t, t, cond):
        cfg = self.config
        if x_t.ndim != 4:
            raise ValueError(f"x_t must have shape (B, H, W, C), got shape {x_t.shape}")
        b, h, w, c = x_t.shape
        if c != cfg.in_channels:
            raise ValueError(f"x_t has {c} channels but config.in_channels={cfg.in_channels}")
        if h % cfg.patch_size or w % cfg.patch_size:
            raise ValueError(
                f"x_t spatial size {h}x{w} is not divisible by config.patch_size={cfg.patch_size}"
            )
        if jnp.shape(t) not in ((), (b,)):
            raise ValueError(f"t must have shape ({b},) or be a scalar, got {jnp.shape(t)}")
        if cond is not None:
            if self.y_embedder is None:
                raise ValueError("cond was given but this DiT is unconditional (num_classes=None)")
            if jnp.shape(cond) != (b,):
                raise ValueError(f"cond must have shape ({b},), got {jnp.shape(cond)}")

    def __call__(self, x_t, t, cond=None):
        self._check(x_t, t, cond)
        cfg = self.config
        p = cfg.patch_size
        b, h, w, _ = x_t.shape
        pos = sincos_pos_embed_2d(h // p, w // p, cfg.hidden)  # (N, D)
        tokens = self.x_embedder(patchify(x_t, p)) + pos[None]  # (B, N, D)

        c = self.t_embedder(jnp.broadcast_to(t, (b,)))  # (B, D)
        if self.y_embedder is not None:
            if cond is None:
                cond = jnp.full((b,), self.y_embedder.null_label, jnp.int32)
            c = c + self.y_embedder(cond)  # (B, D)

        for block in self.blocks:
            tokens = block(tokens, c)  # (B, N, D)
        out = self.final_layer(tokens, c)  # (B, N, p*p*C_out)
        return unpatchify(out, p, h, w, cfg.out_channels)  # (B, H, W, C_out)
