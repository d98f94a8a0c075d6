"""Training as a thin functional shell: a pytree state, one jitted step, a resumable loop.

* :class:`TrainState` is a pytree: ``step``, ``params`` (the model's ``nnx.Param``
  state), ``opt_state``, ``ema_params``, ``rest`` (any non-parameter state, e.g. batch
  statistics or RNG counters; empty for our backbones) and the static ``graphdef``.
* :func:`make_train_step` returns ONE plain ``jax.jit`` function that merges the model
  inside (``nnx.split`` once, ``nnx.merge`` in the trace: no per-call ``nnx.jit``
  overhead), so it compiles once and never retraces for same-shaped batches.
* Data parallelism is JAX's own SPMD: a 1-D :func:`make_mesh` over all devices, batch
  sharded along ``"data"``, state replicated. Multi-host runs use the same code after
  ``jax.distributed.initialize()`` (each host feeds its shard of the batch).
* :func:`fit` is resumable by construction: the step-``s`` update uses the key
  ``fold_in(PRNGKey(seed), s)`` and the batch ``batch_fn(s)``, so N steps straight and
  N/2 + resume + N/2 give the same parameters.
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
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from diffusion_jax import checkpoint as ckpt
from diffusion_jax._checks import check_choice
from diffusion_jax.flow import flow_loss
from diffusion_jax.guidance import drop_labels
from diffusion_jax.losses import WEIGHTINGS, diffusion_loss
from diffusion_jax.parameterization import PREDICTIONS

__all__ = ["OBJECTIVES", "FLOW_TIME_SCALE", "TrainConfig", "TrainingDiverged", "TrainState", "lr_schedule",
           "ema_decay_at", "make_optimizer", "create_train_state", "make_mesh", "shard_batch", "replicate",
           "make_train_step", "model_denoiser", "model_velocity", "epoch_batch_fn", "fit"]

OBJECTIVES = ("diffusion", "flow")
# Flow times are floats in [0, 1], but our backbones embed time with the sinusoidal
# features designed for integer timesteps 0..999: frequencies from 1 down to 1e-4. At
# t <= 1 every feature would sit near cos(0) = 1 and the network could barely tell
# times apart, so the model sees 1000 * t (as SD3 does with sigmas * 1000).
FLOW_TIME_SCALE = 1000.0


_LOOP_ONLY = {"fingerprint": False}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 128  # global batch (split over devices); must divide by device count
    lr: float = 1e-3  # peak AdamW learning rate
    warmup_steps: int = 100  # lr rises linearly to `lr` over these steps, then stays
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip: float | None = 1.0  # clip the global gradient norm; None or 0 disables
    ema_decay: float = 0.995  # ema = decay * ema + (1 - decay) * params, every step
    # 0 = off. Otherwise the decay at update t is min(ema_decay, (1 + t) / (ema_warmup + t)),
    # so the average forgets the random init quickly and early steps are not wasted
    # (the warm-up of Tarvainen & Valpola 2017 / tf.train.ExponentialMovingAverage's num_updates).
    ema_warmup: int = 0
    cond_dropout: float = 0.1  # probability a label becomes the null label (for CFG)
    prediction: str = "eps"  # what the model predicts: "eps", "x0" or "v" (diffusion only)
    weighting: str | None = None  # None (plain MSE) or "min_snr" (diffusion only)
    objective: str = "diffusion"  # "diffusion" (integer t) or "flow" (rectified flow, t * 1000)
    steps: int = 1000  # total optimizer steps (a resumed run continues up to this)
    # How a run is watched and saved, not what it computes: left out of preset fingerprints.
    log_every: int = dataclasses.field(default=50, metadata=_LOOP_ONLY)  # JSONL log / progress / divergence check
    checkpoint_every: int = dataclasses.field(default=500, metadata=_LOOP_ONLY)  # also at the end; 0 = only then
    keep_checkpoints: int = dataclasses.field(default=3, metadata=_LOOP_ONLY)  # newest checkpoints kept on disk
    seed: int = 0  # per-step keys are fold_in(PRNGKey(seed), step)

    def __post_init__(self):
        check_choice(self.objective, OBJECTIVES, name="objective")
        check_choice(self.prediction, PREDICTIONS, name="prediction")
        check_choice(self.weighting, WEIGHTINGS, name="weighting")
        if not 0.0 <= self.cond_dropout <= 1.0:
            raise ValueError(f"cond_dropout must lie in [0, 1], got {self.cond_dropout}")
        for name in ("batch_size", "steps", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


class TrainingDiverged(FloatingPointError):
    """The loss or gradient norm became non-finite; the message names the step."""


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["step", "params", "opt_state", "ema_params", "rest"],
                   meta_fields=["graphdef"])
@dataclasses.dataclass(frozen=True)
class TrainState:
    step: jax.Array  # int32 scalar: updates applied so far
    params: Any  # nnx.State of nnx.Param
    opt_state: Any  # optax state
    ema_params: Any  # nnx.State, same structure as params
    rest: Any  # nnx.State of everything that is not a Param (often empty)
    graphdef: Any  # nnx.GraphDef: static, hashable

    def replace(self, **kw) -> TrainState:
        return dataclasses.replace(self, **kw)

    def model(self, ema: bool = True) -> nnx.Module:
        """A live model with the EMA (default) or raw parameters, for eager use."""
        return nnx.merge(self.graphdef, self.ema_params if ema else self.params, self.rest)


def lr_schedule(config: TrainConfig) -> Callable:
    """lr * min(1, (step + 1) / warmup): the very first update already moves the weights."""
    warmup = max(int(config.warmup_steps), 1)
    return lambda count: config.lr * jnp.minimum(1.0, (count + 1.0) / warmup)


def ema_decay_at(config: TrainConfig, step):
    """The EMA decay used by update ``step`` (0-based): constant, or warmed up."""
    if not config.ema_warmup:
        return jnp.asarray(config.ema_decay, jnp.float32)
    t = jnp.asarray(step, jnp.float32)
    return jnp.minimum(config.ema_decay, (1.0 + t) / (config.ema_warmup + t))


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    adamw = optax.adamw(lr_schedule(config), weight_decay=config.weight_decay)
    if not config.grad_clip:
        return adamw
    return optax.chain(optax.clip_by_global_norm(config.grad_clip), adamw)


def create_train_state(model: nnx.Module, config: TrainConfig) -> TrainState:
    """Split ``model`` and build the optimizer and EMA state (copies: ``model`` stays usable)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    # Fresh buffers: the train step donates its state, which must not alias the model's
    # arrays, nor params alias ema_params (donating one buffer twice is an error).
    params = jax.tree.map(jnp.array, params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=make_optimizer(config).init(params),
                      ema_params=jax.tree.map(jnp.array, params),
                      rest=jax.tree.map(jnp.array, rest), graphdef=graphdef)


