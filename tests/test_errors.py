"""Bad input fails early with an error that names the offending argument.

Every ``match`` contains the argument's name as the caller wrote it, so a message that
only says "invalid value" (or a deep JAX broadcasting error) fails these tests.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion_jax import (
    flow,
    forward,
    guidance,
    losses,
    parameterization,
    samplers,
    schedules,
    timesteps,
    toy,
)


@pytest.fixture(scope="module")
def sched():
    return schedules.linear(100)


@pytest.fixture(scope="module")
def mix():
    return toy.default_mixture()


def den(x_t, t, cond):  # a valid, cheap eps-denoiser
    return 0.1 * x_t


def vel(x_t, t, cond):
    return 0.1 * x_t


KEY = jax.random.key(0)
X = jnp.zeros((4, 3), jnp.float32)


# ----------------------------------------------------------------------------- shapes


def test_q_sample_shape_mismatch(sched):
    with pytest.raises(ValueError, match=r"x0 and eps must have the same shape"):
        forward.q_sample(sched, X, 3, jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"x0 and eps"):
        forward.q_sample(sched, X, 3, jnp.zeros((5, 3)))


def test_q_posterior_shape_mismatch(sched):
    with pytest.raises(ValueError, match=r"x0 and x_t"):
        forward.q_posterior(sched, X, jnp.zeros((4, 2)), 3)


def test_interpolate_shape_mismatch():
    with pytest.raises(ValueError, match=r"x0 and eps"):
        flow.interpolate(X, jnp.zeros((3, 3)), 0.5)


def test_t_wrong_batch_length(sched):
    with pytest.raises(ValueError, match=r"\bt has 3 timesteps but the batch has 4 rows"):
        forward.q_sample(sched, X, jnp.array([1, 2, 3]), X)
    with pytest.raises(ValueError, match=r"\bt\b.*shape"):
        forward.q_sample(sched, X, jnp.ones((4, 1), jnp.int32), X)
    with pytest.raises(ValueError, match=r"\bt has 5 timesteps"):
        forward.q_posterior(sched, X, X, jnp.arange(5))


def test_x0_without_batch_axis(sched):
    with pytest.raises(ValueError, match=r"x0 must have a leading batch axis"):
        forward.q_sample(sched, jnp.float32(1.0), 3, jnp.float32(0.0))
    with pytest.raises(ValueError, match=r"x0 must have a leading batch axis"):
        losses.diffusion_loss(KEY, den, sched, jnp.zeros((4,)))


def test_sampler_x_T_wrong_shape(sched):
    with pytest.raises(ValueError, match=r"x_T must have the sampling shape"):
        samplers.ddim_sample(KEY, den, sched, (4, 3), x_T=jnp.zeros((4, 2)), num_steps=5)
    with pytest.raises(ValueError, match=r"x_T must have the sampling shape"):
        samplers.ddpm_sample(KEY, den, sched, (4, 3), x_T=jnp.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"x_T must have the sampling shape"):
        flow.euler_sample(KEY, vel, (4, 3), x_T=jnp.zeros((4, 3, 1)), num_steps=3)


@pytest.mark.parametrize("shape", [(0, 2), (4, 0), ()])
def test_sampler_bad_shape(sched, shape):
    with pytest.raises(ValueError, match=r"shape must be a non-empty tuple of positive ints"):
        samplers.ddim_sample(KEY, den, sched, shape, num_steps=5)
    with pytest.raises(ValueError, match=r"shape"):
        samplers.ddpm_sample(KEY, den, sched, shape)
    with pytest.raises(ValueError, match=r"shape"):
        flow.heun_sample(KEY, vel, shape, num_steps=3)
    with pytest.raises(ValueError, match=r"shape"):
        samplers.initial_noise(KEY, shape)


def test_sampler_shape_not_ints(sched):
    with pytest.raises(TypeError, match=r"shape must be a tuple of ints"):
        samplers.ddim_sample(KEY, den, sched, 4, num_steps=5)


# ----------------------------------------------------------------------------- timesteps


@pytest.mark.parametrize("bad", [-1, 100])
def test_timesteps_out_of_range(sched, bad):
    with pytest.raises(ValueError, match=r"\bt must lie in \[0, 99\]"):
        forward.q_sample(sched, X, bad, X)
    with pytest.raises(ValueError, match=r"\bt must lie in \[0, 99\]"):
        forward.q_sample(sched, X, jnp.array([0, 1, bad, 2]), X)
    with pytest.raises(ValueError, match=r"\bt must lie in"):
        forward.q_posterior(sched, X, X, bad)
    with pytest.raises(ValueError, match=r"\bt must lie in"):
        forward.q_moments(sched, X, bad)
    with pytest.raises(ValueError, match=r"\bt must lie in"):
        sched.at(bad)


@pytest.mark.parametrize("bad", [3.0, np.float32(3.0), jnp.array([1.0, 2.0, 3.0, 4.0])])
def test_float_timesteps_rejected_for_discrete_schedules(sched, bad):
    with pytest.raises(TypeError, match=r"\bt must hold integer timesteps"):
        forward.q_sample(sched, X, bad, X)
    with pytest.raises(TypeError, match=r"\bt must hold integer timesteps"):
        forward.q_posterior(sched, X, X, bad)


# ----------------------------------------------------------------------------- names


def test_unknown_schedule():
    with pytest.raises(ValueError, match=r"unknown schedule 'foo'"):
        schedules.make_schedule("foo")


@pytest.mark.parametrize("T", [0, -3, 2.5])
def test_bad_num_timesteps(T):
    with pytest.raises(ValueError, match=r"num_timesteps must be a positive integer"):
        schedules.make_schedule("linear", T)


def test_unknown_prediction(sched, mix):
    with pytest.raises(ValueError, match=r"unknown prediction 'foo'"):
        samplers.ddim_sample(KEY, den, sched, (4, 3), num_steps=5, prediction="foo")
    with pytest.raises(ValueError, match=r"unknown prediction 'foo'"):
        samplers.ddpm_sample(KEY, den, sched, (4, 3), prediction="foo")
    with pytest.raises(ValueError, match=r"unknown prediction 'foo'"):
        samplers.ddim_invert(den, sched, X, num_steps=5, prediction="foo")
    with pytest.raises(ValueError, match=r"unknown prediction 'foo'"):
        parameterization.to_x0(X, X, 0.5, "foo")
    with pytest.raises(ValueError, match=r"unknown prediction 'foo'"):
        losses.diffusion_loss(KEY, den, sched, X, prediction="foo")
    with pytest.raises(ValueError, match=r"unknown prediction 'foo'"):
        mix.denoiser(sched, "foo")
    with pytest.raises(ValueError, match=r"unknown target 'foo'"):
        parameterization.convert(X, X, 0.5, source="eps", target="foo")
    with pytest.raises(ValueError, match=r"unknown prediction 'epsilon'"):  # diffusers' spelling
        parameterization.convert(X, X, 0.5, source="epsilon", target="x0")


def test_unknown_spacing(sched):
    with pytest.raises(ValueError, match=r"unknown spacing 'foo'"):
        timesteps.ddim_timesteps(100, 10, "foo")
    with pytest.raises(ValueError, match=r"unknown spacing 'foo'"):
        samplers.ddim_sample(KEY, den, sched, (4, 3), num_steps=5, spacing="foo")


def test_unknown_weighting(sched):
    with pytest.raises(ValueError, match=r"unknown weighting 'foo'"):
        losses.snr_weight(sched.snr, "eps", "foo")
    with pytest.raises(ValueError, match=r"unknown weighting 'foo'"):
        losses.diffusion_loss(KEY, den, sched, X, weighting="foo")


def test_unknown_time_sampling():
    # sample_times' argument is called ``kind``
    with pytest.raises(ValueError, match=r"unknown kind 'foo'"):
        flow.sample_times(KEY, 4, "foo")


def test_unknown_time_sampling_names_the_argument():
    # flow_loss's argument is called ``time_sampling``; the message should use that name
    with pytest.raises(ValueError, match=r"time_sampling"):
        flow.flow_loss(KEY, vel, X, time_sampling="foo")


# ----------------------------------------------------------------------------- eta / num_steps


@pytest.mark.parametrize("eta", [-0.1, 1.5])
def test_eta_out_of_range(sched, eta):
    with pytest.raises(ValueError, match=r"eta must lie in \[0, 1\]"):
        samplers.ddim_sample(KEY, den, sched, (4, 3), num_steps=5, eta=eta)


@pytest.mark.parametrize("n", [0, 101, -2, 2.5])
def test_bad_num_steps(sched, n):
    with pytest.raises(ValueError, match=r"num_steps"):
        samplers.ddim_sample(KEY, den, sched, (4, 3), num_steps=n)
    with pytest.raises(ValueError, match=r"num_steps"):
        samplers.ddim_invert(den, sched, X, num_steps=n)
    with pytest.raises(ValueError, match=r"num_steps"):
        timesteps.ddim_timesteps(100, n)


def test_num_steps_exceeding_T_message(sched):
    with pytest.raises(ValueError, match=r"num_steps=101 exceeds the schedule's T=100"):
        samplers.ddim_sample(KEY, den, sched, (4, 3), num_steps=101)


@pytest.mark.parametrize("n", [0, -1, 1.5])
def test_flow_bad_num_steps(n):
    with pytest.raises(ValueError, match=r"num_steps must be a positive integer"):
        flow.euler_sample(KEY, vel, (4, 3), num_steps=n)
    with pytest.raises(ValueError, match=r"num_steps must be a positive integer"):
        flow.heun_sample(KEY, vel, (4, 3), num_steps=n)


# ----------------------------------------------------------------------------- flow times


@pytest.mark.parametrize("t", [-0.1, 1.5, [0.2, 0.3, 1.01, 0.5]])
def test_flow_times_outside_unit_interval(t):
    eps = jnp.ones((4, 3))
    with pytest.raises(ValueError, match=r"\bt must lie in \[0, 1\]"):
        flow.interpolate(X, eps, jnp.asarray(t, jnp.float32))


def test_shift_must_be_positive():
    with pytest.raises(ValueError, match=r"shift must be positive"):
        timesteps.shift_times(jnp.array([0.5]), 0.0)
    with pytest.raises(ValueError, match=r"shift must be positive"):
        flow.euler_sample(KEY, vel, (4, 3), num_steps=3, shift=-1.0)


# ----------------------------------------------------------------------------- guidance


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_drop_labels_p_out_of_range(p):
    with pytest.raises(ValueError, match=r"\bp \(the condition dropout probability\) must lie in \[0, 1\]"):
        guidance.drop_labels(KEY, jnp.arange(4), p, 10)


@pytest.mark.parametrize("phi", [-0.5, 2.0])
def test_rescale_out_of_range(phi):
    with pytest.raises(ValueError, match=r"rescale \(phi\) must lie in \[0, 1\]"):
        guidance.guided_denoiser(den, 3.0, 10, rescale=phi)


def test_guided_denoiser_needs_cond(sched):
    g = guidance.guided_denoiser(den, 3.0, 10)
    with pytest.raises(ValueError, match=r"needs cond"):
        g(X, jnp.zeros((4,), jnp.int32), None)
    with pytest.raises(ValueError, match=r"needs cond"):  # also when traced inside a sampler
        samplers.ddim_sample(KEY, g, sched, (4, 3), None, num_steps=3)


# ----------------------------------------------------------------------------- callables


@pytest.mark.parametrize("bad", [3, "eps", None])
def test_non_callable_denoise(sched, bad):
    with pytest.raises(TypeError, match=r"denoise must be callable"):
        samplers.ddim_sample(KEY, bad, sched, (4, 3), num_steps=5)
    with pytest.raises(TypeError, match=r"denoise must be callable"):
        samplers.ddpm_sample(KEY, bad, sched, (4, 3))
    with pytest.raises(TypeError, match=r"denoise must be callable"):
        samplers.ddim_invert(bad, sched, X, num_steps=5)
    with pytest.raises(TypeError, match=r"denoise must be callable"):
        guidance.guided_denoiser(bad, 3.0, 10)


@pytest.mark.parametrize("bad", [3, None])
def test_non_callable_velocity_fn(bad):
    # the flow samplers' argument is ``velocity_fn``; the message should name it
    with pytest.raises(TypeError, match=r"velocity_fn must be callable"):
        flow.euler_sample(KEY, bad, (4, 3), num_steps=3)
    with pytest.raises(TypeError, match=r"velocity_fn must be callable"):
        flow.heun_sample(KEY, bad, (4, 3), num_steps=3)


# ----------------------------------------------------------------------------- schedules / toy


@pytest.mark.parametrize("betas", [[0.1, -0.1], [0.1, 1.5], [[0.1]], [], [0.1, float("nan")]])
def test_from_betas_validation(betas):
    with pytest.raises(ValueError, match=r"betas"):
        schedules.from_betas(betas)


def test_mixture_validation():
    with pytest.raises(ValueError, match=r"weights must be \(K,\) and means \(K, D\)"):
        toy.mixture([0.5, 0.5], [[0.0, 0.0]], 0.1)
    with pytest.raises(ValueError, match=r"weights and stds must be positive"):
        toy.mixture([0.5, -0.5], [[0.0], [1.0]], 0.1)
