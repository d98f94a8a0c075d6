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
from diffusion_jax import configs, data, flow, guidance, latent, paths, samplers, schedules
from diffusion_jax.models import DiT, DiTConfig, UNet, UNetConfig, forward_flops
from diffusion_jax.models.dit import DIT_PRESETS
from diffusion_jax.models.unet import PRESETS as UNET_PRESETS
from diffusion_jax.models.vae import VAE_PRESETS
from diffusion_jax.train import (
    TrainConfig,
    TrainState,
    create_train_state,
    epoch_batch_fn,
    fit,
    model_denoiser,
    model_velocity,
)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DIFFUSION_SAMPLERS = ("ddim", "ddpm")  # for presets trained with objective="diffusion"
FLOW_SAMPLERS = ("euler", "heun")  # for presets trained with objective="flow"
SAMPLERS = DIFFUSION_SAMPLERS + FLOW_SAMPLERS


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
    # Latent presets only: also train on the left-right mirror of every image (encoded
    # once, cached like the rest), which doubles a small photo set such as CIFAR's 10k.
    mirror_data: bool = False

    @property
    def is_latent(self) -> bool:
        return self.vae is not None

    @property
    def is_flow(self) -> bool:
        """Trained with the rectified-flow objective (sample with "euler" or "heun")."""
        return self.train.objective == "flow"

    @property
    def samplers(self) -> tuple[str, ...]:
        """The sampler names :func:`sample` accepts for this preset."""
        return FLOW_SAMPLERS if self.is_flow else DIFFUSION_SAMPLERS

    def fingerprint(self) -> str:
        """Digest of everything that changes the trained weights (not sampling settings).

        Fields at their defaults are left out (see :mod:`diffusion_jax.configs`), so a new
        option whose default keeps the old behaviour leaves shipped weights valid.
        """
        return configs.digest({"dataset": self.dataset, "model": self.model, "train": self.train,
                               "schedule": self.schedule, "vae": self.vae,
                               "vae_model": VAE_PRESETS[self.vae_preset] if self.vae else None})


# ≈0.56M-parameter U-Net, 1,200 steps of batch 128 (≈150k images seen, under 10 minutes on
# 2 CPU cores). v-prediction, not eps: at the noisy end an eps-model's x0 estimate is
# (x_t - sqrt(1 - ab) eps) / sqrt(ab) with sqrt(ab) < 0.01, so the label's effect on eps is
# tiny and barely trained. Measured on this preset (classifier agreement, DDIM-50): eps after
# 1,500 steps 20% unguided and 46% at s = 4; v after 1,300 steps 86% unguided, 100% at s = 3.
_MNIST_TRAIN = TrainConfig(steps=1200, batch_size=128, lr=1e-3, warmup_steps=100, grad_clip=1.0,
                           ema_decay=0.995, cond_dropout=0.1, prediction="v", log_every=50,
                           checkpoint_every=200)

# A long GPU run: batch 256, EMA 0.999 with warm-up; `steps` is where the run stopped.
_CIFAR_TRAIN = TrainConfig(steps=20000, batch_size=256, lr=5e-4, warmup_steps=500, grad_clip=1.0,
                           ema_decay=0.999, ema_warmup=10, cond_dropout=0.1, prediction="v",
                           log_every=100, checkpoint_every=2000)
_CIFAR_VAE = latent.VAETrainConfig(steps=10000)

PRESETS = {
    "mnist-unet": Preset("mnist-unet", "mnist", UNET_PRESETS["mnist"], _MNIST_TRAIN),
    "fashion-unet": Preset("fashion-unet", "fashion_mnist", UNET_PRESETS["mnist"], _MNIST_TRAIN),
    "mnist-dit": Preset("mnist-dit", "mnist", DiTConfig(patch_size=4, hidden=96, depth=4, num_heads=4),
                        dataclasses.replace(_MNIST_TRAIN, lr=5e-4)),
    "cifar10-unet": Preset("cifar10-unet", "cifar10", UNET_PRESETS["cifar10"],
                           dataclasses.replace(_MNIST_TRAIN, steps=3000)),
    # Rectified flow (t = 0 data, t = 1 noise, the model sees 1000 t): the same U-Net and
    # training recipe as mnist-unet, only the objective differs (velocity eps - x0 on the
    # straight path, uniform t). `prediction` is unused by the flow objective.
    "mnist-unet-flow": Preset("mnist-unet-flow", "mnist", UNET_PRESETS["mnist"],
                              dataclasses.replace(_MNIST_TRAIN, objective="flow")),
    # Latent diffusion: a DiT on VAE latents (7x7x4 for MNIST, 8x8x4 for CIFAR-10). Step
    # counts sized so a cache-cold run (VAE, then DiT) takes about ten minutes on 2 CPU
    # cores (lesson 08 reports the measured times and sample quality).
    "mnist-latent-dit": Preset("mnist-latent-dit", "mnist", DIT_PRESETS["latent-mnist"],
                               dataclasses.replace(_MNIST_TRAIN, lr=5e-4), clip_x0=None,
                               vae=latent.VAETrainConfig(steps=400), vae_preset="mnist"),
    # CIFAR-10 in latent space, trained far beyond a laptop's budget (on a GPU; see
    # data/pretrained/manifest.json for the run): 16x16x4 latents from the f=2 VAE, seen
    # by a DiT with 64 tokens (patch 2).
    "cifar10-latent-dit": Preset("cifar10-latent-dit", "cifar10", DIT_PRESETS["latent-cifar-f2-ref"],
                                 _CIFAR_TRAIN, clip_x0=None, vae=_CIFAR_VAE, vae_preset="cifar-f2",
                                 mirror_data=True),
}


