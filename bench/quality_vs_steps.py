"""Quality against sampler steps on the demo's MNIST model (issue 7, "quality vs steps").

Question: how much sample quality do fewer denoiser evaluations cost? Rows: DDPM-1000
(the reference), DDIM η = 0 and η = 1 and DPM-Solver++(2M) at 10/20/50/100 steps, and
rectified-flow Euler at the same evaluation counts (the shipped ``mnist-unet-flow``).
Every row samples the same labels from the same key with the plain conditional model
(s = 1, one prediction per step) and is scored with the reference MNIST classifier:
domain FID and KID against held-out digits, class accuracy.

FID is biased upward at small N, which pushes every ratio toward 1 and flatters the
short samplers. So the bench also measures the real-vs-real FID floor at the same N
(training digits against the same held-out reference) and reports the ratio of the
*excess* FID (FID − floor) next to the raw ratio. Target (issue 7): DDIM-50 / DDPM-1000
FID ≤ 1.3 (the DDIM paper's CIFAR-10 ratio is 4.67 / 3.17 ≈ 1.47).

    python bench/quality_vs_steps.py            # N = 250 per row, ~8 min on 2 cores
    python bench/quality_vs_steps.py --quick    # N = 32, steps 10 and 50, DDPM skipped: a smoke run
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import force_host_devices, print_table, write_json

STEPS = (10, 20, 50, 100)
#: Rows per step count: deterministic and stochastic DDIM, and DPM-Solver++(2M).
SAMPLERS = ("ddim", "ddim(eta=1)", "dpmpp_2m")


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-samples", type=int, default=250, help="images per row (default 250)")
    p.add_argument("--steps", type=int, nargs="+", default=list(STEPS), help="DDIM / Euler step counts")
    p.add_argument("--no-ddpm", action="store_true", help="skip the 1,000-step DDPM reference row")
    p.add_argument("--quick", action="store_true", help="smoke run: N = 32, steps 10 and 50, no DDPM")
    p.add_argument("--seed", type=int, default=11, help="sampling key (default 11)")
    p.add_argument("--no-peer", action="store_true", help="accepted for `make bench`; this bench has no peer column")
    args = p.parse_args(argv)
    if args.quick:
        args.num_samples, args.steps, args.no_ddpm = 32, [10, 50], True
    if args.num_samples < 2:
        p.error(f"--num-samples must be >= 2 (FID needs a covariance), got {args.num_samples}")
    return args


def main(argv=None):
    args = _parse(argv)
    force_host_devices(1)  # sampling runs on one device; keep the numbers comparable
    import jax
    import numpy as np

    from diffusion_jax import data, metrics, pipeline, studies

    # The shipped reference model and classifier load in seconds (--quick only samples less).
    preset = pipeline.get_preset("mnist-unet")
    state = pipeline.train(preset)
    classifier = metrics.reference("mnist")
    train, test = data.load_dataset("mnist", "train"), data.load_dataset("mnist", "test")
    real_feats, _ = metrics.features_and_logits(classifier, test.images)  # (M, D) FID reference
    n = args.num_samples
    key = jax.random.key(args.seed)

    # The floor: what FID says about N *real* digits (drawn at random: the splits are class-sorted).
    perm = np.asarray(jax.random.permutation(jax.random.key(3), len(train.images)))
    f_real, _ = metrics.features_and_logits(classifier, train.images[perm[:n]])
    floor = metrics.fid(f_real, real_feats)

    t0 = time.perf_counter()
    common = {"num_samples": n, "guidance_scale": 1.0, "progress": True}
    rows = studies.quality_vs_steps(key, state, preset, classifier, real_feats, steps=tuple(args.steps),
                                    samplers=SAMPLERS, **common)
    if not args.no_ddpm:
        rows += studies.quality_vs_steps(key, state, preset, classifier, real_feats, steps=(1000,),
                                         samplers=("ddpm",), **common)
    if not args.quick:
        flow_preset = pipeline.get_preset("mnist-unet-flow")
        try:
            flow_state = pipeline.load_trained(flow_preset)
            for r in studies.quality_vs_steps(key, flow_state, flow_preset, classifier, real_feats,
                                              steps=tuple(args.steps), samplers=("euler",), **common):
                rows.append({**r, "sampler": "flow euler"})
        except FileNotFoundError as err:
            print(f"rectified-flow rows skipped: {err}")
    total = time.perf_counter() - t0

    ref = next((r for r in rows if r["sampler"] == "ddpm"), None)
    table = []
    for r in rows:
        raw = r["fid"] / ref["fid"] if ref else None
        excess = (r["fid"] - floor) / (ref["fid"] - floor) if ref and ref["fid"] > floor else None
        r["fid_ratio_to_ddpm1000"], r["excess_fid_ratio_to_ddpm1000"] = raw, excess
        table.append([r["sampler"], r["steps"], r["evaluations"], r["fid"], r["kid"], r["accuracy"],
                      "-" if raw is None else f"{raw:.2f}", "-" if excess is None else f"{excess:.2f}",
                      r["seconds"]])
    print_table(["sampler", "steps", "evals", "FID", "KID", "accuracy", "FID/DDPM", "excess/DDPM", "s"],
                table, title=f"quality vs steps, N = {n} per row, s = 1 (real-vs-real FID floor {floor:.2f})")
    ddim50 = next((r for r in rows if r["sampler"] == "ddim" and r["steps"] == 50), None)
    verdict = None
    if ref and ddim50:
        verdict = {"ddim50_over_ddpm1000": ddim50["fid"] / ref["fid"], "target": 1.3,
                   "met": ddim50["fid"] / ref["fid"] <= 1.3,
                   "excess_ratio": ddim50["excess_fid_ratio_to_ddpm1000"]}
        print(f"DDIM-50 (η=0) / DDPM-1000 FID: {verdict['ddim50_over_ddpm1000']:.2f} "
              f"(target ≤ 1.3: {'met' if verdict['met'] else 'NOT met'}); "
              f"excess over the floor: {verdict['excess_ratio']}")
    print(f"sampling and scoring: {total:.0f} s")
    write_json("quality_vs_steps", {"rows": rows, "fid_floor_real_vs_real": floor, "verdict": verdict,
                                    "checkpoint": pipeline.run_dir(preset).name}, args)


if __name__ == "__main__":
    sys.exit(main())
