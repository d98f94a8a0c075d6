"""Quality against sampler steps on the demo's MNIST model (issue 7, "quality vs steps").

Question: how much sample quality do fewer denoiser evaluations cost? Rows: DDPM-1000
(the reference), DDIM η = 0 and η = 1 and DPM-Solver++(2M) at 10/20/50/100 steps (and
DPM-Solver++ at 5), rectified-flow Euler at the same evaluation counts (the shipped
``mnist-unet-flow``), and the distilled students (lesson 12) at 8, 4 and 2 steps, which
take the guidance scale as an input (one prediction per step at every scale). Every row
samples the same labels from the same key, by default with the plain conditional model
(s = 1, one prediction per step; ``--guidance-scale 3`` for the guided frontier, where the
teacher rows cost two predictions per step), and is scored with the reference MNIST
classifier: domain FID and KID against held-out digits, class accuracy.

FID is biased upward at small N, which pushes every ratio toward 1 and flatters the
short samplers. So the bench also measures the real-vs-real FID floor at the same N
(training digits with the samples' class counts against the same held-out reference,
several random draws: mean and spread, ``studies.fid_floor``) and reports the ratio of the *excess* FID (FID − floor)
next to the raw ratio. Two rows whose FIDs differ by less than two floor spreads are
"within noise"; the bench says so for DPM-Solver++ at 10 and 20 steps against DDIM-50. Target (issue 7): DDIM-50 / DDPM-1000
FID ≤ 1.3 (the DDIM paper's CIFAR-10 ratio is 4.67 / 3.17 ≈ 1.47).

    python bench/quality_vs_steps.py            # N = 250 per row, ~8 min on 2 cores
    python bench/quality_vs_steps.py --quick    # N = 32, steps 10 and 50, DDPM skipped: a smoke run
    python bench/quality_vs_steps.py --guidance-scale 3 --num-samples 500 --no-ddpm   # the guided frontier
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import force_host_devices, print_table, write_json

STEPS = (10, 20, 50, 100)
#: Rows per step count: deterministic and stochastic DDIM, and DPM-Solver++(2M).
SAMPLERS = ("ddim", "ddim(eta=1)", "dpmpp_2m")
DPM_EXTRA_STEPS = (5,)  # DPM-Solver++ also below the DDIM step counts
#: Distilled students by steps (diffusion_jax.presets.STUDENTS), sampled on their trailing grids.
STUDENT_SAMPLER = "ddim(spacing=trailing)"


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-samples", type=int, default=250, help="images per row (default 250)")
    p.add_argument("--steps", type=int, nargs="+", default=list(STEPS), help="DDIM / Euler step counts")
    p.add_argument("--no-ddpm", action="store_true", help="skip the 1,000-step DDPM reference row")
    p.add_argument("--quick", action="store_true", help="smoke run: N = 32, steps 10 and 50, no DDPM")
    p.add_argument("--seed", type=int, default=11, help="sampling key (default 11)")
    p.add_argument("--guidance-scale", type=float, default=1.0,
                   help="CFG scale s for every row (default 1: the conditional model, one prediction per step)")
    p.add_argument("--floor-draws", type=int, default=5, help="random real draws for the FID floor (default 5)")
    p.add_argument("--no-peer", action="store_true", help="accepted for `make bench`; this bench has no peer column")
    args = p.parse_args(argv)
    if args.quick:
        args.num_samples, args.steps, args.no_ddpm = 32, [10, 50], True
    if args.num_samples < 2:
        p.error(f"--num-samples must be >= 2 (FID needs a covariance), got {args.num_samples}")
    return args


def _gap_verdict(gap: float, noise: float) -> str:
    """Within noise, or which way it falls outside: a fewer-step sampler *better* than DDIM-50 is not a miss."""
    if abs(gap) <= noise:
        return "within noise"
    return "better than DDIM-50 beyond noise" if gap < 0 else "NOT within noise (worse than DDIM-50)"


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv=None):
    args = _parse(argv)
    force_host_devices(1)  # sampling runs on one device; keep the numbers comparable
    import jax

    from diffusion_jax import data, metrics, pipeline, presets, studies

    # The shipped reference model and classifier load in seconds (--quick only samples less).
    preset = pipeline.get_preset("mnist-unet")
    state = pipeline.train(preset)
    classifier = metrics.reference("mnist")
    train, test = data.load_dataset("mnist", "train"), data.load_dataset("mnist", "test")
    real_feats, _ = metrics.features_and_logits(classifier, test.images)  # (M, D) FID reference
    n = args.num_samples
    key = jax.random.key(args.seed)

    # The floor: what FID says about N *real* digits, and its spread over draws (noise at this N).
    floor_stats = studies.fid_floor(jax.random.key(3), classifier, train.images, real_feats, n,
                                    repeats=1 if args.quick else args.floor_draws, labels=train.labels)
    floor = floor_stats["mean"]

    t0 = time.perf_counter()
    common = {"num_samples": n, "guidance_scale": args.guidance_scale, "progress": True}
    rows = studies.quality_vs_steps(key, state, preset, classifier, real_feats, steps=tuple(args.steps),
                                    samplers=SAMPLERS, **common)
    extra = tuple(s for s in DPM_EXTRA_STEPS if s not in args.steps)
    if extra and not args.quick:
        rows += studies.quality_vs_steps(key, state, preset, classifier, real_feats, steps=extra,
                                         samplers=("dpmpp_2m",), **common)
    if not args.no_ddpm:
        rows += studies.quality_vs_steps(key, state, preset, classifier, real_feats, steps=(1000,),
                                         samplers=("ddpm",), **common)
    for steps, name in sorted(presets.STUDENTS.items(), reverse=True):
        try:
            student_preset = pipeline.get_preset(name)
            student = pipeline.load_trained(student_preset)
        except FileNotFoundError as err:
            print(f"student rows skipped: {err}")
            break
        for r in studies.quality_vs_steps(key, student, student_preset, classifier, real_feats, steps=(steps,),
                                          samplers=(STUDENT_SAMPLER,), **common):
            rows.append({**r, "sampler": f"student-{steps}"})
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
                table, title=f"quality vs steps, N = {n} per row, s = {args.guidance_scale:g} "
                             f"(real-vs-real FID floor {floor:.2f} ± {floor_stats['std']:.2f})")
    ddim50 = next((r for r in rows if r["sampler"] == "ddim" and r["steps"] == 50), None)
    verdict = None
    if ref and ddim50:
        verdict = {"ddim50_over_ddpm1000": ddim50["fid"] / ref["fid"], "target": 1.3,
                   "met": ddim50["fid"] / ref["fid"] <= 1.3,
                   "excess_ratio": ddim50["excess_fid_ratio_to_ddpm1000"]}
        print(f"DDIM-50 (η=0) / DDPM-1000 FID: {verdict['ddim50_over_ddpm1000']:.2f} "
              f"(target ≤ 1.3: {'met' if verdict['met'] else 'NOT met'}); "
              f"excess over the floor: {_fmt(verdict['excess_ratio'])}")
    noise = 2 * floor_stats["std"]
    dpm_vs_ddim50 = []
    for steps in (10, 20):
        dpm = next((r for r in rows if r["sampler"] == "dpmpp_2m" and r["steps"] == steps), None)
        if ddim50 and dpm and noise > 0:
            gap = dpm["fid"] - ddim50["fid"]
            dpm_vs_ddim50.append({"steps": steps, "evaluations": dpm["evaluations"], "fid_gap": gap,
                                  "within_noise": abs(gap) <= noise})
            print(f"DPM-Solver++(2M) {steps} steps ({dpm['evaluations']} evaluations) vs DDIM-50: FID "
                  f"{dpm['fid']:.2f} vs {ddim50['fid']:.2f}, gap {gap:+.2f}; two floor spreads = {noise:.2f}: "
                  f"{_gap_verdict(gap, noise)}")
    print(f"sampling and scoring: {total:.0f} s")
    write_json("quality_vs_steps", {"rows": rows, "fid_floor_real_vs_real": floor, "fid_floor": floor_stats,
                                    "guidance_scale": args.guidance_scale, "verdict": verdict,
                                    "dpm_vs_ddim50": dpm_vs_ddim50,
                                    "checkpoint": pipeline.run_dir(preset).name}, args)


if __name__ == "__main__":
    sys.exit(main())
