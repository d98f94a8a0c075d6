"""Does the sharded train step scale over devices, and over processes?

Two ways to use a machine's cores, both on the library's train step as ``fit`` runs it
(``make_mesh()`` over every device, state replicated, the global batch of 128 split along
``"data"``):
  * ONE process with N forced host devices (``--devices 1,2,4``;
    ``XLA_FLAGS=--xla_force_host_platform_device_count=N``, what ``diffusion-jax train`` does);
  * P processes on localhost joined by JAX's distributed runtime (``--processes 2``; gloo
    CPU collectives, as ``diffusion-jax train --num-processes P`` and
    ``tests/test_distributed.py``), ``--devices-per-process`` devices each (default 1).
    Every process builds the same global batch and hands over only its own rows.
XLA_FLAGS must be set before jax is imported, so every variant runs in its own worker
subprocess(es) (this script with ``--worker N``). Workers stay up and answer "time k
steps" requests (all members of a cluster get the request together: a step is a
collective), so the parent interleaves the variants (1, 2, 4, 2p, 1, 2, 4, 2p, ...) in
the same run. Same seed, model and global batch everywhere, so the first-step losses
must agree (the sharded computation is the same computation); the bench checks that.

On a machine with C cores, N > C devices (or processes) share the cores: the point is
that the code path scales, not that 4 devices on 2 cores are faster than 2.

Run: ``python bench/scaling.py [--quick] [--devices 1,2,4] [--processes 2] [--model mnist]``.
Writes outputs/bench/scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C

MARK = "@scaling "
CLUSTER_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "XLA_FLAGS")


def worker(n: int, model: str, batch: int, cluster: str | None):
    """``n`` local devices; with ``cluster`` = "PORT:P:ID", process ID of a P-process cluster."""
    C.force_host_devices(n)
    if cluster:
        from diffusion_jax import distributed

        port, count, pid = cluster.split(":")
        distributed.initialize(f"127.0.0.1:{port}", int(count), int(pid), timeout_s=300)
    import jax
    import train_throughput as T

    devs = jax.devices()  # every process's devices
    if len(jax.local_devices()) != n:
        raise SystemExit(f"worker asked for {n} devices, XLA gave {len(jax.local_devices())}")
    step = T.OurStep(T.MODELS[model][1], batch, devs)
    _reply({"devices": len(devs), "processes": jax.process_count(), "compile_s": step.compile_s,
            "first_step_s": step.first_s, "first_loss": step.loss, "params": step.params})
    for line in sys.stdin:
        k = int(line)
        if k <= 0:
            break
        _, seconds = C.timed(lambda k=k: step.run(k))
        _reply({"seconds": seconds})
    if cluster:  # leave together: a member whose coordinator vanishes first aborts
        jax.distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reply(payload: dict) -> None:
    """A worker's answer: one marked line (gloo writes its own lines to stdout too)."""
    print(MARK + json.dumps(payload), flush=True)


def _pump(stream, replies: queue.Queue) -> None:
    """Thread: a worker's marked lines into ``replies``, anything else on to stderr; None at EOF."""
    for line in stream:
        if line.startswith(MARK):
            replies.put(json.loads(line[len(MARK):]))
        else:
            sys.stderr.write(line)
    replies.put(None)


