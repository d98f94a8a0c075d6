"""Training shell and checkpoints, with a tiny NNX model of our own (8x8x1 images, batch 8).

What is pinned: the step compiles once; EMA and label dropout do what they say; the
flow objective feeds the model t * 1000; 4-device data parallel == 1 device; N steps
straight == N/2 + resume + N/2; a NaN stops training without touching the last good
checkpoint; checkpoints are exact, atomic under a crash, and refuse a mismatched target.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from diffusion_jax import checkpoint as ckpt
from diffusion_jax import data, flow, samplers, schedules, train
from diffusion_jax.losses import diffusion_loss
from diffusion_jax.models.embeddings import timestep_embedding

NUM_CLASSES, NULL = 3, 3
SCHED = schedules.linear(1000)
TRACES = {"n": 0}  # incremented only while jax traces the model


class Tiny(nnx.Module):
    """A 2-layer MLP on flattened 8x8xC images with timestep and label embeddings."""

    def __init__(self, *, rngs, side=8, channels=1, hidden=32):
        self.inp = nnx.Linear(side * side * channels, hidden, rngs=rngs)
        self.temb = nnx.Linear(16, hidden, rngs=rngs)
        self.lab = nnx.Embed(NUM_CLASSES + 1, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, side * side * channels, rngs=rngs)

    def __call__(self, x, t, cond):
        TRACES["n"] += 1
        h = self.inp(x.reshape(x.shape[0], -1)) + self.temb(timestep_embedding(t, 16))
        if cond is not None:
            h = h + self.lab(cond)
        return self.out(nnx.silu(h)).reshape(x.shape)


def dataset(n=24, seed=0):
    rs = np.random.RandomState(seed)
    images = np.tanh(rs.normal(size=(n, 8, 8, 1))).astype(np.float32)
    return images, (np.arange(n) % NUM_CLASSES).astype(np.int32)


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def assert_trees_close(a, b, rtol=1e-6, atol=1e-7):
    la, lb = leaves(a), leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


CFG = train.TrainConfig(batch_size=8, lr=1e-2, warmup_steps=3, ema_decay=0.9, cond_dropout=0.0,
                        steps=20, log_every=5, checkpoint_every=5, seed=1)


# ---------------------------------------------------------------- the jitted step

def test_step_compiles_once_updates_ema_and_learns():
    model = Tiny(rngs=nnx.Rngs(0))
    state = train.create_train_state(model, CFG)
    step = train.make_train_step(CFG, SCHED, NULL)
    images, labels = (jnp.asarray(a) for a in dataset(8))
    eval_keys = jax.random.split(jax.random.PRNGKey(9), 8)

    @jax.jit
    def eval_loss(params):
        m = nnx.merge(state.graphdef, params, state.rest)
        return jnp.mean(jax.vmap(lambda k: diffusion_loss(k, m, SCHED, images, labels)[0])(eval_keys))

    before = float(eval_loss(state.params))
    ema0, null_row0 = leaves(state.ema_params), np.asarray(state.params["lab"]["embedding"][...])
    TRACES["n"] = 0  # (eval_loss traced the model once already)
    state, metrics = step(state, jax.random.PRNGKey(0), images, labels)
    ema1 = leaves(state.ema_params)
    for e0, e1, p1 in zip(ema0, ema1, leaves(state.params)):  # ema = d * ema + (1 - d) * params
        np.testing.assert_allclose(e1, 0.9 * e0 + 0.1 * p1, rtol=1e-6, atol=1e-7)
    assert float(metrics["lr"]) == pytest.approx(1e-2 / 3)  # warm-up: the first step learns
    for i in range(1, 60):
        state, metrics = step(state, jax.random.PRNGKey(i), images, labels)
    assert TRACES["n"] == 1 and step._cache_size() == 1  # traced and compiled exactly once
    assert int(state.step) == 60 and float(metrics["lr"]) == pytest.approx(1e-2)
    assert eval_loss(state.params) < 0.7 * before
    # no label was dropped (cond_dropout=0): the null label's row never got a gradient
    np.testing.assert_array_equal(state.params["lab"]["embedding"][...][NULL], null_row0[NULL])
    # the step donated copies, so the caller's model is still alive and untouched
    np.testing.assert_array_equal(model.lab.embedding[...], null_row0)


def test_label_dropout_uses_the_null_label():
    config = train.TrainConfig(batch_size=8, cond_dropout=1.0, warmup_steps=1)
    state = train.create_train_state(Tiny(rngs=nnx.Rngs(0)), config)
    table0 = np.asarray(state.params["lab"]["embedding"][...])
    images, labels = (jnp.asarray(a) for a in dataset(8))
    state, _ = train.make_train_step(config, SCHED, NULL)(state, jax.random.PRNGKey(0), images, labels)
    table1 = np.asarray(state.params["lab"]["embedding"][...])
    np.testing.assert_array_equal(table1[:NULL], table0[:NULL])  # every label was dropped...
    assert np.abs(table1[NULL] - table0[NULL]).max() > 1e-4  # ...to the null label
    with pytest.raises(ValueError, match="null_label"):
        train.make_train_step(config, SCHED, None)


def test_flow_objective_feeds_time_times_1000_and_velocity_partial_reuses_sampler():
    config = train.TrainConfig(batch_size=8, objective="flow", cond_dropout=0.0)
    model = Tiny(rngs=nnx.Rngs(1))
    state = train.create_train_state(model, config)
    images, labels = (jnp.asarray(a) for a in dataset(8))
    key = jax.random.PRNGKey(3)
    velocity = lambda x, t, c: model(x, 1000.0 * t, c)  # what training must feed the model
    expect = jax.jit(lambda k: flow.flow_loss(k, velocity, images, labels)[0])(jax.random.split(key)[1])
    state2, metrics = train.make_train_step(config, None, NULL)(state, key, images, labels)
    np.testing.assert_allclose(float(metrics["loss"]), float(expect), rtol=1e-5)

    t = jnp.linspace(0.1, 0.9, 8)
    v = train.model_velocity(state2.graphdef, state2.params, state2.rest)
    m2 = nnx.merge(state2.graphdef, state2.params, state2.rest)
    np.testing.assert_allclose(v(images, t, labels), m2(images, 1000.0 * t, labels), rtol=1e-5, atol=1e-6)
    n0 = samplers._first_order._cache_size()
    a = flow.euler_sample(key, v, (4, 8, 8, 1), labels[:4], num_steps=3)
    b = flow.euler_sample(key, train.model_velocity(state2.graphdef, state2.ema_params), (4, 8, 8, 1),
                          labels[:4], num_steps=3)
    assert samplers._first_order._cache_size() == n0 + 1 and not np.allclose(a, b)


def test_model_denoiser_matches_model_and_new_params_reuse_the_compiled_sampler():
    m1, m2 = Tiny(rngs=nnx.Rngs(1)), Tiny(rngs=nnx.Rngs(2))
    (g, p1), (_, p2) = nnx.split(m1, nnx.Param), nnx.split(m2, nnx.Param)
    x, labels = (jnp.asarray(a) for a in dataset(4))
    t = jnp.array([0, 10, 500, 999], jnp.int32)
    np.testing.assert_allclose(train.model_denoiser(g, p1)(x, t, labels), m1(x, t, labels), rtol=1e-6)
    key = jax.random.PRNGKey(0)
    n0 = samplers._first_order._cache_size()
    a = samplers.ddim_sample(key, train.model_denoiser(g, p1), SCHED, (4, 8, 8, 1), labels, num_steps=4)
    b = samplers.ddim_sample(key, train.model_denoiser(g, p2), SCHED, (4, 8, 8, 1), labels, num_steps=4)
    assert samplers._first_order._cache_size() == n0 + 1  # one program for both weight sets
    assert a.shape == (4, 8, 8, 1) and not np.allclose(a, b)


# ---------------------------------------------------------------- data parallel

DP_CHILD = r"""
import json, os, sys, tempfile
sys.path.insert(0, sys.argv[1])
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
import test_train as T
from diffusion_jax import train
assert len(jax.devices()) == 4, jax.devices()
cfg = train.TrainConfig(batch_size=16, lr=1e-2, warmup_steps=2, steps=5, log_every=1,
                        checkpoint_every=0, cond_dropout=0.5, seed=3)
