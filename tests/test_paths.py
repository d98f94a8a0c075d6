"""DIFFUSION_JAX_CACHE moves data/checkpoints and data/cache, and nothing else."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from diffusion_jax import metrics, paths, pipeline

REPO = Path(__file__).resolve().parents[1]


def test_default_root_is_the_repository_data_folder(monkeypatch):
    monkeypatch.delenv(paths.ENV_VAR, raising=False)
    assert paths.cache_root() == REPO / "data"
    assert paths.resolve("data/checkpoints/classifiers") == REPO / "data" / "checkpoints" / "classifiers"
    assert pipeline.run_dir(pipeline.get_preset("mnist-unet")).parent == REPO / "data" / "checkpoints"


def test_env_var_moves_checkpoints_and_cache_only(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))
    assert paths.cache_root() == tmp_path
    assert paths.resolve("data/checkpoints") == tmp_path / "checkpoints"
    assert paths.resolve("data/cache/latents-x.npz") == tmp_path / "cache" / "latents-x.npz"
    # shipped weights, data sets and other relative paths stay in the repository
    assert paths.resolve("data/pretrained/vae.npz") == REPO / "data" / "pretrained" / "vae.npz"
    assert paths.resolve("data") == REPO / "data"
    assert paths.resolve("outputs/x") == REPO / "outputs" / "x"
    assert paths.resolve(tmp_path / "elsewhere") == tmp_path / "elsewhere"  # absolute: as given
    preset = pipeline.get_preset("mnist-unet")
    assert pipeline.run_dir(preset) == tmp_path / "checkpoints" / f"{preset.name}-{preset.fingerprint()}"
    assert pipeline.run_dir(preset, root=tmp_path / "r").parent == tmp_path / "r"  # an explicit root wins
    assert paths.resolve("data/cache") == tmp_path / "cache"
    assert paths.resolve("data/checkpoints") == tmp_path / "checkpoints"


def test_classifier_cache_follows_the_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(16, 8, 8, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, size=16)
    metrics.train_classifier(jax.random.key(0), (images, labels), steps=1, batch_size=8, progress=False,
                             widths=(4, 8), strides=(2, 2), feature_dim=8)  # default cache_dir
    written = list((tmp_path / "checkpoints" / "classifiers").glob("custom-*.npz"))
    assert len(written) == 1
