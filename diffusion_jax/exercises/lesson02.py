"""Lesson 02 exercises: the denoising training objective, and one whole training step.

Every input is explicit (timesteps and noise are given), so nothing depends on how a key
is split. Inputs come from NumPy's seeded generator: eager ``jax.random`` calls compile
once per new shape, which made building the cases take seconds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffusion_jax import forward, losses, schedules
from diffusion_jax.exercises._core import Variant, case, register

LESSON = "02"


def _normal(rng, shape):
    return jnp.asarray(rng.standard_normal(shape), jnp.float32)


def _uniform(rng, shape):
    return jnp.asarray(rng.uniform(-1.0, 1.0, shape), jnp.float32)


def _rows(a, ndim):
    return a.reshape((-1,) + (1,) * (ndim - 1))  # (B,) -> (B, 1, ..., 1)


def _axes(x):
    return tuple(range(1, x.ndim))


# ------------------------------------------------------------------ simple_loss


def _simple_loss_cases():
    cases = []
    for i, (label, shape) in enumerate([("(4, 3) vectors", (4, 3)), ("(2, 28, 28, 1) images", (2, 28, 28, 1)),
                                        ("(3, 8, 8, 3) colour images", (3, 8, 8, 3)), ("a batch of one (1, 5)", (1, 5))]):
        rng = np.random.default_rng(200 + i)
        true_eps = _normal(rng, shape)
        pred_eps = true_eps + 0.3 * _normal(rng, shape)
        cases.append(case(label, pred_eps, true_eps))
    # the chapter's two rows: losses 0.0006 (t = 100) and 0.025 (t = 700) after rounding
    pred = jnp.array([[0.18, -0.08, 0.02], [0.72, -0.35, 0.10]])
    true = jnp.array([[0.20, -0.10, 0.05], [0.90, -0.40, 0.30]])
    cases.append(case("the chapter's two rows", pred, true, rows=["t = 100", "t = 700"]))
    return cases


register(
    "simple_loss",
    lesson=LESSON,
    reference=losses.per_example_mse,
    cases=_simple_loss_cases,
    hints=(
        "One number per example: the error is squared entry by entry, then averaged within each "
        "example, never across examples.",
        "jnp.mean takes a tuple of axes. The batch axis is 0; the ones to average over are 1, ..., ndim - 1, "
        "whatever the number of trailing axes.",
        "jnp.mean((pred_eps - true_eps) ** 2, axis=tuple(range(1, pred_eps.ndim)))",
    ),
    variants=(
        Variant("one mean for the batch", lambda p, e: jnp.mean((p - e) ** 2),
                "one mean over the whole batch; the loss keeps one value per example (shape (B,)) so it "
                "can be weighted per timestep or averaged later"),
        Variant("sum per example", lambda p, e: jnp.sum((p - e) ** 2, axis=_axes(p)),
                "the squared errors summed over each example instead of averaged: that loss grows with "
                "the image size"),
        Variant("absolute error", lambda p, e: jnp.mean(jnp.abs(p - e), axis=_axes(p)),
                "the mean absolute error; the simple loss squares the error"),
        Variant("root of the mean", lambda p, e: jnp.sqrt(jnp.mean((p - e) ** 2, axis=_axes(p))),
                "the root of the mean squared error; the loss is the mean squared error itself"),
    ),
)


# ------------------------------------------------------------------ noisy_input_and_target


def _pair_cases():
    cases = []
    setups = [
        ('prediction="eps", (4, 8, 8, 1) images', (4, 8, 8, 1), schedules.linear(1000), "eps"),
        ('prediction="x0", (4, 8, 8, 1) images', (4, 8, 8, 1), schedules.linear(1000), "x0"),
        ('prediction="v", (4, 8, 8, 1) images', (4, 8, 8, 1), schedules.linear(1000), "v"),
        ('prediction="v", (3, 5) vectors, cosine schedule', (3, 5), schedules.cosine(1000), "v"),
        ('prediction="eps", 10-step schedule', (2, 4, 4, 3), schedules.linear(10), "eps"),
    ]
    for i, (label, shape, sched, prediction) in enumerate(setups):
        rng = np.random.default_rng(300 + i)
        x0 = _uniform(rng, shape)
        eps = _normal(rng, shape)
        t = rng.integers(0, sched.num_timesteps, shape[0])
        t[0], t[-1] = 0, sched.num_timesteps - 1  # both ends of the chain
        cases.append(case(label, sched, x0, jnp.asarray(t, jnp.int32), eps, prediction,
                          rows=[f"t = {v}" for v in t]))
    return cases


def _pair_reference(schedule, x0, t, eps, prediction):
    x_t = forward.q_sample(schedule, x0, t, eps)
    target = losses.prediction_target(prediction, x0, eps, schedule.alpha_bars[t])
    return x_t, target


def _pair_with_v(v_fn, *, no_sqrt=False):
    def pair(schedule, x0, t, eps, prediction):
        ab = _rows(schedule.alpha_bars[t], x0.ndim)
        x_t = ab * x0 + (1 - ab) * eps if no_sqrt else jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * eps
        target = {"eps": eps, "x0": x0}.get(prediction)
        return x_t, (v_fn(ab, x0, eps) if target is None else target)
    return pair


register(
    "noisy_input_and_target",
    lesson=LESSON,
    reference=_pair_reference,
    cases=_pair_cases,
    outputs=("x_t", "target"),
    hints=(
        "The input x_t is lesson 01's q_sample and does not depend on the prediction type. The target is what "
        "the network is asked to output: for 'eps' and 'x0' it is one of the inputs.",
        "For 'v' the target mixes eps and x0 with the same two coefficients as x_t, sqrt(ab) and sqrt(1 - ab), "
        "but paired the other way round and with a minus sign: at t = 0 (ab near 1) v is almost eps.",
        "ab = schedule.alpha_bars[t].reshape((-1,) + (1,) * (x0.ndim - 1)); x_t = jnp.sqrt(ab) * x0 + "
        "jnp.sqrt(1 - ab) * eps; v = jnp.sqrt(ab) * eps - jnp.sqrt(1 - ab) * x0",
    ),
    variants=(
        Variant("v sign flipped", _pair_with_v(lambda ab, x0, e: jnp.sqrt(1 - ab) * x0 - jnp.sqrt(ab) * e),
                "the v target with its sign flipped: at t = 0 (alpha_bar near 1) v must be close to +eps"),
        Variant("v coefficients swapped", _pair_with_v(lambda ab, x0, e: jnp.sqrt(1 - ab) * e - jnp.sqrt(ab) * x0),
                "the v target with the two coefficients swapped: at t = 0 (alpha_bar near 1) v must be close "
                "to eps, not to -x0"),
        Variant("x_t without square roots", _pair_with_v(
            lambda ab, x0, e: jnp.sqrt(ab) * e - jnp.sqrt(1 - ab) * x0, no_sqrt=True),
                "x_t built with alpha_bar and 1 - alpha_bar as coefficients; those are powers, and the "
                "coefficients are their square roots (lesson 01)"),
    ),
)


# ------------------------------------------------------------------ sgd_step: one whole training step


def _linear_loss(w, schedule, x0, t, eps):
    x_t = forward.q_sample(schedule, x0, t, eps)
    return jnp.mean(losses.per_example_mse(x_t @ w, eps))


def _sgd_reference(w, schedule, x0, t, eps, lr):
    loss, grad = jax.value_and_grad(_linear_loss)(w, schedule, x0, t, eps)
    return w - lr * grad, loss


def _sgd_cases():
    cases = []
    for i, (label, (b, d), sched, lr) in enumerate([
        ("batch of 8, D = 3, w = identity, linear schedule", (8, 3), schedules.linear(1000), 0.1),
        ("batch of 16, D = 4, random w, cosine schedule", (16, 4), schedules.cosine(1000), 0.05),
        ("batch of 4, D = 2, t = 0 and t = T - 1 rows, lr = 1", (4, 2), schedules.linear(1000), 1.0),
    ]):
        rng = np.random.default_rng(250 + i)
        w = jnp.eye(d) if i == 0 else _normal(rng, (d, d)) * 0.5
        x0, eps = _uniform(rng, (b, d)), _normal(rng, (b, d))
        t = rng.integers(0, sched.num_timesteps, b)
        if i == 2:
            t = np.array([0, 999, 0, 999])
        cases.append(case(label, w, sched, x0, jnp.asarray(t, jnp.int32), eps, lr))
    return cases


def _sgd_variant(loss_fn, sign=-1.0):
    def step(w, schedule, x0, t, eps, lr):
        loss, grad = jax.value_and_grad(loss_fn)(w, schedule, x0, t, eps)
        return w + sign * lr * grad, loss
    return step


def _loss_x0_target(w, schedule, x0, t, eps):
    return jnp.mean(losses.per_example_mse(forward.q_sample(schedule, x0, t, eps) @ w, x0))


def _loss_summed(w, schedule, x0, t, eps):
    return jnp.sum(losses.per_example_mse(forward.q_sample(schedule, x0, t, eps) @ w, eps))


def _loss_clean_input(w, schedule, x0, t, eps):
    return jnp.mean(losses.per_example_mse(x0 @ w, eps))


register(
    "sgd_step",
    lesson=LESSON,
    reference=_sgd_reference,
    cases=_sgd_cases,
    outputs=("new w", "loss"),
    hints=(
        "A training step has four parts: build each row's noisy input from (x0, t, eps), predict with the "
        "current weights, compare the prediction with what this model is meant to recover, and move the "
        "weights a step of size lr downhill.",
        "Write the loss as a function of w alone (the batch is fixed inside it) and let jax.value_and_grad "
        "give you the loss and dL/dw together. The loss is the simple loss of each example, averaged over the batch.",
        "def loss(w): ab = schedule.alpha_bars[t][:, None]; x_t = jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * eps; "
        "return jnp.mean((x_t @ w - eps) ** 2); value, g = jax.value_and_grad(loss)(w); return w - lr * g, value",
    ),
    variants=(
        Variant("gradient ascent", _sgd_variant(_linear_loss, sign=+1.0),
                "a step up the gradient: the update subtracts lr times the gradient, or the loss grows"),
        Variant("x0 as the target", _sgd_variant(_loss_x0_target),
                "a loss against x0: this model predicts the noise, so its target is eps"),
        Variant("loss summed over the batch", _sgd_variant(_loss_summed),
                "the per-example losses summed over the batch: the step is then B times larger and the "
                "right learning rate would depend on the batch size; average them"),
        Variant("clean input", _sgd_variant(_loss_clean_input),
                "the model fed the clean x0 instead of the noisy x_t; it must see the input it will see "
                "when sampling"),
    ),
    rtol=1e-4,
    atol=1e-5,
)
