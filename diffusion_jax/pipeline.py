"""Train or load a preset, and sample it: the verbs the CLI, the demo and the lessons use.

:func:`train` returns a preset's trained state from the first place that has it:

1. the shipped reference weights in ``data/pretrained/`` (:mod:`diffusion_jax.pretrained`)
   when the preset's fingerprint matches the manifest and the file's checksum is right:
   seconds, no training (skipped with ``retrain=True``);
2. the checkpoint cache ``data/checkpoints/<preset>-<fingerprint>/`` of a finished run;
3. training, which resumes an interrupted run of the same configuration. A distilled
   preset (``preset.distill``) first gets its teacher the same way, recursively, then
   trains with the distillation objective (:mod:`diffusion_jax.distill`) starting from
   the teacher's weights.

:func:`denoiser` wraps the EMA weights as a :class:`~diffusion_jax.denoisers.Denoiser` that
knows the preset's parameterisation (and applies guidance), and :func:`sample` draws
class-conditional images with any sampler of the registry (:mod:`diffusion_jax.sampling`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import sys

import jax
import numpy as np

from diffusion_jax import checkpoint as ckpt
from diffusion_jax._checks import check_int, check_key, check_labels, check_number
from diffusion_jax import configs, data, distill, latent, paths, pretrained, sampling, schedules
from diffusion_jax.denoisers import Denoiser
from diffusion_jax.models.vae import VAE_PRESETS
from diffusion_jax.presets import PRESETS, Preset, build_model, get_preset, image_shape, model_input_shape, null_label
from diffusion_jax.train import FLOW_TIME_SCALE, TrainState, create_train_state, epoch_batch_fn, fit, model_denoiser

__all__ = ["Preset", "PRESETS", "get_preset", "build_model", "null_label", "image_shape", "model_input_shape",
           "run_dir", "training_log", "shipped_record", "vae_fingerprint", "codec", "training_data", "train",
           "load_trained", "denoiser", "sample", "SOURCES"]

#: Where :func:`load_trained` may take weights from.
SOURCES = ("auto", "shipped", "cache")


def _check_preset(preset) -> Preset:
    if not isinstance(preset, Preset):
        raise TypeError(f"preset must be a Preset, e.g. pipeline.get_preset('mnist-unet'), got "
                        f"{type(preset).__name__} {preset!r}")
    return preset


def _note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_dir(preset: Preset, root=None) -> pathlib.Path:
    """The checkpoint folder of ``preset``'s own training run."""
    root = pathlib.Path(root) if root is not None else paths.cache_root() / "checkpoints"
    return root / f"{preset.name}-{preset.fingerprint()}"


def training_log(preset: Preset, root=None) -> list[dict]:
    """The training loss curve of ``preset``: rows ``{"step", "loss", ...}`` sorted by step.

    From the run folder's ``log.jsonl`` when this machine trained the preset, else the
    curve recorded with the shipped weights (same fingerprint only), else ``[]``.
    """
    path = run_dir(preset, root) / "log.jsonl"
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    else:
        rows = (shipped_record(preset) or {}).get("training_log", [])
    return sorted({r["step"]: r for r in rows}.values(), key=lambda r: r["step"])  # a resumed run repeats steps


def shipped_record(preset: Preset) -> dict | None:
    """The manifest entry of ``preset``'s shipped weights (how they were made, their scores),
    or None when none are shipped for its current fingerprint."""
    entry = pretrained.find(preset.name)
    return entry if entry is not None and entry.get("fingerprint") == preset.fingerprint() else None


def vae_fingerprint(preset: Preset) -> str:
    """Digest of what makes the preset's VAE: data set, VAE recipe and architecture."""
    return configs.digest({"dataset": preset.dataset, "vae": preset.vae, "vae_model": VAE_PRESETS[preset.vae_preset]})


@functools.lru_cache(maxsize=4)
def codec(preset: Preset) -> latent.LatentCodec:
    """The preset's VAE with its latent scale: shipped if available, else trained (cached)."""
    if not preset.is_latent:
        raise ValueError(f"preset {preset.name!r} diffuses in pixel space; it has no VAE")
    name = f"vae-{preset.dataset}-{preset.vae_preset}"
    entry = pretrained.find(name)
    if entry is not None:
        graphdef, abstract = latent.vae_skeleton(preset.vae_preset)
        try:
            params = pretrained.load(name, abstract, fingerprint=vae_fingerprint(preset))
            return latent.LatentCodec(graphdef, jax.device_put(params), float(entry["scale"]))
        except pretrained.PretrainedError as err:
            _note(f"note: not using the shipped VAE ({err}); training it instead")
    images = data.load_dataset(preset.dataset, "train").images
    graphdef, params = latent.train_vae(preset.dataset, preset.vae_preset, preset.vae)
    return latent.make_codec(graphdef, params, images)


