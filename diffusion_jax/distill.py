"""Few-step students: guidance distillation (Meng et al. 2023) and progressive distillation
(Salimans & Ho 2022), as objectives for the ordinary training loop.

A guided teacher costs two predictions per step (conditional and unconditional) and needs
tens of steps. Two distillations remove both factors:

* **Guidance distillation** (Meng et al. 2023, stage 1). The student takes the CFG scale
  s as an extra input (:class:`~diffusion_jax.models.UNetConfig` ``guidance_embed``) and
  learns to output, in ONE prediction, what the teacher's two combine to:
  ``uncond + s (cond - uncond)`` at every timestep, with s drawn uniformly from a range
  for each row (:func:`guidance_loss`).
* **Progressive distillation** (Salimans & Ho 2022, Alg. 2). A student sampled with n
  deterministic DDIM steps learns to land, in one step, where its teacher lands in two.
  From x_t at student step i the teacher takes its steps 2i and 2i + 1 (x_t -> x_t' ->
  x_t''); the target is the x0 that makes ONE DDIM step from x_t land exactly on x_t''
  (:func:`one_step_x0`). Each round halves the steps; the student of one round is the
  teacher of the next, and every student starts from its teacher's weights.

Both losses are mean squared errors on the v-prediction. Since x0 = a x_t - s v on the
variance-preserving path, ||v_hat - v||^2 = (1 + SNR) ||x0_hat - x0||^2: Salimans &
Ho's "SNR + 1" weighting of the x0 error, which stays finite at zero SNR (their Sec. 4).

Grids: a student with n steps samples on the n-step DDIM grid with trailing spacing
(:func:`student_grid`), round(T - k T / n) - 1. That grid is every other point of the
2n-step one (up to rounding, which :func:`check_nested` checks), so the teacher's two
steps start and end exactly where the student's one does.

Networks with the scale as an input are "guided nets" ``net(x_t, t, cond, scale)``
(``scale`` ``(B,)``): a CFG teacher (:func:`cfg_net`) or a student (:func:`input_net`).
:func:`net_denoiser` fixes the scale and gives a :class:`~diffusion_jax.denoisers.Denoiser`
that every sampler takes unchanged (the scale is a pytree leaf: one compilation serves
all scales).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diffusion_jax._checks import as_partial, expand_to
from diffusion_jax.denoisers import Denoiser
from diffusion_jax.grids import Grid, ddim_grid
from diffusion_jax.guidance import guided_denoiser
from diffusion_jax.schedules import Schedule

__all__ = ["DistillConfig", "GUIDANCE_RANGE", "student_grid", "check_nested", "ddim_to", "one_step_x0",
           "progressive_target", "v_from_x0", "cfg_net", "input_net", "net_denoiser", "guidance_loss",
           "progressive_loss", "objective", "init_student"]

#: Meng et al. train over a range of guidance weights; diffusers' s in [1, 5] is their w in [0, 4].
GUIDANCE_RANGE = (1.0, 5.0)
#: The DDIM spacing of every student grid: nested under halving (see check_nested).
SPACING = "trailing"


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """What a distilled preset is distilled from (part of its fingerprint).

    ``teacher``: the teacher's preset name. ``student_steps``: None for guidance
    distillation (the student matches the guided teacher at every timestep), n for a
    progressive round (the teacher samples with 2n steps, the student with n).
    ``scale_range``: the CFG scales s the student learns, drawn uniformly per row.
    """

    teacher: str
    student_steps: int | None = None
    scale_range: tuple[float, float] = GUIDANCE_RANGE

    def __post_init__(self):
        object.__setattr__(self, "scale_range", tuple(float(v) for v in self.scale_range))
        if self.student_steps is not None and (isinstance(self.student_steps, bool)
                                               or int(self.student_steps) != self.student_steps
                                               or self.student_steps < 1):
            raise ValueError(f"student_steps must be None (guidance distillation) or a positive integer, "
                             f"got {self.student_steps!r}")
        lo, hi = self.scale_range if len(self.scale_range) == 2 else (1.0, 0.0)
        if not 0.0 <= lo < hi:
            raise ValueError(f"scale_range must be (lo, hi) with 0 <= lo < hi, got {self.scale_range}")


# ----------------------------------------------------------------------------------------- grids


def student_grid(schedule: Schedule, num_steps: int) -> Grid:
    """The deterministic n-step DDIM grid a student samples on (trailing spacing, lands on the data)."""
    return ddim_grid(schedule, num_steps, spacing=SPACING)


def check_nested(schedule: Schedule, num_steps: int) -> Grid:
    """The teacher's 2n-step grid, after checking that student step i is teacher steps 2i, 2i + 1.

    Raises ValueError naming ``num_steps`` when rounding breaks the nesting (rare: n = 24
    on T = 100; none for n < 40 on T = 1000): then the teacher's two steps would not end
    where the student's one does.
    """
    student, teacher = student_grid(schedule, num_steps), student_grid(schedule, 2 * num_steps)
    same_start = np.array_equal(np.asarray(teacher.t[0::2]), np.asarray(student.t))
    same_end = np.array_equal(np.asarray(teacher.a_next[1::2]), np.asarray(student.a_next))
    if not (same_start and same_end):
        raise ValueError(f"student_steps={num_steps}: the {2 * num_steps}-step grid does not contain the "
                         f"{num_steps}-step one on T = {schedule.num_timesteps} (rounding); choose another step count")
    return teacher


# ----------------------------------------------------------------------------------------- targets


def ddim_to(x0, x_t, a, s, a_next, s_next):
    """Deterministic DDIM (eq. 12, sigma = 0): x_next = a_next x0 + s_next (x_t - a x0) / s.

    Coefficients are scalars or ``(B,)``; ``x0``, ``x_t`` are ``(B, ...)``.
    """
    a, s, a_next, s_next = (expand_to(c, x_t) for c in (a, s, a_next, s_next))
    return a_next * x0 + s_next * (x_t - a * x0) / s


def one_step_x0(x_t, x_next, a, s, a_next, s_next):
    """The x0 with ``ddim_to(x0, x_t, a, s, a_next, s_next) == x_next`` (Salimans & Ho, Alg. 2).

    Solving a_next x0 + (s_next / s)(x_t - a x0) = x_next for x0 gives
    x0 = (x_next - r x_t) / (a_next - r a) with r = s_next / s; the denominator is
    positive because the SNR grows along the grid. On the last step (s_next = 0) it is x_next.
    """
    a, s, a_next, s_next = (expand_to(c, x_t) for c in (a, s, a_next, s_next))
    r = s_next / s
    return (x_next - r * x_t) / (a_next - r * a)


def _rows(grid: Grid, idx) -> Grid:
    return jax.tree.map(lambda v: v[idx], grid)  # every field (B,)


def progressive_target(teacher: Denoiser, x_t, steps, teacher_grid: Grid, cond=None):
    """``(x0_target, x_next)``: two teacher DDIM steps from student step ``steps`` ``(B,)``.

    ``x_t`` ``(B, ...)`` sits at the level of the teacher's step ``2i`` (= the student's
    step i); the teacher steps 2i and 2i + 1 go x_t -> x_t' -> x_next; ``x0_target`` is
    :func:`one_step_x0`, the student's x0 for one step onto x_next.
    """
    g1, g2 = _rows(teacher_grid, 2 * steps), _rows(teacher_grid, 2 * steps + 1)
    x0_1, _ = teacher(x_t, g1.t, g1.a, g1.s, cond)
    x_mid = ddim_to(x0_1, x_t, g1.a, g1.s, g1.a_next, g1.s_next)
    x0_2, _ = teacher(x_mid, g2.t, g2.a, g2.s, cond)
    x_next = ddim_to(x0_2, x_mid, g2.a, g2.s, g2.a_next, g2.s_next)
    return one_step_x0(x_t, x_next, g1.a, g1.s, g2.a_next, g2.s_next), x_next


def v_from_x0(x0, x_t, a, s):
    """The v-prediction whose x0 is ``x0`` at x_t: v = (a x_t - x0) / s (a^2 + s^2 = 1)."""
    a, s = expand_to(a, x_t), expand_to(s, x_t)
    return (a * x_t - x0) / s


# ----------------------------------------------------------------------------------------- guided nets


def _cfg_out(fn, null_cond, x_t, t, cond, scale):
    # guided_denoiser combines uncond + scale (cond - uncond); a (B, 1, ...) scale is per row.
    return guided_denoiser(fn, expand_to(scale, x_t), null_cond)(x_t, t, cond)


def cfg_net(fn, null_cond) -> jax.tree_util.Partial:
    """``net(x_t, t, cond, scale)``: classifier-free guidance around ``fn(x_t, t, cond)``, two predictions."""
    return jax.tree_util.Partial(_cfg_out, as_partial(fn), jnp.asarray(null_cond))


@dataclasses.dataclass(frozen=True)
class _InputApply:
    """Hashable-by-value call of a model that takes the scale as an input (see train._Apply)."""

    graphdef: Any

    def __call__(self, params, rest, x_t, t, cond, scale):
        return nnx.merge(self.graphdef, params, rest)(x_t, t, cond, guidance=scale)


def input_net(graphdef, params, rest=None) -> jax.tree_util.Partial:
    """``net(x_t, t, cond, scale)`` of a model built with ``guidance_embed``: one prediction."""
    return jax.tree_util.Partial(_InputApply(graphdef), params, nnx.State({}) if rest is None else rest)


def _at_scale(net, scale, x_t, t, cond):
    return net(x_t, t, cond, jnp.broadcast_to(scale, (x_t.shape[0],)))  # (B,)


def net_denoiser(net, scale, prediction: str, clip_x0: float | None = None) -> Denoiser:
    """A :class:`Denoiser` of the guided net at scale ``s`` (a scalar or ``(B,)``; a leaf)."""
    return Denoiser(jax.tree_util.Partial(_at_scale, net, jnp.asarray(scale, jnp.float32)), prediction,
                    None if clip_x0 is None else float(clip_x0))


# ----------------------------------------------------------------------------------------- losses


def _scales(key, n, lo, hi):
    return jax.random.uniform(key, (n,), jnp.float32, lo, hi)  # (B,) one scale per row


def guidance_loss(key, model, images, cond, teacher_net, alpha_bars, scale_lo, scale_hi):
    """Meng et al. stage 1: MSE between the student's output at scale s and the teacher's guided one.

    t uniform over all timesteps, s uniform in [scale_lo, scale_hi) per row. Both outputs
    are raw network outputs in the teacher's parameterisation (v here: the "SNR + 1"
    weighting); guidance is affine in them, so the target means the same in any.
    """
    k_t, k_eps, k_s = jax.random.split(key, 3)
    b = images.shape[0]
    t = jax.random.randint(k_t, (b,), 0, alpha_bars.shape[0])  # (B,)
    eps = jax.random.normal(k_eps, images.shape, images.dtype)
    ab = expand_to(alpha_bars[t], images)
    x_t = jnp.sqrt(ab) * images + jnp.sqrt(1 - ab) * eps  # DDPM eq. 4
    scale = _scales(k_s, b, scale_lo, scale_hi)
    target = jax.lax.stop_gradient(teacher_net(x_t, t, cond, scale))
    return jnp.mean((model(x_t, t, cond, guidance=scale) - target) ** 2)


def progressive_loss(key, model, images, cond, teacher_net, teacher_grid, scale_lo, scale_hi, *,
                     prediction: str = "v", clip_x0: float | None = None):
    """Salimans & Ho Alg. 2 with the scale as an input: v-MSE to :func:`progressive_target`.

    The student step i is uniform over the student's n = S / 2 steps, x_t = a x0 + s eps
    at its level, s uniform per row; the teacher is ``teacher_net`` at the same scale,
    read as ``prediction`` with ``clip_x0`` (as it samples).
    """
    k_i, k_eps, k_s = jax.random.split(key, 3)
    b = images.shape[0]
    steps = jax.random.randint(k_i, (b,), 0, teacher_grid.num_steps // 2)  # (B,) student steps
    g = _rows(teacher_grid, 2 * steps)
    eps = jax.random.normal(k_eps, images.shape, images.dtype)
    x_t = expand_to(g.a, images) * images + expand_to(g.s, images) * eps
    scale = _scales(k_s, b, scale_lo, scale_hi)
    teacher = net_denoiser(teacher_net, scale, prediction, clip_x0)
    x0_target, _ = progressive_target(teacher, x_t, steps, teacher_grid, cond)
    v_target = jax.lax.stop_gradient(v_from_x0(x0_target, x_t, g.a, g.s))
    return jnp.mean((model(x_t, g.t, cond, guidance=scale) - v_target) ** 2)


def objective(config: DistillConfig, teacher_net, schedule: Schedule, *, prediction: str = "v",
              clip_x0: float | None = None) -> jax.tree_util.Partial:
    """The loss for :func:`diffusion_jax.train.fit` (``loss=``): a Partial whose leaves are the
    teacher's weights, its grid and the scale range.

    ``teacher_net(x_t, t, cond, scale)``: :func:`cfg_net` for guidance distillation,
    :func:`input_net` of the previous student for a progressive round. The student
    predicts v (Salimans & Ho: an eps-student cannot take large steps near zero SNR).
    """
    if prediction != "v":
        raise ValueError(f"distillation trains a v-prediction student; the teacher predicts {prediction!r} "
                         f"(distil from a v-prediction model)")
    lo, hi = (jnp.float32(v) for v in config.scale_range)
    # Keyword leaves: the call loss(key, model, images, cond) keeps the key first.
    if config.student_steps is None:
        return jax.tree_util.Partial(guidance_loss, teacher_net=teacher_net,
                                     alpha_bars=jnp.asarray(schedule.alpha_bars), scale_lo=lo, scale_hi=hi)
    grid2 = check_nested(schedule, config.student_steps)
    loss = functools.partial(progressive_loss, prediction=prediction, clip_x0=clip_x0)  # static settings
    return jax.tree_util.Partial(loss, teacher_net=teacher_net, teacher_grid=grid2, scale_lo=lo, scale_hi=hi)


# ----------------------------------------------------------------------------------------- students


def init_student(model: nnx.Module, teacher_params) -> nnx.Module:
    """``model`` with every parameter it shares with the teacher (same path and shape) copied.

    Parameters only the student has (the guidance embedding, zero at its output) keep
    their initial values, so the student starts as the teacher. Returns ``model``,
    updated in place. Raises ValueError if the teacher has a parameter the student lacks.
    """
    params = nnx.state(model, nnx.Param)
    flat_s, tree = jax.tree_util.tree_flatten_with_path(params)
    flat_t = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(teacher_params)[0]}
    names = [jax.tree_util.keystr(p) for p, _ in flat_s]
    extra = sorted(set(flat_t) - set(names))
    if extra:
        raise ValueError(f"the teacher has parameters the student lacks: {extra[:3]}; the student must be "
                         f"the teacher's architecture (plus the guidance embedding)")
    leaves = []
    for name, (_, v) in zip(names, flat_s):
        w = flat_t.get(name)
        if w is not None and tuple(np.shape(w)) != tuple(np.shape(v)):
            raise ValueError(f"parameter {name}: the teacher's shape {np.shape(w)} differs from the student's "
                             f"{np.shape(v)}")
        leaves.append(v if w is None else jnp.array(w, dtype=v.dtype))
    nnx.update(model, jax.tree_util.tree_unflatten(tree, leaves))
    return model
