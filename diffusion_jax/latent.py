"""Latent diffusion plumbing: train (and cache) a VAE, scale its latents, cache encodings.

:func:`train_vae` trains the :class:`~diffusion_jax.models.vae.VAE` (one plain ``jax.jit``
Adam step) and caches its params, keyed by configs + data digest. A :class:`LatentCodec`
maps images to the posterior *mean* times a ``scale`` that :func:`make_codec` measures on
training images (how SD's 0.18215 was found), and back. :func:`encode_dataset` caches a
dataset's latents keyed by the VAE's :func:`fingerprint`. Nothing is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import math
import re
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from diffusion_jax import checkpoint as ckpt
from diffusion_jax import paths
from diffusion_jax.data import as_float, load_dataset
from diffusion_jax.models.vae import (
    VAE,
    VAE_PRESETS,
    VAEConfig,
    latent_scale_factor,
    vae_loss,
)

__all__ = ["VAETrainConfig", "value_counts", "fingerprint", "vae_skeleton", "train_vae", "LatentCodec",
           "make_codec", "encode_dataset"]

log = logging.getLogger(__name__)
_REPO_ROOT = Path(__file__).resolve().parent.parent
_FORMAT = 1  # bump when the training recipe changes, so old caches are not reused
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclasses.dataclass(frozen=True)
class VAETrainConfig:
    # MNIST preset, batch 128, 5k subset: held-out MSE 0.024 after 160 steps, 0.016 after
    # 310 and still falling; 1,000 for a finished VAE, ~300 is a usable fast mode.
    steps: int = 1000
    batch_size: int = 128  # images per update
    lr: float = 1e-3  # constant Adam learning rate (GroupNorm VAE: no warm-up needed)
    # vae_loss = per-pixel MEAN squared error + kl_weight * per-image SUM of KL (196 latent
    # values on MNIST). At 1e-4 the KL settles near 150-180 nats (~0.8 per value) and costs
    # ~0.016, a third of the loss: latents stay near unit scale (make_codec measured 1.2-1.3)
    # yet keep the strokes. 1e-3 would blur digits; 1e-6 (SD's, for a summed loss) lets the
    # latent scale drift freely.
    kl_weight: float = 1e-4
    seed: int = 0  # init key and the order of the batches


def _check_shape(shape, name: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in shape)
    except TypeError:
        raise ValueError(f"{name} must be a shape such as (H, W, C), got {shape!r}") from None
    if not dims or any(d < 1 or d != s for d, s in zip(dims, shape)):
        raise ValueError(f"{name} must be a non-empty tuple of positive ints (H, W, C), got {shape!r}")
    return dims


def value_counts(pixel_shape, latent_shape) -> dict:
    """How many numbers one image and one latent hold, and the two reductions.

    ``pixel_shape`` ``(H, W, C)`` and ``latent_shape`` ``(h, w, c)``: returns
    ``{"pixel_values": H*W*C, "latent_values": h*w*c, "scalar_reduction":
    pixel_values / latent_values, "spatial_reduction": (H*W) / (h*w)}``; a reduction is
    an ``int`` when it divides exactly, else a ``float``. The denoiser runs on the latent
    at every sampling step, so these ratios bound how much smaller its input gets; they
    are not speed-ups (those depend on the network and must be measured).
    """
    pix, lat = _check_shape(pixel_shape, "pixel_shape"), _check_shape(latent_shape, "latent_shape")
    if len(pix) != 3 or len(lat) != 3:
        raise ValueError(f"pixel_shape and latent_shape must both be (H, W, C), got {pix} and {lat}")

    def ratio(a: int, b: int):
        return a // b if a % b == 0 else a / b

    pixel_values, latent_values = math.prod(pix), math.prod(lat)
    return {"pixel_values": pixel_values, "latent_values": latent_values,
            "scalar_reduction": ratio(pixel_values, latent_values),
            "spatial_reduction": ratio(pix[0] * pix[1], lat[0] * lat[1])}



def _digest(a) -> str:
    """SHA-256 of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(jax.device_get(a))
    h = hashlib.sha256(f"{a.dtype}|{a.shape}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def fingerprint(params) -> str:
    """SHA-256 over every leaf's key path, dtype, shape and bytes: identifies a VAE's weights."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        a = np.ascontiguousarray(jax.device_get(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _as_float(images) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return as_float(images)
    if not np.issubdtype(images.dtype, np.floating):
        raise TypeError(f"images must be uint8 or float in [-1, 1], got {images.dtype}")
    if images.size and (images.min() < -1.01 or images.max() > 1.01):
        raise ValueError(f"float images must lie in [-1, 1], got [{images.min():.3g}, {images.max():.3g}]")
    return images.astype(np.float32)


@functools.lru_cache(maxsize=8)
def _make_step(graphdef, lr: float, kl_weight: float):
    tx = optax.adam(lr)

    def step(params, opt_state, key, batch):
        x = batch.astype(jnp.float32) / 127.5 - 1.0 if batch.dtype == jnp.uint8 else batch

        def loss_fn(p):
            x_hat, mean, logvar = nnx.merge(graphdef, p)(x, key)
            return vae_loss(x, x_hat, mean, logvar, kl_weight)

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics

    return tx, jax.jit(step, donate_argnums=(0, 1))


def vae_skeleton(preset: str | VAEConfig):
    """``(graphdef, abstract params)`` of a VAE: the shapes to load weights into, no compute."""
    cfg = VAE_PRESETS[preset] if isinstance(preset, str) else preset
    return nnx.split(nnx.eval_shape(lambda: VAE(cfg, rngs=nnx.Rngs(0))), nnx.Param)


def _init_params(vae_cfg: VAEConfig, seed: int):
    # Eager, with an "rbg" key: compiling threefry for every parameter shape (or the whole
    # init under jit) costs several seconds of CPU; eager ops are compiled once per shape.
    return nnx.split(VAE(vae_cfg, rngs=nnx.Rngs(jax.random.key(seed, impl="rbg"))), nnx.Param)


def _train_loop(graphdef, params, images, config: VAETrainConfig, progress: bool):
    """Adam on shuffled epochs; returns (params, history of window-mean metrics)."""
    n, bs = len(images), config.batch_size
    if n < bs:
        raise ValueError(f"batch_size {bs} needs at least that many images, got {n}")
    tx, step_fn = _make_step(graphdef, float(config.lr), float(config.kl_weight))
    opt_state = tx.init(params)
    key, rng = jax.random.key(config.seed, impl="rbg"), np.random.default_rng(config.seed)
    log_every, per_epoch = max(1, config.steps // 20), n // bs
    history, pending, order = [], [], None
    with tqdm(total=config.steps, desc="vae", unit="step", disable=not progress) as bar:
        for s in range(config.steps):
            if s % per_epoch == 0:
                order = rng.permutation(n)
            batch = images[order[(s % per_epoch) * bs:][:bs]]
            params, opt_state, m = step_fn(params, opt_state, jax.random.fold_in(key, s), batch)
            pending.append(m)
            if (s + 1) % log_every and s + 1 != config.steps:
                continue
            window = jax.device_get(pending)
            rec = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
            if not np.isfinite(rec["loss"]):
                raise FloatingPointError(f"VAE training diverged by step {s + 1}: {rec}; lower lr")
            history.append({"step": s + 1, **rec})
            bar.update(len(pending))
            bar.set_postfix(loss=f"{rec['loss']:.4f}", recon=f"{rec['recon']:.4f}")
            pending = []
    return params, history


def train_vae(dataset, preset: str | VAEConfig = "mnist", config: VAETrainConfig = VAETrainConfig(),
              *, cache_dir="data/checkpoints", progress: bool = True):
    """Train a VAE on ``dataset`` (or load the cached one): returns ``(graphdef, params)``.

    ``dataset``: a :func:`~diffusion_jax.data.load_dataset` name (its train split) or an
    ``(images, labels)`` pair with images ``(N, H, W, C)`` uint8 (or float in [-1, 1]).
    ``preset``: a key of ``VAE_PRESETS`` or a :class:`VAEConfig`. A relative ``cache_dir``
    is taken from the repository root (else the current directory). The run is saved in
    ``cache_dir/vae-<name>-<hash>/step_<steps>/`` with the configs, data digest and loss
    history in its ``meta.json``; an unreadable cache is reported and retrained.
    """
    if isinstance(dataset, str):
        name, images = dataset, load_dataset(dataset, "train").images
    else:
        name, images = "custom", np.asarray(dataset[0])
    if isinstance(preset, str) and preset not in VAE_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(VAE_PRESETS)} or a VAEConfig")
    vae_cfg = VAE_PRESETS[preset] if isinstance(preset, str) else preset
    want = (vae_cfg.input_size, vae_cfg.input_size, vae_cfg.in_channels)
    if images.ndim != 4 or images.shape[1:] != want:
        raise ValueError(f"images of shape {images.shape} do not fit the VAE config: expected (N, *{want})")
    keyed = {"format": _FORMAT, "train": dataclasses.asdict(config),
             "vae": dataclasses.asdict(vae_cfg), "data": _digest(images)}
    run_dir = paths.keyed_path(cache_dir, f"vae-{name}", keyed)

    def load(run_dir):
        graphdef, abstract = vae_skeleton(vae_cfg)
        params = jax.tree.map(jnp.asarray, ckpt.restore_checkpoint(run_dir, abstract))
        log.info("loaded VAE from %s", run_dir)
        return graphdef, params

    def build(run_dir):
        graphdef, params = _init_params(vae_cfg, config.seed)
        t0 = time.perf_counter()
        params, history = _train_loop(graphdef, params, images, config, progress)
        meta = {**keyed, "step": config.steps, "dataset": name, "num_images": len(images),
                "train_seconds": time.perf_counter() - t0, "history": history}
        ckpt.save_checkpoint(run_dir, params, meta, keep=1)
        log.info("trained VAE saved to %s", run_dir)
        return graphdef, params

    return paths.cached(run_dir, load, build, what="VAE", present=lambda d: ckpt.latest_checkpoint(d) is not None)


@functools.partial(jax.jit, static_argnums=0)
def _encode(graphdef, params, x, scale):
    return nnx.merge(graphdef, params).encode(x)[0] * scale  # posterior mean, scaled


@functools.partial(jax.jit, static_argnums=0)
def _decode(graphdef, params, z, scale):
    return jnp.clip(nnx.merge(graphdef, params).decode(z / scale), -1.0, 1.0)


def _batched(fn, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``fn`` over fixed-size chunks (the last one zero-padded: one compile per call)."""
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"expected a non-empty batch (B, H, W, C), got shape {x.shape}")
    bs, out = min(batch_size, len(x)), []
    for i in range(0, len(x), bs):
        chunk = x[i:i + bs]
        k = len(chunk)
        if k < bs:
            chunk = np.concatenate([chunk, np.zeros((bs - k, *chunk.shape[1:]), chunk.dtype)])
        out.append(np.asarray(fn(chunk))[:k])
    return np.concatenate(out)


