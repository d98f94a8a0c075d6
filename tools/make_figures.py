#!/usr/bin/env python3
"""The README's sample figures, drawn from the shipped reference models (nothing is trained).

    python tools/make_figures.py                 # docs/demo_samples.png and docs/cifar10_samples.png
    python tools/make_figures.py --only cifar10  # one of them

Each figure has one row per class, drawn with the preset's default sampler, steps and guidance
scale from a fixed key, so the same shipped weights always give the same picture. The PNGs
carry the project's provenance label (synthetic, preset, weight fingerprint, sampler).
Lesson 08 draws the CIFAR-10 grid the same way. Minutes on 2 CPU cores (mostly CIFAR-10).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: figure name -> (preset, output file, samples per class)
FIGURES = {"mnist": ("mnist-unet", "docs/demo_samples.png", 10),
           "cifar10": ("cifar10-latent-dit", "docs/cifar10_samples.png", 10)}
SEED = 0


def make_figure(name: str, out_dir: Path = REPO) -> Path:
    import jax
    import matplotlib.pyplot as plt
    import numpy as np

    from diffusion_jax import data, metrics, pipeline, pretrained, provenance, viz

    preset_name, file, per_class = FIGURES[name]
    preset = pipeline.get_preset(preset_name)
    if pretrained.find(preset.name) is None:
        raise SystemExit(f"make_figures: no shipped weights for {preset.name} in {pretrained.directory()}")
    state = pipeline.load_trained(preset, source="shipped")
    k = pipeline.null_label(preset)
    labels = np.repeat(np.arange(k), per_class)  # (K * per_class,) 0, 0, ..., 1, 1, ...
    sampler, steps = preset.samplers[0], preset.sampler_steps
    t0 = time.perf_counter()
    images = pipeline.sample(jax.random.key(SEED), state, preset, labels)
    seconds = time.perf_counter() - t0
    _, logits = metrics.features_and_logits(metrics.reference(preset.dataset), images)
    accuracy = metrics.class_accuracy(logits, labels)
    try:
        names = list(data.load_dataset(preset.dataset, "test").class_names)
    except data.DataNotFoundError:
        names = [str(c) for c in range(k)]
    fig, ax = plt.subplots(figsize=(per_class * 0.62 + 1.6, k * 0.62 + 0.7))
    viz.show_images(images, per_class, ax, row_labels=names,
                    title=f"{preset.name} (shipped weights): {sampler}-{steps}, guidance s = {preset.guidance_scale:g} "
                          f"(synthetic)")
    fig.tight_layout()
    path = out_dir / file
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = provenance.record(preset=preset.name, fingerprint=preset.fingerprint(), seed=SEED, sampler=sampler,
                            num_steps=steps, guidance_scale=preset.guidance_scale)
    viz.save_figure(fig, path, rec, dpi=110)
    plt.close(fig)
    print(f"{path.relative_to(out_dir)}: {len(labels)} samples in {seconds:.0f} s; "
          f"{accuracy:.0%} classified as the class asked for by the reference classifier")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="make_figures.py", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(FIGURES), action="append",
                        help="only this figure (repeatable; default: all)")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    for name in args.only or FIGURES:
        make_figure(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
