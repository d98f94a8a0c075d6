"""Is a sampler that is one compiled program faster than a Python loop of jitted steps?

For DDIM-50 (eta = 1, so the per-step noise path is exercised too) this times
  * ``scan``: ``samplers.ddim_sample``, the whole step loop in one ``lax.scan`` program;
  * ``loop``: the same update as 50 Python-level calls of one jitted step function;
  * ``diffusers`` (pixel U-Net only): diffusers' ``DDIMScheduler`` loop around a
    ``UNet2DModel`` with a parameter count within 10% of ours, under PyTorch in the
    ``.venv-peer`` subprocess (skipped with a message when that environment is missing),
on three denoisers of very different cost: the exact 2-D toy (dispatch-bound), a latent
DiT on 7x7x4 latents and the MNIST pixel U-Net (compute-bound). Both of our paths draw
the same per-row noise, so the bench first checks that they return the same samples.
The variants of a row are timed interleaved (scan, loop, diffusers, scan, ...); it prints
min and median (first call with compilation reported separately) and the ratios measured
in this run, and writes outputs/bench/sampling.json.

Run: ``python bench/sampling.py [--repeats 5] [--quick] [--no-peer]`` or ``make bench``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diffusion_jax import samplers, schedules, toy
from diffusion_jax.models import DiT, UNet
from diffusion_jax.models.common import param_count
from diffusion_jax.models.dit import DIT_PRESETS
from diffusion_jax.models.unet import PRESETS as UNET_PRESETS
from diffusion_jax.timesteps import ddim_timesteps
from diffusion_jax.train import model_denoiser

STEPS, ETA = 50, 1.0


@jax.jit
def _loop_step(denoise, keys, alpha_bars, cond, x, i, t, ab_prev):
    """One DDIM step, compiled once per shape and reused by every loop iteration."""
    pred = denoise(x, jnp.full((x.shape[0],), t, jnp.int32), cond)
    z = samplers.row_normal(keys, 1, i, x.shape[1:])
    return samplers.ddim_step(pred, x, alpha_bars[t], ab_prev, ETA, z)[0]


def python_loop(key, denoise, schedule, shape, cond):
    """DDIM as a Python loop over one jitted step (same noise stream as the scan)."""
    grid = ddim_timesteps(schedule.num_timesteps, STEPS, "leading")
    prev = np.append(grid[1:], -1)
    keys = samplers.row_keys(key, shape[0])
    ab = np.asarray(schedule.alpha_bars)
    x = samplers.initial_noise(key, shape)
    for i, (t, tp) in enumerate(zip(grid, prev)):
        x = _loop_step(denoise, keys, schedule.alpha_bars, cond, x, i, int(t), float(ab[tp]) if tp >= 0 else 1.0)
    return x


def scan(key, denoise, schedule, shape, cond):
    return samplers.ddim_sample(key, denoise, schedule, shape, cond, num_steps=STEPS, eta=ETA)


def _first(fn):
    """Output and wall time of the first call (compilation included)."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(jax.random.key(7)))
    return out, time.perf_counter() - t0


def cases():
    sched = schedules.linear()
    mix = toy.default_mixture()
    rngs = lambda: nnx.Rngs(params=jax.random.key(0, impl="rbg"))
    dit = DiT(DIT_PRESETS["latent-mnist"], rngs=rngs())
    unet = UNet(UNET_PRESETS["mnist"], rngs=rngs())
    dit_fn = model_denoiser(*nnx.split(dit, nnx.Param, ...))
    unet_fn = model_denoiser(*nnx.split(unet, nnx.Param, ...))
    # The last field: the U-Net (and its config) the diffusers column is matched to.
    return [
        ("exact 2-D toy, B=16", mix.denoiser(sched), sched, (16, 2), None, None),
        ("exact 2-D toy, B=1024", mix.denoiser(sched), sched, (1024, 2), None, None),
        ("latent DiT 7x7x4, B=64", dit_fn, sched, (64, 7, 7, 4), jnp.zeros((64,), jnp.int32), None),
        ("pixel U-Net 28x28x1, B=64", unet_fn, sched, (64, 28, 28, 1), jnp.zeros((64,), jnp.int32),
         (unet, UNET_PRESETS["mnist"])),
    ]


