"""What fraction of this machine's matmul peak do our train step and our sampler achieve?

Achieved FLOP/s = the FLOPs XLA's cost analysis counts for one compiled train step
(single-device program; a multiply-add counts 2) / the measured step time. The peak is
a measured f32 ``2048 x 2048`` matmul on the same machine in the same run: jax's and,
when ``.venv-peer`` exists, PyTorch's (the higher one is the reference).

The sampler rows (``bench/_sampler_program.py``) do the same for the demo's sampling:
500 guided images of the ``mnist-unet`` preset (CFG s = 3, both predictions in one
network call) with DDIM-50 and DPM-Solver++(2M)-20, as ONE compiled program (the whole
``lax.scan``), rows split over all host devices as ``pipeline.sample`` does, and on one
device. Random weights: FLOP counts and times do not depend on them. Its FLOPs are
counted two ways that must agree: XLA's cost analysis of the program (which counts a
loop body once, so it is multiplied by the steps) and the model's forward FLOPs x 2N
rows x steps. Printed: sampling FLOP/s over the train step's (target >= 1, issue 12).

Everything is timed interleaved (matmuls and train steps every round, each sampler run
once per sampler round between them); the first call of each is excluded.

Run: ``python bench/efficiency.py [--quick] [--models mnist,2m] [--samplers ddim:50,dpmpp_2m:20]``.
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

import _sampler_program as SP
import jax
import jax.numpy as jnp
import train_throughput as T

MATMUL_N = 2048
TARGET = 0.5
SAMPLING_TARGET = 1.0  # issue 12: an inference FLOP rate at least that of the training step


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mnist,2m", help=f"comma list of {sorted(T.MODELS)}")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=4, help="interleaved rounds of matmuls and steps (default 4)")
    parser.add_argument("--samplers", default="ddim:50,dpmpp_2m:20",
                        help="comma list of SAMPLER:STEPS for the mnist-unet sampling rows ('' = none; "
                             "default ddim:50,dpmpp_2m:20)")
    parser.add_argument("--sample-images", type=int, default=500, help="guided images per sampler run (default "
                                                                        "500, the demo's)")
    parser.add_argument("--sample-repeats", type=int, default=2,
                        help="timed sampler runs after the first (default 2; a DDIM-50 run of 500 takes minutes)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: mnist only, 2 rounds; 8 images, DDIM-3 and DPM-Solver++(2M)-3, 1 run")
    parser.add_argument("--no-peer", action="store_true", help="skip PyTorch's matmul peak")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.repeats = "mnist", 2
        args.samplers, args.sample_images, args.sample_repeats = "ddim:3,dpmpp_2m:3", 8, 1
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in names:
        if m not in T.MODELS:
            parser.error(f"--models: unknown model {m!r}; expected some of {sorted(T.MODELS)}")
    for flag in ("repeats", "sample_images", "sample_repeats"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    try:
        samplers = SP.parse_samplers(args.samplers)
    except ValueError as err:
        parser.error(str(err))
    if args.sample_images % len(jax.devices()):
        parser.error(f"--sample-images {args.sample_images} must split evenly over the {len(jax.devices())} devices")
    return args, names, samplers


def build_samplers(samplers, images, devs):
    """``{variant: SamplerProgram}`` on all devices (pipeline.sample's way) and on one."""
    programs = {}
    for name, steps in samplers:
        for ds in ([devs, devs[:1]] if len(devs) > 1 else [devs]):
            prog = SP.SamplerProgram(name, steps, images, ds)
            programs[f"{name}-{steps} {len(ds)} dev"] = prog
            print(f"compiled {name}-{steps} for {images} guided images on {len(ds)} device(s): "
                  f"{prog.compile_s:.1f} s, first call {prog.first_s:.1f} s", flush=True)
    return programs


def check_samplers(programs, samplers, devs) -> dict:
    """Same images on 1 and all devices, and the same as ``sampling.sample`` itself (first rows)."""
    checks = {}
    for name, steps in samplers:
        alld = programs[f"{name}-{steps} {len(devs)} dev"]
        one = programs[f"{name}-{steps} 1 dev"]
        diff = float(abs(alld.out - one.out).max())
        lib = alld.matches_library(2 * len(devs), devs)
        if max(diff, lib) > 1e-3:
            raise AssertionError(f"{name}-{steps}: 1 vs {len(devs)} devices differ by {diff}, "
                                 f"program vs sampling.sample by {lib}")
        checks[f"{name}-{steps}"] = {"max_abs_diff_devices": diff, "max_abs_diff_vs_sampling_sample": lib}
    return checks


def time_all(fast, slow, repeats, slow_repeats) -> dict[str, list[float]]:
    """Rounds of every fast variant, then one run of each slow one, while each has runs left."""
    times = {name: [] for name in (*fast, *slow)}
    for r in range(max(repeats, slow_repeats)):
        for group, limit in ((fast, repeats), (slow, slow_repeats)):
            if r < limit and group:
                for name, ts in C.interleaved(group, 1).items():
                    times[name] += ts
    return times


def main(argv=None):
    args, names, samplers = _parse(argv)
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
        programs = build_samplers(samplers, args.sample_images, devs)
        results["sampler_checks"] = check_samplers(programs, samplers, devs)
        times = time_all(variants, {v: p.run for v, p in programs.items()},
                         args.repeats, args.sample_repeats)
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
    results["samplers"] = sampler_rows(programs, samplers, times, peak, rows)
    C.print_table(["program", "GFLOP/call", "min s", "median s", "GFLOP/s (median)", "of peak", "compile s"],
                  rows, title=f"\nAchieved FLOP/s vs measured matmul peak ({peak_name}, best run = 1.0; "
                              f"target >= {TARGET:.0%})")
    results["sampling_over_training"] = ratio_table(results)
    C.write_json("efficiency", results, args, peer=None if peer is None else peer.info, out=args.out)
    return results


def sampler_rows(programs, samplers, times, peak, rows) -> list[dict]:
    """One entry per sampler (FLOP counts, timings per device setting); table rows appended."""
    if not programs:
        return []
    loop_once = SP.xla_counts_loop_once()
    out = []
    for name, steps in samplers:
        per = {v.split(" ", 1)[1]: p for v, p in programs.items() if v.split(" ", 1)[0] == f"{name}-{steps}"}
        count = SP.count_flops(per["1 dev"], loop_once)
        entry = {"sampler": name, "steps": steps, "images": per["1 dev"].images, "preset": SP.PRESET,
                 "guidance_scale": per["1 dev"].guidance_scale, **count, "variants": {}}
        for label, prog in per.items():
            s = C.summarize(times[f"{name}-{steps} {label}"])
            achieved = count["flops"] / s["median_s"]
            entry["variants"][label] = {**s, "compile_s": prog.compile_s, "first_call_s": prog.first_s,
                                        "images_per_s": C.rate(s, prog.images),
                                        "achieved_gflops_median": achieved / 1e9,
                                        "achieved_gflops_best": count["flops"] / s["min_s"] / 1e9,
                                        "fraction_of_peak_median": achieved / peak}
            rows.append([f"{name}-{steps}, {prog.images} guided, {label}", count["flops"] / 1e9, s["min_s"],
                         s["median_s"], achieved / 1e9, achieved / peak, prog.compile_s])
        out.append(entry)
        print(f"{name}-{steps}: XLA's count x steps / (forward x {count['rows_per_network_call']} rows x steps) = "
              f"{count['xla_over_forward']:.3f}" if count["xla_over_forward"] is not None else
              f"{name}-{steps}: no XLA count; forward x rows x steps used", flush=True)
    return out


def ratio_table(results) -> list[dict]:
    """Sampling FLOP/s over the mnist train step's, per device setting (issue 12: >= 1)."""
    train = next((m for m in results["models"] if m["name"] == "mnist"), None)
    if train is None or not results["samplers"]:
        print("sampling / training: needs --models with mnist and at least one --samplers entry")
        return []
    out, rows = [], []
    for entry in results["samplers"]:
        for label, v in entry["variants"].items():
            t = train["variants"].get(label, {}).get("achieved_gflops_median")
            if t is None:
                continue
            ratio = v["achieved_gflops_median"] / t
            out.append({"sampler": f"{entry['sampler']}-{entry['steps']}", "devices": label,
                        "sampling_gflops": v["achieved_gflops_median"], "training_gflops": t, "ratio": ratio})
            rows.append([f"{entry['sampler']}-{entry['steps']}", label, v["achieved_gflops_median"], t, ratio,
                         v["images_per_s"]["median"]])
    C.print_table(["sampler", "devices", "sampling GFLOP/s", "train step GFLOP/s", "sampling / train",
                   "images/s"], rows,
                  title=f"\nSampling FLOP rate over the train step's (mnist U-Net, medians; target >= {SAMPLING_TARGET:g})")
    return out


if __name__ == "__main__":
    main()