def make_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-D ``"data"`` mesh over ``devices`` (default: all), with Auto axes.

    jax >= 0.7 defaults ``make_mesh`` to Explicit axes, under which a program jitted on
    parameters moved back to one device fails; Auto keeps plain ``jit`` semantics.
    """
    devices = list(jax.devices() if devices is None else devices)
    kw = {"devices": devices}
    if hasattr(jax.sharding, "AxisType"):
        kw["axis_types"] = (jax.sharding.AxisType.Auto,)
    return jax.make_mesh((len(devices),), ("data",), **kw)


def shard_batch(mesh, images, labels=None):
    """Put a batch on ``mesh``, split along its first axis over ``"data"``.

    One process: ``images`` is the global batch. Several (after ``jax.distributed.initialize``):
    each passes its own slice and the global batch is their concatenation.
    """
    sharding = NamedSharding(mesh, P("data"))
    n = len(sharding.addressable_devices)
    if images.shape[0] % n:
        raise ValueError(f"batch of {images.shape[0]} does not split over {n} devices; "
                         f"use a batch size divisible by {n}")
    put = (lambda a: jax.device_put(a, sharding)) if jax.process_count() == 1 else (
        lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)))
    return put(images), None if labels is None else put(labels)


def replicate(mesh, tree):
    """Copy a pytree (e.g. the TrainState) to every device of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


_global_norm = getattr(getattr(optax, "tree", None), "norm", None) or optax.global_norm
_STEP_CACHE: dict = {}  # fit() reuses the compiled step when called again (e.g. in a notebook)


