"""Presets: everything a run needs, named (data set, backbone, schedule, recipe, sampling defaults).

A :class:`Preset` is a frozen config; its :meth:`~Preset.fingerprint` names the trained
weights (the checkpoint cache and the shipped-weights manifest are keyed by it). Recipes are
module constants next to the measurements that chose them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from flax import nnx

from diffusion_jax import configs, data, sampling
from diffusion_jax.distill import DistillConfig
from diffusion_jax.latent import VAETrainConfig
from diffusion_jax.models import DiT, DiTConfig, UNet, UNetConfig
from diffusion_jax.models.dit import DIT_PRESETS
from diffusion_jax.models.unet import PRESETS as UNET_PRESETS
from diffusion_jax.models.vae import VAE_PRESETS
from diffusion_jax.train import TrainConfig

__all__ = ["Preset", "PRESETS", "STUDENTS", "get_preset", "build_model", "null_label", "image_shape", "model_input_shape"]

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
    vae: VAETrainConfig | None = None  # set: diffuse in this VAE's latent space
    vae_preset: str = "mnist"  # models.vae.VAE_PRESETS key for the autoencoder
    # Latent presets only: also train on the left-right mirror of every image (encoded
    # once, cached like the rest), which doubles a small photo set such as CIFAR's 10k.
    mirror_data: bool = False
    # Set: a student distilled from another preset (diffusion_jax.distill), trained with
    # its objective instead of the diffusion loss; its fingerprint includes the teacher's.
    distill: DistillConfig | None = None
    # The DDIM spacing sampling uses by default (None: each sampler's own default).
    # Distilled students sample on the grid they were distilled for ("trailing").
    sampler_spacing: str | None = None

    @property
    def is_latent(self) -> bool:
        return self.vae is not None

    @property
    def is_flow(self) -> bool:
        """Trained with the rectified-flow objective (sample with "euler" or "heun")."""
        return self.train.objective == "flow"

    @property
    def path(self) -> str:
        """The Gaussian path it was trained on: "flow" (rectified flow) or "vp" (diffusion)."""
        return "flow" if self.is_flow else "vp"

    @property
    def guidance_input(self) -> bool:
        """The network takes the CFG scale as an input: guided sampling costs one prediction per step."""
        return bool(getattr(self.model, "guidance_embed", False))

    @property
    def samplers(self) -> tuple[str, ...]:
        """The registry's samplers that run on this preset's path; the first is the default."""
        names = tuple(n for n, s in sampling.SAMPLERS.items() if self.path in s.paths)
        first = "euler" if self.is_flow else "ddim"
        return (first,) + tuple(n for n in names if n != first)

    def fingerprint(self) -> str:
        """Digest of everything that changes the trained weights (not sampling settings).

        Fields at their defaults are left out (see :mod:`diffusion_jax.configs`), so a new
        option whose default keeps the old behaviour leaves shipped weights valid.
        """
        fields = {"dataset": self.dataset, "model": self.model, "train": self.train, "schedule": self.schedule,
                  "vae": self.vae, "vae_model": VAE_PRESETS[self.vae_preset] if self.vae else None}
        if self.distill is not None:  # only then: every other fingerprint stays as it was
            fields.update(distill=self.distill, teacher=get_preset(self.distill.teacher).fingerprint())
        return configs.digest(fields)


# ≈0.56M-parameter U-Net, v-prediction. Why v and not eps: at the noisy end an eps-model's
# x0 estimate is (x_t - sqrt(1 - ab) eps) / sqrt(ab) with sqrt(ab) < 0.01, so the label's
# effect on eps is tiny and barely trained (measured: eps after 1,500 steps of 128, 20% right
# class unguided, 46% at s = 4; v after 1,300 steps, 86% unguided, 100% at s = 3).
# The recipe was chosen by time to quality (bench/recipe_sweep.py: quality against images
# seen for 12 variants, evaluated every 19.2k images; docs/recipe_sweep.png): batch 64 at
# lr 2e-3 with an EMA warm-up had >= 98% right-class guided samples at 76.8k images (97.8%
# at 57.6k), the earlier batch 128 at lr 1e-3 without warm-up at 134.4k, and both run at
# the same images/s on 2 CPU cores. So: 1,200 steps of 64 = 76.8k images.
_MNIST_TRAIN = TrainConfig(steps=1200, batch_size=64, lr=2e-3, warmup_steps=100, grad_clip=1.0,
                           ema_decay=0.995, ema_warmup=10, cond_dropout=0.1, prediction="v", log_every=50,
                           checkpoint_every=200)
# The DiTs keep the earlier recipe (batch 128, lr 5e-4): the sweep measured the U-Net only.
_DIT_TRAIN = TrainConfig(steps=1200, batch_size=128, lr=5e-4, warmup_steps=100, grad_clip=1.0,
                         ema_decay=0.995, cond_dropout=0.1, prediction="v", log_every=50, checkpoint_every=200)

# A long GPU run: batch 256, EMA 0.999 with warm-up; `steps` is where the run stopped.
_CIFAR_TRAIN = TrainConfig(steps=20000, batch_size=256, lr=5e-4, warmup_steps=500, grad_clip=1.0,
                           ema_decay=0.999, ema_warmup=10, cond_dropout=0.1, prediction="v",
                           log_every=100, checkpoint_every=2000)
_CIFAR_VAE = VAETrainConfig(steps=10000)

PRESETS = {
    "mnist-unet": Preset("mnist-unet", "mnist", UNET_PRESETS["mnist"], _MNIST_TRAIN),
    "fashion-unet": Preset("fashion-unet", "fashion_mnist", UNET_PRESETS["mnist"], _MNIST_TRAIN),
    "mnist-dit": Preset("mnist-dit", "mnist", DiTConfig(patch_size=4, hidden=96, depth=4, num_heads=4), _DIT_TRAIN),
    "cifar10-unet": Preset("cifar10-unet", "cifar10", UNET_PRESETS["cifar10"],
                           dataclasses.replace(_MNIST_TRAIN, steps=6000)),
    # Rectified flow (t = 0 data, t = 1 noise, the model sees 1000 t): the same U-Net and
    # training recipe as mnist-unet, only the objective differs (velocity eps - x0 on the
    # straight path, uniform t). `prediction` is unused by the flow objective.
    "mnist-unet-flow": Preset("mnist-unet-flow", "mnist", UNET_PRESETS["mnist"],
                              dataclasses.replace(_MNIST_TRAIN, objective="flow")),
    # Latent diffusion: a DiT on VAE latents (7x7x4 for MNIST, 8x8x4 for CIFAR-10). Step
    # counts sized so a cache-cold run (VAE, then DiT) takes about ten minutes on 2 CPU
    # cores (lesson 08 reports the measured times and sample quality).
    "mnist-latent-dit": Preset("mnist-latent-dit", "mnist", DIT_PRESETS["latent-mnist"],
                               _DIT_TRAIN, clip_x0=None,
                               vae=VAETrainConfig(steps=400), vae_preset="mnist"),
    # CIFAR-10 in latent space, trained far beyond a laptop's budget (on a GPU; see
    # data/pretrained/manifest.json for the run): 16x16x4 latents from the f=2 VAE, seen
    # by a DiT with 64 tokens (patch 2).
    "cifar10-latent-dit": Preset("cifar10-latent-dit", "cifar10", DIT_PRESETS["latent-cifar-f2-ref"],
                                 _CIFAR_TRAIN, guidance_scale=2.0, clip_x0=None, vae=_CIFAR_VAE,
                                 vae_preset="cifar-f2", mirror_data=True),
}


# Distilled students of mnist-unet (diffusion_jax.distill; lesson 12). The student is the
# teacher's U-Net plus an embedding of the CFG scale s (zero at the start, so round one
# starts as the teacher), v-prediction, no label dropout (it learns the guided model for
# real labels only). Stage 1 (Meng et al. 2023) matches the guided teacher, s in [1, 5], at
# every timestep; each progressive round (Salimans & Ho 2022) then halves the steps,
# 16 -> 8 -> 4 -> 2 on trailing DDIM grids, starting from the previous student's weights.
# Why start at 16: DDIM with eta = 0 is flat from about 10 steps on for this model (lesson
# 07), so a 16-step teacher is already as good as a 50-step one and every round costs
# error; the lr is a fine-tuning rate (the weights start trained).
_DISTILL_TRAIN = TrainConfig(steps=600, batch_size=64, lr=5e-4, warmup_steps=50, grad_clip=1.0, ema_decay=0.995,
                             ema_warmup=10, cond_dropout=0.0, prediction="v", log_every=25, checkpoint_every=100)
_STUDENT_UNET = dataclasses.replace(UNET_PRESETS["mnist"], guidance_embed=True)


def _student(name: str, teacher: str, steps: int | None, sampler_steps: int) -> Preset:
    return Preset(name, "mnist", _STUDENT_UNET, _DISTILL_TRAIN, sampler_steps=sampler_steps,
                  distill=DistillConfig(teacher, steps), sampler_spacing="trailing")


PRESETS.update({
    "mnist-unet-guided": _student("mnist-unet-guided", "mnist-unet", None, 16),
    "mnist-unet-student-8": _student("mnist-unet-student-8", "mnist-unet-guided", 8, 8),
    "mnist-unet-student-4": _student("mnist-unet-student-4", "mnist-unet-student-8", 4, 4),
    "mnist-unet-student-2": _student("mnist-unet-student-2", "mnist-unet-student-4", 2, 2),
})
#: The distilled students by sampling steps (lesson 12, the bench).
STUDENTS = {8: "mnist-unet-student-8", 4: "mnist-unet-student-4", 2: "mnist-unet-student-2"}


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


def image_shape(preset: Preset) -> tuple[int, int, int]:
    """``(H, W, C)`` of the preset's data set."""
    return data.IMAGE_SHAPES[preset.dataset]


def model_input_shape(preset: Preset) -> tuple[int, int, int]:
    """``(H, W, C)`` of what the denoiser sees: the VAE's latents for latent presets, else pixels."""
    if not preset.is_latent:
        return image_shape(preset)
    vae = VAE_PRESETS[preset.vae_preset]
    return (vae.latent_size, vae.latent_size, vae.latent_channels)
