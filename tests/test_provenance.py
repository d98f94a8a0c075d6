"""Provenance labels: round trips on PNG/JSON/NPZ, validation, and the demo/toy writers."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from diffusion_jax import provenance, viz


def _rec(**kw):
    return provenance.record(preset="mnist-unet", fingerprint="abc123", seed=np.int64(3),
                             guidance_scale=np.float32(3.0), created_utc="2026-01-02T03:04:05Z", **kw)


def test_record_fields_and_validation():
    rec = _rec(sampler="ddim")
    assert rec["synthetic"] is True and rec["generator"] == "diffusion-jax"
    assert rec["version"] == provenance.version() and rec["seed"] == 3 and type(rec["seed"]) is int
    assert rec["guidance_scale"] == 3.0 and type(rec["guidance_scale"]) is float
    assert provenance.verify(rec) == []
    json.dumps(rec)  # plain JSON
    with pytest.raises(ValueError, match="synthetic"):
        provenance.record(synthetic=False)
    with pytest.raises(ValueError, match="'key'.*JSON value"):
        provenance.record(key=object())
    with pytest.raises(ValueError, match="finite"):
        provenance.record(loss=float("nan"))
    live = provenance.record()
    assert live["created_utc"].endswith("Z") and provenance.verify(live) == []


def test_verify_lists_problems():
    assert provenance.verify({"synthetic": False, "generator": "x", "version": "1",
                              "created_utc": "2026-01-01T00:00:00Z"}) == ["'synthetic' must be true, got False"]
    problems = provenance.verify({"synthetic": True})
    assert any("generator" in p for p in problems) and any("created_utc" in p for p in problems)
    assert provenance.verify(["not", "a", "dict"]) == ["a provenance record is a dict, got list"]


def test_figure_png_round_trip(tmp_path):
    rec = _rec()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = viz.save_figure(fig, tmp_path / "fig.png", rec, dpi=50)
    plt.close(fig)
    assert provenance.read_png(path) == rec == provenance.read(path)
    with Image.open(path) as im:
        im.load()
        assert im.text["synthetic"] == "true" and "Synthetic image" in im.text["Description"]
    assert provenance.verify(path) == []


def test_figure_other_format_gets_a_sidecar(tmp_path):
    fig, _ = plt.subplots()
    path = viz.save_figure(fig, tmp_path / "fig.svg", _rec())
    plt.close(fig)
    assert (tmp_path / "fig.svg.provenance.json").is_file()
    assert provenance.read(path) == _rec()


def test_default_figure_label(tmp_path):
    fig, _ = plt.subplots()
    path = viz.save_figure(fig, tmp_path / "plain.png")
    plt.close(fig)
    assert provenance.verify(provenance.read(path)) == []


def test_raw_image_png_round_trip(tmp_path):
    rec = _rec()
    images = np.linspace(-1, 1, 4 * 28 * 28).reshape(4, 28, 28, 1)
    grid = viz.image_grid(images, 2)
    path = provenance.write_png(tmp_path / "grid.png", grid, rec)
    assert provenance.read_png(path) == rec
    with Image.open(path) as im:  # the pixels survive
        pixels = np.asarray(im)
    assert pixels.shape == grid.shape[:2]
    np.testing.assert_array_equal(pixels, np.round(grid[..., 0] * 255).astype(np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        provenance.write_png(tmp_path / "bad.png", images[0] * 2, rec)
    with pytest.raises(ValueError, match="shape"):
        provenance.write_png(tmp_path / "bad.png", np.zeros((2, 3, 4)), rec)


def test_unlabelled_files_read_none(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "x.json").write_text('{"a": 1}')
    np.savez(tmp_path / "x.npz", a=np.zeros(2))
    for name in ("x.png", "x.json", "x.npz"):
        assert provenance.read(tmp_path / name) is None
        assert provenance.verify(tmp_path / name) == [f"{tmp_path / name}: no provenance label found"]


def test_json_and_npz_round_trip(tmp_path):
    rec = _rec()
    path = provenance.write_json(tmp_path / "m.json", {"fid": 1.5}, rec)
    obj = json.loads(path.read_text())
    assert obj["fid"] == 1.5 and obj["provenance"] == rec == provenance.read(path)
    path = provenance.savez(tmp_path / "s.npz", rec, images=np.zeros((2, 3)))
    with np.load(path, allow_pickle=False) as f:  # no pickle needed to read it
        assert f["images"].shape == (2, 3)
    assert provenance.read(path) == rec
    with pytest.raises(ValueError, match="reserved"):
        provenance.savez(tmp_path / "t.npz", rec, provenance=np.zeros(1))
    with pytest.raises(ValueError, match="not a valid provenance record"):
        provenance.write_json(tmp_path / "bad.json", {}, {"synthetic": True})


def test_toy_demo_labels_every_file(tmp_path, monkeypatch):
    """The toy writer on a tiny config; the sampler table is cut to one fast entry."""
    from diffusion_jax import toy_demo

    real_table = toy_demo._sampler_table
    monkeypatch.setattr(toy_demo, "_sampler_table", lambda cfg, mix, sched: real_table(cfg, mix, sched)[1:2])
    cfg = toy_demo.ToyDemoConfig(num_samples=16, seed=5, out_dir=str(tmp_path / "toy"))
    stats = toy_demo.run(cfg)
    out = tmp_path / "toy"
    for name in ("samplers.png", "trajectories.png", "stats.json"):
        rec = provenance.read(out / name)
        assert rec is not None and provenance.verify(rec) == [], name
        assert rec["command"] == "toy" and rec["seed"] == 5 and rec["num_samples"] == 16
    assert stats["provenance"] == provenance.read(out / "stats.json")


def test_demo_labels_every_file(tmp_path, monkeypatch):
    """demo.run with training, sampling and scoring replaced by stand-ins."""
    from diffusion_jax import demo, pipeline

    preset = pipeline.get_preset("mnist-unet", steps=3)

    class FakeState:
        def model(self):
            return None

    images = np.zeros((20, 28, 28, 1), np.float32)
    monkeypatch.setattr(demo.pipeline, "get_preset", lambda name, **kw: preset)
    monkeypatch.setattr(demo.pipeline, "train", lambda p, **kw: FakeState())
    monkeypatch.setattr(demo.pipeline, "sample", lambda key, state, p, labels, **kw: images[: len(labels)])
    monkeypatch.setattr(demo.metrics, "reference", lambda *a, **k: None)

    class DS:
        images = np.zeros((5, 28, 28, 1), np.uint8)
        source = "fake"

    monkeypatch.setattr(demo.data, "load_dataset", lambda name, split: DS())
    monkeypatch.setattr(demo.metrics, "score", lambda *a, **k: {"fid": 1.0, "kid_mean": 0.0, "accuracy": 0.5})
    monkeypatch.setattr(demo.metrics, "features_and_logits",
                        lambda c, x: (np.zeros((len(x), 2)), np.zeros((len(x), 10))))
    monkeypatch.setattr(demo, "param_count", lambda m: 1)
    monkeypatch.setattr(demo, "forward_flops", lambda *a: 1.0)
    cfg = demo.DemoConfig(per_class=2, grid_columns=2, sampler_steps=4, seed=7, out_dir=str(tmp_path / "demo"))
    result = demo.run(cfg)
    out = tmp_path / "demo"
    for name in ("samples.png", "quality.png", "samples.npz", "metrics.json"):
        rec = provenance.read(out / name)
        assert rec is not None and provenance.verify(rec) == [], name
        assert rec == result["provenance"], name
    rec = result["provenance"]
    assert rec["preset"] == preset.name and rec["fingerprint"] == preset.fingerprint()
    assert rec["seed"] == 7 and rec["num_steps"] == 4 and rec["guidance_scale"] == 3.0
