"""Presets and the three verbs of the command line: train, sample, evaluate.

A :class:`Preset` names everything a run needs (data set, backbone, schedule, training
and sampling defaults). Trained weights live in a checkpoint cache,
``data/checkpoints/<preset>-<hash>/``, keyed by the preset's full configuration: the
first use trains (with a progress bar) and later uses load, so lessons and the demo never
train the same model twice.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diffusion_jax import checkpoint as ckpt
from diffusion_jax import data, guidance, latent, samplers, schedules
from diffusion_jax.models import DiT, DiTConfig, UNet, UNetConfig
from diffusion_jax.models.dit import DIT_PRESETS
from diffusion_jax.models.unet import PRESETS as UNET_PRESETS
from diffusion_jax.train import TrainConfig, TrainState, create_train_state, epoch_batch_fn, fit, model_denoiser

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLERS = ("ddim", "ddpm")


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    dataset: str  # a name for data.load_dataset
    model: Any  # UNetConfig or DiTConfig
    train: TrainConfig
    schedule: str = "linear"  # schedules.make_schedule name, T = 1000
    sampler_steps: int = 50  # DDIM steps for sampling and evaluation
    guidance_scale: float = 3.0  # diffusers' s; the CFG paper's w = s - 1 = 2
    clip_x0: float | None = 1.0  # images live in [-1, 1]; None for latents (unit std, unbounded)
    vae: latent.VAETrainConfig | None = None  # set: diffuse in this VAE's latent space
    vae_preset: str = "mnist"  # models.vae.VAE_PRESETS key for the autoencoder

    @property
    def is_latent(self) -> bool:
        return self.vae is not None

    def fingerprint(self) -> str:
        """Hash of everything that changes the trained weights (not sampling settings)."""
        blob = json.dumps(
            {"dataset": self.dataset, "model": type(self.model).__name__, "config": dataclasses.asdict(self.model),
             "train": dataclasses.asdict(self.train), "schedule": self.schedule,
             "vae": dataclasses.asdict(self.vae) if self.vae else None, "vae_preset": self.vae_preset},
            sort_keys=True, default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ≈0.56M-parameter U-Net, 1,200 steps of batch 128 (≈150k images seen, under 10 minutes on
# 2 CPU cores). v-prediction, not eps: at the noisy end an eps-model's x0 estimate is
# (x_t - sqrt(1 - ab) eps) / sqrt(ab) with sqrt(ab) < 0.01, so the label's effect on eps is
# tiny and barely trained. Measured on this preset (classifier agreement, DDIM-50): eps after
# 1,500 steps 20% unguided and 46% at s = 4; v after 1,300 steps 86% unguided, 100% at s = 3.
_MNIST_TRAIN = TrainConfig(steps=1200, batch_size=128, lr=1e-3, warmup_steps=100, grad_clip=1.0,
                           ema_decay=0.995, cond_dropout=0.1, prediction="v", log_every=50,
                           checkpoint_every=200)

PRESETS = {
    "mnist-unet": Preset("mnist-unet", "mnist", UNET_PRESETS["mnist"], _MNIST_TRAIN),
    "fashion-unet": Preset("fashion-unet", "fashion_mnist", UNET_PRESETS["mnist"], _MNIST_TRAIN),
    "mnist-dit": Preset("mnist-dit", "mnist", DiTConfig(patch_size=4, hidden=96, depth=4, num_heads=4),
                        dataclasses.replace(_MNIST_TRAIN, lr=5e-4)),
    "cifar10-unet": Preset("cifar10-unet", "cifar10", UNET_PRESETS["cifar10"],
                           dataclasses.replace(_MNIST_TRAIN, steps=3000)),
    # Latent diffusion: a DiT on VAE latents (7x7x4 for MNIST, 8x8x4 for CIFAR-10).
    "mnist-latent-dit": Preset("mnist-latent-dit", "mnist", DIT_PRESETS["latent-mnist"],
                               dataclasses.replace(_MNIST_TRAIN, lr=5e-4), clip_x0=None,
                               vae=latent.VAETrainConfig(steps=1000), vae_preset="mnist"),
    "cifar10-latent-dit": Preset("cifar10-latent-dit", "cifar10", DIT_PRESETS["latent-cifar"],
                                 dataclasses.replace(_MNIST_TRAIN, lr=5e-4, steps=3000), clip_x0=None,
                                 vae=latent.VAETrainConfig(steps=2000), vae_preset="cifar"),
}


def get_preset(name: str, **train_overrides) -> Preset:
    """A preset by name, with optional :class:`TrainConfig` field overrides (e.g. steps)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    preset = PRESETS[name]
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(train_overrides) - fields)
    if bad:
        raise ValueError(f"unknown training option(s) {bad}; valid: {sorted(fields)}")
    if train_overrides:
        preset = dataclasses.replace(preset, train=dataclasses.replace(preset.train, **train_overrides))
    return preset


def build_model(preset: Preset, seed: int = 0) -> nnx.Module:
    # The "rbg" key type initialises these models 2-3x faster on CPU than threefry.
    rngs = nnx.Rngs(params=jax.random.key(seed, impl="rbg"))
    if isinstance(preset.model, UNetConfig):
        return UNet(preset.model, rngs=rngs)
    if isinstance(preset.model, DiTConfig):
        return DiT(preset.model, rngs=rngs)
    raise TypeError(f"preset.model must be a UNetConfig or DiTConfig, got {type(preset.model).__name__}")


def null_label(preset: Preset) -> int:
    return preset.model.num_classes


