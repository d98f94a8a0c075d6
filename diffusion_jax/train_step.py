"""The training step: config, state pytree, optimizer, EMA, and the jitted programs.

* :class:`TrainState` is a pytree: ``step``, ``params`` (the model's ``nnx.Param``
  state), ``opt_state``, ``ema_params``, ``rest`` (any non-parameter state, e.g. batch
  statistics or RNG counters; empty for our backbones) and the static ``graphdef``.
* :func:`make_train_step` returns ONE plain ``jax.jit`` function that merges the model
  inside (``nnx.split`` once, ``nnx.merge`` in the trace: no per-call ``nnx.jit``
  overhead), so it compiles once and never retraces for same-shaped batches.
* :class:`EpochBatches` (from :func:`epoch_batch_fn`) is the batch stream addressable
  by step, ``batch_fn(s)``; :func:`epoch_indices` is its traceable twin.
* :func:`make_multi_step` runs up to K such steps in one call with the training set
  resident on the devices: step ``s`` gathers its own batch (:func:`epoch_indices`) and
  uses the key ``fold_in(base_key, s)``, exactly as the one-step loop would.
* ``loss=``: any objective other than the config's, e.g. distillation against a teacher
  (:mod:`diffusion_jax.distill`): a :class:`jax.tree_util.Partial`
  ``loss(key, model, images, cond) -> scalar`` whose leaves (a teacher's weights) are
  passed to the compiled step as arguments, not baked into it as constants.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from diffusion_jax._checks import check_choice
from diffusion_jax.flow import flow_loss
from diffusion_jax.guidance import drop_labels
from diffusion_jax.losses import WEIGHTINGS, diffusion_loss
from diffusion_jax.parameterization import PREDICTIONS

OBJECTIVES = ("diffusion", "flow")
# Flow times are floats in [0, 1], but our backbones embed time with the sinusoidal
# features designed for integer timesteps 0..999: frequencies from 1 down to 1e-4. At
# t <= 1 every feature would sit near cos(0) = 1 and the network could barely tell
# times apart, so the model sees 1000 * t (as SD3 does with sigmas * 1000).
FLOW_TIME_SCALE = 1000.0


_LOOP_ONLY = {"fingerprint": False}  # see diffusion_jax.configs


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    # Every field added later defaults to the earlier behaviour, so presets keep their weights.
    batch_size: int = 128  # global batch (split over devices); must divide by device count
    lr: float = 1e-3  # peak AdamW learning rate
    warmup_steps: int = 100  # lr rises linearly to `lr` over these steps, then stays
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip: float | None = 1.0  # clip the global gradient norm; None or 0 disables
    ema_decay: float = 0.995  # ema = decay * ema + (1 - decay) * params, every step
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
    # 0 = off (constant ema_decay). n >= 2: the update t = 0, 1, ... uses
    # min(ema_decay, (1 + t) / (n + t)), so early EMA weights follow the fast-moving params
    # instead of staying near the random init; see :func:`ema_decay_schedule`.
    ema_warmup: int = 0

    def __post_init__(self):
        check_choice(self.objective, OBJECTIVES, name="objective")
        check_choice(self.prediction, PREDICTIONS, name="prediction")
        check_choice(self.weighting, WEIGHTINGS, name="weighting")
        if not 0.0 <= self.cond_dropout <= 1.0:
            raise ValueError(f"cond_dropout must lie in [0, 1], got {self.cond_dropout}")
        for name in ("batch_size", "steps", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.ema_warmup < 0 or self.ema_warmup == 1:
            raise ValueError(f"ema_warmup must be 0 (off) or >= 2 (the offset n in (1 + t) / (n + t)), "
                             f"got {self.ema_warmup}")


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


def ema_decay_schedule(config: TrainConfig) -> Callable:
    """``decay(t)`` for the update that follows ``t`` earlier updates.

    Off (``ema_warmup=0``): the constant ``ema_decay``. On: ``min(ema_decay, (1 + t) /
    (n + t))`` with ``n = ema_warmup``, the warm-up of TensorFlow's
    ``ExponentialMovingAverage(num_updates=...)`` (n = 10 there, and in diffusers'
    ``EMAModel`` without ``use_ema_warmup``). The first update keeps only 1/n of the
    initial weights; after t updates the EMA averages roughly the last t / (n - 1) steps.
    """
    decay, n = float(config.ema_decay), int(config.ema_warmup)
    if n == 0:
        return lambda t: decay
    return lambda t: jnp.minimum(decay, (1.0 + t) / (n + t))


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


_global_norm = getattr(getattr(optax, "tree", None), "norm", None) or optax.global_norm


def _check_loss(loss):
    if loss is not None and not isinstance(loss, jax.tree_util.Partial):
        raise TypeError(f"loss must be a jax.tree_util.Partial loss(key, model, images, cond) -> scalar "
                        f"(its leaves become arguments of the compiled step), got {type(loss).__name__}")


def _step_fn(config: TrainConfig, schedule, null_label, *, custom_loss: bool = False):
    """The pure update ``(state, key, images, labels[, loss]) -> (state, metrics)``.

    With ``custom_loss`` the fifth argument is the objective ``loss(key, model, images,
    cond)``; the config's objective is not used (its optimizer, EMA and dropout are).
    """
    tx = make_optimizer(config)
    lr_at, decay_at = lr_schedule(config), ema_decay_schedule(config)
    if config.objective == "diffusion" and schedule is None and not custom_loss:
        raise ValueError("objective='diffusion' needs a noise schedule")
    if config.cond_dropout > 0 and null_label is None:
        raise ValueError("cond_dropout > 0 needs null_label (the label meaning 'no condition')")

    def loss_fn(params, state, key, images, cond, custom):
        # Fresh Variables for the non-param state at this trace level: NNX refuses to mutate
        # (e.g. BatchNorm stats) Variables created outside the grad trace.
        model = nnx.merge(state.graphdef, params, jax.tree.map(lambda v: v, state.rest))
        if custom is not None:
            loss = custom(key, model, images, cond)
        elif config.objective == "flow":
            velocity = lambda x_t, t, c: model(x_t, t * FLOW_TIME_SCALE, c)
            loss, _ = flow_loss(key, velocity, images, cond)
        else:
            loss, _ = diffusion_loss(key, model, schedule, images, cond,
                                     prediction=config.prediction, weighting=config.weighting)
        return loss, nnx.state(model, nnx.Not(nnx.Param))  # batch stats, RNG counts...

    def step_fn(state: TrainState, key, images, labels, custom=None):
        key_drop, key_loss = jax.random.split(key)
        cond = labels
        if labels is not None and config.cond_dropout > 0:
            cond = drop_labels(key_drop, labels, config.cond_dropout, null_label)
        (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state, key_loss, images, cond, custom)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        decay = decay_at(state.step)
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, params)
        metrics = {"loss": loss, "grad_norm": _global_norm(grads),
                   "lr": jnp.asarray(lr_at(state.step), jnp.float32)}
        new = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            ema_params=ema, rest=rest)
        return new, metrics

    return step_fn


def make_train_step(config: TrainConfig, schedule, null_label=None, *, mesh=None, loss=None):
    """``step_fn(state, key, images, labels) -> (state, metrics)``, jitted once, state donated.

    ``labels`` may be ``None`` (unconditional). With ``mesh`` the shardings are pinned
    (state replicated, batch split over ``"data"``) so outputs come back exactly as the
    inputs went in and the second call hits the compilation cache. ``loss``: a custom
    objective (see the module docstring), passed to every call as a replicated argument.
    """
    _check_loss(loss)
    step_fn = _step_fn(config, schedule, null_label, custom_loss=loss is not None)
    if mesh is None:
        jitted = jax.jit(step_fn, donate_argnums=0)
    else:
        rep, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
        shardings = (rep, rep, data, data) + ((rep,) if loss is not None else ())
        jitted = jax.jit(step_fn, donate_argnums=0, in_shardings=shardings, out_shardings=(rep, rep))
    if loss is None:
        return jitted
    return lambda state, key, images, labels: jitted(state, key, images, labels, loss)


class EpochBatches:
    """``batch_fn(step)``: batch ``step`` of :func:`diffusion_jax.data.batches`' stream.

    Step ``s`` is batch ``s % per_epoch`` of epoch ``s // per_epoch``, whose order is
    ``permutation(fold_in(key, epoch), N)`` (last partial batch dropped). It also carries
    ``key``, ``images``, ``labels`` and ``batch_size``, so :func:`fit` can upload the data
    once and gather the same batches on the devices (:func:`epoch_indices`).
    """

    def __init__(self, key, images, labels, batch_size: int):
        n = len(images)
        if labels is not None and len(labels) != n:
            raise ValueError(f"images and labels differ in length: {n} vs {len(labels)}")
        if n // batch_size < 1:
            raise ValueError(f"batch_size {batch_size} needs at least that many examples, got {n}")
        self.key, self.images, self.labels, self.batch_size = key, images, labels, int(batch_size)
        self.per_epoch = n // self.batch_size
        self._order = functools.lru_cache(maxsize=2)(
            lambda epoch: np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n)))

    @property
    def nbytes(self) -> int:
        return int(np.asarray(self.images).nbytes + (0 if self.labels is None else np.asarray(self.labels).nbytes))

    def indices(self, step: int) -> np.ndarray:
        """Row indices ``(B,)`` of batch ``step`` (host twin of :func:`epoch_indices`)."""
        return self._order(step // self.per_epoch)[(step % self.per_epoch) * self.batch_size:][:self.batch_size]

    def __call__(self, step: int):
        idx = self.indices(step)
        return self.images[idx], (None if self.labels is None else self.labels[idx])


def epoch_batch_fn(key, images, labels, batch_size: int) -> EpochBatches:
    """``batch_fn(step)`` returning batch ``step`` of :func:`diffusion_jax.data.batches`:
    the same stream, but addressable by step so a resumed run continues it."""
    return EpochBatches(key, images, labels, batch_size)


def epoch_indices(key, step, num_examples: int, batch_size: int):
    """Row indices ``(B,)`` of batch ``step``: slice ``step % per_epoch`` of epoch
    ``step // per_epoch``'s order ``permutation(fold_in(key, epoch), N)``; traceable.

    The same stream as :func:`diffusion_jax.data.batches` (last partial batch dropped).
    """
    per_epoch = num_examples // batch_size
    order = jax.random.permutation(jax.random.fold_in(key, step // per_epoch), num_examples)  # (N,)
    return jax.lax.dynamic_slice_in_dim(order, (step % per_epoch) * batch_size, batch_size)


def make_multi_step(config: TrainConfig, schedule, null_label=None, *, mesh, max_steps: int, loss=None):
    """``run(state, base_key, data_key, images, labels, start, n) -> (state, metrics)``.

    Applies the updates ``start, ..., start + n - 1`` (``1 <= n <= max_steps``) in one
    compiled call: update ``s`` trains on rows :func:`epoch_indices` ``(data_key, s, N,
    batch_size)`` of the device-resident ``images`` / ``labels`` (replicated; ``labels``
    may be None) with the key ``fold_in(base_key, s)``, the batch split over ``"data"``
    as in :func:`make_train_step`. ``n`` is a traced loop bound, so one program serves
    every group length. ``metrics`` hold ``(max_steps,)`` arrays; entries past ``n`` are 0.

    XLA:CPU rewrites non-canonical convolutions (the weight and input gradients of a
    conv layer) into fast library calls only outside loop bodies (jax-ml/jax#12868):
    a convolutional model's step runs 10-40x slower inside the loop. ``max_steps=1``
    builds no loop, so it stays the right choice for the U-Net on CPU. ``loss``: a custom
    objective, as in :func:`make_train_step`.
    """
    _check_loss(loss)
    step_fn = _step_fn(config, schedule, null_label, custom_loss=loss is not None)
    batch, data = config.batch_size, NamedSharding(mesh, P("data"))

    def one_step(state, base_key, data_key, images, labels, s, custom):
        idx = epoch_indices(data_key, s, images.shape[0], batch)  # (B,)
        x = jax.lax.with_sharding_constraint(jnp.take(images, idx, axis=0), data)  # (B, H, W, C)
        y = None if labels is None else jax.lax.with_sharding_constraint(jnp.take(labels, idx), data)
        return step_fn(state, jax.random.fold_in(base_key, s), x, y, custom)

    def run(state, base_key, data_key, images, labels, start, n, custom=None):
        if max_steps == 1:  # no loop at all (see the XLA:CPU note above)
            state, m = one_step(state, base_key, data_key, images, labels, start, custom)
            return state, {k: jnp.reshape(v, (1,)).astype(jnp.float32) for k, v in m.items()}

        def body(i, carry):
            state, metrics = carry
            state, m = one_step(state, base_key, data_key, images, labels, start + i, custom)
            return state, {k: v.at[i].set(m[k]) for k, v in metrics.items()}

        zeros = {k: jnp.zeros((max_steps,), jnp.float32) for k in ("loss", "grad_norm", "lr")}
        return jax.lax.fori_loop(0, n, body, (state, zeros))

    rep = NamedSharding(mesh, P())
    jitted = jax.jit(run, donate_argnums=0, in_shardings=rep, out_shardings=(rep, rep))
    if loss is None:
        return jitted
    return lambda state, base_key, data_key, images, labels, start, n: jitted(
        state, base_key, data_key, images, labels, start, n, loss)
