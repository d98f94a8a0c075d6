"""Train one preset for the shipped reference models, optionally under a wall-clock budget.

The learning rate is constant after warm-up and the EMA does not depend on the total, so
a run stopped at step k is exactly the run configured with ``steps=k``: with
``--time-budget`` the preset trains in chunks of ``--chunk`` steps (one checkpoint each)
until the budget is spent, and the result names the step it reached. Everything lands in
``--out``: ``result.json`` (steps, images seen, phase times, machine), ``ema.npz`` (EMA
inference weights, leaves named by key path), for latent presets ``vae.npz`` plus the
measured latent scale, and with ``--eval`` guided sample grids and scores.

    python tools/train_reference.py --preset cifar10-latent-dit --time-budget 300 --out outputs/ref
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import sys
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from diffusion_jax import data, metrics, pipeline, schedules  # noqa: E402
from diffusion_jax.train import create_train_state, epoch_batch_fn, fit  # noqa: E402


def flat_params(tree) -> dict[str, np.ndarray]:
    """``{"key/path": array}`` for every leaf (pickle-free npz, leaf names human-readable)."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p, simple=True, separator="/"): np.asarray(jax.device_get(v)) for p, v in flat}


def save_npz(path: pathlib.Path, arrays: dict, **meta) -> None:
    np.savez(path, __meta__=np.array(json.dumps(meta, default=str)), **arrays)


def train(preset, out: pathlib.Path, budget: float | None, chunk: int, log) -> tuple:
    t0 = time.perf_counter()
    phases = {}
    if preset.is_latent:
        pipeline.codec(preset)  # trains (or loads) the VAE and measures the latent scale
        phases["vae_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    x, labels = pipeline.training_data(preset)
    phases["data_s"] = time.perf_counter() - t1
    log(f"{preset.name}: training data {x.shape} after {time.perf_counter() - t0:.0f} s")
    run_dir = pipeline.run_dir(preset)  # fixed by the preset as declared (its step cap)
    schedule = schedules.make_schedule(preset.schedule)
    state = create_train_state(pipeline.build_model(preset, preset.train.seed), preset.train)
    batch_fn = epoch_batch_fn(jax.random.key(preset.train.seed), x, labels, preset.train.batch_size)
    t2, reached = time.perf_counter(), 0
    targets = list(range(chunk, preset.train.steps + 1, chunk)) or [preset.train.steps]
    for k in targets:
        state = fit(state, dataclasses.replace(preset.train, steps=k), schedule, batch_fn, out_dir=run_dir,
                    null_label=pipeline.null_label(preset), progress=False)
        reached = k
        spent = time.perf_counter() - t2
        log(f"{preset.name}: step {k} after {spent:.0f} s of training ({k * preset.train.batch_size / spent:.0f} img/s)")
        if budget is not None and time.perf_counter() - t0 + spent / k * chunk > budget:
            break
    phases["train_s"] = time.perf_counter() - t2
    final = dataclasses.replace(preset, train=dataclasses.replace(preset.train, steps=reached))
    return state, final, phases, run_dir


def evaluate(state, preset, out: pathlib.Path, scales, num: int, classifier_kw: dict, log) -> list:
    from diffusion_jax import viz

    viz.use_headless_backend()
    import matplotlib.pyplot as plt

    test = data.load_dataset(preset.dataset, "test")
    clf = metrics.train_classifier(jax.random.key(2), preset.dataset, progress=False, **classifier_kw)
    real_f, real_lg = metrics.features_and_logits(clf, test.images)
    rows = [{"what": "classifier on real test images", "accuracy": metrics.class_accuracy(real_lg, test.labels)}]
    labels = np.arange(num) % pipeline.null_label(preset)
    for s in scales:
        t0 = time.perf_counter()
        imgs = pipeline.sample(jax.random.key(7), state, preset, labels, guidance_scale=s, batch_size=500)
        dt = time.perf_counter() - t0
        f, lg = metrics.features_and_logits(clf, imgs)
        row = {"what": f"guided DDIM-{preset.sampler_steps} s={s}", "scale": s, "num": num,
               "accuracy": metrics.class_accuracy(lg, labels), "fid": metrics.fid(f, real_f[: max(num, 1000)]),
               "sample_s": dt}
        rows.append(row)
        log(json.dumps(row))
        order = np.argsort(labels[:100], kind="stable")
        fig, ax = plt.subplots(figsize=(8, 8))
        viz.show_images(imgs[:100][order], 10, ax, title=f"{preset.name} s={s} (synthetic)")
        fig.savefig(out / f"grid_s{s:g}.png", dpi=80)
        plt.close(fig)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", required=True, choices=sorted(pipeline.PRESETS))
    p.add_argument("--time-budget", type=float, default=None, help="seconds for the whole run (default: none)")
    p.add_argument("--chunk", type=int, default=2000, help="steps between checkpoints (default 2000)")
    p.add_argument("--out", required=True, help="folder for result.json and the weights")
    p.add_argument("--eval", action="store_true", help="sample guided grids and score them")
    p.add_argument("--scales", type=float, nargs="+", default=[1.5, 2.0, 3.0, 4.0])
    p.add_argument("--num-eval", type=int, default=1000)
    p.add_argument("--classifier", default="{}", help="JSON kwargs for metrics.train_classifier")
    p.add_argument("--steps", type=int, default=None, help="override the preset's step cap (smoke runs)")
    p.add_argument("--vae-steps", type=int, default=None, help="override the VAE's steps (smoke runs)")
    args = p.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / "log.txt", "a")

    def log(msg):
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    t0 = time.perf_counter()
    preset = pipeline.get_preset(args.preset, vae_steps=args.vae_steps,
                                 **({"steps": args.steps} if args.steps else {}))
    state, final, phases, run_dir = train(preset, out, args.time_budget, args.chunk, log)
    result = {"preset": final.name, "fingerprint": final.fingerprint(), "steps": final.train.steps,
              "images_seen": final.train.steps * final.train.batch_size, "phases_s": phases,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, devices {[str(d) for d in jax.devices()]}",
              "jax": jax.__version__, "run_dir": str(run_dir),
              "command": f"python tools/train_reference.py --preset {args.preset}"
                         + (f" --time-budget {args.time_budget:g}" if args.time_budget else "")}
    save_npz(out / "ema.npz", flat_params(state.ema_params), preset=final.name, fingerprint=final.fingerprint(),
             steps=final.train.steps)
    if final.is_latent:
        c = pipeline.codec(preset)
        save_npz(out / "vae.npz", flat_params(c.params), scale=c.scale, vae_preset=final.vae_preset)
        result["latent_scale"] = c.scale
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    if args.eval:
        try:
            result["eval"] = evaluate(state, final, out, args.scales, args.num_eval, json.loads(args.classifier), log)
        except Exception as err:  # keep the weights even if scoring fails
            result["eval_error"] = f"{type(err).__name__}: {err}"
            log(result["eval_error"])
    result["total_s"] = time.perf_counter() - t0
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    log(f"done in {result['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