def get_preset(name: str, *, vae_steps: int | None = None, **train_overrides) -> Preset:
    """A preset by name, with optional :class:`TrainConfig` field overrides (e.g. steps).

    ``vae_steps`` (latent presets only) overrides the VAE's training steps, e.g. a tiny
    value for a smoke run; it changes the VAE, hence the latents and the fingerprint.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    preset = PRESETS[name]
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(train_overrides) - fields)
    if bad:
        raise ValueError(f"unknown training option(s) {bad}; valid: {sorted(fields)}")
    if train_overrides:
        preset = dataclasses.replace(preset, train=dataclasses.replace(preset.train, **train_overrides))
    if vae_steps is not None:
        if not preset.is_latent:
            raise ValueError(f"vae_steps is only for latent presets; {name!r} diffuses in pixel space")
        if int(vae_steps) != vae_steps or vae_steps < 1:
            raise ValueError(f"vae_steps must be a positive integer, got {vae_steps!r}")
        preset = dataclasses.replace(preset, vae=dataclasses.replace(preset.vae, steps=int(vae_steps)))
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
    root = pathlib.Path(root) if root is not None else paths.cache_root() / "checkpoints"
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
        z = latent.encode_dataset(codec(preset), ds.images, name=f"{preset.dataset}-train")
        if not preset.mirror_data:
            return z, ds.labels
        mirrored = np.ascontiguousarray(ds.images[:, :, ::-1])  # (N, H, W, C) flipped left-right
        z_m = latent.encode_dataset(codec(preset), mirrored, name=f"{preset.dataset}-train-mirrored")
        return np.concatenate([z, z_m]), np.concatenate([ds.labels, ds.labels])
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


def denoiser_evaluations(sampler: str, num_steps: int, num_timesteps: int = 1000) -> int:
    """How many times ``sampler`` calls the (guided) denoiser for ``num_steps`` steps.

    DDIM and Euler: one per step; DDPM: every one of the ``num_timesteps`` steps; Heun:
    two per step except the last, which is a plain Euler step (``2 * num_steps - 1``).
    With CFG each evaluation runs the conditional and unconditional rows in one batch.
    """
    from diffusion_jax import tradeoffs  # the one place that knows each sampler's stage count

    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {list(SAMPLERS)}")
    return tradeoffs.denoiser_evaluations(num_timesteps if sampler == "ddpm" else num_steps, sampler=sampler)


def sample(key, state: TrainState, preset: Preset, labels, *, sampler: str | None = None,
           num_steps: int | None = None, guidance_scale: float | None = None, eta: float = 0.0,
           shift: float = 1.0, batch_size: int = 500):
    """Class-conditional images ``(N, H, W, C)`` in [-1, 1] from the EMA weights, with CFG.

    ``sampler``: ``"ddim"`` (default) or ``"ddpm"`` for diffusion presets; ``"euler"``
    (default) or ``"heun"`` for flow presets (:attr:`Preset.is_flow`), which integrate the
    guided velocity from t = 1 to 0 in ``num_steps`` steps on :func:`flow.time_grid`
    with SD3's ``shift`` (``eta`` must stay 0 there: the ODE has no noise). Guidance is
    the same for both: :func:`guidance.guided_denoiser` around the model's output.
    Rows are generated in chunks of ``batch_size``; chunk ``j`` uses the key
    ``fold_in(key, j * batch_size)``, so the same key and batch size give the same images
    (and the same starting noise x_T for every sampler).
    """
    if sampler is None:
        sampler = preset.samplers[0]
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {list(SAMPLERS)}")
    if sampler not in preset.samplers:
        kind = "a rectified-flow" if preset.is_flow else "a diffusion"
        raise ValueError(f"preset {preset.name!r} is {kind} model: sampler must be one of "
                         f"{list(preset.samplers)}, got {sampler!r}")
    if preset.is_flow and eta != 0.0:
        raise ValueError(f"eta must be 0 for flow samplers (deterministic ODE), got {eta}")
    labels = np.asarray(labels, np.int32)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array of class ids, got shape {labels.shape}")
    if labels.min() < 0 or labels.max() > null_label(preset):
        raise ValueError(f"labels must lie in [0, {null_label(preset)}] ({null_label(preset)} = unconditional)")
    schedule = schedules.make_schedule(preset.schedule)
    scale = preset.guidance_scale if guidance_scale is None else guidance_scale
    steps = preset.sampler_steps if num_steps is None else num_steps
    model_fn = model_velocity if preset.is_flow else model_denoiser
    denoise = guidance.guided_denoiser(model_fn(state.graphdef, state.ema_params, state.rest),
                                       scale, null_label(preset))
    hwc = codec(preset).latent_shape if preset.is_latent else image_shape(preset)
    out = []
    for start in range(0, len(labels), batch_size):
        chunk = jnp.asarray(labels[start:start + batch_size])
        shape = (len(chunk),) + hwc
        chunk_key = jax.random.fold_in(key, start)
        if sampler in FLOW_SAMPLERS:
            integrate = flow.euler_sample if sampler == "euler" else flow.heun_sample
            x = integrate(chunk_key, denoise, shape, chunk, num_steps=steps, shift=shift)
        elif sampler == "ddim":
            x = samplers.ddim_sample(chunk_key, denoise, schedule, shape, chunk, num_steps=steps, eta=eta,
                                     prediction=preset.train.prediction, clip_x0=preset.clip_x0)
        else:
            x = samplers.ddpm_sample(chunk_key, denoise, schedule, shape, chunk,
                                     prediction=preset.train.prediction, clip_x0=preset.clip_x0)
        out.append(codec(preset).decode(np.asarray(x)) if preset.is_latent else np.asarray(x))
    return np.clip(np.concatenate(out), -1.0, 1.0)


def model_input_shape(preset: Preset) -> tuple[int, int, int]:
    """``(H, W, C)`` of what the denoiser sees: latents for latent presets, else pixels."""
    if not preset.is_latent:
        return image_shape(preset)
    if isinstance(preset.model, DiTConfig):
        return (preset.model.input_size, preset.model.input_size, preset.model.in_channels)
    return codec(preset).latent_shape


def image_shape(preset: Preset) -> tuple[int, int, int]:
    """``(H, W, C)`` of the preset's data set."""
    return {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}[preset.dataset]


