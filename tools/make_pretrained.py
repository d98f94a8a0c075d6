"""Build the shipped reference weights in data/pretrained/ and their manifest (`make pretrained`).

Each artifact is trained with its recorded recipe (or taken from a finished run of it in
the checkpoint cache), scored with the reference classifiers, probed (the network's output
on a fixed input, which CI recomputes), and written with :func:`diffusion_jax.pretrained.save`.

    python tools/make_pretrained.py --list
    python tools/make_pretrained.py                     # everything, in dependency order (hours on 2 cores)
    python tools/make_pretrained.py mnist-unet classifier-mnist
    python tools/make_pretrained.py mnist-unet-guided mnist-unet-student-8 mnist-unet-student-4 mnist-unet-student-2
    python tools/make_pretrained.py cifar10-latent-dit --import-ema ema.npz --machine "H200" --wall-s 192 \\
        --command "python tools/train_reference.py --preset cifar10-latent-dit --time-budget 225"

A distilled student (lesson 12) is distilled from its teacher preset, recursively down to
the shipped ``mnist-unet``; its entry also records the chain (each round's steps and wall
time) and the SHA-256 of the base model's file it was distilled from.

``--import-ema`` takes a generator's EMA weights trained elsewhere (an ``.npz`` of leaves
named by key path, as tools/train_reference.py writes) instead of training here.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count() or 1}")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from diffusion_jax import classifier, data, latent, metrics, pipeline, pretrained  # noqa: E402
from diffusion_jax.train import TrainState  # noqa: E402

CLASSIFIERS = ("mnist", "fashion_mnist", "cifar10")
GENERATORS = ("mnist-unet", "mnist-unet-flow", "fashion-unet", "mnist-latent-dit", "cifar10-latent-dit")
#: Distilled students of mnist-unet (lesson 12), each distilled from the one before it,
#: the first from the shipped mnist-unet. Built in this order.
STUDENTS = ("mnist-unet-guided", "mnist-unet-student-8", "mnist-unet-student-4", "mnist-unet-student-2")
#: Stored in float16 to keep the shipped total under 40 MB (widened to float32 on load).
HALF = {"cifar10-latent-dit", "vae-cifar10-cifar-f2", "classifier-cifar10", *STUDENTS}
SCORE_KEY = jax.random.key(metrics.SCORE_SEED)  # the key every reported score in the project uses
SAMPLE_KEY = jax.random.key(7)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU cores ({jax.devices()[0].platform})"


def _summary(out) -> dict:
    out = np.asarray(out, np.float64)
    return {"mean": float(out.mean()), "std": float(out.std()), "head": [float(v) for v in out.ravel()[:8]]}


# ----------------------------------------------------------------------------- probes (CI recomputes them)


def generator_probe(state, preset) -> dict:
    x = jax.random.normal(jax.random.key(0), (4,) + pipeline.model_input_shape(preset))  # (4, H, W, C)
    t = jnp.array([0.0, 0.25, 0.5, 1.0]) if preset.is_flow else jnp.array([0, 250, 500, 999], jnp.int32)
    y = jnp.array([0, 1, 2, pipeline.null_label(preset)], jnp.int32)
    return _summary(pipeline.denoiser(state, preset, 1.0).output(x, t, y))


def classifier_probe(clf, shape) -> dict:
    x = jnp.tanh(jax.random.normal(jax.random.key(0), (4,) + tuple(shape)))  # (4, H, W, C) in (-1, 1)
    return _summary(metrics.features_and_logits(clf, np.asarray(x))[1])


def vae_probe(codec_) -> dict:
    z = jax.random.normal(jax.random.key(0), (4,) + codec_.latent_shape)
    return _summary(codec_.decode(np.asarray(z)))


# ----------------------------------------------------------------------------- builders


def build_classifier(ds: str, args) -> None:
    name = f"classifier-{ds}"
    t0 = time.perf_counter()
    clf = classifier.train_classifier(jax.random.key(classifier._REFERENCE_KEY), ds, name=f"{ds}-reference",
                                      **classifier.REFERENCE_RECIPES[ds])
    wall = time.perf_counter() - t0
    entry = pretrained.save(
        name, clf[1], kind="classifier", fingerprint=classifier.reference_fingerprint(ds),
        dtype="float16" if name in HALF else "float32", dataset=ds, recipe=classifier.REFERENCE_RECIPES[ds],
        command=f"python tools/make_pretrained.py {name}",
        # A recipe found in the classifier cache was trained before this run: its time is not ours to quote.
        wall_s=round(args.wall_s if args.wall_s is not None else wall, 1) if (args.wall_s or wall > 5) else None,
        machine=args.machine or machine())
    # Scores and probe come from the stored (possibly float16) weights, as a loader sees them.
    graphdef, template = classifier._skeleton(ds)
    stored = (graphdef, pretrained.load(name, template))
    test = data.load_dataset(ds, "test")
    _, logits = metrics.features_and_logits(stored, test.images)
    acc = metrics.class_accuracy(logits, test.labels)
    pretrained.update(name, {**entry, "scores": {"test_accuracy": acc, "num_test": len(test.labels)},
                             "probe": classifier_probe(stored, test.images.shape[1:])})
    print(f"{name}: test accuracy {acc:.2%}")


def build_vae(preset, args) -> latent.LatentCodec:
    name = f"vae-{preset.dataset}-{preset.vae_preset}"
    t0 = time.perf_counter()
    images = data.load_dataset(preset.dataset, "train").images
    graphdef, params = latent.train_vae(preset.dataset, preset.vae_preset, preset.vae)
    codec_ = latent.make_codec(graphdef, params, images)
    if args.vae_scale is not None:  # the scale the generator was trained with, measured where it ran
        codec_ = latent.LatentCodec(graphdef, params, float(args.vae_scale))
    test = data.load_dataset(preset.dataset, "test").images
    recon = codec_.decode(codec_.encode(test))
    mse = float(np.mean((recon - data.as_float(test)) ** 2))
    entry = pretrained.save(
        name, params, kind="vae", fingerprint=pipeline.vae_fingerprint(preset),
        dtype="float16" if name in HALF else "float32", scale=float(codec_.scale), vae_preset=preset.vae_preset,
        command=f"python tools/make_pretrained.py {preset.name} (its VAE: {preset.vae})",
        steps=preset.vae.steps, wall_s=round(time.perf_counter() - t0, 1), machine=args.vae_machine or machine(),
        scores={"test_reconstruction_mse": mse})
    gd, template = latent.vae_skeleton(preset.vae_preset)
    stored = latent.LatentCodec(gd, pretrained.load(name, template), float(codec_.scale))
    pretrained.update(name, {**entry, "probe": vae_probe(stored)})
    print(f"{name}: scale {codec_.scale:.4f}, test reconstruction MSE {mse:.4f}")
    return stored


def _ema_from_file(preset, path):
    skel = pipeline._skeleton(preset)
    with np.load(path, allow_pickle=False) as f:
        stored = {k: f[k] for k in f.files if k != "__meta__"}
    names = pretrained.leaf_names(skel.ema_params)
    missing = sorted(set(names) - set(stored))
    if missing:
        raise SystemExit(f"--import-ema {path}: missing leaves {missing[:3]}")
    leaves = [jnp.asarray(stored[n], jnp.float32) for n in names]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(skel.ema_params), leaves), skel


def _log_wall(preset) -> float | None:
    """Training wall time of ``preset``'s cached run, summed over resumed segments."""
    log = pipeline.run_dir(preset) / "log.jsonl"
    if not log.exists():
        return None
    walls = [json.loads(line)["wall_s"] for line in log.read_text().splitlines()]
    # each fit() call restarts its clock: a drop in wall_s starts a new segment
    return float(sum(w for w, nxt in zip(walls, walls[1:] + [-1.0]) if nxt < w))


