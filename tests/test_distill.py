"""Distillation (diffusion_jax.distill): targets, students, and the training loop's loss hook.

What is pinned: the progressive-distillation target against an independent float64 NumPy
computation of Salimans & Ho's Alg. 2 on the exact toy (closed-form teacher, own grid and
schedule arithmetic); one DDIM step with that target lands where two teacher steps land;
student grids nest under halving (and n = 3 is refused); a guidance student built from
its teacher computes the teacher's output at every scale (zero-initialised embedding) and
its fingerprint-relevant config is untouched by default; the guided net equals CFG; one
progressive round on the exact toy makes 2 student steps land near 4 teacher steps;
N steps straight == N/2 + resume + N/2 with the distillation loss.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffusion_jax._checks import expand_to
from diffusion_jax import configs, denoisers, distill, guidance, presets, sampling, schedules, toy, train
from diffusion_jax.models import UNet, UNetConfig
from diffusion_jax.models.embeddings import timestep_embedding
from diffusion_jax.models.unet import PRESETS as UNET_PRESETS

T = 1000
SCHED = schedules.linear(T)
MIX = toy.default_mixture()
EXACT_V = MIX.denoiser(SCHED, "v")  # the MSE-optimal v-predictor of the mixture


# ----------------------------------------------------------------------------------------- referee


def np_alpha_bars():
    betas = np.linspace(1e-4, 0.02, T, dtype=np.float64)  # DDPM's linear schedule
    return np.cumprod(1.0 - betas)


def np_trailing(n):
    return (np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1)  # (n,) from T-1 down


def np_posterior_x0(x, a, b):
    """E[x0 | x_t = a x0 + b eps] for the default mixture, float64 (no labels)."""
    w, mu, sd = (np.asarray(v, np.float64) for v in (MIX.weights, MIX.means, MIX.stds))
    a, b = a[:, None], b[:, None]  # (B, 1)
    var = a**2 * sd[None] ** 2 + b**2  # (B, K)
    sq = ((x[:, None, :] - a[..., None] * mu[None]) ** 2).sum(-1)  # (B, K)
    logj = np.log(w)[None] - 0.5 * x.shape[1] * np.log(2 * np.pi * var) - 0.5 * sq / var
    r = np.exp(logj - logj.max(1, keepdims=True))
    r /= r.sum(1, keepdims=True)
    gain = a * sd[None] ** 2 / var  # (B, K)
    m = mu[None] + gain[..., None] * (x[:, None, :] - a[..., None] * mu[None])  # (B, K, D)
    return (r[..., None] * m).sum(1)


def np_target(x_t, i, n):
    """Salimans & Ho Alg. 2 for student step i of n, teacher = the exact toy, float64."""
    ab = np_alpha_bars()
    tt = np_trailing(2 * n)
    lv = lambda k: (np.sqrt(ab[tt[k]]), np.sqrt(1 - ab[tt[k]])) if k < 2 * n else (1.0, 0.0)
    (a, s), (a1, s1), (a2, s2) = lv(2 * i), lv(2 * i + 1), lv(2 * i + 2)
    ones = np.ones(len(x_t))
    x0 = np_posterior_x0(x_t, a * ones, s * ones)
    z1 = a1 * x0 + s1 * (x_t - a * x0) / s
    x0b = np_posterior_x0(z1, a1 * ones, s1 * ones)
    z2 = a2 * x0b + s2 * (z1 - a1 * x0b) / s1
    return (z2 - (s2 / s) * x_t) / (a2 - (s2 / s) * a), z2


@pytest.mark.parametrize("n,i", [(2, 0), (2, 1), (4, 2), (8, 0)])
def test_progressive_target_matches_float64_referee(n, i):
    rng = np.random.default_rng(n * 10 + i)
    x_t = rng.standard_normal((64, 2))
    teacher = denoisers.denoiser(EXACT_V, "v")
    grid2 = distill.check_nested(SCHED, n)
    x0, x_next = distill.progressive_target(teacher, jnp.asarray(x_t, jnp.float32), jnp.full((64,), i), grid2)
    want_x0, want_next = np_target(x_t, i, n)
    np.testing.assert_allclose(np.asarray(x_next), want_next, atol=2e-4)
    np.testing.assert_allclose(np.asarray(x0), want_x0, atol=5e-4, rtol=1e-4)


def test_one_step_x0_makes_one_ddim_step_land_on_the_target():
    rng = np.random.default_rng(0)
    ab = np.sort(rng.uniform(0.01, 0.99, (2, 16)), axis=0)  # (2, B): ab < ab_next (less noisy)
    a, s, a2, s2 = np.sqrt(ab[0]), np.sqrt(1 - ab[0]), np.sqrt(ab[1]), np.sqrt(1 - ab[1])
    x_t, x_next = rng.standard_normal((2, 16, 3))
    x0 = distill.one_step_x0(x_t, x_next, a, s, a2, s2)
    np.testing.assert_allclose(np.asarray(distill.ddim_to(x0, x_t, a, s, a2, s2)), x_next, atol=1e-5)
    # landing on the data (s_next = 0): the target is the landing point itself
    np.testing.assert_allclose(np.asarray(distill.one_step_x0(x_t, x_next, a, s, 1.0, 0.0)), x_next, atol=1e-6)


def test_target_is_a_convex_combination_of_the_teachers_x0():
    # x0 = w c1 + (1 - w) c2 with w in [0, 1) (0 on the step onto the data): a clipped
    # teacher gives targets inside the clip range. c1 = -1 and c2 = +1 everywhere.
    rng = np.random.default_rng(1)
    grid2 = distill.check_nested(SCHED, 4)
    calls = iter([-1.0, 1.0])

    def teacher(x, t, a, s, cond):
        x0 = jnp.full_like(x, next(calls))
        return x0, (x - expand_to(a, x) * x0) / expand_to(s, x)

    steps = jnp.array([0, 1, 2, 3, 1])
    x0, _ = distill.progressive_target(teacher, jnp.asarray(rng.standard_normal((5, 2)), jnp.float32), steps, grid2)
    x0 = np.asarray(x0)
    inner = np.asarray(steps) < 3
    assert np.all(np.abs(x0[inner]) < 1) and np.allclose(x0[~inner], 1.0)


def test_student_grids_nest_and_a_rounding_mismatch_is_refused():
    for n in (1, 2, 3, 4, 8, 16, 32):
        g2, g = distill.check_nested(SCHED, n), distill.student_grid(SCHED, n)
        np.testing.assert_array_equal(np.asarray(g2.t[::2]), np.asarray(g.t))
        np.testing.assert_array_equal(np.asarray(g.t), np_trailing(n))
    with pytest.raises(ValueError, match="student_steps=24"):
        distill.check_nested(schedules.linear(100), 24)  # round(100 - k 100/24) != round(100 - 2k 100/48)


def test_distill_config_rejects_bad_values():
    with pytest.raises(ValueError, match="student_steps"):
        distill.DistillConfig("mnist-unet", 0)
    with pytest.raises(ValueError, match="scale_range"):
        distill.DistillConfig("mnist-unet", None, (3.0, 1.0))
    with pytest.raises(ValueError, match="distillation trains a v-prediction student"):
        distill.objective(distill.DistillConfig("x", 2), EXACT_V, SCHED, prediction="eps")


# ----------------------------------------------------------------------------------------- students


TINY = UNetConfig(channels=(8, 16), attention_levels=(1,), num_heads=2, groups=4, num_classes=3)


def test_guidance_embedding_starts_as_the_teacher():
    teacher = UNet(TINY, rngs=nnx.Rngs(0))
    student = UNet(dataclasses.replace(TINY, guidance_embed=True), rngs=nnx.Rngs(1))
    distill.init_student(student, nnx.state(teacher, nnx.Param))
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    t, c = jnp.array([0, 10, 500, 999]), jnp.array([0, 1, 2, 3])
    want = np.asarray(teacher(x, t, c))
    for s in (0.0, 1.0, 3.0, jnp.array([1.0, 2.0, 5.0, 7.5])):
        np.testing.assert_array_equal(np.asarray(student(x, t, c, guidance=s)), want)
    with pytest.raises(ValueError, match="guidance_embed=True"):
        student(x, t, c)
    with pytest.raises(ValueError, match="takes no guidance input"):
        teacher(x, t, c, guidance=2.0)
    with pytest.raises(ValueError, match="lacks"):
        distill.init_student(teacher, nnx.state(student, nnx.Param))


def test_new_options_leave_existing_fingerprints_alone():
    assert "guidance_embed" not in configs.essential(UNET_PRESETS["mnist"])
    base = presets.PRESETS["mnist-unet"]
    assert base.distill is None and not base.guidance_input
    assert configs.digest({"m": UNET_PRESETS["mnist"]}) != configs.digest(
        {"m": dataclasses.replace(UNET_PRESETS["mnist"], guidance_embed=True)})
    fps = {n: presets.PRESETS[n].fingerprint() for n in ("mnist-unet-guided", "mnist-unet-student-8")}
    # the teacher's fingerprint is part of the student's
    changed = dataclasses.replace(presets.PRESETS["mnist-unet"], schedule="cosine")
    presets.PRESETS["mnist-unet"], saved = changed, presets.PRESETS["mnist-unet"]
    try:
        assert all(presets.PRESETS[n].fingerprint() != fp for n, fp in fps.items())
    finally:
        presets.PRESETS["mnist-unet"] = saved


def test_cfg_net_is_classifier_free_guidance_per_row():
    net = distill.cfg_net(EXACT_V, MIX.null_label)
    x = jax.random.normal(jax.random.key(2), (6, 2))
    t, c = jnp.full((6,), 400), jnp.array([0, 1, 2, 0, 1, 2])
    scales = jnp.array([1.0, 2.0, 3.0, 0.0, 4.5, 3.0])
    got = np.asarray(net(x, t, c, scales))
    for i in range(6):
        want = guidance.guided_denoiser(EXACT_V, float(scales[i]), MIX.null_label)(x, t, c)
        np.testing.assert_allclose(got[i], np.asarray(want)[i], atol=1e-6)
    d = distill.net_denoiser(net, 3.0, "v")
    np.testing.assert_allclose(np.asarray(d.output(x, t, c)),
                               np.asarray(guidance.guided_denoiser(EXACT_V, 3.0, MIX.null_label)(x, t, c)), atol=1e-6)


# ----------------------------------------------------------------------------------------- one round on the toy


class ToyStudent(nnx.Module):
    """The exact toy v-predictor plus a learned correction that starts at zero."""

    def __init__(self, *, rngs, hidden=64):
        self.fc1 = nnx.Linear(2 + 16, hidden, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, 2, kernel_init=nnx.initializers.zeros_init(), rngs=rngs)

    def __call__(self, x, t, cond, *, guidance=None):
        h = jnp.concatenate([x, timestep_embedding(t, 16)], axis=-1)  # (B, 18)
        h = nnx.silu(self.fc2(nnx.silu(self.fc1(h))))
        return EXACT_V(x, t, cond) + self.out(h)


def _toy_fit(out_dir, steps, n_student=2, model=None, resume=True):
    cfg = train.TrainConfig(steps=steps, batch_size=256, lr=3e-3, warmup_steps=20, ema_decay=0.9, cond_dropout=0.0,
                            prediction="v", log_every=10, checkpoint_every=0)
    x0, _ = MIX.sample(jax.random.key(5), 4096)
    labels = np.full((4096,), MIX.null_label, np.int32)  # unconditional: every scale is the same model
    loss = distill.objective(distill.DistillConfig("toy", n_student), distill.cfg_net(EXACT_V, MIX.null_label), SCHED)
    batch_fn = train.epoch_batch_fn(jax.random.key(6), np.asarray(x0), labels, cfg.batch_size)
    return train.fit(model or ToyStudent(rngs=nnx.Rngs(0)), cfg, None, batch_fn, out_dir=out_dir,
                     null_label=MIX.null_label, progress=False, loss=loss, resume=resume)


def test_one_round_on_the_exact_toy_halves_the_steps(tmp_path):
    state = _toy_fit(tmp_path, 300)
    student = denoisers.Denoiser(train.model_denoiser(state.graphdef, state.ema_params, state.rest), "v")
    teacher = denoisers.denoiser(EXACT_V, "v")
    key, shape = jax.random.key(9), (2000, 2)
    run = lambda d, n: np.asarray(sampling.sample("ddim", key, d, shape, grid=distill.student_grid(SCHED, n)))
    t4, t2, s2 = run(teacher, 4), run(teacher, 2), run(student, 2)
    rms = lambda a, b: float(np.sqrt(np.mean((a - b) ** 2)))
    before, after = rms(t2, t4), rms(s2, t4)
    assert after < 0.1 * before, (before, after)  # one run: 0.146 -> 0.004


def test_distillation_resumes_exactly(tmp_path):
    straight = _toy_fit(tmp_path / "a", 20)
    _toy_fit(tmp_path / "b", 10)
    resumed = _toy_fit(tmp_path / "b", 20)
    for x, y in zip(jax.tree.leaves(straight.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)


def test_fit_refuses_a_loss_that_is_not_a_partial(tmp_path):
    cfg = train.TrainConfig(steps=1, batch_size=8, cond_dropout=0.0)
    with pytest.raises(TypeError, match="loss must be a jax.tree_util.Partial"):
        train.make_train_step(cfg, None, loss=lambda *a: 0.0)


# ----------------------------------------------------------------------------------------- the presets


def test_student_presets_sample_on_their_trailing_grid():
    p = presets.PRESETS["mnist-unet-student-4"]
    assert p.guidance_input and p.sampler_steps == 4 and p.sampler_spacing == "trailing"
    assert p.distill == distill.DistillConfig("mnist-unet-student-8", 4)
    chain, name = [], "mnist-unet-student-2"
    while presets.PRESETS[name].distill is not None:
        chain.append(presets.PRESETS[name].distill.student_steps)
        name = presets.PRESETS[name].distill.teacher
    assert name == "mnist-unet" and chain == [2, 4, 8, None]


@pytest.mark.slow
def test_pipeline_distils_a_chain_and_samples_the_student(tmp_path, monkeypatch):
    """teacher -> guidance student -> 2-step student through pipeline.train, with tiny presets;
    the student starts from its teacher's weights and samples with one prediction per step."""
    from diffusion_jax import pipeline

    monkeypatch.setenv("DIFFUSION_JAX_PRETRAINED", str(tmp_path / "none"))
    tiny = UNetConfig(channels=(8, 16), attention_levels=(1,), num_heads=2, groups=4, num_classes=10)
    tc = train.TrainConfig(steps=2, batch_size=8, prediction="v", log_every=1, checkpoint_every=0)
    dc = dataclasses.replace(tc, cond_dropout=0.0)
    student_cfg = dataclasses.replace(tiny, guidance_embed=True)
    added = {
        "tiny-teacher": presets.Preset("tiny-teacher", "mnist", tiny, tc),
        "tiny-guided": presets.Preset("tiny-guided", "mnist", student_cfg, dc, distill=distill.DistillConfig("tiny-teacher"),
                                      sampler_spacing="trailing"),
        "tiny-s2": presets.Preset("tiny-s2", "mnist", student_cfg, dc, sampler_steps=2,
                                  distill=distill.DistillConfig("tiny-guided", 2), sampler_spacing="trailing"),
    }
    for name, p in added.items():
        monkeypatch.setitem(presets.PRESETS, name, p)
    root = tmp_path / "ck"
    student = pipeline.train(added["tiny-s2"], root=root, progress=False)
    assert all((pipeline.run_dir(p, root) / "checkpoints").is_dir() for p in added.values())
    assert int(student.step) == 2
    teacher = pipeline.train(added["tiny-guided"], root=root, progress=False)  # from the cache now
    # two updates from the teacher's weights: close to them, not equal
    diffs = [float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
             for a, b in zip(jax.tree.leaves(student.params), jax.tree.leaves(teacher.ema_params))]
    assert 0 < max(diffs) < 0.05
    x = pipeline.sample(jax.random.key(0), student, added["tiny-s2"], np.arange(3))
    assert x.shape == (3, 28, 28, 1) and np.all(np.isfinite(x))
    d = pipeline.denoiser(student, added["tiny-s2"], 3.0)
    assert d.prediction == "v" and d.clip_x0 == 1.0
