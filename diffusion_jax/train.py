"""Training as a thin functional shell: a pytree state, jitted steps, a resumable loop.

The step itself lives in :mod:`diffusion_jax.train_step` and the mesh helpers in
:mod:`diffusion_jax.distributed`; both are re-exported here, so ``train.TrainConfig``,
``train.make_train_step``, ``train.make_mesh`` ... keep working.

* :func:`fit` is resumable by construction: the step-``s`` update uses the key
  ``fold_in(PRNGKey(seed), s)`` and the batch ``batch_fn(s)``, so N steps straight and
  N/2 + resume + N/2 give the same parameters.
* With ``steps_per_dispatch=K`` (the default for conv-free models given an
  :func:`epoch_batch_fn`) one call runs up to K steps
  (:func:`~diffusion_jax.train_step.make_multi_step`) on the training set kept on the
  devices, each step gathering the very batch ``batch_fn(s)`` would return. Groups end
  where the log and checkpoints fall, so logs, checkpoints and resumes are those of the
  one-step loop.
* Data parallelism is JAX's own SPMD: one ``"data"`` mesh over all devices of all
  processes (after :func:`diffusion_jax.distributed.initialize`), batch split, state
  replicated. Every process runs ``fit`` alike; only process 0 writes logs and checkpoints,
  and every process reads the newest checkpoint to resume (processes on several machines
  need ``out_dir`` on a shared file system).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from diffusion_jax import checkpoint as ckpt
from diffusion_jax.distributed import global_batch, host_value, is_main_process, make_mesh, replicate, shard_batch
from diffusion_jax.train_step import (FLOW_TIME_SCALE, OBJECTIVES, EpochBatches, TrainConfig, TrainState,
                                      create_train_state, ema_decay_schedule, epoch_batch_fn, epoch_indices,
                                      lr_schedule, make_multi_step, make_optimizer, make_train_step)

__all__ = ["FLOW_TIME_SCALE", "OBJECTIVES", "EpochBatches", "TrainConfig", "TrainState", "TrainingDiverged",
           "auto_steps_per_dispatch", "create_train_state", "ema_decay_schedule", "epoch_batch_fn",
           "epoch_indices", "fit", "lr_schedule", "make_mesh", "make_multi_step", "make_optimizer",
           "make_train_step", "model_denoiser", "model_velocity", "replicate", "shard_batch"]

DEVICE_DATA_MAX_BYTES = 1 << 30  # larger training sets stay on the host (one step per call)
AUTO_STEPS_PER_DISPATCH = 10  # for conv-free models; groups also end at log / checkpoint steps


class TrainingDiverged(FloatingPointError):
    """The loss or gradient norm became non-finite; the message names the step."""


# ---------------------------------------------------------------- trained model as a denoiser

@dataclasses.dataclass(frozen=True)
class _Apply:
    """Hashable-by-value model call: equal graphdefs give equal Partial treedefs, so a
    sampler compiled for one set of weights is reused for the next."""

    graphdef: Any
    time_scale: float = 1.0

    def __call__(self, params, rest, x_t, t, cond):
        t = t if self.time_scale == 1.0 else t * self.time_scale
        return nnx.merge(self.graphdef, params, rest)(x_t, t, cond)


def model_denoiser(graphdef, params, rest=None) -> jax.tree_util.Partial:
    """``denoise(x_t, t, cond)`` for samplers; params are leaves (new weights: no recompile).

    E.g. ``model_denoiser(state.graphdef, state.ema_params, state.rest)``.
    """
    return jax.tree_util.Partial(_Apply(graphdef), params, nnx.State({}) if rest is None else rest)


def model_velocity(graphdef, params, rest=None) -> jax.tree_util.Partial:
    """``v(x_t, t, cond)`` with float flow times; the model sees ``t * 1000`` as in training."""
    return jax.tree_util.Partial(_Apply(graphdef, FLOW_TIME_SCALE), params,
                                 nnx.State({}) if rest is None else rest)


# ---------------------------------------------------------------- compiled programs, cached

_STEP_CACHE: dict = {}  # fit() reuses its compiled programs when called again (e.g. in a notebook)
_LOOP_ONLY = {"steps": 1, "log_every": 1, "checkpoint_every": 0, "keep_checkpoints": 1, "seed": 0}
_RESUMABLE_CHANGES = ("steps", "log_every", "checkpoint_every", "keep_checkpoints")  # no warning


def _cached_program(config, schedule, null_label, mesh, max_steps: int | None, loss=None):
    """``make_train_step`` (``max_steps=None``) or ``make_multi_step``, built once per setting."""
    build = (functools.partial(make_train_step, mesh=mesh, loss=loss) if max_steps is None
             else functools.partial(make_multi_step, mesh=mesh, max_steps=max_steps, loss=loss))
    if loss is not None or not (null_label is None or isinstance(null_label, (int, np.integer))):
        return build(config, schedule, null_label)  # a custom objective or an array label: no cache
    null_label = None if null_label is None else int(null_label)
    key = (dataclasses.replace(config, **_LOOP_ONLY), id(schedule), null_label, mesh, max_steps)
    hit = _STEP_CACHE.get(key)
    if hit is None or hit[0] is not schedule:  # holding the schedule keeps its id unique
        if len(_STEP_CACHE) >= 4:
            _STEP_CACHE.pop(next(iter(_STEP_CACHE)))
        hit = _STEP_CACHE[key] = (schedule, build(config, schedule, null_label))
    return hit[1]


class _HostFeed:
    """One step per call; the host builds each batch with ``batch_fn(step)``."""

    max_steps = 1

    def __init__(self, config, schedule, null_label, mesh, batch_fn, loss=None):
        self.config, self.mesh, self.batch_fn = config, mesh, batch_fn
        self.step_fn = _cached_program(config, schedule, null_label, mesh, None, loss)
        self.base_key = jax.random.PRNGKey(config.seed)

    def __call__(self, state, step: int, n: int):
        images, labels = global_batch(self.mesh, *self.batch_fn(step))
        if images.shape[0] != self.config.batch_size:  # a new shape would also recompile
            raise ValueError(f"batch_fn({step}) gave {images.shape[0]} images, config.batch_size "
                             f"is {self.config.batch_size}")
        key = jax.random.fold_in(self.base_key, step)
        if jax.process_count() > 1:  # a host value, which every process holds alike
            key = np.asarray(key)
        return self.step_fn(state, key, images, labels)


class _DeviceFeed:
    """Up to ``max_steps`` steps per call on the device-resident training set."""

    def __init__(self, config, schedule, null_label, mesh, batches: EpochBatches, max_steps: int, loss=None):
        if batches.batch_size != config.batch_size:
            raise ValueError(f"batch_fn has batch_size {batches.batch_size}, config.batch_size is "
                             f"{config.batch_size}")
        if config.batch_size % mesh.size:
            raise ValueError(f"batch of {config.batch_size} does not split over {mesh.size} devices; "
                             f"use a batch size divisible by {mesh.size}")
        self.max_steps = max_steps
        self.run = _cached_program(config, schedule, null_label, mesh, max_steps, loss)
        self.inputs = replicate(mesh, (jax.random.PRNGKey(config.seed), batches.key,
                                       np.asarray(batches.images),
                                       None if batches.labels is None else np.asarray(batches.labels)))

    def __call__(self, state, step: int, n: int):
        return self.run(state, *self.inputs, np.int32(step), np.int32(n))


def auto_steps_per_dispatch(state: TrainState, batch_fn) -> int:
    """``fit``'s default: ``AUTO_STEPS_PER_DISPATCH`` for a conv-free model whose
    training set can live on the devices (an :class:`EpochBatches` of at most
    ``DEVICE_DATA_MAX_BYTES``), else 1 (host-built batches, one step per call).

    Measured with bench/steps_per_dispatch.py on 2 forced devices of a shared 2-core
    machine (medians): the DiT ran 1.1x (4 per call) to 1.7x (10 per call) the images/s
    of one host-fed step per call; the U-Net ran 17x SLOWER at 4 per call, since XLA:CPU
    leaves a loop body's conv gradients on a slow path (jax-ml/jax#12868); data on the
    devices with one step per call was within noise of host-built batches.
    """
    if not (isinstance(batch_fn, EpochBatches) and batch_fn.nbytes <= DEVICE_DATA_MAX_BYTES):
        return 1
    model = nnx.merge(state.graphdef, state.params, state.rest)
    convs = any(isinstance(node, (nnx.Conv, nnx.ConvTranspose)) for _, node in nnx.iter_graph(model))
    return 1 if convs else AUTO_STEPS_PER_DISPATCH


def _feed(config, schedule, null_label, mesh, batch_fn, device_data, k, loss=None):
    """The device feed when the data should live on the devices, else the host feed."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"steps_per_dispatch must be a positive integer or None, got {k!r}")
    epochs = isinstance(batch_fn, EpochBatches)
    if k > 1 and (device_data is False or not epochs):
        raise ValueError(f"steps_per_dispatch={k} needs the data on the devices: pass the batch_fn from "
                         "epoch_batch_fn(...) and leave device_data at None or True")
    device_data = k > 1 if device_data is None else device_data
    if device_data and not epochs:
        raise ValueError("device_data=True needs the batch_fn from epoch_batch_fn(key, images, labels, "
                         "batch_size): it carries the data to upload")
    if device_data:
        return _DeviceFeed(config, schedule, null_label, mesh, batch_fn, int(k), loss)
    return _HostFeed(config, schedule, null_label, mesh, batch_fn, loss)