def run_dir(preset: Preset, root=None) -> pathlib.Path:
    root = pathlib.Path(root) if root is not None else REPO_ROOT / "data" / "checkpoints"
    return root / f"{preset.name}-{preset.fingerprint()}"


@functools.lru_cache(maxsize=4)
def codec(preset: Preset) -> latent.LatentCodec:
    """The preset's VAE (trained once, then cached) with its measured latent scale."""
    if not preset.is_latent:
        raise ValueError(f"preset {preset.name!r} diffuses in pixel space; it has no VAE")
    images = data.load_dataset(preset.dataset, "train").images
    graphdef, params = latent.train_vae(preset.dataset, preset.vae_preset, preset.vae)
    return latent.make_codec(graphdef, params, images)


def training_data(preset: Preset):
    """``(x, labels)``: images in [-1, 1], or their cached scaled latents for latent presets."""
    ds = data.load_dataset(preset.dataset, "train")
    if preset.is_latent:
        return latent.encode_dataset(codec(preset), ds.images, name=f"{preset.dataset}-train"), ds.labels
    return data.to_float(ds.images), ds.labels  # (N, H, W, C) in [-1, 1]


def train(preset: Preset, *, root=None, progress: bool = True) -> TrainState:
    """Train ``preset`` to ``preset.train.steps`` or load it from the checkpoint cache.

    Training resumes from the newest checkpoint of an interrupted run of the same config.
    """
    out = run_dir(preset, root)
    schedule = schedules.make_schedule(preset.schedule)
    last = ckpt.latest_checkpoint(out / "checkpoints")
    if last is not None and ckpt.read_metadata(last).get("step") == preset.train.steps:
        return _restore(preset, last)
    state = create_train_state(build_model(preset, preset.train.seed), preset.train)
    x, labels = training_data(preset)
    batch_fn = epoch_batch_fn(jax.random.key(preset.train.seed), x, labels, preset.train.batch_size)
    (out).mkdir(parents=True, exist_ok=True)
    (out / "preset.json").write_text(json.dumps(dataclasses.asdict(preset), indent=1, default=str))
    return fit(state, preset.train, schedule, batch_fn, out_dir=out, null_label=null_label(preset),
               progress=progress)


def load_trained(preset: Preset, *, root=None) -> TrainState:
    """The finished run of ``preset`` from the cache; a clear error if it was never trained."""
    last = ckpt.latest_checkpoint(run_dir(preset, root) / "checkpoints")
    if last is None or ckpt.read_metadata(last).get("step") != preset.train.steps:
        raise FileNotFoundError(
            f"no finished checkpoint for preset {preset.name!r} with steps={preset.train.steps} under "
            f"{run_dir(preset, root)}; train it first: diffusion-jax train --preset {preset.name}"
            + (f" --steps {preset.train.steps}" if preset.train.steps != PRESETS[preset.name].train.steps else ""))
    return _restore(preset, last)


def _restore(preset: Preset, path) -> TrainState:
    # Restore into an abstract skeleton: initialising real weights only to overwrite them
    # costs seconds on CPU (every parameter shape compiles its own RNG kernel).
    abstract = jax.eval_shape(lambda: create_train_state(build_model(preset, preset.train.seed), preset.train))
    return jax.device_put(ckpt.restore_checkpoint(path, abstract))


def sample(key, state: TrainState, preset: Preset, labels, *, sampler: str = "ddim", num_steps: int | None = None,
           guidance_scale: float | None = None, eta: float = 0.0, batch_size: int = 500):
    """Class-conditional images ``(N, H, W, C)`` in [-1, 1] from the EMA weights, with CFG.

    Rows are generated in chunks of ``batch_size``; chunk ``j`` uses the key
    ``fold_in(key, j * batch_size)``, so the same key and batch size give the same images.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {list(SAMPLERS)}")
    labels = np.asarray(labels, np.int32)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array of class ids, got shape {labels.shape}")
    if labels.min() < 0 or labels.max() > null_label(preset):
        raise ValueError(f"labels must lie in [0, {null_label(preset)}] ({null_label(preset)} = unconditional)")
    schedule = schedules.make_schedule(preset.schedule)
    scale = preset.guidance_scale if guidance_scale is None else guidance_scale
    steps = preset.sampler_steps if num_steps is None else num_steps
    denoise = guidance.guided_denoiser(model_denoiser(state.graphdef, state.ema_params, state.rest),
                                       scale, null_label(preset))
    hwc = codec(preset).latent_shape if preset.is_latent else image_shape(preset)
    out = []
    for start in range(0, len(labels), batch_size):
        chunk = jnp.asarray(labels[start:start + batch_size])
        shape = (len(chunk),) + hwc
        chunk_key = jax.random.fold_in(key, start)
        if sampler == "ddim":
            x = samplers.ddim_sample(chunk_key, denoise, schedule, shape, chunk, num_steps=steps, eta=eta,
                                     prediction=preset.train.prediction, clip_x0=preset.clip_x0)
        else:
            x = samplers.ddpm_sample(chunk_key, denoise, schedule, shape, chunk,
                                     prediction=preset.train.prediction, clip_x0=preset.clip_x0)
        out.append(codec(preset).decode(np.asarray(x)) if preset.is_latent else np.asarray(x))
    return np.clip(np.concatenate(out), -1.0, 1.0)


def image_shape(preset: Preset) -> tuple[int, int, int]:
    """``(H, W, C)`` of the preset's data set."""
    return {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}[preset.dataset]
