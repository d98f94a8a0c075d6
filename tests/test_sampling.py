"""The sampler registry (budgets, grids, dispatch), the studies, diversity, and guidance helpers.

References are closed forms, NumPy float64 re-computations or invariants, never numbers
copied from a run of this code.
"""

from __future__ import annotations

import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion_jax import grids, guidance, metrics, samplers, sampling, schedules, studies, timesteps, toy
from diffusion_jax.denoisers import denoiser

SCHED = schedules.linear(1000)
MIX = toy.default_mixture()


def eps_denoiser():
    return denoiser(MIX.denoiser(SCHED, "eps"), "eps")


# ------------------------------------------------------------------------------ budgets


@pytest.mark.parametrize("steps", [1, 2, 6, 50, 1000])
@pytest.mark.parametrize("per_step", [1, 2])
def test_denoiser_evaluations_closed_forms(steps, per_step):
    for name, spec in sampling.SAMPLERS.items():
        want = (2 * steps - 1 if spec.stages == 2 else steps) * per_step  # Heun: no correction after the last step
        assert sampling.denoiser_evaluations(name, steps, predictions_per_step=per_step) == want
    assert sampling.SAMPLERS["heun"].stages == 2 and sampling.SAMPLERS["ddim"].stages == 1


def test_sequential_calls_batched_cfg():
    assert sampling.sequential_calls("ddim", 50, guidance=True) == 50  # both predictions in one call
    assert sampling.sequential_calls("ddim", 50, guidance=True, batched_cfg=False) == 100
    assert sampling.sequential_calls("heun", 10, guidance=True, batched_cfg=False) == 38
    assert sampling.sequential_calls("heun", 10) == 19


def test_route_budget_chapter_routes():
    routes = [{"name": "offline_ddim_cfg", "steps": 50, "predictions_per_step": 2},
              {"name": "interactive_distilled", "steps": 6, "predictions_per_step": 1}]
    out = sampling.route_budget(routes)
    assert out == [
        {"route": "offline_ddim_cfg", "denoiser_evaluations": 50 * 2, "quality_gate_required": True},
        {"route": "interactive_distilled", "denoiser_evaluations": 6 * 1, "quality_gate_required": True},
    ]


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "num_steps must be a positive integer"),
    ({"steps": 2.5}, "num_steps must be a positive integer"),
    ({"steps": 10, "sampler": "plms"}, "unknown sampler"),
    ({"steps": 10, "predictions_per_step": 0}, "predictions_per_step"),
])
def test_denoiser_evaluations_errors(kwargs, match):
    steps, name = kwargs.pop("steps"), kwargs.pop("sampler", "ddim")
    with pytest.raises(ValueError, match=match):
        sampling.denoiser_evaluations(name, steps, **kwargs)


def test_route_budget_missing_key():
    with pytest.raises(ValueError, match="route 0 lacks"):
        sampling.route_budget([{"name": "x", "steps": 5}])


# ------------------------------------------------------------------------------ samplers


def test_sigma_hat_sigmas_numpy():
    grid = timesteps.ddim_timesteps(1000, 10, "leading")  # descending
    ab = np.asarray(SCHED.alpha_bars, np.float64)
    nxt = np.append(ab[grid[1:]], 1.0)
    want = np.sqrt(1.0 - ab[grid] / nxt)
    want[-1] = 0.0
    got = sampling.make_grid("sigma_hat", 10, schedule=SCHED).sigma
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-6)
    # on the full grid sigma_hat^2 is DDPM's beta_t (the "fixed_large" variance)
    full = timesteps.ddim_timesteps(1000, 1000, "leading")
    np.testing.assert_allclose(np.asarray(grids.timestep_grid(SCHED, full, noise="sigma_hat").sigma)[:-1] ** 2,
                               np.asarray(SCHED.betas, np.float64)[full[:-1]], rtol=2e-3, atol=1e-7)