# ---------------------------------------------------------------- fit and its pieces

def fit(model_or_state, config: TrainConfig, schedule, batch_fn: Callable[[int], tuple], *,
        out_dir, null_label=None, resume: bool = True, progress: bool = True, mesh=None,
        device_data: bool | None = None, steps_per_dispatch: int | None = None, loss=None) -> TrainState:
    """Train until ``state.step == config.steps``; returns the final (replicated) state.

    ``batch_fn(step) -> (images, labels)`` (labels may be ``None``) must depend on the
    step only (see :func:`epoch_batch_fn`). With ``resume`` the newest checkpoint in
    ``out_dir/checkpoints`` is restored first (a TrainState passed in is consumed: the
    step donates it). Writes ``out_dir/log.jsonl`` (appends on resume) and checkpoints
    every ``checkpoint_every`` steps and at the end. Losses are checked for NaN/Inf at
    every log/checkpoint step (no host sync in between); a non-finite value raises
    :class:`TrainingDiverged` naming the first bad step, and nothing after the last good
    checkpoint is saved. Calling fit again with the same config, schedule and mesh
    reuses the compiled program.

    ``steps_per_dispatch`` K > 1 runs up to K steps per call in one compiled loop, with
    the training set uploaded once (``batch_fn`` from :func:`epoch_batch_fn`) and each
    batch gathered on the devices; the parameters are those of K single steps. None =
    :func:`auto_steps_per_dispatch` (K > 1 only for conv-free models: on XLA:CPU a loop
    body's conv gradients run 10-40x slower, jax-ml/jax#12868). ``device_data`` (None =
    exactly when K > 1): True keeps the data on the devices with one step per call too.
    ``loss``: a custom objective ``Partial`` ``loss(key, model, images, cond)`` instead of
    the config's (e.g. :func:`diffusion_jax.distill.objective`); it is not saved with the
    checkpoints, so a resumed run must pass the same one.
    """
    if not callable(batch_fn):
        raise TypeError("batch_fn must be a function step -> (images, labels), not an iterator: "
                        "a resumed run needs the batch of any step (see epoch_batch_fn)")
    out_dir, mesh = Path(out_dir), mesh or make_mesh()
    state = _start_or_resume(model_or_state, config, out_dir / "checkpoints", resume)
    if steps_per_dispatch is None:
        steps_per_dispatch = 1 if device_data is False else auto_steps_per_dispatch(state, batch_fn)
    if loss is not None:
        loss = replicate(mesh, loss)  # the teacher's weights, on every device like the state
    feed = _feed(config, schedule, null_label, mesh, batch_fn, device_data, steps_per_dispatch, loss)
    step, state = int(state.step), replicate(mesh, state)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = _Log(config, out_dir, step, progress)
    try:
        while step < config.steps:
            n = min(feed.max_steps, _next_stop(config, step) - step)
            state, metrics = feed(state, step, n)
            log.add(step, n, metrics)
            step += n
            if step == _next_stop(config, step - 1):
                log.flush(step)  # raises TrainingDiverged before anything is saved
                if _is_save(config, step):
                    ckpt.save_checkpoint(out_dir / "checkpoints", state, {"config": dataclasses.asdict(config)},
                                         keep=config.keep_checkpoints)
    finally:
        log.close()
    return state