@dataclasses.dataclass(frozen=True, eq=False)
class LatentCodec:
    """A trained VAE as an image <-> scaled-latent map. ``latents = mean(q(z|x)) * scale``."""

    graphdef: nnx.GraphDef
    params: nnx.State
    scale: float

    @property
    def config(self) -> VAEConfig:
        return nnx.merge(self.graphdef, self.params).config

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        c = self.config
        return (c.latent_size, c.latent_size, c.latent_channels)

    def encode(self, images, *, batch_size: int = 256) -> np.ndarray:
        """Images ``(N, H, W, C)`` uint8 or float in [-1, 1] -> float32 ``(N, h, w, c)``."""
        x = _as_float(images)
        return _batched(lambda b: _encode(self.graphdef, self.params, b, self.scale), x, batch_size)

    def decode(self, latents, *, batch_size: int = 256) -> np.ndarray:
        """Scaled latents ``(N, h, w, c)`` -> float32 images in [-1, 1] (clipped)."""
        z = np.asarray(latents, np.float32)
        return _batched(lambda b: _decode(self.graphdef, self.params, b, self.scale), z, batch_size)


def make_codec(graphdef, params, images, *, num: int = 2000, seed: int = 0) -> LatentCodec:
    """A codec whose ``scale`` makes the encoded means of ``num`` of ``images`` unit-std.

    The ``num`` images are a fixed random subset (files are often sorted by class).
    """
    images = np.asarray(images)
    if len(images) > num:
        images = images[np.sort(np.random.default_rng(seed).choice(len(images), num, replace=False))]
    means = LatentCodec(graphdef, params, 1.0).encode(images)
    return LatentCodec(graphdef, params, latent_scale_factor(means))


