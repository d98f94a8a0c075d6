"""Is a sampler that is one compiled program faster than a Python loop of jitted steps?

For DDIM-50 (eta = 1, so the per-step noise path is exercised too) this times
  * ``scan``: ``samplers.ddim_sample``, the whole step loop in one ``lax.scan`` program;
  * ``loop``: the same update as 50 Python-level calls of one jitted step function,
on three denoisers of very different cost: the exact 2-D toy (dispatch-bound), a latent
DiT on 7x7x4 latents and the MNIST pixel U-Net (compute-bound). Both paths draw the same
per-row noise, so the bench first checks that they return the same samples. It prints
min and median over repeats (compile time reported separately) and the loop/scan ratio
measured in this run, and writes outputs/bench/sampling.json.

Run: ``python bench/sampling.py [--repeats 5]`` or ``make bench``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diffusion_jax import samplers, schedules, toy
from diffusion_jax.models import DiT, UNet
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


def _time(fn, repeats):
    runs = []
    for r in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(jax.random.key(r + 1)))
        runs.append(time.perf_counter() - t0)
    return min(runs), statistics.median(runs)


def cases():
    sched = schedules.linear()
    mix = toy.default_mixture()
    rngs = lambda: nnx.Rngs(params=jax.random.key(0, impl="rbg"))  # noqa: E731
    dit = DiT(DIT_PRESETS["latent-mnist"], rngs=rngs())
    unet = UNet(UNET_PRESETS["mnist"], rngs=rngs())
    dit_fn = model_denoiser(*nnx.split(dit, nnx.Param, ...))
    unet_fn = model_denoiser(*nnx.split(unet, nnx.Param, ...))
    return [
        ("exact 2-D toy, B=16", mix.denoiser(sched), sched, (16, 2), None),
        ("exact 2-D toy, B=1024", mix.denoiser(sched), sched, (1024, 2), None),
        ("latent DiT 7x7x4, B=64", dit_fn, sched, (64, 7, 7, 4), jnp.zeros((64,), jnp.int32)),
        ("pixel U-Net 28x28x1, B=64", unet_fn, sched, (64, 28, 28, 1), jnp.zeros((64,), jnp.int32)),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs after the first (default 5)")
    parser.add_argument("--out", default="outputs/bench/sampling.json")
    args = parser.parse_args(argv)
    rows = []
    print(f"DDIM-{STEPS} (eta={ETA:g}) on {jax.devices()[0].platform}, {len(jax.devices())} device(s)")
    print(f"{'denoiser':28s} {'path':5s} {'first call s':>12s} {'min s':>8s} {'median s':>9s}")
    for name, fn, sched, shape, cond in cases():
        paths = {"scan": scan, "loop": python_loop}
        (a, first_scan), (b, first_loop) = (_first(lambda k, r=r: r(k, fn, sched, shape, cond)) for r in paths.values())
        max_diff = float(jnp.max(jnp.abs(a - b)))
        if max_diff > 1e-3:
            raise AssertionError(f"{name}: scan and loop disagree by {max_diff}")
        row = {"denoiser": name, "max_abs_diff_scan_vs_loop": max_diff}
        for (path, run), first in zip(paths.items(), (first_scan, first_loop)):
            best, med = _time(lambda k, run=run: run(k, fn, sched, shape, cond), args.repeats)
            row[path] = {"first_call_s": first, "min_s": best, "median_s": med}
            print(f"{name:28s} {path:5s} {first:12.3f} {best:8.4f} {med:9.4f}")
        row["loop_over_scan_median"] = row["loop"]["median_s"] / row["scan"]["median_s"]
        print(f"{'':28s} loop / scan (median): {row['loop_over_scan_median']:.2f}x")
        rows.append(row)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": f"{platform.machine()} {platform.processor()}",
                               "devices": [str(d) for d in jax.devices()], "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