def _sigma_hat_numpy(x_T, grid, noise, denoise):
    """Independent float64 loop: posterior mean of the respaced chain + sigma_hat * z."""
    ab = np.asarray(SCHED.alpha_bars, np.float64)
    x = np.asarray(x_T, np.float64)
    for i, t in enumerate(grid):
        a_t = ab[t]
        a_p = ab[grid[i + 1]] if i + 1 < len(grid) else 1.0
        eps = np.asarray(denoise(jnp.asarray(x, jnp.float32), jnp.full((len(x),), t, jnp.int32), None), np.float64)
        x0 = (x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
        beta = 1 - a_t / a_p
        mean = (np.sqrt(a_p) * beta * x0 + np.sqrt(a_t / a_p) * (1 - a_p) * x) / (1 - a_t)  # DDPM eq. 7
        sig = np.sqrt(beta) if i + 1 < len(grid) else 0.0
        x = mean + sig * noise[i]
    return x


def test_sigma_hat_sample_matches_numpy():
    key, shape, n = jax.random.key(3), (6, 2), 8
    den = MIX.denoiser(SCHED, "eps")
    got = sampling.sample("sigma_hat", key, denoiser(den, "eps"), shape, schedule=SCHED, num_steps=n)
    x_T = samplers.initial_noise(key, shape)
    keys = samplers.row_keys(key, shape[0])
    noise = [np.asarray(samplers.row_normal(keys, 1, i, shape[1:]), np.float64) for i in range(n)]
    want = _sigma_hat_numpy(x_T, timesteps.ddim_timesteps(1000, n, "leading"), noise, den)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-3, atol=2e-4)


def test_sample_dispatch_and_ddpm_identity():
    den, d = MIX.denoiser(SCHED, "eps"), eps_denoiser()
    key, shape = jax.random.key(5), (16, 2)
    # DDPM on a sub-grid is DDIM eta = 1; at T steps it is the library's full DDPM
    sub = sampling.sample("ddpm", key, d, shape, schedule=SCHED, num_steps=20)
    eta1 = samplers.ddim_sample(key, den, SCHED, shape, num_steps=20, eta=1.0)
    np.testing.assert_array_equal(np.asarray(sub), np.asarray(eta1))
    full = sampling.sample("ddpm", key, d, shape, schedule=SCHED)
    np.testing.assert_array_equal(np.asarray(full), np.asarray(samplers.ddpm_sample(key, den, SCHED, shape)))
    d0 = sampling.sample("ddim", key, d, shape, schedule=SCHED, num_steps=20)
    np.testing.assert_array_equal(np.asarray(d0), np.asarray(samplers.ddim_sample(key, den, SCHED, shape, num_steps=20)))
    # Euler on the probability-flow ODE is deterministic DDIM: the same update
    e = sampling.sample("euler", key, d, shape, schedule=SCHED, num_steps=20)
    np.testing.assert_array_equal(np.asarray(e), np.asarray(d0))
    with pytest.raises(ValueError, match="unknown sampler"):
        sampling.sample("plms", key, d, shape, schedule=SCHED, num_steps=5)
    with pytest.raises(ValueError, match="num_steps"):
        sampling.sample("ddim", key, d, shape, schedule=SCHED, num_steps=0)
    with pytest.raises(ValueError, match="takes no eta"):
        sampling.make_grid("sigma_hat", 5, schedule=SCHED, eta=0.5)
    with pytest.raises(ValueError, match="does not run on a rectified-flow"):
        sampling.make_grid("ddpm", 5)


@pytest.mark.parametrize("name", sorted(sampling.SAMPLERS))
def test_image_depends_on_key_and_row_only(name):
    """10 samples in one call equal 10 in chunks of 3 (and a row offset shifts the rows)."""
    d, key = eps_denoiser(), jax.random.key(9)
    opts = {"eta": 0.7} if name == "ddim" else {}
    grid = sampling.make_grid(name, 6, schedule=SCHED, **opts) if name != "ddpm" else sampling.make_grid(name, 6, schedule=SCHED)
    one = np.asarray(sampling.sample(name, key, d, (10, 2), grid=grid))
    chunked = np.asarray(sampling.sample(name, key, d, (10, 2), grid=grid, chunk_size=3))
    np.testing.assert_array_equal(one, chunked)
    tail = np.asarray(sampling.sample(name, key, d, (4, 2), grid=grid, row_offset=6))
    np.testing.assert_array_equal(tail, one[6:])