def _load_latents(path: Path, fp: str, scale: float, shape: tuple) -> np.ndarray:
    with np.load(path, allow_pickle=False) as f:
        latents, stored = f["latents"], {k: f[k].item() for k in ("fingerprint", "scale", "sha256")}
    if stored["fingerprint"] != fp or stored["scale"] != scale:
        raise ValueError("it was written by a different codec (fingerprint or scale differ)")
    if latents.shape != shape or latents.dtype != np.float32:
        raise ValueError(f"latents have shape {latents.shape} {latents.dtype}, expected {shape} float32")
    if _digest(latents) != stored["sha256"]:
        raise ValueError("the latents do not match their stored SHA-256")
    return latents


def encode_dataset(codec: LatentCodec, images, *, name: str, cache_dir="data/cache") -> np.ndarray:
    """``codec.encode(images)``, cached as ``cache_dir/latents-<name>-<fp16>-<data16>.npz``.

    ``fp16`` is the start of the VAE's :func:`fingerprint` (another checkpoint, another
    file); ``data16`` that of the images' digest. A corrupt or mismatched file is reported
    with a warning and re-encoded.
    """
    if not _SAFE_NAME.match(name):
        raise ValueError(f"name must match {_SAFE_NAME.pattern} (it becomes a file name), got {name!r}")
    images = np.asarray(images)
    fp = fingerprint(codec.params)
    path = paths.resolve(cache_dir) / f"latents-{name}-{fp[:16]}-{_digest(images)[:16]}.npz"
    shape = (len(images), *codec.latent_shape)

    def build(path):
        latents = codec.encode(images).astype(np.float32)
        ckpt.atomic_savez(path, latents=latents, fingerprint=np.str_(fp), scale=np.float64(codec.scale),
                          sha256=np.str_(_digest(latents)))
        return latents

    return paths.cached(path, lambda p: _load_latents(p, fp, float(codec.scale), shape), build, what="latent")
