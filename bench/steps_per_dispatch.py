"""Does keeping the data on the devices, or running K train steps per call, speed up ``fit``?

Variants, all through :func:`diffusion_jax.train.fit` with a preset's model and data,
batch 128, on forced host devices (default 2, as ``diffusion-jax train`` uses on a
2-core machine):
  * ``host 1/call``: each batch gathered on the host and copied over, one jitted step
    per call (``steps_per_dispatch=1``: the loop before the device-resident mode, and
    ``fit``'s default for convolutional models);
  * ``device 1/call``: the training set uploaded once, each step gathering its batch on
    the devices (``device_data=True, steps_per_dispatch=1``);
  * ``device K/call``: the same, K steps per call in one compiled loop (``fit``'s
    default for conv-free models, K = 10).
Each timing is one ``fit`` call of ``--steps`` steps from the same initial state (one log
record, a final checkpoint), in interleaved rounds; the first round compiles and is
excluded. All variants must end at the same parameters (same batches, same keys); the
bench checks that before printing.

Expect K/call to LOSE on convolutional models (the U-Net): XLA:CPU leaves the weight-
and input-gradient convolutions of a loop body on a slow path (jax-ml/jax#12868).

Run: ``python bench/steps_per_dispatch.py [--quick] [--presets mnist-unet,mnist-dit] [--k 10]``.
Writes outputs/bench/steps_per_dispatch.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="mnist-unet,mnist-dit", help="comma list of pixel presets")
    p.add_argument("--devices", type=int, default=2, help="forced host devices (default 2)")
    p.add_argument("--k", type=int, default=10, help="steps per call of the K/call variant (default 10, "
                                                    "fit's AUTO_STEPS_PER_DISPATCH)")
    p.add_argument("--steps", type=int, default=10, help="steps per timed fit call (default 10)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds after the compile round")
    p.add_argument("--quick", action="store_true", help="smoke run: mnist-dit, batch 16, 4 steps, K=2, 1 round")
    p.add_argument("--no-peer", action="store_true", help="accepted for `make bench`; no peer column here")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.presets, args.batch, args.steps, args.k, args.repeats = "mnist-dit", 16, 4, 2, 1
    if args.k < 2 or args.steps < 1 or args.devices < 1 or args.batch % args.devices or args.repeats < 1:
        p.error(f"--k must be >= 2, --steps and --repeats >= 1, --batch divisible by --devices; got --k {args.k} "
                f"--steps {args.steps} --repeats {args.repeats} --batch {args.batch} --devices {args.devices}")
    return args


def measure(name: str, args) -> dict:
    import jax
    import numpy as np

    from diffusion_jax import pipeline, schedules, train

    preset = pipeline.get_preset(name, batch_size=args.batch, steps=args.steps, log_every=args.steps,
                                 checkpoint_every=0, keep_checkpoints=1)
    if preset.is_latent:
        raise SystemExit(f"--presets: {name} is a latent preset; this bench takes pixel presets")
    x, labels = pipeline.training_data(preset)
    batch_fn = train.epoch_batch_fn(jax.random.key(0), x, labels, args.batch)
    schedule = schedules.make_schedule(preset.schedule)
    host_init = jax.device_get(train.create_train_state(pipeline.build_model(preset), preset.train))
    finals = {}

    def variant(label, **kw):
        def run():
            state = jax.tree.map(np.copy, host_init)  # fit donates its input: a fresh copy each call
            with tempfile.TemporaryDirectory() as d:
                out, seconds = C.timed(lambda: jax.block_until_ready(train.fit(
                    state, preset.train, schedule, batch_fn, out_dir=d, null_label=pipeline.null_label(preset),
                    progress=False, **kw)))
            finals[label] = jax.tree.leaves(out)
            return seconds
        return run

    variants = {"host 1/call": variant("host 1/call", steps_per_dispatch=1),
                "device 1/call": variant("device 1/call", device_data=True, steps_per_dispatch=1),
                f"device {args.k}/call": variant(f"device {args.k}/call", steps_per_dispatch=args.k)}
    warm = C.interleaved(variants, 1)  # compiles; excluded
    ref = finals["host 1/call"]
    diff = {}
    for label, leaves in finals.items():
        diff[label] = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(ref, leaves))
        if not all(np.allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5) for a, b in zip(ref, leaves)):
            raise AssertionError(f"{name}: {label} ended at different parameters (max |diff| {diff[label]})")
    times = C.interleaved(variants, args.repeats)
    res = {"preset": name, "max_abs_param_diff_vs_host": diff, "variants": {}}
    base = None
    for label, ts in times.items():
        s = C.summarize(ts)
        ips = C.rate(s, args.steps * args.batch)
        base = base or ips["median"]
        res["variants"][label] = {**s, "compile_round_s": warm[label][0], "images_per_s": ips,
                                  "speed_vs_host_median": ips["median"] / base}
    return res


def main(argv=None):
    args = _parse(argv)
    C.force_host_devices(args.devices)
    names = [n.strip() for n in args.presets.split(",") if n.strip()]
    print(f"fit, batch {args.batch}, {args.steps} steps per timing, {args.devices} forced host devices, "
          f"{os.cpu_count()} cores; {args.repeats} interleaved rounds after a compile round")
    results, rows = [], []
    for name in names:
        res = measure(name, args)
        results.append(res)
        for label, r in res["variants"].items():
            rows.append([name, label, r["compile_round_s"], r["min_s"], r["median_s"], r["images_per_s"]["best"],
                         r["images_per_s"]["median"], r["speed_vs_host_median"],
                         f"{res['max_abs_param_diff_vs_host'][label]:.1e}"])
    C.print_table(["preset", "variant", "1st call s", "min s", "median s", "img/s best", "img/s median",
                   "x host", "max |dparam|"], rows, title="\nfit: where the batches come from, steps per call")
    C.write_json("steps_per_dispatch", results, args, out=args.out)
    return results


if __name__ == "__main__":
    main()