def training_data(preset: Preset):
    """``(x, labels)``: images in [-1, 1], or their cached scaled latents for latent presets."""
    ds = data.load_dataset(preset.dataset, "train")
    if not preset.is_latent:
        return data.to_float(ds.images), ds.labels  # (N, H, W, C) in [-1, 1]
    z = latent.encode_dataset(codec(preset), ds.images, name=f"{preset.dataset}-train")
    if not preset.mirror_data:
        return z, ds.labels
    mirrored = np.ascontiguousarray(ds.images[:, :, ::-1])  # (N, H, W, C) flipped left-right
    z_m = latent.encode_dataset(codec(preset), mirrored, name=f"{preset.dataset}-train-mirrored")
    return np.concatenate([z, z_m]), np.concatenate([ds.labels, ds.labels])


def _skeleton(preset: Preset) -> TrainState:
    # An abstract state: initialising real weights only to overwrite them costs seconds on
    # CPU (every parameter shape compiles its own RNG kernel).
    return jax.eval_shape(lambda: create_train_state(build_model(preset, preset.train.seed), preset.train))


def _shipped(preset: Preset) -> TrainState:
    """The shipped EMA weights as a TrainState (``params`` is the EMA too; no optimizer state)."""
    entry = pretrained.find(preset.name)
    if entry is None or entry.get("kind") != "generator":
        raise pretrained.PretrainedError(f"no shipped weights for preset {preset.name!r}")
    skel = _skeleton(preset)
    ema = jax.device_put(pretrained.load(preset.name, skel.ema_params, fingerprint=preset.fingerprint()))
    rest = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), skel.rest)
    return TrainState(step=np.int32(entry["steps"]), params=ema, opt_state=None, ema_params=ema, rest=rest,
                      graphdef=skel.graphdef)


def _cached(preset: Preset, root=None) -> TrainState | None:
    last = ckpt.latest_checkpoint(run_dir(preset, root) / "checkpoints")
    if last is None or ckpt.read_metadata(last).get("step") != preset.train.steps:
        return None
    return jax.device_put(ckpt.restore_checkpoint(last, _skeleton(preset)))


def load_trained(preset: Preset, *, source: str = "auto", root=None) -> TrainState:
    """``preset``'s trained state without training: shipped weights or the finished cached run.

    ``source``: ``"shipped"``, ``"cache"`` (your own run), or ``"auto"`` (shipped first).
    Raises ``FileNotFoundError`` saying how to train when neither exists.
    """
    _check_preset(preset)
    if source not in SOURCES:
        raise ValueError(f"source must be one of {list(SOURCES)}, got {source!r}")
    reason = None
    if source in ("auto", "shipped") and pretrained.find(preset.name) is not None:
        try:
            return _shipped(preset)
        except pretrained.PretrainedError as err:
            if source == "shipped":
                raise
            reason = str(err)
    if source in ("auto", "cache"):
        state = _cached(preset, root)
        if state is not None:
            return state
    steps = "" if preset.train.steps == PRESETS.get(preset.name, preset).train.steps else f" --steps {preset.train.steps}"
    raise FileNotFoundError(
        f"no trained weights for preset {preset.name!r} (fingerprint {preset.fingerprint()})"
        + (f"; the shipped file is unusable: {reason}" if reason else "")
        + f"; train it first: diffusion-jax train --preset {preset.name}{steps}")


def train(preset: Preset, *, retrain: bool = False, root=None, progress: bool = True) -> TrainState:
    """``preset`` trained: shipped weights (unless ``retrain``), the cache, or a training run.

    Training resumes from the newest checkpoint of an interrupted run of the same config;
    a finished run in the cache is loaded, also with ``retrain``. An unusable shipped file
    is reported in one line and the model is trained instead.
    """
    _check_preset(preset)
    if not retrain and pretrained.find(preset.name) is not None:
        try:
            state = _shipped(preset)
            if progress:
                _note(f"loaded the shipped weights of {preset.name} ({preset.fingerprint()})")
            return state
        except pretrained.PretrainedError as err:
            _note(f"note: not using the shipped weights of {preset.name}: {err}; training instead")
    state = _cached(preset, root)
    if state is not None:
        return state
    out = run_dir(preset, root)
    model, loss = build_model(preset, preset.train.seed), None
    if preset.distill is not None:
        model, loss = _distillation(preset, model, root, progress)
    state = create_train_state(model, preset.train)
    x, labels = training_data(preset)
    batch_fn = epoch_batch_fn(jax.random.key(preset.train.seed), x, labels, preset.train.batch_size)
    out.mkdir(parents=True, exist_ok=True)
    (out / "preset.json").write_text(json.dumps(dataclasses.asdict(preset), indent=1, default=str))
    return fit(state, preset.train, schedules.make_schedule(preset.schedule), batch_fn, out_dir=out,
               null_label=null_label(preset), progress=progress, loss=loss)


