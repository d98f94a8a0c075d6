"""Bad calls to the public API's edges: one line that names the argument, before any work.

The table covers the functions a newcomer calls first: ``metrics.score`` / ``evaluate``,
``pipeline.sample`` / ``load_trained``, ``guidance.guided_denoiser``, the exact toy, the
image checks of ``data``, and the demo configs. The work behind each (loading a data set,
the classifier, sampling) is replaced by a tripwire, so a check that comes too late fails
the test instead of running for a minute.

Inside ``jax.jit`` values are tracers and cannot raise; the project's rule (documented in
``diffusion_jax._checks``) is that an out-of-range timestep or toy label turns its rows
into NaN, never into plausible numbers. The last tests check exactly that.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion_jax import data, demo, forward, guidance, metrics, pipeline, samplers, schedules, toy, toy_demo

KEY = jax.random.key(0)
RNG = np.random.default_rng(0)
SIGNED = RNG.uniform(-1, 1, (4, 28, 28, 1)).astype(np.float32)  # valid MNIST-shaped samples
LABELS = np.array([0, 1, 2, 3])
PRESET = pipeline.get_preset("mnist-unet")
FLOW = pipeline.get_preset("mnist-unet-flow")


class FakeState:  # pipeline.sample only reads these fields before sampling
    graphdef, ema_params, rest = None, {}, {}


def den(x_t, t, cond):
    return 0.1 * x_t


@pytest.fixture(autouse=True)
def tripwires(monkeypatch):
    """Any work behind a public edge fails loudly: the checks must come first."""
    def work(*a, **k):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(data, "load_dataset", work)
    monkeypatch.setattr(metrics, "reference", work)
    monkeypatch.setattr(metrics, "features_and_logits", work)
    monkeypatch.setattr(pipeline.sampling, "sample", work)


def score(images=SIGNED, labels=LABELS, dataset="mnist", key=KEY, **kw):
    return metrics.score(key, images, labels, dataset, **kw)


def sample(labels=LABELS, preset=PRESET, key=KEY, **kw):
    return pipeline.sample(key, FakeState(), preset, labels, **kw)


def evaluate(generated=SIGNED, labels=LABELS, real_shape=(6, 28, 28, 1), **kw):
    real = np.zeros(real_shape, np.uint8)
    return metrics.evaluate(KEY, generated, labels, real, real, None, **kw)


def posterior(labels):
    mix = toy.default_mixture()
    return mix.posterior_x0(jnp.zeros((len(labels), 2)), 0.5, 0.8, jnp.asarray(labels))


A_FILE = __file__  # an existing file, where a folder is expected

# (id, call, exception type, regex the one-line message must match: it names the argument)
CASES = [
    # metrics.score
    ("score-int-key", lambda: score(key=0), TypeError, r"key must be one jax.random key.*got int 0"),
    ("score-raw-key-shape", lambda: score(key=np.zeros(3, np.uint32)), TypeError, r"key must be one jax.random key"),
    ("score-dataset", lambda: score(dataset="imagenet"), ValueError, r"dataset must be one of \['mnist'"),
    ("score-cifar-shape", lambda: score(np.zeros((4, 32, 32, 3), np.float32) - 1), ValueError,
     r"images must have shape \(N, 28, 28, 1\), got \(4, 32, 32, 3\)"),
    ("score-no-batch-axis", lambda: score(SIGNED[0], LABELS[:1]), ValueError, r"images must have shape \(N, 28, 28, 1\)"),
    ("score-one-image", lambda: score(SIGNED[:1], LABELS[:1]), ValueError, r"images must hold at least 2 images, got 1"),
    ("score-nan", lambda: score(np.where(SIGNED > 0.5, np.nan, SIGNED)), ValueError, r"images hold \d+ NaN"),
    ("score-inf", lambda: score(np.where(SIGNED > 0.5, np.inf, SIGNED)), ValueError, r"images hold \d+ NaN or infinite"),
    ("score-0-255-floats", lambda: score((SIGNED + 1) * 127.5), ValueError, r"expected \[-1, 1\].*value_range='byte'"),
    ("score-0-1-floats", lambda: score((SIGNED + 1) / 2), ValueError, r"expected \[-1, 1\] with some negative values.*value_range='unit'"),
    ("score-strings", lambda: score(np.full((4, 28, 28, 1), "x")), ValueError, r"images must be a numeric array"),
    ("score-int-out-of-bytes", lambda: score(np.full((4, 28, 28, 1), 300)), ValueError, r"images .*\[0, 255\]"),
    ("score-value-range", lambda: score(value_range="percent"), ValueError, r"value_range must be one of"),
    ("score-label-range", lambda: score(labels=np.array([0, 1, 2, 10])), ValueError, r"labels must lie in \[0, 9\]"),
    ("score-label-negative", lambda: score(labels=np.array([0, 1, 2, -1])), ValueError, r"labels must lie in \[0, 9\]"),
    ("score-label-count", lambda: score(labels=LABELS[:3]), ValueError, r"labels must have one entry per image \(4\)"),
    ("score-label-floats", lambda: score(labels=LABELS.astype(float)), ValueError, r"labels must be .*integer class ids"),
    ("score-kid-subset", lambda: score(kid_subset_size=1), ValueError, r"kid_subset_size must be >= 2"),
    # metrics.evaluate
    ("evaluate-shape-vs-real", lambda: evaluate(real_shape=(6, 8, 8, 1)), ValueError,
     r"generated_images must have shape \(N, 8, 8, 1\)"),
    ("evaluate-real-one", lambda: evaluate(real_shape=(1, 28, 28, 1)), ValueError, r"real_images must have shape"),
    ("evaluate-label-negative", lambda: evaluate(labels=np.array([0, -2, 1, 1])), ValueError,
     r"intended_labels must be class ids >= 0"),
    ("evaluate-0-1", lambda: evaluate((SIGNED + 1) / 2), ValueError, r"generated_images hold values in \[.*value_range="),
    # pipeline.sample / load_trained
    ("sample-label-too-big", lambda: sample(np.array([0, 11])), ValueError, r"labels must lie in \[0, 10\] \(10 = unconditional\)"),
    ("sample-label-negative", lambda: sample(np.array([-1, 0])), ValueError, r"labels must lie in \[0, 10\]"),
    ("sample-label-floats", lambda: sample(np.array([0.5])), ValueError, r"labels must be a non-empty 1-D array of integer"),
    ("sample-label-2d", lambda: sample(np.zeros((2, 2), int)), ValueError, r"labels must be a non-empty 1-D array"),
    ("sample-label-empty", lambda: sample(np.array([], int)), ValueError, r"labels must be a non-empty 1-D array"),
    ("sample-label-bools", lambda: sample(np.array([True, False])), ValueError, r"labels must be .*integer"),
    ("sample-scale-nan", lambda: sample(guidance_scale=float("nan")), ValueError, r"guidance_scale must be a finite number"),
    ("sample-int-key", lambda: sample(key=42), TypeError, r"key must be one jax.random key"),
    ("sample-batch-size", lambda: sample(batch_size=0), ValueError, r"batch_size must be >= 1, got 0"),
    ("sample-batch-size-float", lambda: sample(batch_size=2.5), TypeError, r"batch_size must be an integer"),
    ("sample-sampler-path", lambda: sample(preset=FLOW, sampler="ddpm"), ValueError,
     r"sampler 'ddpm' does not run on a rectified-flow model"),
    ("sample-unknown-sampler", lambda: sample(sampler="magic"), ValueError, r"unknown sampler 'magic'"),
    ("sample-num-steps", lambda: sample(num_steps=0), ValueError, r"num_steps must be a positive integer"),
    ("sample-num-steps-T", lambda: sample(num_steps=5000), ValueError, r"num_steps \(5000\) cannot exceed the schedule's T"),
    ("sample-preset-name", lambda: sample(preset="mnist-unet"), TypeError, r"preset must be a Preset.*got str"),
    ("load-source", lambda: pipeline.load_trained(PRESET, source="bogus"), ValueError, r"source must be one of"),
    ("load-preset-name", lambda: pipeline.load_trained("mnist-unet"), TypeError, r"preset must be a Preset"),
    # guidance
    ("guided-scale-nan", lambda: guidance.guided_denoiser(den, float("nan"), 10), ValueError,
     r"scale \(the guidance scale s\) must be a finite number"),
    ("guided-scale-inf", lambda: guidance.guided_denoiser(den, np.inf, 10), ValueError, r"scale .* finite"),
    ("guided-null-none", lambda: guidance.guided_denoiser(den, 3.0, None), TypeError, r"null_cond must be"),
    ("guided-null-negative", lambda: guidance.guided_denoiser(den, 3.0, -1), ValueError, r"null_cond .* must be >= 0"),
    # the exact toy
    ("toy-label-7", lambda: posterior([0, 7]), ValueError, r"cond \(the mixture component\) must lie in \[0, 3\]"),
    ("toy-label-negative", lambda: posterior([-1, 0]), ValueError, r"cond .* must lie in \[0, 3\]"),
    ("toy-mixture-nan", lambda: toy.mixture([0.5, float("nan")], [[0, 0], [1, 1]], 0.1), ValueError,
     r"weights, means and stds must be finite"),
    # data
    ("images-0-1-default", lambda: data.check_images((SIGNED + 1) / 2), ValueError,
     r"images hold values in \[.*value_range='unit'.*value_range='signed'"),
    ("images-rank", lambda: data.check_images(np.zeros((28, 28)), shape=(28, 28, 1)), ValueError,
     r"images must have shape \(N, 28, 28, 1\), got \(28, 28\)"),
    ("num-classes", lambda: data.num_classes("imagenet"), ValueError, r"unknown dataset 'imagenet'"),
    ("to-float-floats", lambda: data.to_float(SIGNED), TypeError, r"to_float expects uint8 images"),
    # schedules
    ("schedule-at-T", lambda: schedules.linear(100).at(100), ValueError, r"\bt must lie in \[0, 99\]"),
    # the demos' configs
    ("demo-per-class", lambda: demo.check_config(demo.DemoConfig(per_class=0)), ValueError, r"^per_class must be >= 1"),
    ("demo-preset", lambda: demo.check_config(demo.DemoConfig(preset="nope")), ValueError, r"^preset must be one of"),
    ("demo-scale", lambda: demo.check_config(demo.DemoConfig(guidance_scale=float("inf"))), ValueError,
     r"^guidance_scale must be a finite number"),
    ("demo-out-file", lambda: demo.check_config(demo.DemoConfig(out_dir=A_FILE)), ValueError, r"^out_dir '.*' is a file"),
    ("toy-config-label", lambda: toy_demo.check_config(toy_demo.ToyDemoConfig(guided_label=5)), ValueError,
     r"^guided_label must be a component of the 3-component mixture, 0\.\.2, got 5"),
    ("toy-config-samples", lambda: toy_demo.run(toy_demo.ToyDemoConfig(num_samples=0, out_dir=A_FILE)), ValueError,
     r"^num_samples must be >= 1, got 0"),
    ("toy-config-flags", lambda: toy_demo.check_config(toy_demo.ToyDemoConfig(seed=-1), as_flags=True), ValueError,
     r"^--seed must be >= 0, got -1"),
]


def test_the_table_is_big_enough():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_call(case):
    name, call, exc, pattern = case
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, f"not one line: {message!r}"
    assert __import__("re").search(pattern, message), f"{message!r} does not match {pattern!r}"


def test_good_calls_pass_the_same_checks(monkeypatch):
    """The checks refuse only what is wrong: valid input reaches the (stubbed) work, unchanged."""
    seen = {}
    monkeypatch.setattr(pipeline.sampling, "sample", lambda name, key, d, shape, cond, **kw: seen.update(
        name=name, cond=cond) or np.zeros(shape, np.float32))
    out = sample(np.array([0, 10]))  # 10 = the null label: unconditional rows are allowed
    assert out.shape == (2, 28, 28, 1) and list(seen["cond"]) == [0, 10]
    np.testing.assert_array_equal(data.check_images(SIGNED), SIGNED)
    u8 = RNG.integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    np.testing.assert_allclose(data.check_images(u8), u8 / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(data.check_images(u8.astype(np.float32), value_range="byte"), u8 / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(data.check_images(u8 / 255.0, value_range="unit"), u8 / 127.5 - 1, atol=1e-6)
    assert data.guess_value_range(SIGNED) == "signed" and data.guess_value_range(u8) == "byte"
    assert data.guess_value_range(u8 / 255.0) == "unit" and data.guess_value_range(u8 * 1.0) == "byte"
    assert guidance.guided_denoiser(den, 3.0, 10) is not None


# ---------------------------------------------------------------------- inside jax.jit


def test_traced_out_of_range_timesteps_give_nan_rows():
    sched = schedules.linear(100)
    x0 = jnp.asarray(RNG.standard_normal((4, 3)), jnp.float32)
    eps = jnp.asarray(RNG.standard_normal((4, 3)), jnp.float32)
    t = jnp.array([5, 100, -1, 99])
    x_t = jax.jit(lambda t: forward.q_sample(sched, x0, t, eps))(t)
    ok = np.array([True, False, False, True])
    assert np.all(np.isnan(np.asarray(x_t)[~ok])), "an out-of-range timestep gave numbers"
    eager = forward.q_sample(sched, x0[ok], jnp.array([5, 99]), eps[ok])
    np.testing.assert_allclose(np.asarray(x_t)[ok], np.asarray(eager), rtol=1e-6, atol=1e-6)  # jit may fuse
    # the same call with concrete values raises instead
    with pytest.raises(ValueError, match=r"t must lie in \[0, 99\].*got values in \[-1, 100\]"):
        forward.q_sample(sched, x0, t, eps)


def test_traced_schedule_lookup_and_posterior_give_nan():
    sched = schedules.linear(100)
    ab = jax.jit(sched.at)(jnp.array([0, 99, 100, -1]))
    np.testing.assert_array_equal(np.asarray(ab[:2]), np.asarray(sched.alpha_bars)[[0, 99]])
    assert np.all(np.isnan(np.asarray(ab[2:])))
    x = jnp.ones((2, 3))
    mean, var, log_var = jax.jit(lambda t: forward.q_posterior(sched, x, x, t))(jnp.array([10, 250]))
    assert np.all(np.isfinite(np.asarray(mean[0]))) and np.all(np.isnan(np.asarray(mean[1])))
    assert np.isfinite(float(var[0, 0])) and np.isnan(float(var[1, 0])) and np.isnan(float(log_var[1, 0]))


def test_traced_toy_labels_outside_the_mixture_give_nan_rows():
    """The sampler is jitted, so labels reach the toy denoiser as tracers: -1 and 7 must not
    quietly sample off the data (-1) or unconditionally (7)."""
    mix, sched = toy.default_mixture(), schedules.linear(100)
    labels = jnp.array([-1, 0, 3, 7])  # 3 = the null label: unconditional, allowed
    x = samplers.ddim_sample(KEY, mix.denoiser(sched), sched, (4, 2), labels, num_steps=5)
    x = np.asarray(x)
    assert np.all(np.isnan(x[[0, 3]])) and np.all(np.isfinite(x[[1, 2]]))
    guided = guidance.guided_denoiser(mix.denoiser(sched), 3.0, mix.null_label)
    y = np.asarray(samplers.ddim_sample(KEY, guided, sched, (4, 2), labels, num_steps=5))
    assert np.all(np.isnan(y[[0, 3]])) and np.all(np.isfinite(y[[1, 2]]))