class Variant:
    """The worker processes of one variant: P processes with n local devices each."""

    def __init__(self, processes: int, n: int, args, env):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(n), "--model", args.model,
               "--batch", str(args.batch)]
        port = _free_port()
        cluster = [[] if processes == 1 else ["--cluster", f"{port}:{processes}:{i}"] for i in range(processes)]
        self.procs, self.replies = [], []  # started together: a cluster's coordinator waits for every member
        for extra in cluster:
            self.procs.append(subprocess.Popen(cmd + extra, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                               text=True, env=env))
            self.replies.append(queue.Queue())
            threading.Thread(target=_pump, args=(self.procs[-1].stdout, self.replies[-1]), daemon=True).start()
        self.timeout_s = args.timeout
        self.setup = [self._answer(i) for i in range(processes)]

    def _answer(self, i: int) -> dict:
        try:
            reply = self.replies[i].get(timeout=self.timeout_s)
        except queue.Empty:
            reply = None
        if reply is None:
            code = self.procs[i].poll()
            raise RuntimeError(f"worker {i} of {len(self.procs)} " + ("is silent after "
                               f"{self.timeout_s:.0f} s" if code is None else f"exited with code {code}"))
        return reply

    def time(self, k: int) -> float:
        for p in self.procs:  # every member at once: each step is a collective
            p.stdin.write(f"{k}\n")
            p.stdin.flush()
        return max(self._answer(i)["seconds"] for i in range(len(self.procs)))

    def close(self):
        for p in self.procs:  # tell every member first: they shut the cluster down together
            try:
                p.stdin.write("0\n")
                p.stdin.flush()
            except OSError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _counts(text: str, flag: str, parser) -> list[int]:
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        parser.error(f"{flag}: expected a comma list of integers, got {text!r}")


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,2,4", help="one-process variants: device counts (default 1,2,4)")
    parser.add_argument("--processes", default="2",
                        help="multi-process variants: process counts on localhost ('' = none; default 2)")
    parser.add_argument("--devices-per-process", type=int, default=1, help="devices of each process (default 1)")
    parser.add_argument("--model", default="mnist", help="train_throughput model name (default mnist)")
    parser.add_argument("--batch", type=int, default=128, help="global batch (default 128)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--steps", type=int, default=2, help="steps per timing (default 2)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for a worker's answer")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,2 devices and 2 processes, "
                                                             "2 rounds of 1 step")
    parser.add_argument("--no-peer", action="store_true", help="accepted for `make bench`; no peer column here")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cluster", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return args, []
    if args.quick:
        args.devices, args.processes, args.repeats, args.steps = "1,2", "2", 2, 1
    layouts = [(1, n) for n in _counts(args.devices, "--devices", parser)]
    layouts += [(p, args.devices_per_process) for p in _counts(args.processes, "--processes", parser)]
    bad = [p * n for p, n in layouts if p < 1 or n < 1 or args.batch % (p * n)]
    if bad or not layouts:
        parser.error(f"--devices / --processes x --devices-per-process: {bad or 'none given'}; each total must be "
                     f">= 1 and divide --batch {args.batch}")
    for flag in ("repeats", "steps"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    return args, layouts


def _label(p: int, n: int) -> str:
    return f"{n} dev" if p == 1 else f"{p} proc x {n} dev"


def main(argv=None):
    args, layouts = _parse(argv)
    if args.worker is not None:
        return worker(args.worker, args.model, args.batch, args.cluster)
    print(f"sharded train step ({args.model}, global batch {args.batch}): {[_label(*v) for v in layouts]}, "
          f"{os.cpu_count()} cores; {args.repeats} interleaved rounds of {args.steps} step(s)")
    env = {k: v for k, v in os.environ.items() if k not in CLUSTER_ENV}
    env["JAX_PLATFORMS"] = "cpu"
    variants = {}
    try:
        for p, n in layouts:  # one variant after another: compilations of variants do not overlap
            variants[_label(p, n)] = Variant(p, n, args, env)
        times = C.interleaved({name: (lambda v=v: v.time(args.steps)) for name, v in variants.items()},
                              args.repeats)
    finally:
        for v in variants.values():
            v.close()
    return report(args, layouts, variants, times)


def report(args, layouts, variants, times):
    losses = {name: [s["first_loss"] for s in v.setup] for name, v in variants.items()}
    flat = [x for ls in losses.values() for x in ls]
    max_loss_diff = max(flat) - min(flat)
    if max_loss_diff > 1e-4 * max(1.0, abs(flat[0])):
        raise AssertionError(f"first-step losses differ across layouts: {losses}")
    results, rows, base = {"model": args.model, "batch": args.batch, "max_first_loss_diff": max_loss_diff,
                           "rows": []}, [], None
    for p, n in layouts:
        name = _label(p, n)
        setup = variants[name].setup[0]
        s = C.summarize([t / args.steps for t in times[name]])
        ips = C.rate(s, args.batch)
        base = base or ips["median"]
        row = {"variant": name, **setup, "processes": p, "devices_per_process": n, **s, "images_per_s": ips,
               "speedup_vs_first_median": ips["median"] / base,
               "compile_s_per_process": [x["compile_s"] for x in variants[name].setup]}
        results["rows"].append(row)
        rows.append([name, max(row["compile_s_per_process"]), s["min_s"], s["median_s"], ips["best"],
                     ips["median"], row["speedup_vs_first_median"], setup["first_loss"]])
    C.print_table(["layout", "compile s", "min s/step", "median s/step", "img/s best", "img/s median",
                   f"x {_label(*layouts[0])}", "first loss"], rows,
                  title=f"\nSharded train step: forced host devices and localhost processes ({os.cpu_count()} cores)")
    C.write_json("scaling", results, args, out=args.out)
    return results


if __name__ == "__main__":
    main()