def _distill_info(preset) -> dict:
    """What a student was distilled from: the chain up to the base model, its cost, the teacher file."""
    chain, p = [], preset
    while p.distill is not None:
        chain.append({"preset": p.name, "student_steps": p.distill.student_steps, "train_steps": p.train.steps,
                      "wall_s": _log_wall(p)})
        p = pipeline.get_preset(p.distill.teacher)
    base = pretrained.find(p.name)
    return {"teacher": preset.distill.teacher, "base_model": p.name,
            "base_model_sha256": base["sha256"] if base else None,
            "scale_range": list(preset.distill.scale_range), "sampler_spacing": preset.sampler_spacing,
            "chain": chain, "chain_wall_s": round(sum(c["wall_s"] or 0.0 for c in chain), 1)}


def build_generator(preset_name: str, args) -> None:
    preset = pipeline.get_preset(preset_name)
    if preset.is_latent:
        build_vae(preset, args)
        pipeline.codec.cache_clear()  # from now on the shipped VAE (its stored weights) is THE codec
    if args.import_ema:
        ema, skel = _ema_from_file(preset, args.import_ema)
        state = TrainState(step=np.int32(preset.train.steps), params=ema, opt_state=None, ema_params=ema,
                                    rest=jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), skel.rest),
                                    graphdef=skel.graphdef)
        wall, command, rows = args.wall_s, args.command, []
    else:
        t0 = time.perf_counter()
        state = pipeline.train(preset, retrain=True)  # a student's teachers: shipped, cached or trained
        rows = pipeline.training_log(preset)
        wall = _log_wall(preset) or time.perf_counter() - t0
        command = f"python tools/make_pretrained.py {preset_name}  (= diffusion-jax train --preset {preset_name} --retrain)"
    name = preset.name
    extra = {"distill": _distill_info(preset)} if preset.distill is not None else {}
    entry = pretrained.save(
        name, state.ema_params, kind="generator", fingerprint=preset.fingerprint(),
        dtype="float16" if name in HALF else "float32", preset=name, command=command, steps=preset.train.steps,
        images_seen=preset.train.steps * preset.train.batch_size, wall_s=round(float(wall), 1),
        machine=args.machine or machine(), **extra,
        # The loss curve travels with the weights: pipeline.training_log shows it on a fresh clone.
        training_log=[{"step": r["step"], "loss": round(float(r["loss"]), 5)} for r in rows])
    shipped = pipeline.load_trained(preset, source="shipped")  # what users get, float16 included
    n = args.num_score
    labels = np.arange(n) % pipeline.null_label(preset)
    t0 = time.perf_counter()
    images = pipeline.sample(SAMPLE_KEY, shipped, preset, labels)
    sample_s = time.perf_counter() - t0
    scores = metrics.score(SCORE_KEY, images, labels, preset.dataset)
    sampler = preset.samplers[0]
    scores = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in scores.items()}
    scores.update(num_samples=n, sampler=f"{sampler}-{preset.sampler_steps}", guidance_scale=preset.guidance_scale,
                  predictions_per_step=1 if preset.guidance_input else 2, sample_s_here=round(sample_s, 1))
    if preset.sampler_spacing:
        scores["spacing"] = preset.sampler_spacing
    pretrained.update(name, {**entry, "scores": scores, "probe": generator_probe(shipped, preset)})
    print(f"{name}: accuracy {scores['accuracy']:.1%}, FID {scores['fid']:.2f} (N = {n})")