images, labels = T.dataset(48)
batch_fn = train.epoch_batch_fn(jax.random.PRNGKey(0), images, labels, 16)
out = tempfile.mkdtemp()
s4 = train.fit(T.Tiny(rngs=nnx.Rngs(0)), cfg, T.SCHED, batch_fn, out_dir=out, null_label=T.NULL,
               progress=False)  # default mesh: all 4 devices
loss4 = [json.loads(l)["loss"] for l in open(os.path.join(out, "log.jsonl"))]
s4k = train.fit(T.Tiny(rngs=nnx.Rngs(0)), cfg, T.SCHED, batch_fn, out_dir=tempfile.mkdtemp(), null_label=T.NULL,
                progress=False, steps_per_dispatch=2)  # 2 steps per call, batches gathered on the mesh
mesh1 = train.make_mesh(jax.devices()[:1])
step1 = train.make_train_step(cfg, T.SCHED, T.NULL, mesh=mesh1)
s1, loss1 = train.replicate(mesh1, train.create_train_state(T.Tiny(rngs=nnx.Rngs(0)), cfg)), []
for s in range(cfg.steps):
    x, y = train.shard_batch(mesh1, *batch_fn(s))
    s1, m = step1(s1, jax.random.fold_in(jax.random.PRNGKey(cfg.seed), s), x, y)
    loss1.append(float(m["loss"]))
