"""The shipped reference weights (data/pretrained/): the cheap checks CI can afford.

* the manifest lists every artifact the course needs, within the 40 MB budget;
* every file matches its SHA-256, and was made for the configuration the code has NOW
  (fingerprints of the presets, VAEs and classifier recipes): a changed preset fails here;
* every artifact loads into today's architecture and reproduces its probe (the network's
  output on a fixed input, recorded when it was made): a changed architecture or forward
  pass fails here, loudly, instead of loading wrong weights;
* quality gates: guided samples of the shipped generators are the intended class;
* a corrupt or mismatched file gives one clear error, and the pipeline falls back to
  training with a message.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from diffusion_jax import classifier, data, latent, metrics, pipeline, pretrained
from diffusion_jax.models import UNetConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import make_pretrained as MP  # noqa: E402  (the probe functions the artifacts were recorded with)

MANIFEST = pretrained.manifest(pretrained.DIR)
GENERATORS = [n for n, e in MANIFEST.items() if e["kind"] == "generator"]
REQUIRED = {"classifier-mnist", "classifier-fashion_mnist", "classifier-cifar10", "mnist-unet", "mnist-unet-flow",
            "fashion-unet", "mnist-latent-dit", "cifar10-latent-dit", "vae-mnist-mnist", "vae-cifar10-cifar-f2",
            *MP.STUDENTS}


def test_manifest_lists_the_course_artifacts_within_budget():
    assert REQUIRED <= set(MANIFEST), f"missing from the manifest: {sorted(REQUIRED - set(MANIFEST))}"
    total = sum(e["bytes"] for e in MANIFEST.values())
    assert total <= 40_000_000, f"shipped weights take {total / 1e6:.1f} MB, more than 40 MB"
    for name, e in MANIFEST.items():
        for key in ("kind", "file", "sha256", "bytes", "dtype", "fingerprint", "leaves", "probe", "command",
                    "machine", "wall_s"):
            assert key in e, f"{name}: manifest entry lacks {key!r}"
        if e["kind"] == "generator":
            assert {"steps", "images_seen", "scores"} <= set(e), name
            assert {"fid", "kid_mean", "accuracy", "nn_ratio"} <= set(e["scores"]), name


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_file_checksum(name):
    e = MANIFEST[name]
    path = pretrained.DIR / e["file"]
    assert path.is_file(), f"{path} is missing"
    assert path.stat().st_size == e["bytes"]
    assert pretrained.file_sha256(path) == e["sha256"], f"{path} does not match its SHA-256"


def _preset_of(name: str):
    e = MANIFEST[name]
    if e["kind"] == "generator":
        return pipeline.get_preset(name)
    if e["kind"] == "vae":  # the preset whose VAE it is
        return next(p for p in pipeline.PRESETS.values()
                    if p.is_latent and f"vae-{p.dataset}-{p.vae_preset}" == name)
    return None


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_fingerprint_matches_the_code(name):
    e = MANIFEST[name]
    if e["kind"] == "generator":
        want = pipeline.get_preset(name).fingerprint()
    elif e["kind"] == "vae":
        want = pipeline.vae_fingerprint(_preset_of(name))
    else:
        want = classifier.reference_fingerprint(e["dataset"])
    assert e["fingerprint"] == want, (f"{name} was made for configuration {e['fingerprint']} but the code now "
                                      f"says {want}: rebuild it with `make pretrained` (or revert the change)")


def _close(got: dict, want: dict):
    np.testing.assert_allclose(got["head"], want["head"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose([got["mean"], got["std"]], [want["mean"], want["std"]], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_loads_into_todays_model_and_reproduces_its_probe(name):
    e = MANIFEST[name]
    if e["kind"] == "generator":
        preset = pipeline.get_preset(name)
        state = pipeline.load_trained(preset, source="shipped")
        _close(MP.generator_probe(state, preset), e["probe"])
    elif e["kind"] == "vae":
        preset = _preset_of(name)
        graphdef, template = latent.vae_skeleton(preset.vae_preset)
        codec = latent.LatentCodec(graphdef, pretrained.load(name, template, fingerprint=e["fingerprint"]), e["scale"])
        _close(MP.vae_probe(codec), e["probe"])
    else:
        ds = e["dataset"]
        clf = classifier.reference(ds)
        # the shape is all the probe needs: no local copy of the data set required
        _close(MP.classifier_probe(clf, data.IMAGE_SHAPES[ds]), e["probe"])


# Intended-class share of guided samples, with the reference classifier. Thresholds sit well
# below the manifest's measured scores, above what a broken model (10%) could reach by luck.
GATES = {"mnist-unet": (100, 0.95), "mnist-unet-flow": (100, 0.95), "mnist-latent-dit": (100, 0.95),
         "fashion-unet": (100, 0.75), "cifar10-latent-dit": (40, 0.45),
         # distilled students at their own step counts (16, 8, 4, 2), one prediction per step
         **{name: (100, 0.95) for name in MP.STUDENTS}}


@pytest.mark.parametrize("name", sorted(GATES))
def test_quality_gate(name):
    n, threshold = GATES[name]
    preset = pipeline.get_preset(name)
    state = pipeline.load_trained(preset, source="shipped")
    labels = np.arange(n) % 10
    fast = {"sampler": "dpmpp_2m", "num_steps": 15} if name == "cifar10-latent-dit" else {}
    images = pipeline.sample(jax.random.key(11), state, preset, labels, **fast)
    _, logits = metrics.features_and_logits(metrics.reference(preset.dataset), images)
    acc = metrics.class_accuracy(logits, labels)
    assert acc >= threshold, f"{name}: only {acc:.0%} of {n} guided samples are the intended class"


@pytest.mark.parametrize("name", [n for n in MP.STUDENTS if n in MANIFEST])
def test_students_were_distilled_from_the_shipped_teacher(name):
    """A rebuilt mnist-unet makes its students stale although their fingerprints still match."""
    info = MANIFEST[name]["distill"]
    base = MANIFEST[info["base_model"]]
    assert info["base_model_sha256"] == base["sha256"], (
        f"{name} was distilled from another {info['base_model']} file: rebuild it with "
        f"`python tools/make_pretrained.py {' '.join(MP.STUDENTS)}`")
    assert info["teacher"] == pipeline.get_preset(name).distill.teacher


# ----------------------------------------------------------------------------- failures are loud


@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    """A private copy of the manifest and the MNIST classifier, selected by the env variable."""
    shutil.copy(pretrained.DIR / pretrained.MANIFEST, tmp_path / pretrained.MANIFEST)
    shutil.copy(pretrained.DIR / MANIFEST["classifier-mnist"]["file"], tmp_path)
    monkeypatch.setenv("DIFFUSION_JAX_PRETRAINED", str(tmp_path))
    return tmp_path


def test_corrupt_file_is_one_clear_error(shipped_copy):
    path = shipped_copy / MANIFEST["classifier-mnist"]["file"]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    _, template = classifier._skeleton("mnist")
    with pytest.raises(pretrained.PretrainedError, match="corrupt: its SHA-256 does not match") as err:
        pretrained.load("classifier-mnist", template)
    assert "\n" not in str(err.value)


def test_other_configuration_and_other_architecture_refuse_to_load(shipped_copy):
    _, template = classifier._skeleton("mnist")
    with pytest.raises(pretrained.PretrainedError, match="was trained for configuration .* not abc"):
        pretrained.load("classifier-mnist", template, fingerprint="abc")
    wider = nnx.split(nnx.eval_shape(lambda: classifier.Classifier((28, 28, 1), widths=(32, 64, 128, 256),
                                                                   rngs=nnx.Rngs(0))))[1]
    with pytest.raises(pretrained.PretrainedError, match="shape .* the model expects"):
        pretrained.load("classifier-mnist", wider)
    with pytest.raises(pretrained.PretrainedError, match="no shipped weights called"):
        pretrained.load("no-such-model", template)


def test_pipeline_falls_back_to_training_with_a_message(tmp_path, monkeypatch, capsys):
    """A shipped file that does not fit its preset: one line saying why, then training."""
    monkeypatch.setenv("DIFFUSION_JAX_CACHE", str(tmp_path / "cache"))
    tiny = UNetConfig(channels=(8, 16), attention_levels=(), num_classes=10, groups=4)
    preset = dataclasses.replace(pipeline.get_preset("mnist-unet", steps=2, batch_size=8, warmup_steps=1,
                                                     log_every=1, checkpoint_every=0),
                                 name="tiny-shipped", model=tiny)
    root = tmp_path / "shipped"
    state = pipeline.train(preset, progress=False)  # trained, nothing shipped yet
    pretrained.save("tiny-shipped", state.ema_params, kind="generator", fingerprint="0123456789ab", root=root,
                    steps=2, images_seen=16, wall_s=0.0, machine="test", command="test", probe={}, scores={})
    monkeypatch.setenv("DIFFUSION_JAX_PRETRAINED", str(root))
    capsys.readouterr()
    again = pipeline.train(preset, progress=False)  # fingerprint differs: the cached run is used
    assert "not using the shipped weights of tiny-shipped" in capsys.readouterr().err
    assert int(again.step) == 2
    # with the right fingerprint the shipped weights load, EMA only
    entry = json.loads((root / pretrained.MANIFEST).read_text())["artifacts"]["tiny-shipped"]
    pretrained.update("tiny-shipped", {**entry, "fingerprint": preset.fingerprint()}, root)
    shipped = pipeline.load_trained(preset, source="shipped")
    assert shipped.opt_state is None
    for a, b in zip(jax.tree.leaves(shipped.ema_params), jax.tree.leaves(state.ema_params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_training_log_prefers_this_machines_run_and_falls_back_to_the_shipped_curve(tmp_path):
    preset = pipeline.get_preset("mnist-unet")
    shipped = pipeline.training_log(preset, root=tmp_path)  # no run here: the manifest's curve
    steps = [r["step"] for r in shipped]
    assert steps == sorted(set(steps)) and steps[-1] == preset.train.steps
    run = pipeline.run_dir(preset, tmp_path)
    run.mkdir(parents=True)
    # a resumed run logs step 100 twice; the later line wins
    (run / "log.jsonl").write_text('{"step": 100, "loss": 0.5}\n{"step": 50, "loss": 0.9}\n{"step": 100, "loss": 0.4}\n')
    assert pipeline.training_log(preset, root=tmp_path) == [{"step": 50, "loss": 0.9}, {"step": 100, "loss": 0.4}]
    other = pipeline.get_preset("mnist-unet", steps=7)  # another fingerprint: no shipped curve
    assert pipeline.training_log(other, root=tmp_path) == []