def test_parse_spec():
    assert sampling.parse_spec("ddim") == ("ddim", {})
    assert sampling.parse_spec("ddim(eta=1)") == ("ddim", {"eta": 1.0})
    assert sampling.parse_spec(" ddim ( eta = 0.5 , spacing=trailing ) ") == ("ddim", {"eta": 0.5, "spacing": "trailing"})
    for bad, match in [("ddim(eta)", "key=value"), ("plms", "unknown sampler"), ("ddim eta", "must look like")]:
        with pytest.raises(ValueError, match=match):
            sampling.parse_spec(bad)


# ------------------------------------------------------------------------------ studies


def _toy_score(x, labels):
    return {"loglik": float(jnp.mean(MIX.log_prob(jnp.asarray(x)))), "n": len(x)}


def test_sampler_study_rows_and_determinism():
    den = eps_denoiser()
    kw = {"steps": (2, 5), "samplers": ("ddpm", "ddim", "ddim(eta=1)", "sigma_hat"), "batch_size": 7,
          "schedule": SCHED}
    labels = np.arange(10) % 3
    rows = studies.sampler_study(jax.random.key(0), den, (2,), labels, _toy_score, **kw)
    assert [(r["sampler"], r["steps"]) for r in rows] == [
        (s, n) for s in kw["samplers"] for n in kw["steps"]]
    for r in rows:
        assert set(r) >= {"sampler", "steps", "evaluations", "num_samples", "loglik", "n", "seconds",
                          "compile_seconds", "shared_with"}
        assert r["evaluations"] == r["steps"] and r["num_samples"] == 10 and r["n"] == 10
        assert r["seconds"] >= 0 and r["compile_seconds"] >= 0
    # DDIM eta = 1 on a sub-grid is the ddpm run: reused, not re-sampled
    eta1 = [r for r in rows if r["sampler"] == "ddim(eta=1)"]
    assert all(r["shared_with"] == "ddpm" for r in eta1)
    again = studies.sampler_study(jax.random.key(0), den, (2,), labels, _toy_score, **kw)
    assert [r["loglik"] for r in rows] == [r["loglik"] for r in again]
    other = studies.sampler_study(jax.random.key(1), den, (2,), labels, _toy_score, **kw)
    assert [r["loglik"] for r in rows] != [r["loglik"] for r in other]


def test_sampler_study_runs_ddpm_and_eta1_separately_at_full_length():
    # At T steps DDPM uses the exact posterior coefficients and DDIM eta = 1 its own
    # form of the same update: equal up to float rounding, so both are run, not shared.
    rows = studies.sampler_study(jax.random.key(0), eps_denoiser(), (2,), 8, _toy_score, steps=(1000,),
                                 samplers=("ddpm", "ddim(eta=1)"), schedule=SCHED)
    assert rows[1]["shared_with"] is None
    a = sampling.sample("ddpm", jax.random.key(0), eps_denoiser(), (8, 2), schedule=SCHED)
    b = sampling.sample("ddim", jax.random.key(0), eps_denoiser(), (8, 2), schedule=SCHED, num_steps=1000, eta=1.0)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    ({"samplers": ("plms",)}, "unknown sampler"),
    ({"samplers": ()}, "samplers must name at least one"),
    ({"steps": (0,)}, "steps entries must be a positive integer"),
    ({"steps": (2000,)}, "cannot exceed the schedule"),
    ({"steps": ()}, "steps must list"),
    ({"batch_size": 0}, "chunk_size"),
])
def test_sampler_study_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        studies.sampler_study(jax.random.key(0), eps_denoiser(), (2,), 4, _toy_score, schedule=SCHED, **kwargs)