def _where(e) -> str:
    """Wall time and the kind of machine, in a few words, from a manifest entry."""
    device = "GPU" if "GPU" in e.get("machine", "") or "H200" in e.get("machine", "") else "2-core CPU"
    wall = "time not recorded" if e.get("wall_s") is None else f"{e['wall_s']:.0f} s"
    return f"{wall} on a {device}"


def markdown_table() -> str:
    """The README's table of shipped artifacts, straight from the manifest."""
    lines = ["| artifact | kind | size | trained | scores (reference classifiers) |", "|---|---|---|---|---|"]
    for name, e in pretrained.manifest().items():
        s = e.get("scores", {})
        steps = f"{e['steps']:,} steps, " if e.get("steps") else ""
        images = f"{e['images_seen']:,} images, " if e.get("images_seen") else ""
        trained = f"{steps}{images}{_where(e)}"
        if e["kind"] == "generator" and "accuracy" not in s:
            score = "(not scored yet)"
        elif e["kind"] == "generator":
            score = (f"{s['accuracy']:.1%} intended class, FID {s['fid']:.2f}, KID {s['kid_mean']:.4f}, "
                     f"nn-ratio {s['nn_ratio']:.2f} ({s['num_samples']} samples, {s['sampler']}, s = {s['guidance_scale']:g})")
        elif e["kind"] == "classifier":
            score = f"{s['test_accuracy']:.1%} on {s['num_test']:,} held-out images"
        else:
            score = f"test reconstruction MSE {s['test_reconstruction_mse']:.4f}, latent scale {e['scale']:.3f}"
        lines.append(f"| `{name}` | {e['kind']} | {e['bytes'] / 1e6:.1f} MB {e['dtype']} | {trained} | {score} |")
    lines.append(f"| total | | {pretrained.total_bytes() / 1e6:.1f} MB | | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [f"classifier-{d}" for d in CLASSIFIERS] + list(GENERATORS) + list(STUDENTS)
    p.add_argument("names", nargs="*", help=f"artifacts to build (default: all): {', '.join(names)}")
    p.add_argument("--list", action="store_true", help="list the manifest and exit")
    p.add_argument("--markdown", action="store_true", help="print the manifest as the README's table and exit")
    p.add_argument("--num-score", type=int, default=500, help="guided samples scored per generator (default 500)")
    p.add_argument("--import-ema", default=None, help="EMA weights (.npz) of ONE generator trained elsewhere")
    p.add_argument("--machine", default=None, help="where the weights were trained (default: this machine)")
    p.add_argument("--vae-machine", default=None, help="where a latent preset's VAE was trained")
    p.add_argument("--vae-scale", type=float, default=None, help="latent scale measured where the VAE was trained")
    p.add_argument("--wall-s", type=float, default=None, help="training wall time of --import-ema's run")
    p.add_argument("--command", default=None, help="the command that trained --import-ema's weights")
    args = p.parse_args(argv)
    if args.markdown:
        print(markdown_table())
        return 0
    if args.list:
        for name, e in pretrained.manifest().items():
            print(f"{name:28s} {e['kind']:10s} {e['bytes'] / 1e6:5.2f} MB  {e['fingerprint']}  {e.get('scores', {})}")
        print(f"total {pretrained.total_bytes() / 1e6:.2f} MB")
        return 0
    chosen = args.names or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        p.error(f"unknown artifact(s) {unknown}; expected some of {names}")
    if args.import_ema and (len(chosen) != 1 or chosen[0] not in GENERATORS):
        p.error("--import-ema needs exactly one generator name")
    if args.num_score < 20:
        p.error(f"--num-score must be >= 20, got {args.num_score}")
    for name in chosen:
        if name.startswith("classifier-"):
            build_classifier(name.removeprefix("classifier-"), args)
        else:
            build_generator(name, args)
    print(f"manifest: {pretrained.directory() / pretrained.MANIFEST}, total {pretrained.total_bytes() / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
