"""Does the sharded train step scale over 1, 2, 4 (forced) host devices?

``XLA_FLAGS=--xla_force_host_platform_device_count=N`` must be set before jax is imported,
so each device count runs in its own subprocess (this script with ``--worker N``). The
workers stay up and answer "time k steps" requests, so the parent can interleave their
timings (1, 2, 4, 1, 2, 4, ...) in the same run. Each worker runs the library's step
exactly as ``fit`` does: ``make_mesh()`` over all its devices, state replicated, the
global batch (128, divisible by every N) sharded along ``"data"``. Same seed, model and
batch in every worker, so the first-step losses must agree (the sharded computation is
the same computation); the bench checks that.

On a machine with C cores, N > C devices share the cores: the point is that the code
path scales, not that 4 devices on 2 cores are faster than 2.

Run: ``python bench/scaling.py [--quick] [--devices 1,2,4] [--model mnist]``.
Writes outputs/bench/scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C


def worker(n: int, model: str, batch: int):
    C.force_host_devices(n)
    import jax
    import train_throughput as T

    devs = jax.devices()
    if len(devs) != n:
        raise SystemExit(f"worker asked for {n} devices, XLA gave {len(devs)}")
    step = T.OurStep(T.MODELS[model][1], batch, devs)
    print(json.dumps({"devices": n, "compile_s": step.compile_s, "first_step_s": step.first_s,
                      "first_loss": step.loss, "params": step.params}), flush=True)
    for line in sys.stdin:
        k = int(line)
        if k <= 0:
            break
        _, seconds = C.timed(lambda k=k: step.run(k))
        print(json.dumps({"seconds": seconds}), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,2,4", help="comma list of device counts (default 1,2,4)")
    parser.add_argument("--model", default="mnist", help="train_throughput model name (default mnist)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--steps", type=int, default=2, help="steps per timing (default 2)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,2 devices, 2 rounds of 1 step")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker(args.worker, args.model, args.batch)
    if args.quick:
        args.devices, args.repeats, args.steps = "1,2", 2, 1
    counts = [int(c) for c in args.devices.split(",") if c.strip()]
    bad = [c for c in counts if c < 1 or args.batch % c]
    if bad:
        parser.error(f"--devices: {bad} must be >= 1 and divide --batch {args.batch}")
    print(f"sharded train step ({args.model}, batch {args.batch}) on {counts} forced host devices, "
          f"{os.cpu_count()} cores; {args.repeats} interleaved rounds of {args.steps} step(s)")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs, setup = {}, {}
    try:
        for n in counts:  # started one after another: compilations do not overlap
            p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", str(n), "--model",
                                  args.model, "--batch", str(args.batch)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, env=env)
            procs[n] = p
            line = p.stdout.readline()
            if not line:
                raise RuntimeError(f"worker with {n} devices failed (exit code {p.wait()})")
            setup[n] = json.loads(line)

        def request(n):
            def run():
                procs[n].stdin.write(f"{args.steps}\n")
                procs[n].stdin.flush()
                return json.loads(procs[n].stdout.readline())["seconds"]
            return run

        times = C.interleaved({n: request(n) for n in counts}, args.repeats)
    finally:
        for p in procs.values():
            if p.poll() is None:
                try:
                    p.stdin.write("0\n")
                    p.stdin.flush()
                    p.wait(timeout=30)
                except (OSError, subprocess.TimeoutExpired):
                    p.kill()
    losses = [setup[n]["first_loss"] for n in counts]
    max_loss_diff = max(losses) - min(losses)
    if max_loss_diff > 1e-4 * max(1.0, abs(losses[0])):
        raise AssertionError(f"first-step losses differ across device counts: {dict(zip(counts, losses))}")
    results, rows = {"model": args.model, "batch": args.batch, "max_first_loss_diff": max_loss_diff,
                     "rows": []}, []
    base = None
    for n in counts:
        s = C.summarize([t / args.steps for t in times[n]])
        ips = C.rate(s, args.batch)
        base = base or ips["median"]
        row = {"devices": n, **setup[n], **s, "images_per_s": ips, "speedup_vs_first_median": ips["median"] / base}
        results["rows"].append(row)
        rows.append([n, setup[n]["compile_s"], s["min_s"], s["median_s"], ips["best"], ips["median"],
                     row["speedup_vs_first_median"], setup[n]["first_loss"]])
    C.print_table(["devices", "compile s", "min s/step", "median s/step", "img/s best", "img/s median",
                   f"x {counts[0]} dev", "first loss"], rows,
                  title=f"\nSharded train step over forced host devices ({os.cpu_count()} cores)")
    C.write_json("scaling", results, args, out=args.out)
    return results


if __name__ == "__main__":
    main()