def test_quality_vs_steps_tiny_model():
    """Row structure and determinism with an untrained tiny U-Net and classifier."""
    import dataclasses

    from flax import nnx

    from diffusion_jax import metrics, pipeline
    from diffusion_jax.models import UNetConfig
    from diffusion_jax.train import create_train_state

    preset = dataclasses.replace(
        pipeline.get_preset("mnist-unet", steps=1),
        model=UNetConfig(channels=(8, 8), attention_levels=(), groups=4, num_classes=10))
    state = create_train_state(pipeline.build_model(preset), preset.train)
    clf = nnx.split(metrics.Classifier((28, 28, 1), widths=(4, 4), strides=(2, 2), feature_dim=8,
                                       rngs=nnx.Rngs(params=jax.random.key(0))))
    real = np.random.default_rng(0).standard_normal((20, 8))
    kw = {"steps": (2,), "samplers": ("ddim", "sigma_hat"), "num_samples": 6, "guidance_scale": 2.0}
    rows = studies.quality_vs_steps(jax.random.key(0), state, preset, clf, real, **kw)
    assert [r["sampler"] for r in rows] == ["ddim", "sigma_hat"]
    for r in rows:
        assert r["evaluations"] == 2 * 2  # CFG: two predictions per step
        assert r["guidance_scale"] == 2.0 and r["num_samples"] == 6
        assert np.isfinite(r["fid"]) and np.isfinite(r["kid"]) and 0.0 <= r["accuracy"] <= 1.0
    again = studies.quality_vs_steps(jax.random.key(0), state, preset, clf, real, **kw)
    assert [r["fid"] for r in rows] == [r["fid"] for r in again]
    plain = studies.quality_vs_steps(jax.random.key(0), state, preset, clf, real,
                                     **{**kw, "guidance_scale": 1.0, "samplers": ("ddim",)})
    assert plain[0]["evaluations"] == 2  # s = 1: the conditional model alone
    with pytest.raises(ValueError, match="real_features"):
        studies.quality_vs_steps(jax.random.key(0), state, preset, clf, real[:, :3][0], **kw)
    with pytest.raises(ValueError, match="num_samples"):
        studies.quality_vs_steps(jax.random.key(0), state, preset, clf, real, **{**kw, "num_samples": 1})


# ------------------------------------------------------------------------------ diversity


def test_within_class_spread_bruteforce():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((30, 5))
    labels = rng.integers(0, 4, 30)
    labels[labels == 3] = 2  # class 3 empty
    labels[0] = 3  # ... but for one row: NaN, too few rows
    got = metrics.within_class_spread(f, labels, num_classes=5)
    for c in range(5):
        rows = f[labels == c]
        if len(rows) < 2:
            assert np.isnan(got[c])
            continue
        d = [np.linalg.norm(rows[i] - rows[j]) for i in range(len(rows)) for j in range(i + 1, len(rows))]
        np.testing.assert_allclose(got[c], np.mean(d), rtol=1e-10)
    with pytest.raises(ValueError, match="features"):
        metrics.within_class_spread(f, labels[:5])


# ------------------------------------------------------------------------------ guidance additions


def test_drop_decision_chapter_batch():
    rng = random.Random(7)  # the chapter's four prompts, p = 0.35
    u = np.array([rng.random() for _ in range(4)])
    dropped = np.asarray(guidance.drop_decision(u, 0.35))
    np.testing.assert_array_equal(dropped, u < 0.35)
    assert dropped.tolist() == [True, True, False, True]
    assert not np.asarray(guidance.drop_decision(u, 0.0)).any()
    assert np.asarray(guidance.drop_decision(np.nextafter(1.0, 0.0), 1.0))
    with pytest.raises(ValueError, match="p"):
        guidance.drop_decision(u, 1.5)


def test_drop_labels_uses_decision_rule():
    key, p = jax.random.key(11), 0.35
    labels = jnp.arange(64, dtype=jnp.int32) % 10
    u = np.asarray(jax.random.uniform(key, (64,)))
    out = np.asarray(guidance.drop_labels(key, labels, p, 10))
    np.testing.assert_array_equal(out == 10, u < p)


def test_paper_weight_roundtrip():
    s = np.array([0.0, 1.0, 3.0, 7.5, 15.0])
    np.testing.assert_allclose(guidance.paper_weight(s), s - 1.0)
    np.testing.assert_allclose(guidance.diffusers_scale(guidance.paper_weight(s)), s)
    # (1 + w) cond - w uncond == cfg_combine(uncond, cond, s)
    rng = np.random.default_rng(2)
    u, c = rng.standard_normal(3), rng.standard_normal(3)
    for scale in s:
        w = guidance.paper_weight(scale)
        np.testing.assert_allclose(np.asarray(guidance.cfg_combine(u, c, scale)), (1 + w) * c - w * u, atol=1e-12)