def _next_stop(config: TrainConfig, step: int) -> int:
    """The first step after ``step`` that is logged (and maybe saved): the host syncs there."""
    stops = [config.steps, (step // config.log_every + 1) * config.log_every]
    if config.checkpoint_every:
        stops.append((step // config.checkpoint_every + 1) * config.checkpoint_every)
    return min(stops)


def _is_save(config: TrainConfig, step: int) -> bool:
    return step == config.steps or bool(config.checkpoint_every and step % config.checkpoint_every == 0)


def _start_or_resume(model_or_state, config: TrainConfig, ckpt_dir: Path, resume: bool) -> TrainState:
    """The given state (or a fresh one for a model), replaced by the newest checkpoint if any."""
    state = model_or_state if isinstance(model_or_state, TrainState) else create_train_state(model_or_state, config)
    last = ckpt.latest_checkpoint(ckpt_dir)
    if last is None:
        return state
    if not resume:  # mixing two runs' steps would prune the new one
        raise FileExistsError(f"{ckpt_dir} holds checkpoints of an earlier run (newest {last.name}); "
                              "pass resume=True to continue it, or use a fresh out_dir")
    old = ckpt.read_metadata(last).get("config", {})
    changed = sorted(k for k, v in dataclasses.asdict(config).items()
                     if k in old and old[k] != v and k not in _RESUMABLE_CHANGES)
    if changed:
        warnings.warn(f"resuming {last} with changed config fields {changed}", stacklevel=3)
    return ckpt.restore_checkpoint(last, state)


class _Log:
    """Per-step metrics gathered between log steps: divergence check, JSONL record, progress bar.

    Only process 0 writes the file and draws the bar; every process checks for NaN/Inf,
    so all of them stop together.
    """

    def __init__(self, config: TrainConfig, out_dir: Path, start: int, progress: bool):
        self.config, self.ckpt_dir, main = config, out_dir / "checkpoints", is_main_process()
        self.file = open(out_dir / "log.jsonl", "a") if main else None
        self.bar = tqdm(total=config.steps, initial=start, desc="train", unit="step") if progress and main else None
        self.pending: list = []
        self.t_start = self.t_last = time.perf_counter()

    def add(self, step: int, n: int, metrics: dict) -> None:
        self.pending.append((step, n, metrics))

    def flush(self, step: int) -> None:
        rows = []  # (step, {name: float}) for every update since the last flush
        for first, n, metrics in self.pending:
            values = {k: np.atleast_1d(host_value(v))[:n] for k, v in metrics.items()}
            rows += [(first + i, {k: float(v[i]) for k, v in values.items()}) for i in range(n)]
        for s, m in rows:  # the first bad step of the window, before anything is saved
            if not (math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])):
                raise _diverged(s, m["loss"], m["grad_norm"], ckpt.latest_checkpoint(self.ckpt_dir))
        now = time.perf_counter()
        ips = len(rows) * self.config.batch_size / max(now - self.t_last, 1e-9)  # 1st window: + compile
        rec = {"step": step, "loss": float(np.mean([m["loss"] for _, m in rows])),
               "grad_norm": rows[-1][1]["grad_norm"], "lr": rows[-1][1]["lr"],
               "images_per_s": ips, "wall_s": now - self.t_start, "time": time.time()}
        self.pending, self.t_last = [], now
        if self.file is not None:
            self.file.write(json.dumps(rec) + "\n")
            self.file.flush()  # readable while training runs
        if self.bar is not None:
            self.bar.update(len(rows))
            self.bar.set_postfix(loss=f"{rec['loss']:.4f}", img_s=f"{ips:.0f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file is not None:
            self.file.close()


def _diverged(step, loss, grad_norm, last_ckpt):
    kept = f"the last good checkpoint {last_ckpt} is kept" if last_ckpt else "no checkpoint was written"
    return TrainingDiverged(
        f"training diverged at step {step} (the update on batch_fn({step})): loss={loss}, "
        f"grad_norm={grad_norm}; stopped without saving, {kept}. Check that batch for "
        f"NaN/Inf, or lower lr / raise warmup_steps / set grad_clip.")