def _cached_train_step(config, schedule, null_label, mesh):
    if not (null_label is None or isinstance(null_label, (int, np.integer))):
        return make_train_step(config, schedule, null_label, mesh=mesh)  # e.g. an array: no cache
    null_label = None if null_label is None else int(null_label)
    loop_only = {"steps": 1, "log_every": 1, "checkpoint_every": 0, "keep_checkpoints": 1, "seed": 0}
    key = (dataclasses.replace(config, **loop_only), id(schedule), null_label, mesh)
    hit = _STEP_CACHE.get(key)
    if hit is None or hit[0] is not schedule:  # holding the schedule keeps its id unique
        if len(_STEP_CACHE) >= 4:
            _STEP_CACHE.pop(next(iter(_STEP_CACHE)))
        hit = _STEP_CACHE[key] = (schedule, make_train_step(config, schedule, null_label, mesh=mesh))
    return hit[1]


def make_train_step(config: TrainConfig, schedule, null_label=None, *, mesh=None):
    """``step_fn(state, key, images, labels) -> (state, metrics)``, jitted once, state donated.

    ``labels`` may be ``None`` (unconditional). With ``mesh`` the shardings are pinned
    (state replicated, batch split over ``"data"``) so outputs come back exactly as the
    inputs went in and the second call hits the compilation cache.
    """
    tx = make_optimizer(config)
    lr_at = lr_schedule(config)
    if config.objective == "diffusion" and schedule is None:
        raise ValueError("objective='diffusion' needs a noise schedule")
    if config.cond_dropout > 0 and null_label is None:
        raise ValueError("cond_dropout > 0 needs null_label (the label meaning 'no condition')")

    def loss_fn(params, state, key, images, cond):
        # Fresh Variables for the non-param state at this trace level: NNX refuses to mutate
        # (e.g. BatchNorm stats) Variables created outside the grad trace.
        model = nnx.merge(state.graphdef, params, jax.tree.map(lambda v: v, state.rest))
        if config.objective == "flow":
            velocity = lambda x_t, t, c: model(x_t, t * FLOW_TIME_SCALE, c)
            loss, _ = flow_loss(key, velocity, images, cond)
        else:
            loss, _ = diffusion_loss(key, model, schedule, images, cond,
                                     prediction=config.prediction, weighting=config.weighting)
        return loss, nnx.state(model, nnx.Not(nnx.Param))  # batch stats, RNG counts...

    def step_fn(state: TrainState, key, images, labels):
        key_drop, key_loss = jax.random.split(key)
        cond = labels
        if labels is not None and config.cond_dropout > 0:
            cond = drop_labels(key_drop, labels, config.cond_dropout, null_label)
        (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state, key_loss, images, cond)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        d = ema_decay_at(config, state.step)
        ema = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, state.ema_params, params)
        metrics = {"loss": loss, "grad_norm": _global_norm(grads),
                   "lr": jnp.asarray(lr_at(state.step), jnp.float32)}
        new = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            ema_params=ema, rest=rest)
        return new, metrics

    if mesh is None:
        return jax.jit(step_fn, donate_argnums=0)
    rep, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(step_fn, donate_argnums=0, in_shardings=(rep, rep, data, data),
                   out_shardings=(rep, rep))


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


