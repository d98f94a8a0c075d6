"""Flow presets in the pipeline, sampler validation, preset fingerprints, and lesson 08/09 helpers.

Independent references: NumPy float64 (closed-form densities, Monte-Carlo histograms,
products of shapes) and hand-written Euler/Heun steps; never numbers from our own runs,
except the cache keys of existing presets, which must not change (cached checkpoints).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion_jax import configs, costs, flow, pipeline, samplers
from diffusion_jax.models import DiTConfig, UNetConfig
from diffusion_jax.train import FLOW_TIME_SCALE

TINY_UNET = UNetConfig(channels=(8, 16), attention_levels=(), num_classes=10, groups=4)


class FakeState:  # validation happens before the model is ever called
    graphdef, ema_params, rest = None, {}, {}


# ----------------------------------------------------------------------------- presets
def test_fingerprint_ignores_loop_only_fields_and_new_default_options():
    # Shipped weights and caches are found by fingerprint: how often a run logs or saves,
    # and options added later at a default that keeps the old behaviour, must not move it.
    base = pipeline.get_preset("mnist-unet")
    assert base.fingerprint() == pipeline.get_preset("mnist-unet", log_every=7, checkpoint_every=3,
                                                     keep_checkpoints=9).fingerprint()
    assert base.fingerprint() != pipeline.get_preset("mnist-unet", lr=base.train.lr * 2).fingerprint()
    assert base.fingerprint() != dataclasses.replace(base, schedule="cosine").fingerprint()
    assert len({p.fingerprint() for p in pipeline.PRESETS.values()}) == len(pipeline.PRESETS)


def test_config_digest_drops_defaults_only():
    @dataclasses.dataclass(frozen=True)
    class Old:
        a: int = 1

    @dataclasses.dataclass(frozen=True)
    class Old2:  # the same config after a new option with a neutral default was added
        a: int = 1
        b: float = 0.0

    Old2.__name__ = "Old"
    assert configs.digest(Old(a=2)) == configs.digest(Old2(a=2))
    assert configs.digest(Old(a=2)) != configs.digest(Old2(a=2, b=0.5))
    assert configs.digest(Old()) != configs.digest(Old(a=2))
    assert configs.digest({"x": 0.001}) == configs.digest({"x": 1e-3})


def test_flow_preset_is_mnist_unet_with_the_flow_objective():
    flow_p, diff_p = pipeline.get_preset("mnist-unet-flow"), pipeline.get_preset("mnist-unet")
    assert flow_p.is_flow and not diff_p.is_flow
    assert flow_p.model == diff_p.model and flow_p.dataset == diff_p.dataset
    assert dataclasses.replace(flow_p.train, objective="diffusion") == diff_p.train
    assert flow_p.fingerprint() != diff_p.fingerprint()
    assert flow_p.samplers[0] == "euler" and diff_p.samplers[0] == "ddim"
    assert "heun" in flow_p.samplers and "ddpm" not in flow_p.samplers and "ddpm" in diff_p.samplers


def test_vae_steps_override():
    p = pipeline.get_preset("mnist-latent-dit", steps=5, vae_steps=7)
    assert p.vae.steps == 7 and p.train.steps == 5
    assert p.fingerprint() != pipeline.get_preset("mnist-latent-dit", steps=5).fingerprint()
    with pytest.raises(ValueError, match="vae_steps is only for latent presets"):
        pipeline.get_preset("mnist-unet", vae_steps=3)
    with pytest.raises(ValueError, match="vae_steps must be a positive integer"):
        pipeline.get_preset("mnist-latent-dit", vae_steps=0)


# ----------------------------------------------------------------------------- sampler names
@pytest.mark.parametrize("preset, sampler, message", [
    ("mnist-unet-flow", "ddpm", "does not run on a rectified-flow model"),
    ("mnist-unet-flow", "sigma_hat", "does not run on a rectified-flow model"),
    ("mnist-unet-flow", "rk4", "unknown sampler 'rk4'"),
    ("mnist-unet", "Euler", "unknown sampler 'Euler'"),
])
def test_bad_sampler_names_are_clear_errors(preset, sampler, message):
    with pytest.raises(ValueError, match=message):
        pipeline.sample(jax.random.key(0), FakeState(), pipeline.get_preset(preset), np.arange(3), sampler=sampler)


def test_flow_sampling_rejects_eta():
    with pytest.raises(ValueError, match="eta and karras do not apply|takes no eta"):
        pipeline.sample(jax.random.key(0), FakeState(), pipeline.get_preset("mnist-unet-flow"), np.arange(3),
                        sampler="euler", eta=0.5)


# ----------------------------------------------------------------------------- train + sample
@pytest.fixture(scope="module")
def tiny_flow(tmp_path_factory):
    preset = pipeline.get_preset("mnist-unet-flow", steps=3, batch_size=16, warmup_steps=1, log_every=1,
                                 checkpoint_every=0)
    preset = dataclasses.replace(preset, name="tiny-flow", model=TINY_UNET)
    root = tmp_path_factory.mktemp("ckpt")
    state = pipeline.train(preset, root=root, progress=False)
    return preset, state, root


def test_flow_preset_trains_and_reloads(tiny_flow):
    preset, state, root = tiny_flow
    assert int(state.step) == 3
    again = pipeline.load_trained(preset, root=root)
    for a, b in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(again.ema_params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_flow_sampling_is_deterministic(tiny_flow, sampler):
    preset, state, _ = tiny_flow
    labels = np.array([0, 3, 7, 10])  # 10 = unconditional
    a = pipeline.sample(jax.random.key(1), state, preset, labels, sampler=sampler, num_steps=3)
    b = pipeline.sample(jax.random.key(1), state, preset, labels, sampler=sampler, num_steps=3)
    c = pipeline.sample(jax.random.key(2), state, preset, labels, sampler=sampler, num_steps=3)
    assert a.shape == (4, 28, 28, 1) and np.isfinite(a).all()
    assert a.min() >= -1.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_flow_sampling_matches_hand_written_steps(tiny_flow):
    """Euler and Heun through the pipeline = the update rules written out with the model."""
    preset, state, _ = tiny_flow
    labels, scale, key = np.array([1, 2]), 2.0, jax.random.key(5)
    model = state.model()

    def v(x, t):  # guided velocity: the model sees 1000 t; CFG on the velocity
        tt = jnp.full((x.shape[0],), t * FLOW_TIME_SCALE)
        cond = model(x, tt, jnp.asarray(labels))
        uncond = model(x, tt, jnp.full((x.shape[0],), 10))
        return np.asarray(uncond + scale * (cond - uncond), np.float64)

    x_T = np.asarray(samplers.initial_noise(key, (2, 28, 28, 1)), np.float64)  # rows 0 and 1 of the key
    grid = [1.0, 2 / 3, 1 / 3, 0.0]
    x = x_T.copy()
    for t, tn in zip(grid[:-1], grid[1:]):
        x = x + (tn - t) * v(x, t)
    euler = pipeline.sample(key, state, preset, labels, sampler="euler", num_steps=3, guidance_scale=scale)
    np.testing.assert_allclose(euler, np.clip(x, -1, 1), atol=2e-4)

    x = x_T.copy()
    for i, (t, tn) in enumerate(zip(grid[:-1], grid[1:])):
        slope = v(x, t)
        if i < len(grid) - 2:  # Heun's corrector, except on the last step into t = 0
            slope = 0.5 * (slope + v(x + (tn - t) * slope, tn))
        x = x + (tn - t) * slope
    heun = pipeline.sample(key, state, preset, labels, sampler="heun", num_steps=3, guidance_scale=scale)
    np.testing.assert_allclose(heun, np.clip(x, -1, 1), atol=2e-4)


# ----------------------------------------------------------------------------- costs
def test_forward_cost_reports_positive_flops_and_time():
    preset = dataclasses.replace(pipeline.get_preset("mnist-dit"),
                                 model=DiTConfig(patch_size=7, hidden=16, depth=1, num_heads=2))
    cost = costs.forward_cost(preset, batch_size=4, repeats=2)
    assert cost["input_shape"] == (28, 28, 1)
    assert cost["gflops_per_image"] > 0 and cost["ms_per_forward"] > 0
    assert cost["ms_per_image"] == pytest.approx(cost["ms_per_forward"] / 4)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        costs.forward_cost(preset, batch_size=0)


# ----------------------------------------------------------------------------- flow.time_density
def _logit_normal_pdf64(t, m, s):
    u = np.log(t / (1 - t))
    return np.exp(-0.5 * ((u - m) / s) ** 2) / (s * np.sqrt(2 * np.pi) * t * (1 - t))


@pytest.mark.parametrize("kind, mean, std, shift", [("uniform", 0.0, 1.0, 1.0), ("uniform", 0.0, 1.0, 3.0),
                                                    ("logit_normal", 0.0, 1.0, 1.0),
                                                    ("logit_normal", 0.5, 0.7, 3.0),
                                                    ("logit_normal", -0.3, 1.5, 0.5)])
def test_time_density_closed_form_and_samples(kind, mean, std, shift):
    t = np.linspace(0.01, 0.99, 99)
    # closed form in float64: invert the shift, multiply by its derivative
    u = t / (shift - (shift - 1) * t)
    base = np.ones_like(u) if kind == "uniform" else _logit_normal_pdf64(u, mean, std)
    want = base * shift / (shift - (shift - 1) * t) ** 2
    got = np.asarray(flow.time_density(t, kind, mean=mean, std=std, shift=shift), np.float64)
    np.testing.assert_allclose(got, want, rtol=2e-5)
    # it is the density of what sample_times draws: compare bin probabilities
    draws = np.asarray(flow.sample_times(jax.random.key(3), 200_000, kind, mean=mean, std=std, shift=shift))
    edges = np.linspace(0, 1, 21)
    hist = np.histogram(draws, edges)[0] / len(draws)
    fine = np.linspace(0, 1, 20_001)[1:-1]
    dens = np.asarray(flow.time_density(fine, kind, mean=mean, std=std, shift=shift), np.float64)
    probs = np.array([np.trapezoid(dens[(fine >= a) & (fine <= b)], fine[(fine >= a) & (fine <= b)])
                      for a, b in zip(edges[:-1], edges[1:])])
    np.testing.assert_allclose(hist, probs, atol=4e-3)


def test_time_density_is_zero_outside_and_validates():
    assert np.all(np.asarray(flow.time_density(np.array([-0.5, 0.0, 1.0, 1.5]), "logit_normal")) == 0)
    with pytest.raises(ValueError, match="kind"):
        flow.time_density(0.5, "gaussian")
    with pytest.raises(ValueError, match="shift must be positive"):
        flow.time_density(0.5, shift=0.0)
    with pytest.raises(ValueError, match="std must be positive"):
        flow.time_density(0.5, "logit_normal", std=0.0)
