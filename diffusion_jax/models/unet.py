"""A small diffusion U-Net in Flax NNX: ``model(x_t, t, cond=None, *, context=None)``.

The layout follows DDPM / ADM (Ho et al. 2020; Dhariwal & Nichol 2021): a convolutional
encoder-decoder with skip connections, every residual block modulated by an embedding
of the timestep (plus the class label), self-attention only where the feature map is
small, and optional cross-attention to condition tokens (as in latent diffusion).
Images are ``(B, H, W, C)`` in ``[-1, 1]``; the output has the input's shape and means
whatever the training loss says it means (eps, x0, v or a flow velocity).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .common import GroupNorm, ModuleList, attention
from .embeddings import GuidanceEmbedder, LabelEmbedder, TimestepEmbedder

__all__ = ["UNetConfig", "PRESETS", "ResBlock", "SelfAttention", "CrossAttention", "Upsample", "UNet"]

_zeros = nnx.initializers.zeros_init()


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    # Feature width per resolution level; every level after the first halves H and W,
    # so 28x28 inputs run at 28, 14 and 7 and 32x32 at 32, 16 and 8.
    channels: tuple[int, ...] = (16, 32, 64)
    # Residual blocks per level on the way down; the way up mirrors it, one skip each.
    blocks_per_level: int = 1
    # Levels with self-attention. Its cost grows with (H*W)^2, so only coarse levels;
    # the bottleneck gets attention too when the last level is listed.
    attention_levels: tuple[int, ...] = (2,)
    num_heads: int = 4
    # GroupNorm groups: every level width must be divisible by it.
    groups: int = 8
    # None: unconditional. Otherwise labels 0..num_classes-1, and num_classes is null.
    num_classes: int | None = None
    # Width of condition tokens for cross-attention; None builds no cross-attention.
    context_dim: int | None = None
    in_channels: int = 1
    out_channels: int | None = None  # None: same as in_channels
    time_dim: int | None = None  # None: 4 * channels[0], as in DDPM
    # Guidance as an input (Meng et al. 2023, guidance distillation): the model also takes
    # the CFG scale s and adds an embedding of it to the timestep embedding. Off by default,
    # so existing presets (and their fingerprints) are unchanged.
    guidance_embed: bool = False

    def __post_init__(self):
        # Lists would make the frozen config unhashable (it is static under jit).
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "attention_levels", tuple(int(i) for i in self.attention_levels))
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"UNetConfig: channels must be positive widths, got {self.channels}")
        if self.blocks_per_level < 1:
            raise ValueError(f"UNetConfig: blocks_per_level must be >= 1, got {self.blocks_per_level}")
        bad = [c for c in self.channels if c % self.groups]
        if bad:
            raise ValueError(f"UNetConfig: channels {bad} are not divisible by groups={self.groups}")
        for i in self.attention_levels:
            if not 0 <= i < len(self.channels):
                raise ValueError(f"UNetConfig: attention_levels entry {i} is not a level index "
                                 f"0..{len(self.channels) - 1}")
            if self.channels[i] % self.num_heads:
                raise ValueError(f"UNetConfig: channels[{i}]={self.channels[i]} is not divisible "
                                 f"by num_heads={self.num_heads}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"UNetConfig: num_classes must be >= 1 or None, got {self.num_classes}")

    @property
    def emb_dim(self) -> int:
        return self.time_dim or 4 * self.channels[0]

    @property
    def out_dim(self) -> int:
        return self.out_channels or self.in_channels


# Sizes from common.param_count / forward_flops (XLA, one image, class label given).
PRESETS = {
    # 28x28x1: 558,161 params, 0.105 GFLOP
    "mnist": UNetConfig(num_classes=10),
    # 32x32x3: 2,214,179 params, 0.55 GFLOP
    "cifar10": UNetConfig(channels=(32, 64, 128), num_classes=10, in_channels=3),
    # 7x7x4 or 8x8x4 VAE latents: 591,908 params, 0.018 / 0.020 GFLOP
    "latent": UNetConfig(channels=(32, 64), attention_levels=(1,), num_classes=10, in_channels=4),
}


class ResBlock(nnx.Module):
    """GroupNorm-SiLU-conv, then the embedding sets a per-channel scale and shift."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int, *, rngs: nnx.Rngs):
        self.norm1 = GroupNorm(cin, num_groups=groups, rngs=rngs)
        self.conv1 = nnx.Conv(cin, cout, (3, 3), rngs=rngs)
        # Zero-init: scale = shift = 0, so at init the block ignores t and the label and is
        # a plain residual block. Its gradient is still non-zero (conv2 is not zeroed), so
        # the conditioning is learned from the first step.
        self.modulation = nnx.Linear(emb_dim, 2 * cout, kernel_init=_zeros, rngs=rngs)
        self.norm2 = GroupNorm(cout, num_groups=groups, rngs=rngs)
        self.conv2 = nnx.Conv(cout, cout, (3, 3), rngs=rngs)
        self.skip = nnx.Conv(cin, cout, (1, 1), rngs=rngs) if cin != cout else None

    def __call__(self, x, emb):
        h = self.conv1(nnx.silu(self.norm1(x)))
        scale, shift = jnp.split(self.modulation(nnx.silu(emb)), 2, axis=-1)  # (B, C) each
        h = self.norm2(h) * (1 + scale[:, None, None, :]) + shift[:, None, None, :]
        h = self.conv2(nnx.silu(h))
        return (x if self.skip is None else self.skip(x)) + h