p4, p1, p4k = jax.tree.leaves(s4), jax.tree.leaves(s1), jax.tree.leaves(s4k)
print(json.dumps({"loss4": loss4, "loss1": loss1, "cache1": step1._cache_size(),
    "close_k": all(np.allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6) for a, b in zip(p4k, p1)),
    "devices4": min(len(x.sharding.device_set) for x in p4),
    "max_rel": max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / (np.abs(np.asarray(b)) + 1e-6)))
                   for a, b in zip(p4, p1)),
    "close": all(np.allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6) for a, b in zip(p4, p1))}))
"""


def test_data_parallel_on_4_devices_matches_1_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", DP_CHILD, str(Path(__file__).parent)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["devices4"] == 4  # the fitted state really lives on the 4-device mesh
    assert len(r["loss4"]) == len(r["loss1"]) == 5 and r["cache1"] == 1
    np.testing.assert_allclose(r["loss4"], r["loss1"], rtol=1e-5)
    assert r["close"], f"params differ: max relative difference {r['max_rel']}"
    assert r["close_k"]  # 2 steps per call on the 4-device mesh: the same parameters


# ---------------------------------------------------------------- fit: resume, divergence

def test_epoch_batch_fn_is_the_data_batches_stream():
    images, labels = dataset(20)
    fn = train.epoch_batch_fn(jax.random.PRNGKey(5), images, labels, 8)
    stream = data.batches(jax.random.PRNGKey(5), images, labels, 8)
    for s in range(7):  # 2 batches per epoch: crosses three epoch boundaries
        (xa, ya), (xb, yb) = fn(s), next(stream)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_fit_resume_gives_the_same_params_as_a_straight_run(tmp_path):
    images, labels = dataset(24)
    batch_fn = train.epoch_batch_fn(jax.random.PRNGKey(0), images, labels, 8)
    train._STEP_CACHE.clear()
    fit = lambda cfg, d: train.fit(Tiny(rngs=nnx.Rngs(0)), cfg, SCHED, batch_fn, out_dir=tmp_path / d,
                                   null_label=NULL, progress=False)
    straight = fit(CFG, "a")
    half = fit(train.TrainConfig(**{**CFG.__dict__, "steps": 10}), "b")
    assert int(half.step) == 10
    resumed = fit(CFG, "b")
    assert int(resumed.step) == 20
    assert_trees_close(resumed, straight)
    with pytest.raises(AssertionError):  # the check can fail: 10 steps differ from 20
        assert_trees_close(half.params, straight.params)
    log_a = [json.loads(l) for l in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(l) for l in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_a] == [r["step"] for r in log_b] == [5, 10, 15, 20]
    np.testing.assert_allclose([r["loss"] for r in log_b], [r["loss"] for r in log_a], rtol=1e-6)
    assert {"grad_norm", "lr", "images_per_s", "wall_s"} <= set(log_a[0])
    kept = [p.name for p in ckpt.list_checkpoints(tmp_path / "a" / "checkpoints")]
    assert kept == ["step_00000010", "step_00000015", "step_00000020"]  # keep_checkpoints=3
    again = fit(CFG, "a")  # nothing left to do: restored and returned as is
    assert int(again.step) == 20 and len((tmp_path / "a" / "log.jsonl").read_text().splitlines()) == 4
    # every fit call and resume reused ONE compiled step (restored states keep their shardings)
    assert [fn._cache_size() for _, fn in train._STEP_CACHE.values()] == [1]
    with pytest.raises(FileExistsError, match="resume=True"):
        train.fit(Tiny(rngs=nnx.Rngs(0)), CFG, SCHED, batch_fn, out_dir=tmp_path / "a", null_label=NULL,
                  resume=False, progress=False)


def test_fit_stops_on_nan_and_keeps_the_last_good_checkpoint(tmp_path):
    images, labels = dataset(24)
    good = train.epoch_batch_fn(jax.random.PRNGKey(0), images, labels, 8)

    def batch_fn(step):
        x, y = good(step)
        return (np.full_like(x, np.nan), y) if step == 7 else (x, y)

    with pytest.raises(train.TrainingDiverged, match=r"at step 7 .*step_00000005") as err:
        train.fit(Tiny(rngs=nnx.Rngs(0)), CFG, SCHED, batch_fn, out_dir=tmp_path, null_label=NULL)  # with tqdm
    assert isinstance(err.value, FloatingPointError)
    d = tmp_path / "checkpoints"
    assert [p.name for p in ckpt.list_checkpoints(d)] == ["step_00000005"]
    target = train.create_train_state(Tiny(rngs=nnx.Rngs(0)), CFG)
    restored = ckpt.restore_checkpoint(d, target)
    assert int(restored.step) == 5 and all(np.isfinite(x).all() for x in leaves(restored))
    with pytest.raises(TypeError, match="batch_fn"):
        train.fit(Tiny(rngs=nnx.Rngs(0)), CFG, SCHED, iter([]), out_dir=tmp_path, null_label=NULL)


def test_config_validation():
    for bad in ({"objective": "score"}, {"prediction": "noise"}, {"cond_dropout": 1.5}, {"steps": 0},
                {"ema_warmup": -1}, {"ema_warmup": 1}):
        with pytest.raises(ValueError):
            train.TrainConfig(**bad)


# ---------------------------------------------------------------- data on the devices, K steps per call

@pytest.mark.parametrize("typed_key", [False, True])
def test_epoch_indices_on_device_are_the_batch_fn_rows(typed_key):
    images, labels = dataset(20)
    key = jax.random.key(5) if typed_key else jax.random.PRNGKey(5)
    fn = train.epoch_batch_fn(key, images, labels, 8)  # 2 batches per epoch, 4 rows dropped
    rows = jax.jit(lambda k, s: train.epoch_indices(k, s, 20, 8))
    for s in range(9):  # crosses four epoch boundaries
        idx = np.asarray(rows(key, jnp.int32(s)))
        np.testing.assert_array_equal(idx, fn.indices(s))
        np.testing.assert_array_equal(images[idx], fn(s)[0])
    assert len({tuple(np.sort(np.concatenate([fn.indices(2 * e), fn.indices(2 * e + 1)]))) for e in range(3)}) == 3


def _log(path):
    return [json.loads(line) for line in (path / "log.jsonl").read_text().splitlines()]


def test_k_steps_per_call_equal_single_steps_across_epochs_and_a_mid_group_resume(tmp_path):
    """24 examples, batch 8: 3 steps per epoch; K = 4: groups cross epoch boundaries, and
    log / checkpoint steps (every 5) cut groups short, as does the stop at step 7."""
    images, labels = dataset(24)
    batch_fn = train.epoch_batch_fn(jax.random.PRNGKey(0), images, labels, 8)
    fit = lambda cfg, d, **kw: train.fit(Tiny(rngs=nnx.Rngs(0)), cfg, SCHED, batch_fn, out_dir=tmp_path / d,
                                         null_label=NULL, progress=False, **kw)
    stop7 = train.TrainConfig(**{**CFG.__dict__, "steps": 7})
    host = fit(CFG, "host", steps_per_dispatch=1)  # the reference: host batches, one step per call
    on_device = fit(CFG, "dev1", device_data=True)  # data on the devices, one step per call
    multi = fit(CFG, "k4", steps_per_dispatch=4)
    auto = fit(CFG, "auto")  # the default for a conv-free model: AUTO_STEPS_PER_DISPATCH
    fit(stop7, "k4_resumed", steps_per_dispatch=4)
    resumed = fit(CFG, "k4_resumed", steps_per_dispatch=4)  # restarts at 7, inside a group of 4
    fit(stop7, "mixed", steps_per_dispatch=1)
    mixed = fit(CFG, "mixed", steps_per_dispatch=4)  # host run resumed with 4 steps per call
    for other in (on_device, multi, auto, resumed, mixed):
        assert int(other.step) == 20
        assert_trees_close(other, host)
    with pytest.raises(AssertionError):  # the comparison can fail: a shorter run differs
        assert_trees_close(fit(stop7, "short", steps_per_dispatch=4).params, host.params)
    ref = _log(tmp_path / "host")
    for d in ("dev1", "k4", "auto"):
        assert [r["step"] for r in _log(tmp_path / d)] == [5, 10, 15, 20]
        np.testing.assert_allclose([r["loss"] for r in _log(tmp_path / d)], [r["loss"] for r in ref], rtol=1e-6)
    assert [r["step"] for r in _log(tmp_path / "k4_resumed")] == [5, 7, 10, 15, 20]
    kept = [p.name for p in ckpt.list_checkpoints(tmp_path / "k4_resumed" / "checkpoints")]
    assert kept == ["step_00000010", "step_00000015", "step_00000020"]
    multi_programs = [fn for key, (_, fn) in train._STEP_CACHE.items() if key[-1] == 4]
    assert [fn._cache_size() for fn in multi_programs] == [1]  # every group length: one program


def test_fit_dispatch_arguments_are_checked():
    images, labels = dataset(24)
    epochs = train.epoch_batch_fn(jax.random.PRNGKey(0), images, labels, 8)
    plain = lambda s: epochs(s)
    run = lambda fn, **kw: train.fit(Tiny(rngs=nnx.Rngs(0)), CFG, SCHED, fn, out_dir="/nonexistent/never-written",
                                     null_label=NULL, progress=False, **kw)
    with pytest.raises(ValueError, match="steps_per_dispatch must be a positive integer or None"):
        run(epochs, steps_per_dispatch=0)
    with pytest.raises(ValueError, match="steps_per_dispatch=2 needs the data on the devices"):
        run(plain, steps_per_dispatch=2)
    with pytest.raises(ValueError, match="steps_per_dispatch=2 needs the data on the devices"):
        run(epochs, steps_per_dispatch=2, device_data=False)
    with pytest.raises(ValueError, match="steps_per_dispatch must be a positive integer or None"):
        run(epochs, steps_per_dispatch=1.5)
    with pytest.raises(ValueError, match="device_data=True needs the batch_fn from epoch_batch_fn"):
        run(plain, device_data=True)
    with pytest.raises(ValueError, match="batch_size 4, config.batch_size is 8"):
        run(train.epoch_batch_fn(jax.random.PRNGKey(0), images, labels, 4))


def test_auto_steps_per_dispatch_only_for_conv_free_models_with_device_data(monkeypatch):
    from diffusion_jax.models import UNet, UNetConfig

    images, labels = dataset(24)
    epochs = train.epoch_batch_fn(jax.random.PRNGKey(0), images, labels, 8)
    mlp = train.create_train_state(Tiny(rngs=nnx.Rngs(0)), CFG)
    net = UNetConfig(channels=(8, 16), attention_levels=(), groups=4, num_classes=NUM_CLASSES)
    unet = jax.eval_shape(lambda: train.create_train_state(UNet(net, rngs=nnx.Rngs(0)), CFG))  # shapes only
    assert train.auto_steps_per_dispatch(mlp, epochs) == train.AUTO_STEPS_PER_DISPATCH > 1
    assert train.auto_steps_per_dispatch(unet, epochs) == 1  # convolutions: one step per call
    assert train.auto_steps_per_dispatch(mlp, lambda s: epochs(s)) == 1  # no data to upload
    monkeypatch.setattr(train, "DEVICE_DATA_MAX_BYTES", epochs.nbytes - 1)
    assert train.auto_steps_per_dispatch(mlp, epochs) == 1  # too large to copy to every device


# ---------------------------------------------------------------- EMA warm-up

def test_ema_warmup_follows_its_closed_form():
    config = train.TrainConfig(batch_size=8, lr=1e-2, warmup_steps=1, ema_decay=0.9, ema_warmup=4,
                               cond_dropout=0.0)
    decay = train.ema_decay_schedule(config)
    # min(0.9, (1 + t) / (4 + t)): 1/4, 2/5, 3/6, ..., reaching 0.9 at t = 26
    np.testing.assert_allclose([float(decay(jnp.int32(t))) for t in (0, 1, 2, 26, 100)],
                               [0.25, 0.4, 0.5, 0.9, 0.9], rtol=1e-6)
    assert train.ema_decay_schedule(train.TrainConfig(ema_decay=0.9))(jnp.int32(0)) == 0.9  # off: constant
    state = train.create_train_state(Tiny(rngs=nnx.Rngs(0)), config)
    step = train.make_train_step(config, SCHED, NULL)
    images, labels = (jnp.asarray(a) for a in dataset(8))
    ema = [np.asarray(x, np.float64) for x in leaves(state.ema_params)]  # NumPy float64 referee
    for t in range(3):
        state, _ = step(state, jax.random.PRNGKey(t), images, labels)
        d = min(0.9, (1 + t) / (4 + t))
        ema = [d * e + (1 - d) * np.asarray(p, np.float64) for e, p in zip(ema, leaves(state.params))]
        for got, want in zip(leaves(state.ema_params), ema):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- checkpoints

def small_state(seed=0):
    state = train.create_train_state(Tiny(rngs=nnx.Rngs(seed)), CFG)
    return state.replace(step=jnp.asarray(seed + 1, jnp.int32))


def test_checkpoint_round_trip_is_exact_and_keeps_the_last_k(tmp_path):
    state = small_state(3)
    path = ckpt.save_checkpoint(tmp_path, state, {"config": {"lr": 0.1}})
    assert path.name == "step_00000004" and ckpt.latest_checkpoint(tmp_path) == path
    back = ckpt.restore_checkpoint(tmp_path, small_state(0))
    assert jax.tree.structure(back) == jax.tree.structure(state) and back.graphdef == state.graphdef
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert ckpt.read_metadata(path)["config"] == {"lr": 0.1}
    odd = {"bf16": jnp.arange(5, dtype=jnp.bfloat16) / 3, "key": jax.random.key(7), "i": jnp.int32(-3)}
    ckpt.save_checkpoint(tmp_path / "odd", odd, {"step": 1})
    back = ckpt.restore_checkpoint(tmp_path / "odd", jax.tree.map(jnp.zeros_like, odd))
    assert back["bf16"].dtype == jnp.bfloat16 and np.array_equal(back["bf16"], odd["bf16"])
    assert np.array_equal(jax.random.key_data(back["key"]), jax.random.key_data(odd["key"]))
    for s in range(5, 10):
        ckpt.save_checkpoint(tmp_path, state, {"step": s}, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000008", "step_00000009"]


def test_crash_mid_write_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    first, second = small_state(0), small_state(1)
    ckpt.save_checkpoint(tmp_path, first)

    def crash(src, dst):
        raise OSError("simulated crash during the final rename")

    monkeypatch.setattr(ckpt.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        ckpt.save_checkpoint(tmp_path, second)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000001"]  # no half-written leftovers
    back = ckpt.restore_checkpoint(tmp_path, second)
    assert int(back.step) == 1
    assert_trees_close(back.params, first.params, rtol=0, atol=0)
    # re-saving the SAME step: the old copy is moved aside, and put back if the commit fails
    real_replace = os.replace

    def crash_on_commit(src, dst):
        if Path(src).name.startswith(".tmp-") and not Path(src).name.endswith("-old"):
            raise OSError("simulated crash during the final rename")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", crash_on_commit)
    with pytest.raises(OSError, match="simulated crash"):
        ckpt.save_checkpoint(tmp_path, second.replace(step=jnp.asarray(1, jnp.int32)))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000001"]
    assert_trees_close(ckpt.restore_checkpoint(tmp_path, second).params, first.params, rtol=0, atol=0)


def test_restore_into_a_mismatched_target_raises_clearly(tmp_path):
    ckpt.save_checkpoint(tmp_path, small_state(0))
    wider = train.create_train_state(Tiny(rngs=nnx.Rngs(0), hidden=16), CFG)
    with pytest.raises(ckpt.CheckpointMismatchError, match=r"shape \(64, 32\).*target has shape \(64, 16\)"):
        ckpt.restore_checkpoint(tmp_path, wider)
    with pytest.raises(ckpt.CheckpointMismatchError, match="missing in checkpoint"):
        ckpt.restore_checkpoint(tmp_path, {"extra": jnp.zeros(3)})
    npz = ckpt.latest_checkpoint(tmp_path) / "arrays.npz"
    raw = bytearray(npz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    npz.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        ckpt.restore_checkpoint(tmp_path, small_state(0))
    with pytest.raises(FileNotFoundError):
        ckpt.restore_checkpoint(tmp_path / "nowhere", small_state(0))