def epoch_batch_fn(key, images, labels, batch_size: int) -> Callable[[int], tuple]:
    """``batch_fn(step)`` returning batch ``step`` of :func:`diffusion_jax.data.batches`.

    Step ``s`` is batch ``s % per_epoch`` of epoch ``s // per_epoch``, whose order is
    ``permutation(fold_in(key, epoch), N)`` (last partial batch dropped): the same stream
    as ``data.batches(key, ...)``, but addressable by step so a resumed run continues it.
    """
    n = len(images)
    per_epoch = n // batch_size
    if per_epoch < 1:
        raise ValueError(f"batch_size {batch_size} needs at least that many examples, got {n}")

    @functools.lru_cache(maxsize=2)
    def order(epoch):
        return np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))

    def batch_fn(step):
        idx = order(step // per_epoch)[(step % per_epoch) * batch_size:][:batch_size]
        return images[idx], (None if labels is None else labels[idx])

    return batch_fn


def _diverged(step, loss, grad_norm, last_ckpt):
    kept = f"the last good checkpoint {last_ckpt} is kept" if last_ckpt else "no checkpoint was written"
    return TrainingDiverged(
        f"training diverged at step {step} (the update on batch_fn({step})): loss={loss}, "
        f"grad_norm={grad_norm}; stopped without saving, {kept}. Check that batch for "
        f"NaN/Inf, or lower lr / raise warmup_steps / set grad_clip.")


def fit(model_or_state, config: TrainConfig, schedule, batch_fn: Callable[[int], tuple], *,
        out_dir, null_label=None, resume: bool = True, progress: bool = True, mesh=None) -> TrainState:
    """Train until ``state.step == config.steps``; returns the final (replicated) state.

    ``batch_fn(step) -> (images, labels)`` (labels may be ``None``) must depend on the
    step only (see :func:`epoch_batch_fn`). With ``resume`` the newest checkpoint in
    ``out_dir/checkpoints`` is restored first (a TrainState passed in is consumed: the
    step donates it). Calling fit again with the same config, schedule and mesh reuses
    the compiled step. Writes ``out_dir/log.jsonl`` (appends on
    resume) and checkpoints every ``checkpoint_every`` steps and at the end. Losses are
    checked for NaN/Inf at every log/checkpoint boundary (no host sync per step); a
    non-finite value raises :class:`TrainingDiverged` naming the first bad step, and
    nothing after the last good checkpoint is saved.
    """
    if not callable(batch_fn):
        raise TypeError("batch_fn must be a function step -> (images, labels), not an iterator: "
                        "a resumed run needs the batch of any step (see epoch_batch_fn)")
    out_dir, mesh = Path(out_dir), mesh or make_mesh()
    ckpt_dir = out_dir / "checkpoints"
    state = model_or_state if isinstance(model_or_state, TrainState) else create_train_state(model_or_state, config)
    last = ckpt.latest_checkpoint(ckpt_dir)
    if last is not None and not resume:  # mixing two runs' steps would prune the new one
        raise FileExistsError(f"{ckpt_dir} holds checkpoints of an earlier run (newest {last.name}); "
                              "pass resume=True to continue it, or use a fresh out_dir")
    if last is not None:
        state = ckpt.restore_checkpoint(last, state)
        old = ckpt.read_metadata(last).get("config", {})
        changed = sorted(k for k, v in dataclasses.asdict(config).items() if k in old and old[k] != v
                         and k not in ("steps", "log_every", "checkpoint_every", "keep_checkpoints"))
        if changed:
            warnings.warn(f"resuming {last} with changed config fields {changed}", stacklevel=2)
    state = replicate(mesh, state)
    step_fn = _cached_train_step(config, schedule, null_label, mesh)
    base_key, start = jax.random.PRNGKey(config.seed), int(state.step)
    meta = {"config": dataclasses.asdict(config)}
    out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=config.steps, initial=start, desc="train", unit="step") if progress else None
    pending, t_start = [], time.perf_counter()
    t_last, step = t_start, start
    try:
        with open(out_dir / "log.jsonl", "a") as log:
            while step < config.steps:
                images, labels = batch_fn(step)
                images, labels = shard_batch(mesh, images, labels)
                if images.shape[0] != config.batch_size:  # a new shape would also recompile
                    raise ValueError(f"batch_fn({step}) gave {images.shape[0]} images, config.batch_size "
                                     f"is {config.batch_size}")
                state, metrics = step_fn(state, jax.random.fold_in(base_key, step), images, labels)
                pending.append((step, images.shape[0], metrics))
                step += 1
                save = step == config.steps or (config.checkpoint_every and step % config.checkpoint_every == 0)
                if not (save or step % config.log_every == 0):
                    continue
                host = [(s, n, {k: float(v) for k, v in m.items()}) for s, n, m in jax.device_get(pending)]
                for s, _, m in host:  # first bad step of the window, before anything is saved
                    if not (math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])):
                        raise _diverged(s, m["loss"], m["grad_norm"], ckpt.latest_checkpoint(ckpt_dir))
                now = time.perf_counter()
                ips = sum(n for _, n, _ in host) / max(now - t_last, 1e-9)  # 1st window: + compile
                rec = {"step": step, "loss": float(np.mean([m["loss"] for _, _, m in host])),
                       "grad_norm": host[-1][2]["grad_norm"], "lr": host[-1][2]["lr"],
                       "images_per_s": ips, "wall_s": now - t_start, "time": time.time()}
                log.write(json.dumps(rec) + "\n")
                log.flush()  # readable while training runs
                pending, t_last = [], now
                if bar is not None:
                    bar.update(len(host))
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", img_s=f"{ips:.0f}")
                if save:
                    ckpt.save_checkpoint(ckpt_dir, state, meta, keep=config.keep_checkpoints)
    finally:
        if bar is not None:
            bar.close()
    return state
