"""What fraction of this machine's matmul peak does our train step achieve?

Achieved FLOP/s = the FLOPs XLA's cost analysis counts for one compiled train step
(single-device program; a multiply-add counts 2) / the measured step time. The peak is
a measured f32 ``2048 x 2048`` matmul on the same machine in the same run: jax's and,
when ``.venv-peer`` exists, PyTorch's (the higher one is the reference). Steps and
matmuls are timed interleaved; the first call of each is excluded.

Run: ``python bench/efficiency.py [--quick] [--models mnist,2m]``.
Writes outputs/bench/efficiency.json.
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
import train_throughput as T

MATMUL_N = 2048
TARGET = 0.5


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mnist,2m", help=f"comma list of {sorted(T.MODELS)}")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=4, help="interleaved rounds (default 4)")
    parser.add_argument("--quick", action="store_true", help="smoke run: mnist only, 2 rounds")
    parser.add_argument("--no-peer", action="store_true", help="skip PyTorch's matmul peak")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.repeats = "mnist", 2
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in names:
        if m not in T.MODELS:
            parser.error(f"--models: unknown model {m!r}; expected some of {sorted(T.MODELS)}")
    peer = C.open_peer(not args.no_peer)
    devs = jax.devices()
    a = jax.random.normal(jax.random.key(0), (MATMUL_N, MATMUL_N), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (MATMUL_N, MATMUL_N), jnp.float32)
    mm = jax.jit(jnp.matmul)
    jax.block_until_ready(mm(a, b))

    def jax_matmul():
        jax.block_until_ready(mm(a, b))

    variants = {"matmul jax": jax_matmul}
    if peer is not None:
        peer.call("matmul", n=MATMUL_N, repeats=1)  # warm-up
        variants["matmul torch"] = lambda: peer.call("matmul", n=MATMUL_N, repeats=1)["min_s"]
    steps, results = {}, {"matmul_n": MATMUL_N, "models": []}
    try:
        for name in names:
            cfg = T.MODELS[name][1]
            one = T.OurStep(cfg, args.batch, devs[:1])
            steps[name] = {"1 dev": one}
            variants[f"{name} step 1 dev"] = lambda s=one: s.run(1)
            if len(devs) > 1:
                alld = T.OurStep(cfg, args.batch, devs)
                steps[name][f"{len(devs)} dev"] = alld
                variants[f"{name} step {len(devs)} dev"] = lambda s=alld: s.run(1)
        times = C.interleaved(variants, args.repeats)
    finally:
        if peer is not None:
            peer.close()
    mm_flops = 2.0 * MATMUL_N ** 3
    peaks = {v: mm_flops / min(times[v]) for v in times if v.startswith("matmul")}
    peak_name = max(peaks, key=peaks.get)
    peak = peaks[peak_name]
    results["peaks_gflops"] = {v: p / 1e9 for v, p in peaks.items()}
    results["peak_reference"] = peak_name
    results["matmul"] = {v: C.summarize(times[v]) for v in peaks}
    rows = []
    for v in peaks:
        s = results["matmul"][v]
        rows.append([f"{v} {MATMUL_N}^3", mm_flops / 1e9, s["min_s"], s["median_s"],
                     mm_flops / s["median_s"] / 1e9, mm_flops / s["median_s"] / peak, None])
    for name, per in steps.items():
        flops = per["1 dev"].flops
        entry = {"name": name, "model": T.MODELS[name][0], "params": per["1 dev"].params,
                 "xla_flops_per_step": flops, "batch": args.batch, "variants": {}}
        for label, step in per.items():
            s = C.summarize(times[f"{name} step {label}"])
            achieved = None if flops is None else flops / s["median_s"]
            achieved_best = None if flops is None else flops / s["min_s"]
            entry["variants"][label] = {**s, "compile_s": step.compile_s,
                                        "achieved_gflops_median": None if achieved is None else achieved / 1e9,
                                        "fraction_of_peak_median": None if achieved is None else achieved / peak,
                                        "fraction_of_peak_best": None if achieved is None else achieved_best / peak}
            rows.append([f"{T.MODELS[name][0]} {label}", None if flops is None else flops / 1e9, s["min_s"],
                         s["median_s"], None if achieved is None else achieved / 1e9,
                         None if achieved is None else achieved / peak, step.compile_s])
        results["models"].append(entry)
    C.print_table(["program", "GFLOP/step", "min s", "median s", "GFLOP/s (median)", "of peak", "compile s"],
                  rows, title=f"\nAchieved FLOP/s vs measured matmul peak ({peak_name}, best run = 1.0; "
                              f"target >= {TARGET:.0%})")
    C.write_json("efficiency", results, args, peer=None if peer is None else peer.info, out=args.out)
    return results


if __name__ == "__main__":
    main()
