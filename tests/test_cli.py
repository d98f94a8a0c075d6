"""The command line and the pipeline behind it: help, errors, and a fast end-to-end demo."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from diffusion_jax import cli, pipeline

PY = [sys.executable, "-m", "diffusion_jax.cli"]


def run_cli(*args, env_extra=None, timeout=600):
    import os

    env = dict(os.environ, MPLBACKEND="Agg", **(env_extra or {}))
    return subprocess.run(PY + list(args), capture_output=True, text=True, env=env, timeout=timeout)


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_each_command_has_help(command, capsys):
    assert cli.main([command, "--help"]) == 0
    assert "usage: diffusion-jax " + command in capsys.readouterr().out


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_flag_says_what_it_means(command):
    """No flag's help is empty or only "(default: X)": each says what the value does."""
    import re

    sub = cli.build_parser()._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        if action.help == "==SUPPRESS==" or not action.option_strings and action.dest == "help":
            continue
        text = re.sub(r"\(default: [^)]*\)", "", action.help or "").strip(" ;,.")
        assert len(text.split()) >= 4, f"{command} {action.option_strings or action.dest}: {action.help!r}"


def test_version_and_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "diffusion_jax", "--version"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"diffusion-jax {cli.__version__}"


def test_unknown_preset_is_rejected(capsys):
    assert cli.main(["train", "--preset", "nope"]) == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_bad_values_name_the_flag(capsys):
    assert cli.main(["demo", "--per-class", "0"]) == 2
    assert "--per-class must be >= 1, got 0" in capsys.readouterr().err
    assert cli.main(["toy", "--num-samples", "not-a-number"]) == 2
    assert "argument --num-samples: invalid int value" in capsys.readouterr().err


def test_old_flag_spellings_still_work_but_are_hidden(capsys):
    args = cli.build_parser().parse_args(["sample", "--scale", "2.5", "--out", "a/b"])
    assert args.guidance_scale == 2.5 and args.out_prefix == "a/b"
    assert cli.build_parser().parse_args(["data", "--name", "mnist"]).dataset == "mnist"
    assert cli.main(["sample", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--guidance-scale" in out and "--scale" not in out.replace("--guidance-scale", "")
    assert "--out-dir" in out and "--out " not in out


def test_sample_without_training_says_how(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DIFFUSION_JAX_CACHE", str(tmp_path))  # an empty checkpoint cache
    monkeypatch.setenv("DIFFUSION_JAX_PRETRAINED", str(tmp_path / "none"))  # and no shipped weights
    assert cli.main(["sample", "--preset", "mnist-unet", "--steps", "7", "--out-dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "no trained weights" in err and "diffusion-jax train --preset mnist-unet --steps 7" in err
    assert not (tmp_path / "o").exists()


def test_get_preset_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match="unknown preset 'x'"):
        pipeline.get_preset("x")
    with pytest.raises(ValueError, match=r"unknown training option\(s\) \['stepz'\]"):
        pipeline.get_preset("mnist-unet", stepz=3)


def test_fingerprint_tracks_training_config_only():
    a = pipeline.get_preset("mnist-unet")
    assert a.fingerprint() == pipeline.get_preset("mnist-unet").fingerprint()
    assert a.fingerprint() != pipeline.get_preset("mnist-unet", steps=10).fingerprint()
    import dataclasses

    assert a.fingerprint() == dataclasses.replace(a, guidance_scale=9.0).fingerprint()


def test_data_command_reports_sources():
    out = run_cli("data", "--dataset", "mnist", timeout=120)
    assert out.returncode == 0, out.stderr
    assert "mnist" in out.stdout and "train" in out.stdout


@pytest.mark.slow
def test_fast_demo_end_to_end(tmp_path):
    """The main job in fast mode writes every promised file with the promised contents."""
    out_dir = tmp_path / "demo"
    res = run_cli("demo", "--fast", "--out-dir", str(out_dir))
    assert res.returncode == 0, res.stderr[-2000:]
    for name in ("samples.png", "quality.png", "samples.npz", "metrics.json"):
        assert (out_dir / name).is_file(), name
    with np.load(out_dir / "samples.npz", allow_pickle=False) as f:
        images, labels = f["images"], f["labels"]
    assert images.dtype == np.float32 and images.ndim == 4 and images.shape[1:] == (28, 28, 1)
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert labels.shape == (images.shape[0],)
    assert sorted(set(labels.tolist())) == list(range(10))
    m = json.loads((out_dir / "metrics.json").read_text())
    for key in ("fid", "kid_mean", "accuracy", "nn_ratio", "param_count", "timings_s", "provenance"):
        assert key in m
    assert m["param_count"] > 100_000 and np.isfinite(m["fid"]) and 0.0 <= m["accuracy"] <= 1.0
    # `diffusion-jax eval` on the demo's own file reports exactly the demo's numbers: one
    # reference classifier, one scoring function, one key.
    ev = run_cli("eval", str(out_dir / "samples.npz"), "--dataset", "mnist", timeout=300)
    assert ev.returncode == 0, ev.stderr[-2000:]
    scores = json.loads(ev.stdout[ev.stdout.index("{"):])
    for key in ("fid", "kid_mean", "kid_std", "accuracy", "nn_ratio"):
        assert scores[key] == m[key], key


def test_sample_uses_the_presets_prediction_and_guidance(monkeypatch):
    """A v-prediction preset must be sampled as v (a past bug sampled every preset as eps)."""
    import jax

    seen = {}

    def fake_sample(name, key, denoiser, shape, cond, **kw):
        seen.update(name=name, denoiser=denoiser, shape=shape)
        return np.zeros(shape, np.float32)

    monkeypatch.setattr(pipeline.sampling, "sample", fake_sample)
    preset = pipeline.get_preset("mnist-unet")

    class FakeState:
        graphdef, ema_params, rest = None, {}, {}

    out = pipeline.sample(jax.random.key(0), FakeState(), preset, np.arange(3))
    assert out.shape == (3, 28, 28, 1) and seen["name"] == "ddim"
    d = seen["denoiser"]
    assert d.prediction == preset.train.prediction == "v" and d.clip_x0 == preset.clip_x0
    assert float(d.fn.args[1]) == preset.guidance_scale  # guided: the scale is a leaf of the Partial
    with pytest.raises(ValueError, match="labels must lie in"):
        pipeline.sample(jax.random.key(0), FakeState(), preset, np.array([11]))