def _distillation(preset: Preset, model, root, progress: bool):
    """The student (``model`` with the teacher's weights) and its distillation loss."""
    teacher_preset = get_preset(preset.distill.teacher)
    if not preset.guidance_input or teacher_preset.is_flow or teacher_preset.is_latent:
        raise ValueError(f"preset {preset.name!r}: a distilled student needs a model with guidance_embed and a "
                         f"pixel-space diffusion teacher; {teacher_preset.name!r} is not one")
    teacher = train(teacher_preset, root=root, progress=progress)
    if progress:
        _note(f"distilling {preset.name} from {teacher_preset.name} ({teacher_preset.fingerprint()})")
    if teacher_preset.guidance_input:
        net = distill.input_net(teacher.graphdef, teacher.ema_params, teacher.rest)
    else:
        net = distill.cfg_net(model_denoiser(teacher.graphdef, teacher.ema_params, teacher.rest),
                              null_label(teacher_preset))
    loss = distill.objective(preset.distill, net, schedules.make_schedule(teacher_preset.schedule),
                             prediction=teacher_preset.train.prediction, clip_x0=teacher_preset.clip_x0)
    return distill.init_student(model, teacher.ema_params), loss


def denoiser(state: TrainState, preset: Preset, guidance_scale: float | None = None) -> Denoiser:
    """The EMA network as a :class:`Denoiser` with the preset's parameterisation.

    ``guidance_scale`` (None = the preset's): 1 is the plain conditional model (one
    prediction per step); anything else is classifier-free guidance around the null label.
    A guidance-distilled student (``preset.guidance_input``) takes the scale as an input
    instead: one prediction per step at every scale.
    """
    scale = preset.guidance_scale if guidance_scale is None else float(guidance_scale)
    if not np.isfinite(scale):
        raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale}")
    if preset.guidance_input:
        return distill.net_denoiser(distill.input_net(state.graphdef, state.ema_params, state.rest), scale,
                                    preset.train.prediction, preset.clip_x0)
    base = Denoiser(model_denoiser(state.graphdef, state.ema_params, state.rest),
                    prediction="velocity" if preset.is_flow else preset.train.prediction,
                    # A flow model integrates its velocity as trained: no clipping of the x0 estimate.
                    clip_x0=None if preset.is_flow else preset.clip_x0,
                    time_scale=FLOW_TIME_SCALE if preset.is_flow else 1.0)
    return base if scale == 1.0 else base.guided(scale, null_label(preset))


def sample(key, state: TrainState, preset: Preset, labels, *, sampler: str | None = None,
           num_steps: int | None = None, guidance_scale: float | None = None, batch_size: int = 500,
           **grid_options):
    """Class-conditional images ``(N, H, W, C)`` in [-1, 1] from the EMA weights.

    ``sampler``: a name in :data:`diffusion_jax.sampling.SAMPLERS` that runs on the preset's
    path (default: ``ddim`` for diffusion, ``euler`` for flow); ``labels``: ``(N,)`` class
    ids in ``[0, K - 1]``, or ``K`` = :func:`null_label` for unconditional rows (checked,
    as are the key, the scale and the steps, before anything runs); ``num_steps``: default the
    preset's ``sampler_steps`` (all T for ``ddpm``); ``grid_options``: ``eta``,
    ``spacing`` (default: the preset's ``sampler_spacing``), ``shift``, ``karras`` as
    :func:`sampling.make_grid` takes them. Row ``i`` depends only on ``(key, i)``:
    ``batch_size`` changes memory, not the images. The rows of a chunk are split over all
    local devices (the CLI makes one per CPU core).
    Latent presets are decoded by their VAE.
    """
    check_key(key)
    _check_preset(preset)
    name = sampler or preset.samplers[0]
    sampling.check_sampler(name, preset.path)
    labels = check_labels(labels, null_label(preset))
    if guidance_scale is not None:
        check_number(guidance_scale, name="guidance_scale")
    batch_size = check_int(batch_size, name="batch_size", min=1)
    steps = preset.sampler_steps if num_steps is None and name != "ddpm" else num_steps
    if preset.sampler_spacing is not None and name != "ddpm" and not grid_options.get("karras"):
        grid_options.setdefault("spacing", preset.sampler_spacing)
    schedule = None if preset.is_flow else schedules.make_schedule(preset.schedule)
    grid = sampling.make_grid(name, steps, schedule=schedule, **grid_options)
    d = denoiser(state, preset, guidance_scale)
    shape = (len(labels),) + model_input_shape(preset)
    x = np.asarray(sampling.sample(name, key, d, shape, labels.astype(np.int32), grid=grid, chunk_size=batch_size,
                                   devices=jax.local_devices()))
    if preset.is_latent:
        x = codec(preset).decode(x)
    return np.clip(x, -1.0, 1.0)