def forward_cost(preset: Preset, state: TrainState | None = None, *, batch_size: int = 64,
                 repeats: int = 5, seed: int = 0) -> dict:
    """Measured cost of ONE denoiser forward of ``preset``'s model at ``batch_size`` rows.

    Returns ``{"input_shape", "gflops_per_image" (XLA cost analysis), "ms_per_forward"
    (median wall time of ``repeats`` jitted calls after one warm-up),
    "ms_per_image"}``. The weights (``state``'s EMA, else a fresh init) do not change
    the cost. The model works on latents for latent presets, pixels otherwise.
    """
    if batch_size < 1 or repeats < 1:
        raise ValueError(f"batch_size and repeats must be >= 1, got {batch_size}, {repeats}")
    model = state.model() if state is not None else build_model(preset, seed)
    hwc = model_input_shape(preset)
    x = jnp.zeros((batch_size,) + hwc)  # (B, H, W, C)
    t = jnp.full((batch_size,), 500, jnp.int32)
    y = jnp.zeros((batch_size,), jnp.int32)
    flops = forward_flops(model, x, t, y) / batch_size
    graphdef, params = nnx.split(model)
    forward = jax.jit(lambda p, x, t, y: nnx.merge(graphdef, p)(x, t, y))
    return {"input_shape": hwc, "gflops_per_image": flops / 1e9,
            **_timed(lambda: forward(params, x, t, y), batch_size, repeats)}


def decode_cost(preset: Preset, *, batch_size: int = 64, repeats: int = 5) -> dict:
    """Cost of decoding ``batch_size`` latents with ``preset``'s VAE (once per sample).

    Same keys as :func:`forward_cost`; ``input_shape`` is the latent shape.
    """
    if batch_size < 1 or repeats < 1:
        raise ValueError(f"batch_size and repeats must be >= 1, got {batch_size}, {repeats}")
    c = codec(preset)
    vae = nnx.merge(c.graphdef, c.params)
    z = jnp.zeros((batch_size,) + c.latent_shape)  # (B, h, w, c)
    flops = forward_flops(vae.decoder, z) / batch_size
    graphdef, params = nnx.split(vae.decoder)
    decode = jax.jit(lambda p, z: nnx.merge(graphdef, p)(z))
    return {"input_shape": c.latent_shape, "gflops_per_image": flops / 1e9,
            **_timed(lambda: decode(params, z), batch_size, repeats)}


def _timed(fn, batch_size: int, repeats: int) -> dict:
    import time

    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    ms = 1000.0 * float(np.median(times))
    return {"ms_per_forward": ms, "ms_per_image": ms / batch_size}
