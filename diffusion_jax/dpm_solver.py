"""DPM-Solver++ (Lu et al. 2022b): multistep solvers of the probability-flow ODE in log-SNR.

On the path x_t = a x0 + s eps, write lambda = log(a / s) (half the log-SNR; it grows
from -inf at pure noise to +inf at the data). With the data prediction x0_hat the
probability-flow ODE is semi-linear, and its solution from lambda to lambda_next is

    x_next = (s_next / s) x + s_next * integral_lambda^lambda_next e^l x0_hat(l) dl

(Lu et al. 2022b, Sec. 4; the same variation-of-constants step as eq. 3.4 of Lu et al.
2022a, there with the noise prediction). The linear part is exact; only x0_hat is
approximated. With h = lambda_next - lambda and the estimates m0, m1, m2 at this step
and the two before it (h0, h1 the earlier steps' widths):

* order 1, x0_hat constant:  x_next = (s_next / s) x - a_next (e^{-h} - 1) m0. That is
  deterministic DDIM (DDIM eq. 12 with sigma = 0) and the first-order DPM-Solver++.
* order 2, DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2), a line through m1 and m0:
  D1 = (m0 - m1) h / h0, and m0 is replaced by m0 + D1 / 2.
* order 3, DPM-Solver++(3M) (the multistep third-order update of Lu et al.'s code and
  diffusers), a parabola through m2, m1, m0:
  x_next = (s_next / s) x - a_next (e^{-h} - 1) m0 + a_next ((e^{-h} - 1) / h + 1) D1
  - a_next ((e^{-h} - 1 + h) / h^2 - 1/2) D2.

Which order each step takes follows diffusers' ``DPMSolverMultistepScheduler``: step i
uses at most order i + 1 (there is no history yet); ``lower_order_final`` (n < 15 steps)
drops the last step to order 1 and the one before it to order 2; ``euler_at_final`` drops
the last step to order 1; and a step that lands on the data (s_next = 0, diffusers'
``final_sigmas_type="zero"``) is always order 1, since h is infinite there.

Endpoints need no special cases: with lambda = log a - log s in IEEE arithmetic, a = 0
(zero terminal SNR, or t = 1 on the flow path) gives lambda = -inf, and s_next = 0 gives
+inf; then h = inf, e^{-h} - 1 = expm1(-inf) = -1 and a later step's h / h0 = 0, which
are the limits of the formulas (the step after a start at a = 0 reduces to order 1).
The same formulas hold on the rectified-flow path (a = 1 - t, s = t).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from diffusion_jax._checks import is_concrete
from diffusion_jax.denoisers import Denoiser
from diffusion_jax.grids import Grid
from diffusion_jax.samplers import Trajectory, _check_inputs

#: diffusers applies ``lower_order_final`` only below this many steps.
LOWER_ORDER_FINAL_BELOW = 15


def step_orders(num_steps: int, order: int, *, lower_order_final: bool = True,
                euler_at_final: bool = False) -> np.ndarray:
    """The order of each of ``num_steps`` steps, ``(S,)`` int32, before the landing rule.

    A grid whose last step lands on the data also takes that step at order 1
    (:func:`multistep_sample` applies it, as it depends on the grid's values).
    """
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    i = np.arange(num_steps)
    orders = np.minimum(order, i + 1)  # warm-up: step i has only i earlier estimates
    short = lower_order_final and num_steps < LOWER_ORDER_FINAL_BELOW
    if short:
        orders = np.where(i == num_steps - 2, np.minimum(orders, 2), orders)
    if short or euler_at_final:
        orders = np.where(i == num_steps - 1, 1, orders)
    return orders.astype(np.int32)

__all__ = ["sample_dpmpp_2m", "multistep_sample", "sample_dpmpp_3m", "step_orders", "log_snr_half",
           "dpmpp_2m_update"]


def _lambda(a, s):
    return jnp.log(a) - jnp.log(s)  # -inf at a = 0, +inf at s = 0


def log_snr_half(a, s):
    """lambda = log(a / s), half the log-SNR: the time variable of DPM-Solver."""
    return _lambda(jnp.asarray(a, jnp.float32), jnp.asarray(s, jnp.float32))


def dpmpp_2m_update(x, m0, m1, a, s, a_next, s_next, h_prev):
    """One second-order DPM-Solver++(2M) step (Lu et al. 2022b, Alg. 2), for lessons and tests.

    ``x`` at (a, s) moves to (a_next, s_next) with the x0 estimates ``m0`` here and ``m1``
    at the previous step, ``h_prev`` that step's width in lambda. The estimate used is
    m0 + (h / h_prev) (m0 - m1) / 2: the line through the two, read half a step ahead.
    :func:`multistep_sample` takes exactly this step wherever its order is 2.
    """
    h = log_snr_half(a_next, s_next) - log_snr_half(a, s)
    d1 = (h / h_prev) * (m0 - m1)
    return (s_next / s) * x - a_next * jnp.expm1(-h) * (m0 + 0.5 * d1)


@functools.partial(jax.jit, static_argnames=("return_trajectory",))
def _multistep(denoiser_, x, grid, cond, orders, return_trajectory):
    S = grid.num_steps
    h_all = _lambda(grid.a_next, grid.s_next) - _lambda(grid.a, grid.s)  # (S,)
    inf = jnp.full((2,), jnp.inf, h_all.dtype)
    h0_all = jnp.concatenate([inf[:1], h_all])[:S]  # width of the step before; inf: none
    h1_all = jnp.concatenate([inf, h_all])[:S]  # width of the step two before
    lands = (jnp.arange(S) == S - 1) & (grid.s_next[-1] == 0)
    orders = jnp.where(lands, 1, orders)

    def step(carry, inputs):
        x, m1, m2 = carry  # the x0 estimates of the two previous steps
        g, h, h0, h1, order = inputs
        m0, _ = denoiser_(x, jnp.full((x.shape[0],), g.t, g.t.dtype), g.a, g.s, cond)
        em1 = jnp.expm1(-h)  # e^{-h} - 1; exactly -1 when landing on the data
        x1 = (g.s_next / g.s) * x - g.a_next * em1 * m0
        q0, q1 = h / h0, h / h1  # diffusers' 1 / r0 and 1 / r1; 0 after a start at a = 0
        d1_0, d1_1 = q0 * (m0 - m1), q1 * (m1 - m2)
        x2 = x1 - 0.5 * g.a_next * em1 * d1_0
        D1 = d1_0 + q1 / (q0 + q1) * (d1_0 - d1_1)
        D2 = (d1_0 - d1_1) * q0 * q1 / (q0 + q1)
        x3 = x1 + g.a_next * (em1 / h + 1.0) * D1 - g.a_next * ((em1 + h) / h**2 - 0.5) * D2
        # Unused orders may hold inf or nan (h = inf on a landing step): select, never mix.
        x_new = jnp.where(order == 1, x1, jnp.where(order == 2, x2, x3))
        return (x_new, m0, m1), (x_new, m0) if return_trajectory else None

    zeros = jnp.zeros_like(x)
    (x_last, _, _), ys = jax.lax.scan(step, (x, zeros, zeros), (grid, h_all, h0_all, h1_all, orders))
    if not return_trajectory:
        return x_last
    return x_last, Trajectory(jnp.concatenate([x[None], ys[0]], axis=0), ys[1], grid.t)  # (S + 1, B, ...)


def multistep_sample(denoiser_: Denoiser, x, grid: Grid, cond=None, *, order: int = 2,
                     lower_order_final: bool = True, euler_at_final: bool = False,
                     return_trajectory: bool = False):
    """DPM-Solver++ of ``order`` 1, 2 or 3 on ``grid`` (one denoiser evaluation per step).

    Order 1 is deterministic DDIM; ``lower_order_final`` and ``euler_at_final`` as
    diffusers' scheduler options of the same names (defaults: theirs).
    """
    _check_inputs(denoiser_, x, grid)
    if denoiser_.prediction == "eps" and is_concrete(grid.a) and bool(jnp.any(grid.a <= 0)):
        raise ValueError("this grid starts at zero SNR (a = 0), where an eps-prediction model cannot "
                         "estimate x0; use a v- or x0-prediction model, or a grid that starts below T-1")
    orders = jnp.asarray(step_orders(grid.num_steps, order, lower_order_final=lower_order_final,
                                     euler_at_final=euler_at_final))
    return _multistep(denoiser_, jnp.asarray(x), grid, cond, orders, return_trajectory)


def sample_dpmpp_2m(key, denoiser_: Denoiser, x, grid: Grid, cond=None, *, row_offset=0,
                    return_trajectory=False, lower_order_final: bool = True, euler_at_final: bool = False):
    """DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2) on ``grid``: deterministic, ``key`` unused."""
    del key, row_offset  # deterministic: the result depends on x only
    return multistep_sample(denoiser_, x, grid, cond, order=2, lower_order_final=lower_order_final,
                            euler_at_final=euler_at_final, return_trajectory=return_trajectory)


def sample_dpmpp_3m(key, denoiser_: Denoiser, x, grid: Grid, cond=None, *, row_offset=0,
                    return_trajectory=False, lower_order_final: bool = True, euler_at_final: bool = False):
    """DPM-Solver++(3M), third-order multistep, on ``grid``: deterministic, ``key`` unused."""
    del key, row_offset
    return multistep_sample(denoiser_, x, grid, cond, order=3, lower_order_final=lower_order_final,
                            euler_at_final=euler_at_final, return_trajectory=return_trajectory)
