"""How many training images per second does our U-Net step reach, next to PyTorch + diffusers?

Our side is the library's own train step (``train.make_train_step``: v-prediction MSE,
10% null labels, global-norm clip 1.0, AdamW, EMA 0.995, donated state), run two ways:
  * ``ours 1 dev``: one XLA CPU device, as a plain ``import jax`` gives you;
  * ``ours N dev``: the batch sharded over one forced host device per core, which is what
    ``diffusion-jax train`` / ``pipeline.train`` do (the CLI sets ``XLA_FLAGS``).
The peer is diffusers' ``UNet2DModel`` built from a config (no downloaded weights), its
widths scaled so its parameter count is within 10% of ours, trained with the same batch,
data shape, loss, clip, AdamW and EMA, with ``torch.set_num_threads(cores)``, in a
``.venv-peer`` subprocess. All variants are timed interleaved in the same run; compile
time and the first step are reported separately and excluded from min/median.

Run: ``python bench/train_throughput.py [--quick] [--models mnist,2m] [--repeats 5]``.
Writes outputs/bench/train_throughput.json.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C

if __name__ == "__main__":
    C.force_host_devices()

import jax
import jax.numpy as jnp
from flax import nnx

from diffusion_jax import schedules
from diffusion_jax.models import UNet
from diffusion_jax.models.common import param_count
from diffusion_jax.models.unet import PRESETS, UNetConfig
from diffusion_jax.distributed import global_batch, host_value
from diffusion_jax.train import TrainConfig, create_train_state, make_mesh, make_train_step, replicate

MODELS = {
    # The demo model (pipeline preset "mnist-unet").
    "mnist": ("U-Net 16/32/64 (mnist preset)", PRESETS["mnist"]),
    # The TOOLING.md prototype size: channels 32/64/128, attention at 7x7.
    "2m": ("U-Net 32/64/128", UNetConfig(channels=(32, 64, 128), num_classes=10)),
}
IMAGE = (28, 28, 1)
TOLERANCE = 0.10  # parameter counts must match within 10%


class OurStep:
    """The library's compiled train step on ``devices``; ``run(k)`` times k steps.

    ``devices`` may span several processes (after ``distributed.initialize``, as in
    ``scaling.py --processes``): every process builds the same global batch and hands
    over only its own devices' rows, as ``fit`` does.
    """

    def __init__(self, cfg: UNetConfig, batch: int, devices, seed: int = 0):
        tc = TrainConfig(batch_size=batch, prediction="v", cond_dropout=0.1)
        model = UNet(cfg, rngs=nnx.Rngs(seed))
        self.params = param_count(model)
        x = jax.random.uniform(jax.random.key(seed), (batch, *IMAGE), minval=-1.0, maxval=1.0)  # (B, H, W, C)
        y = jnp.arange(batch, dtype=jnp.int32) % cfg.num_classes
        state = create_train_state(model, tc)
        sched = schedules.linear()
        if len(devices) == 1:
            self.state = jax.device_put(state, devices[0])
            self.x, self.y = jax.device_put((x, y), devices[0])
            fn = make_train_step(tc, sched, cfg.num_classes)
        else:
            mesh = make_mesh(devices)
            self.state = replicate(mesh, state)
            self.x, self.y = global_batch(mesh, x, y)
            fn = make_train_step(tc, sched, cfg.num_classes, mesh=mesh)
        self.key = jax.random.key(seed + 1)
        # Several processes: a step's key must be a global (replicated) array; a few made
        # up front, reused in turn, keep that copy out of the timed loop.
        self.keys = ([replicate(mesh, jax.random.fold_in(self.key, i)) for i in range(8)]
                     if jax.process_count() > 1 else None)
        (self.step, self.compile_s) = C.timed(lambda: fn.lower(self.state, self.key, self.x, self.y).compile())
        self.flops = C.compiled_flops(self.step) if len(devices) == 1 else None
        _, self.first_s = C.timed(lambda: self.run(1))
        self.loss = float(host_value(self.last["loss"]))

    def run(self, k: int):
        for i in range(k):
            key = jax.random.fold_in(self.key, i) if self.keys is None else self.keys[i % len(self.keys)]
            self.state, self.last = self.step(self.state, key, self.x, self.y)
        jax.block_until_ready(self.last)


def build_variants(name: str, batch: int, peer, one_device_too: bool = True):
    """``{variant: (params, run(k) -> seconds or None)}`` plus setup info, for one model."""
    title, cfg = MODELS[name]
    devs = jax.devices()
    variants, info = {}, {"model": title, "config": str(cfg), "batch": batch}
    setups = ([("ours 1 dev", devs[:1])] if one_device_too or len(devs) == 1 else []) + (
        [(f"ours {len(devs)} dev", devs)] if len(devs) > 1 else [])
    for label, ds in setups:
        ours = OurStep(cfg, batch, ds)
        info[label] = {"params": ours.params, "compile_s": ours.compile_s, "first_step_s": ours.first_s,
                       "first_loss": ours.loss, "xla_flops_per_step": ours.flops}
        variants[label] = (ours.params, ours.run, ours)
    if peer is not None:
        target = next(iter(variants.values()))[0]
        built = peer.call("build", name=name, target_params=target, channels=list(cfg.channels),
                          attention_levels=list(cfg.attention_levels), in_channels=IMAGE[-1],
                          image=list(IMAGE[:2]), num_classes=cfg.num_classes)
        rel = built["params"] / target - 1
        if abs(rel) > TOLERANCE:
            raise AssertionError(f"{name}: diffusers model has {built['params']:,} params vs our "
                                 f"{target:,} ({rel:+.1%}), outside +-{TOLERANCE:.0%}")
        init = peer.call("train_init", name=name, batch=batch)
        info["diffusers"] = {"params": built["params"], "params_rel_diff": rel, "compile_s": 0.0,
                             "first_step_s": init["first_s"], "first_loss": init["loss"],
                             "block_out_channels": built["block_out_channels"], "config": built["config"]}
        variants["diffusers"] = (built["params"], lambda k, n=name: peer.call("train", name=n, steps=k)["seconds"], None)
    return variants, info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mnist,2m", help=f"comma list of {sorted(MODELS)}")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--steps", type=int, default=2, help="train steps per timing (default 2)")
    parser.add_argument("--quick", action="store_true", help="smoke run: mnist only, 2 rounds of 1 step")
    parser.add_argument("--no-peer", action="store_true", help="skip the PyTorch/diffusers column")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.repeats, args.steps = "mnist", 2, 1
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in names:
        if m not in MODELS:
            parser.error(f"--models: unknown model {m!r}; expected some of {sorted(MODELS)}")
    print(f"train step throughput, batch {args.batch}, {IMAGE} images, {os.cpu_count()} cores, "
          f"{len(jax.devices())} XLA device(s); {args.repeats} interleaved rounds of {args.steps} step(s)")
    peer = C.open_peer(not args.no_peer)
    results, rows = [], []
    try:
        for name in names:
            variants, info = build_variants(name, args.batch, peer)
            times = C.interleaved({v: (lambda run=run: run(args.steps)) for v, (_, run, _) in variants.items()},
                                  args.repeats)
            per_step = {v: [t / args.steps for t in ts] for v, ts in times.items()}
            res = {"name": name, **info, "variants": {}}
            for v, ts in per_step.items():
                s = C.summarize(ts)
                res["variants"][v] = {**s, "params": variants[v][0],
                                      "images_per_s": C.rate(s, args.batch)}
            if "diffusers" in per_step:
                peer_med = res["variants"]["diffusers"]["median_s"]
                for v in per_step:
                    res["variants"][v]["speed_vs_diffusers_median"] = peer_med / res["variants"][v]["median_s"]
            results.append(res)
            for v, r in res["variants"].items():
                setup = info[v]
                rows.append([info["model"], v, f"{r['params']:,}", setup["compile_s"], setup["first_step_s"],
                             r["min_s"], r["median_s"], r["images_per_s"]["best"], r["images_per_s"]["median"],
                             r.get("speed_vs_diffusers_median")])
    finally:
        if peer is not None:
            peer.close()
    C.print_table(["model", "variant", "params", "compile s", "1st step s", "min s/step", "median s/step",
                   "img/s best", "img/s median", "x diffusers"], rows,
                  title="\nTrain step (x diffusers = diffusers median step time / this one's; target >= 1.2)")
    C.write_json("train_throughput", results, args, peer=None if peer is None else peer.info, out=args.out)
    return results


if __name__ == "__main__":
    main()