def test_quality_vs_steps_counts_one_prediction_for_a_guidance_input_student():
    import dataclasses

    from flax import nnx

    from diffusion_jax import distill, metrics, pipeline
    from diffusion_jax.models import UNetConfig
    from diffusion_jax.train import create_train_state

    preset = dataclasses.replace(
        pipeline.get_preset("mnist-unet-student-4", steps=1),
        model=UNetConfig(channels=(8, 8), attention_levels=(), groups=4, num_classes=10, guidance_embed=True))
    state = create_train_state(pipeline.build_model(preset), preset.train)
    clf = nnx.split(metrics.Classifier((28, 28, 1), widths=(4, 4), strides=(2, 2), feature_dim=8,
                                       rngs=nnx.Rngs(params=jax.random.key(0))))
    real = np.random.default_rng(0).standard_normal((20, 8))
    rows = studies.quality_vs_steps(jax.random.key(0), state, preset, clf, real, steps=(4,),
                                    samplers=("ddim(spacing=trailing)",), num_samples=6, guidance_scale=3.0)
    assert rows[0]["evaluations"] == 4 and rows[0]["guidance_scale"] == 3.0
    # the denoiser the study used is the student at s = 3, one network call per step
    d = pipeline.denoiser(state, preset, 3.0)
    assert d.fn.func is distill._at_scale and float(d.fn.args[1]) == 3.0


def test_fid_floor_same_draw_has_no_spread_and_checks_its_arguments():
    from flax import nnx

    from diffusion_jax import metrics

    clf = nnx.split(metrics.Classifier((28, 28, 1), widths=(4, 4), strides=(2, 2), feature_dim=8,
                                       rngs=nnx.Rngs(params=jax.random.key(0))))
    images = np.random.default_rng(1).uniform(-1, 1, (12, 28, 28, 1)).astype(np.float32)
    real = np.random.default_rng(2).standard_normal((30, 8))
    whole = studies.fid_floor(jax.random.key(0), clf, images, real, 12, repeats=3)  # every draw: all 12
    want = metrics.fid(metrics.features_and_logits(clf, images)[0], real)
    assert whole["std"] < 1e-9 * max(1.0, want) and abs(whole["mean"] - want) < 1e-6 * max(1.0, want)
    some = studies.fid_floor(jax.random.key(0), clf, images, real, 6, repeats=4)
    assert len(some["values"]) == 4 and some["std"] > 0 and some["num_samples"] == 6
    labels = np.arange(12) % 3
    balanced = studies.fid_floor(jax.random.key(0), clf, images, real, 6, repeats=2, labels=labels)
    assert balanced["class_balanced"] and len(balanced["values"]) == 2
    every = studies.fid_floor(jax.random.key(1), clf, images, real, 12, repeats=2, labels=labels)  # 4 per class
    assert abs(every["mean"] - want) < 1e-6 * max(1.0, want) and every["std"] < 1e-9 * max(1.0, want)
    with pytest.raises(ValueError, match="too few real images"):
        studies.fid_floor(jax.random.key(0), clf, images, real, 6, labels=np.array([0] * 5 + [1] * 6 + [2]))
    with pytest.raises(ValueError, match="num_samples"):
        studies.fid_floor(jax.random.key(0), clf, images, real, 13)
    with pytest.raises(ValueError, match="repeats"):
        studies.fid_floor(jax.random.key(0), clf, images, real, 6, repeats=0)


SHARD_CHILD = r"""
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax, numpy as np
from diffusion_jax import sampling, schedules, toy
from diffusion_jax.denoisers import denoiser
sched = schedules.linear(1000)
d = denoiser(toy.default_mixture().denoiser(sched, "eps"), "eps")
assert len(jax.devices()) == 2
for name in sorted(sampling.SAMPLERS):
    grid = sampling.make_grid(name, 6, schedule=sched)
    one = np.asarray(sampling.sample(name, jax.random.key(1), d, (7, 2), grid=grid))
    spread = np.asarray(sampling.sample(name, jax.random.key(1), d, (7, 2), grid=grid, chunk_size=5,
                                        devices=jax.devices()))
    assert spread.shape == one.shape and np.allclose(spread, one, atol=1e-6), name
print("ok")
"""


def test_rows_spread_over_devices_give_the_same_samples():
    """Sharding a chunk's rows over 2 CPU devices (odd row counts are padded) changes nothing."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", SHARD_CHILD], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