def peer_column(peer, name, unet_and_cfg, shape):
    """Build the matched diffusers model in the peer and return ``(run, info)``."""
    unet, cfg = unet_and_cfg
    ours = param_count(unet)
    built = peer.call("build", name=name, target_params=ours, channels=list(cfg.channels),
                      attention_levels=list(cfg.attention_levels), in_channels=cfg.in_channels,
                      image=list(shape[1:3]), num_classes=cfg.num_classes)
    rel = built["params"] / ours - 1
    if abs(rel) > 0.10:
        raise AssertionError(f"diffusers model has {built['params']:,} params vs our {ours:,} ({rel:+.1%})")
    init = peer.call("sample_init", name=name, n=shape[0], steps=STEPS, eta=ETA)
    counter = iter(range(1, 10**6))
    info = {"params_ours": ours, "params_diffusers": built["params"], "params_rel_diff": rel,
            "block_out_channels": built["block_out_channels"], "first_call_s": init["first_s"]}
    return (lambda: peer.call("sample", name=name, seed=next(counter))["seconds"]), info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed runs after the first (default 5)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 repeats")
    parser.add_argument("--no-peer", action="store_true", help="skip the PyTorch/diffusers column")
    parser.add_argument("--out", default=None, help="JSON path (default outputs/bench/sampling.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 2
    print(f"DDIM-{STEPS} (eta={ETA:g}) on {jax.devices()[0].platform}, {len(jax.devices())} device(s), "
          f"{args.repeats} interleaved repeats")
    peer = C.open_peer(not args.no_peer)
    rows, table = [], []
    try:
        for name, fn, sched, shape, cond, matched in cases():
            paths = {"scan": scan, "loop": python_loop}
            args_ = (fn, sched, shape, cond)
            firsts = {p: _first(lambda k, r=r, a=args_: r(k, *a)) for p, r in paths.items()}
            (a, _), (b, _) = firsts["scan"], firsts["loop"]
            max_diff = float(jnp.max(jnp.abs(a - b)))
            if max_diff > 1e-3:
                raise AssertionError(f"{name}: scan and loop disagree by {max_diff}")
            row = {"denoiser": name, "max_abs_diff_scan_vs_loop": max_diff}
            counter = iter(range(1, 10**6))

            def timed_path(r, a=args_, counter=counter):
                def run():
                    jax.block_until_ready(r(jax.random.key(next(counter)), *a))
                return run

            variants = {p: timed_path(r) for p, r in paths.items()}
            first = {p: t for p, (_, t) in firsts.items()}
            if matched is not None and peer is not None:
                variants["diffusers"], row["diffusers_setup"] = peer_column(peer, "sampling-unet", matched, shape)
                first["diffusers"] = row["diffusers_setup"]["first_call_s"]
            times = C.interleaved(variants, args.repeats)
            for path, ts in times.items():
                row[path] = {"first_call_s": first[path], **C.summarize(ts)}
                table.append([name, path, first[path], row[path]["min_s"], row[path]["median_s"]])
            row["loop_over_scan_median"] = row["loop"]["median_s"] / row["scan"]["median_s"]
            table.append([name, "loop / scan (median)", None, None, row["loop_over_scan_median"]])
            if "diffusers" in row:
                row["diffusers_over_scan_median"] = row["diffusers"]["median_s"] / row["scan"]["median_s"]
                table.append([name, "diffusers / scan (median)", None, None, row["diffusers_over_scan_median"]])
            rows.append(row)
    finally:
        if peer is not None:
            peer.close()
    C.print_table(["denoiser", "path", "first call s", "min s", "median s"], table,
                  title="\nDDIM-50 sampling (ratios > 1: scan is faster; target diffusers / scan >= 1.2)")
    C.write_json("sampling", rows, args, peer=None if peer is None else peer.info, out=args.out)
    return rows


if __name__ == "__main__":
    main()