class SelfAttention(nnx.Module):
    """Pre-norm multi-head self-attention over all H*W positions, residual."""

    def __init__(self, ch: int, num_heads: int, groups: int, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.norm = GroupNorm(ch, num_groups=groups, rngs=rngs)
        self.qkv = nnx.Linear(ch, 3 * ch, rngs=rngs)
        self.proj = nnx.Linear(ch, ch, rngs=rngs)

    def __call__(self, x):
        b, h, w, c = x.shape
        tokens = self.norm(x).reshape(b, h * w, c)  # (B, H*W, C)
        q, k, v = jnp.split(self.qkv(tokens), 3, axis=-1)  # (B, H*W, C) each
        out = self.proj(attention(q, k, v, self.num_heads))  # (B, H*W, C)
        return x + out.reshape(b, h, w, c)  # (B, H, W, C)


class CrossAttention(nnx.Module):
    """Image positions query condition tokens: q from features, k and v from context."""

    def __init__(self, ch: int, context_dim: int, num_heads: int, groups: int, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.norm = GroupNorm(ch, num_groups=groups, rngs=rngs)
        self.q = nnx.Linear(ch, ch, rngs=rngs)
        self.kv = nnx.Linear(context_dim, 2 * ch, rngs=rngs)
        # Zero-init: the block starts as the identity, so the model begins as its
        # context-free self and the context's influence is learned.
        self.proj = nnx.Linear(ch, ch, kernel_init=_zeros, rngs=rngs)

    def __call__(self, x, context):
        b, h, w, c = x.shape
        q = self.q(self.norm(x).reshape(b, h * w, c))  # (B, H*W, C)
        k, v = jnp.split(self.kv(context), 2, axis=-1)  # (B, L, C) each
        out = self.proj(attention(q, k, v, self.num_heads))  # (B, H*W, C)
        return x + out.reshape(b, h, w, c)  # (B, H, W, C)


class _Layer(nnx.Module):
    """A residual block, then self- and cross-attention where the level has them."""

    def __init__(self, cin: int, cout: int, attend: bool, cfg: UNetConfig, *, rngs: nnx.Rngs):
        self.res = ResBlock(cin, cout, cfg.emb_dim, cfg.groups, rngs=rngs)
        self.attn = SelfAttention(cout, cfg.num_heads, cfg.groups, rngs=rngs) if attend else None
        # Assigned once: in NNX an attribute first set to None stays static.
        self.cross = (CrossAttention(cout, cfg.context_dim, cfg.num_heads, cfg.groups, rngs=rngs)
                      if attend and cfg.context_dim is not None else None)

    def __call__(self, h, emb, context):
        h = self.res(h, emb)
        if self.attn is not None:
            h = self.attn(h)
        if self.cross is not None and context is not None:
            h = self.cross(h, context)
        return h


class Upsample(nnx.Module):
    """Nearest-neighbour x2 then a 3x3 conv (avoids transposed-conv checkerboards)."""

    def __init__(self, ch: int, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(ch, ch, (3, 3), rngs=rngs)

    def __call__(self, x, size):
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # (B, 2H, 2W, C)
        # An odd size went down as ceil(n/2) (7 -> 4); crop back to the skip's size.
        return self.conv(x[:, : size[0], : size[1]])  # (B, size[0], size[1], C)


class UNet(nnx.Module):
    """Diffusion U-Net. Call as ``model(x_t, t, cond=None, *, context=None, guidance=None)``.

    ``x_t``: ``(B, H, W, in_channels)``. ``t``: ``(B,)`` or a scalar, integer steps
    ``0..T-1`` or floats on a similar scale. ``cond``: ``(B,)`` integer labels where the
    value ``num_classes`` is the null label; ``None`` means all-null on a
    class-conditional model. ``context``: ``(B, L, context_dim)`` tokens for
    cross-attention; ``None`` skips the cross-attention blocks (unconditional).
    ``guidance``: ``(B,)`` or a scalar CFG scale s, required exactly when the config has
    ``guidance_embed`` (a guidance-distilled student, one prediction per step).
    """

    def __init__(self, config: UNetConfig = UNetConfig(), *, rngs: nnx.Rngs):
        cfg = self.config = config
        ch, att, levels = cfg.channels, cfg.attention_levels, len(cfg.channels)
        self.time_embed = TimestepEmbedder(cfg.emb_dim, rngs=rngs)
        self.label_embed = (LabelEmbedder(cfg.num_classes, cfg.emb_dim, rngs=rngs)
                            if cfg.num_classes is not None else None)
        self.guidance_embed = GuidanceEmbedder(cfg.emb_dim, rngs=rngs) if cfg.guidance_embed else None
        self.conv_in = nnx.Conv(cfg.in_channels, ch[0], (3, 3), rngs=rngs)
        self.down, self.downsample, skip_widths, c = ModuleList(), ModuleList(), [], ch[0]
        for i, width in enumerate(ch):
            for _ in range(cfg.blocks_per_level):
                self.down.append(_Layer(c, width, i in att, cfg, rngs=rngs))
                c = width
                skip_widths.append(c)
            if i < levels - 1:
                self.downsample.append(nnx.Conv(c, c, (3, 3), strides=2, rngs=rngs))
        self.mid = _Layer(c, c, levels - 1 in att, cfg, rngs=rngs)
        self.mid_res = ResBlock(c, c, cfg.emb_dim, cfg.groups, rngs=rngs)
        self.up, self.upsample = ModuleList(), ModuleList()
        for i in reversed(range(levels)):
            for _ in range(cfg.blocks_per_level):
                self.up.append(_Layer(c + skip_widths.pop(), ch[i], i in att, cfg, rngs=rngs))
                c = ch[i]
            if i > 0:
                self.upsample.append(Upsample(c, rngs=rngs))
        self.norm_out = GroupNorm(c, num_groups=cfg.groups, rngs=rngs)
        self.conv_out = nnx.Conv(c, cfg.out_dim, (3, 3), rngs=rngs)

    def _check_guidance(self, guidance, b):
        if self.guidance_embed is None:
            if guidance is not None:
                raise ValueError("UNet: guidance was given but the model takes no guidance input "
                                 "(guidance_embed=False); apply CFG around it instead")
            return None
        if guidance is None:
            raise ValueError("UNet: this model takes the guidance scale as an input (guidance_embed=True); "
                             "pass guidance=s, a scalar or (B,) array")
        g = jnp.asarray(guidance, jnp.float32)
        if g.ndim == 0:
            return jnp.broadcast_to(g, (b,))  # (B,)
        if g.shape != (b,):
            raise ValueError(f"UNet: guidance must be a scalar or have shape ({b},), got {g.shape}")
        return g

    def _check(self, x_t, t, cond, context):
        cfg = self.config
        x_t = jnp.asarray(x_t)
        if x_t.ndim != 4 or x_t.shape[-1] != cfg.in_channels:
            raise ValueError(f"UNet: x_t must have shape (B, H, W, {cfg.in_channels}), "
                             f"got {x_t.shape}")
        b = x_t.shape[0]
        t = jnp.asarray(t)
        if t.ndim == 0:
            t = jnp.broadcast_to(t, (b,))  # (B,)
        elif t.shape != (b,):
            raise ValueError(f"UNet: t must be a scalar or have shape ({b},) like x_t's batch, "
                             f"got {t.shape}")
        if cfg.num_classes is None:
            if cond is not None:
                raise ValueError("UNet: cond was given but the model is unconditional "
                                 "(num_classes=None)")
        elif cond is None:
            cond = jnp.full((b,), cfg.num_classes, jnp.int32)  # (B,) all null
        else:
            cond = jnp.asarray(cond)
            if cond.shape != (b,) or not jnp.issubdtype(cond.dtype, jnp.integer):
                raise ValueError(f"UNet: cond must be integer labels of shape ({b},), "
                                 f"got {cond.dtype} {cond.shape}")
            # Out-of-range labels would silently embed as NaN; check when values are known.
            if not isinstance(cond, jax.core.Tracer):
                c = np.asarray(cond)
                if c.min() < 0 or c.max() > cfg.num_classes:
                    raise ValueError(f"UNet: cond labels must be in 0..{cfg.num_classes} "
                                     f"({cfg.num_classes} = null), got {c.min()}..{c.max()}")
        if context is not None:
            if cfg.context_dim is None:
                raise ValueError("UNet: context was given but the model has no "
                                 "cross-attention (context_dim=None)")
            context = jnp.asarray(context)
            if context.ndim != 3 or context.shape[0] != b or context.shape[2] != cfg.context_dim:
                raise ValueError(f"UNet: context must have shape ({b}, L, {cfg.context_dim}), "
                                 f"got {context.shape}")
        return x_t, t, cond, context

    def __call__(self, x_t, t, cond=None, *, context=None, guidance=None):
        x_t, t, cond, context = self._check(x_t, t, cond, context)
        guidance = self._check_guidance(guidance, x_t.shape[0])
        levels, blocks = len(self.config.channels), self.config.blocks_per_level
        emb = self.time_embed(t)  # (B, E)
        if self.label_embed is not None:
            emb = emb + self.label_embed(cond)  # (B, E)
        if self.guidance_embed is not None:
            emb = emb + self.guidance_embed(guidance)  # (B, E)
        h = self.conv_in(x_t)
        skips, sizes, down = [], [], iter(self.down)
        for i in range(levels):
            for _ in range(blocks):
                h = next(down)(h, emb, context)
                skips.append(h)
            if i < levels - 1:
                sizes.append(h.shape[1:3])
                h = self.downsample[i](h)
        h = self.mid_res(self.mid(h, emb, context), emb)
        up = iter(self.up)
        for i in reversed(range(levels)):
            for _ in range(blocks):
                h = next(up)(jnp.concatenate([h, skips.pop()], axis=-1), emb, context)
            if i > 0:
                h = self.upsample[levels - 1 - i](h, sizes.pop())
        return self.conv_out(nnx.silu(self.norm_out(h)))  # (B, H, W, out_channels)
