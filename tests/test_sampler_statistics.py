"""Samplers driven by the EXACT denoiser of a Gaussian mixture must reproduce the mixture.

``toy.default_mixture()`` has weights (0.5, 0.3, 0.2), means (-0.6, -0.4), (0.6, -0.4),
(0, 0.6) and component std s = 0.08. The clusters are >= 1 apart (> 12 s), so assigning
each sample to its nearest mean recovers its component essentially without error.

Tolerances are statistical, from the sample size, plus a stated discretisation allowance:

* weights: |p_hat_k - pi_k| <= 4 sqrt(pi_k (1 - pi_k) / n) + allowance. With n = 4000 the
  binomial standard error is 0.0079 / 0.0072 / 0.0063, so 4 SE is ~0.03.
* means: |m_hat_k - mu_k| <= 4 s_hat_k / sqrt(n_k) + allowance per coordinate. With
  n_k ~ 800..2000 and s ~ 0.08, 4 SE is ~0.007..0.011.
* allowances: 0.005 for DDPM's 1000 fine steps; for 25..50-step samplers 0.01 on the
  weights and 0.02 on the means. A step of size ~1/50 of the path shrinks the cluster
  means towards the origin by O(|mu| / num_steps) ~ 0.72 / 50 ~ 0.015; the test below
  checks that this bias really falls with the step count rather than hard-coding it.

A sampler bug (wrong coefficient, off-by-one timestep, wrong noise scale) moves weights or
means by far more than these bounds; the per-test keys are fixed, so nothing is flaky.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion_jax import flow, forward, guidance, samplers, schedules, toy

N = 4000
SHAPE = (N, 2)
MU = np.array([[-0.6, -0.4], [0.6, -0.4], [0.0, 0.6]])
PI = np.array([0.5, 0.3, 0.2])
S = 0.08


@pytest.fixture(scope="module")
def mix():
    m = toy.default_mixture()
    # the constants above are the documented mixture; make sure they are what we test
    np.testing.assert_allclose(m.means, MU, rtol=1e-6)
    np.testing.assert_allclose(m.weights, PI, rtol=1e-6)
    np.testing.assert_allclose(m.stds, S, rtol=1e-6)
    return m


@pytest.fixture(scope="module")
def sched():
    return schedules.linear()


def assign(x):
    x = np.asarray(x, np.float64)
    return np.argmin(((x[:, None, :] - MU[None]) ** 2).sum(-1), axis=1)


def component_stats(x):
    x = np.asarray(x, np.float64)
    k = assign(x)
    p = np.bincount(k, minlength=3) / len(x)
    means = np.array([x[k == j].mean(0) for j in range(3)])
    stds = np.array([x[k == j].std(0, ddof=1) for j in range(3)])
    counts = np.bincount(k, minlength=3)
    return p, means, stds, counts


def check_mixture(x, weight_allow, mean_allow, what):
    x = np.asarray(x, np.float64)
    assert np.all(np.isfinite(x)), what
    p, means, stds, counts = component_stats(x)
    se_p = np.sqrt(PI * (1 - PI) / len(x))
    assert np.all(np.abs(p - PI) <= 4 * se_p + weight_allow), f"{what}: weights {p} vs {PI}"
    se_m = stds / np.sqrt(counts)[:, None]
    assert np.all(np.abs(means - MU) <= 4 * se_m + mean_allow), f"{what}: means {means} vs {MU}"
    return p, means, stds


def radial_bias(x):
    """sum_k pi_k (|mu_k| - <m_hat_k, mu_k> / |mu_k|): > 0 when means shrink to the origin."""
    _, means, _, _ = component_stats(x)
    norms = np.linalg.norm(MU, axis=1)
    return float(np.sum(PI * (norms - np.sum(means * MU, axis=1) / norms)))


# ----------------------------------------------------------------------------- DDPM


@pytest.mark.slow
def test_ddpm_1000_recovers_mixture_and_marginals(mix, sched):
    x, tr = samplers.ddpm_sample(jax.random.key(1), mix.denoiser(sched, "eps"), sched, SHAPE, return_trajectory=True)
    _, _, stds = check_mixture(x, 0.005, 0.005, "ddpm-1000")
    # Within-component spread: the last step returns E[x0 | x_0-level], and fixed-small
    # (beta_tilde) variance under-disperses at the first, relatively large, linear-schedule
    # steps (beta_1 / (1 - ab_1) ~ 0.5); both shrink s = 0.08 by a few percent. 12% +
    # 4 SE (s / sqrt(2 n_k) ~ 0.002) bounds that and still catches a wrong noise scale.
    assert np.all(np.abs(stds - S) <= 0.12 * S + 0.01), stds

    # Intermediate states of the reverse chain must follow the forward marginals
    # q(x_t) = sum_k pi_k N(sqrt(ab) mu_k, (ab s^2 + 1 - ab) I)  (DDPM eq. 4 on the mixture).
    # tr.x[j] is the state at timestep level T-1-j (tr.x[0] = x_T, level T-1).
    ab_all = np.asarray(sched.alpha_bars, np.float64)
    T = sched.num_timesteps
    m0 = PI @ MU
    ex2 = PI @ (MU**2) + S**2
    for level in [900, 500, 100, 10]:
        xt = np.asarray(tr.x[T - 1 - level], np.float64)
        ab = ab_all[level]
        mean = np.sqrt(ab) * m0
        var = ab * (ex2 - m0**2) + 1 - ab
        emp_mean, emp_var = xt.mean(0), xt.var(0, ddof=1)
        m4 = ((xt - emp_mean) ** 4).mean(0)
        se_var = np.sqrt(np.maximum(m4 - emp_var**2, 0) / N)
        assert np.all(np.abs(emp_mean - mean) <= 4 * np.sqrt(var / N) + 0.005), (level, emp_mean, mean)
        assert np.all(np.abs(emp_var - var) <= 4 * se_var + 0.02 * var), (level, emp_var, var)


# ----------------------------------------------------------------------------- DDIM


@pytest.mark.slow
@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_50_recovers_mixture(mix, sched, eta, prediction):
    x = samplers.ddim_sample(
        jax.random.key(2), mix.denoiser(sched, prediction), sched, SHAPE, num_steps=50, eta=eta, prediction=prediction
    )
    check_mixture(x, 0.01, 0.02, f"ddim-50 eta={eta} {prediction}")


@pytest.mark.slow
def test_ddim_eps_and_v_give_the_same_sampler(mix, sched):
    """The exact denoiser expressed as eps or as v is one model: same key, same samples."""
    a = samplers.ddim_sample(jax.random.key(2), mix.denoiser(sched, "eps"), sched, SHAPE, num_steps=50, eta=1.0)
    b = samplers.ddim_sample(
        jax.random.key(2), mix.denoiser(sched, "v"), sched, SHAPE, num_steps=50, eta=1.0, prediction="v"
    )
    # both are exact conversions of one x0 estimate; differences are float32 rounding,
    # amplified by 1/sqrt(ab) ~ 160 at the noisiest step
    np.testing.assert_allclose(a, b, atol=2e-3)


@pytest.mark.slow
def test_ddim_coarse_grid_bias_decreases_with_steps(mix, sched):
    den = mix.denoiser(sched, "eps")
    x_T = samplers.initial_noise(jax.random.key(3), SHAPE)  # common random numbers
    bias = {
        n: radial_bias(samplers.ddim_sample(jax.random.key(0), den, sched, SHAPE, num_steps=n, x_T=x_T))
        for n in (20, 50, 200)
    }
    # Every sampler maps the same x_T, so the sampling noise (SE of the weighted radial
    # mean ~ 0.0015) largely cancels between step counts.
    assert bias[20] > bias[50] > bias[200], bias
    assert bias[20] > 0.01, bias  # the coarse-grid shrinkage is real and measurable ...
    assert bias[200] < 0.5 * bias[50], bias  # ... and roughly first order in the step
    assert abs(bias[200]) < 0.006, bias  # 4 SE: consistent with zero at 200 steps


# ----------------------------------------------------------------------------- flow matching


@pytest.mark.slow
@pytest.mark.parametrize("method, steps", [("euler", 50), ("heun", 25)])
def test_rectified_flow_recovers_mixture(mix, method, steps):
    sample = flow.euler_sample if method == "euler" else flow.heun_sample
    x = sample(jax.random.key(4), mix.velocity_fn(), SHAPE, num_steps=steps)
    check_mixture(x, 0.01, 0.02, f"{method}-{steps}")


# ----------------------------------------------------------------------------- conditioning


@pytest.mark.slow
def test_class_conditional_sampling(mix, sched):
    labels = jnp.arange(N, dtype=jnp.int32) % 3
    den = mix.denoiser(sched, "eps")
    runs = {
        "ddim-50": samplers.ddim_sample(jax.random.key(5), den, sched, SHAPE, labels, num_steps=50),
        "ddim-50 cfg 3": samplers.ddim_sample(
            jax.random.key(5), guidance.guided_denoiser(den, 3.0, mix.null_label), sched, SHAPE, labels, num_steps=50
        ),
        "euler-50": flow.euler_sample(jax.random.key(5), mix.velocity_fn(), SHAPE, labels, num_steps=50),
    }
    lab = np.asarray(labels)
    for name, x in runs.items():
        k = assign(x)
        for j in range(3):
            assert np.mean(k[lab == j] == j) >= 0.99, (name, j, np.bincount(k[lab == j], minlength=3))
    # the unconditional (null) label reproduces the unconditional mixture
    null = jnp.full((N,), mix.null_label, jnp.int32)
    x = samplers.ddim_sample(jax.random.key(6), den, sched, SHAPE, null, num_steps=50)
    check_mixture(x, 0.01, 0.02, "ddim-50 null label")


# ----------------------------------------------------------------------------- forward process


@pytest.mark.parametrize("t", [0, 250, 999])
def test_q_sample_monte_carlo_moments(sched, t):
    n = 100_000
    x0_row = np.array([0.9, -0.5, 0.0, 0.3], np.float32)
    x0 = jnp.broadcast_to(jnp.asarray(x0_row), (n, 4))
    x_t, eps = forward.add_noise(jax.random.key(7 + t), sched, x0, t)
    ab = float(np.asarray(sched.alpha_bars, np.float64)[t])
    xt = np.asarray(x_t, np.float64)
    mean, var = np.sqrt(ab) * x0_row, 1 - ab
    # mean: SE sqrt(var / n); variance of a Gaussian sample: SE var * sqrt(2 / (n - 1)).
    # 5 SE over 4 coordinates. var at t = 0 is 1e-4; the float32 sum x0 + std * eps has
    # an absolute rounding error ~ 6e-8 per element, negligible against sqrt(var) = 0.01.
    assert np.all(np.abs(xt.mean(0) - mean) <= 5 * np.sqrt(var / n))
    assert np.all(np.abs(xt.var(0, ddof=1) - var) <= 5 * var * np.sqrt(2 / (n - 1)))
    # the returned eps is the noise that was used, and it is standard normal
    np.testing.assert_allclose(
        xt, np.sqrt(ab) * x0_row + np.sqrt(1 - ab) * np.asarray(eps, np.float64), rtol=1e-5, atol=1e-6
    )
    e = np.asarray(eps, np.float64)
    assert np.all(np.abs(e.mean(0)) < 5 / np.sqrt(n)) and np.all(np.abs(e.var(0) - 1) < 5 * np.sqrt(2 / n))
