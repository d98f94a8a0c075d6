"""Shared helpers of the benchmarks: timing statistics, interleaving, machine info, JSON, peer.

Every bench script answers one question and
  * times its variants *interleaved* (A, B, C, A, B, C, ...), so a burst of load from
    another process hits every variant alike and the ratios stay meaningful even where
    the absolute numbers do not;
  * excludes the first call (compilation / warm-up) from the statistics and reports its
    time separately;
  * prints min and median, and writes ``outputs/bench/<name>.json`` with the schema of
    :func:`write_json` (machine info included).

The PyTorch / diffusers side runs in the separate ``.venv-peer`` environment
(``make bench-peer``) as a subprocess that answers JSON commands on stdin/stdout
(:class:`Peer`), so its repetitions interleave with ours in the same run. PyTorch and
diffusers are never dependencies of the package. Without ``.venv-peer`` the peer columns
are skipped with a message.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT_DIR = ROOT / "outputs" / "bench"
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
SCHEMA_KEYS = ("bench", "schema", "created_utc", "machine", "args", "results", "provenance")
SCHEMA_VERSION = 1


def force_host_devices(n: int | None = None) -> int:
    """Ask XLA for ``n`` CPU devices (default: one per core, as the CLI does); before jax import.

    An ``XLA_FLAGS`` already set by the caller wins. Returns the device count requested.
    """
    n = int(n or os.cpu_count() or 1)
    if "jax" in sys.modules:
        raise RuntimeError("force_host_devices must run before jax is imported")
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    return n


def summarize(times: Sequence[float]) -> dict:
    """``{"n", "min_s", "median_s", "runs_s"}`` of repeated timings in seconds."""
    runs = [float(t) for t in times]
    if not runs:
        raise ValueError("summarize: times must hold at least one timing, got none")
    if any(not t >= 0 for t in runs):  # also catches NaN
        raise ValueError(f"summarize: timings must be non-negative seconds, got {runs}")
    return {"n": len(runs), "min_s": min(runs), "median_s": statistics.median(runs), "runs_s": runs}


def rate(summary: dict, items: float) -> dict:
    """Items per second at the best (min time) and the median timing of ``summary``."""
    return {"best": items / summary["min_s"], "median": items / summary["median_s"]}


def interleaved(variants: dict[str, Callable[[], float | None]], repeats: int) -> dict[str, list[float]]:
    """Run every variant once per round, ``repeats`` rounds, in turn: A, B, A, B, ...

    A variant is a callable that either returns its own elapsed seconds (e.g. a timing
    reported by a subprocess) or ``None``, in which case its wall time here is taken.
    The callables must already be warmed up (compiled). Returns the timings per variant.
    """
    if repeats < 1:
        raise ValueError(f"interleaved: repeats must be >= 1, got {repeats}")
    out: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            reported = fn()
            out[name].append(float(reported) if reported is not None else time.perf_counter() - t0)
    return out


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    """:func:`diffusion_jax.timing.timed` (imported late: XLA_FLAGS must be set before jax loads)."""
    from diffusion_jax import timing

    return timing.timed(fn)


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(peer: dict | None = None) -> dict:
    """CPU model, cores, load, Python / jax / jaxlib / flax versions, XLA devices and flags."""
    info = {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "xla_flags": os.environ.get("XLA_FLAGS", "")}
    try:
        info["load_avg_1_5_15"] = list(os.getloadavg())
    except OSError:
        pass
    if "jax" in sys.modules:
        import flax
        import jax
        import jaxlib

        info.update(jax=jax.__version__, jaxlib=jaxlib.__version__, flax=flax.__version__,
                    devices=[str(d) for d in jax.devices()])
    if peer:
        info["peer"] = peer
    return info


def write_json(name: str, results, args=None, *, peer: dict | None = None, out: str | None = None) -> pathlib.Path:
    """Write ``{"bench", "schema", "created_utc", "machine", "args", "results", "provenance"}`` as JSON.

    ``out`` defaults to ``outputs/bench/<name>.json``. ``args`` may be an argparse
    namespace or a dict. Returns the path written.
    """
    from diffusion_jax import provenance  # not at module level: it imports jax (see force_host_devices)

    path = pathlib.Path(out) if out else OUT_DIR / f"{name}.json"
    payload = {"bench": name, "schema": SCHEMA_VERSION,
               "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "machine": machine_info(peer), "args": vars(args) if hasattr(args, "__dict__") else (args or {}),
               "results": results,
               # every file the project writes says what wrote it (diffusion_jax.provenance)
               "provenance": provenance.record(kind="benchmark results", command=" ".join(sys.argv))}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def print_table(headers: Sequence[str], rows: Sequence[Sequence], title: str | None = None) -> str:
    """Print (and return) a plain-text table; floats get 3 decimals below 10, else 1."""
    def fmt(v):
        if isinstance(v, float):
            if math.isnan(v):
                return "nan"
            return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 1e4 else f"{v:.3g}"
        return "-" if v is None else str(v)
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ([title] if title else []) + ["  ".join(h.rjust(w) for h, w in zip(headers, widths)),
                                          "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def matmul_peak_jax(n: int = 2048, repeats: int = 5, device=None) -> dict:
    """Measured f32 matmul throughput of one ``n x n`` product in jax (GFLOP/s)."""
    import jax
    import jax.numpy as jnp

    dev = device or jax.devices()[0]
    a = jax.device_put(jax.random.normal(jax.random.key(0), (n, n), jnp.float32), dev)
    b = jax.device_put(jax.random.normal(jax.random.key(1), (n, n), jnp.float32), dev)
    mm = jax.jit(jnp.matmul)
    jax.block_until_ready(mm(a, b))
    def run():
        jax.block_until_ready(mm(a, b))

    runs = interleaved({"mm": run}, repeats)["mm"]
    s = summarize(runs)
    flops = 2.0 * n ** 3
    return {"n": n, **s, "gflops_best": flops / s["min_s"] / 1e9, "gflops_median": flops / s["median_s"] / 1e9}


def compiled_flops(compiled) -> float | None:
    """FLOPs XLA's cost analysis reports for a compiled program (None if unavailable)."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - backend without cost analysis
        return None
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    flops = (analysis or {}).get("flops")
    return float(flops) if flops is not None and flops > 0 else None


class PeerUnavailable(RuntimeError):
    """``.venv-peer`` is missing or its server failed to start."""


class Peer:
    """The PyTorch/diffusers side: ``bench/peer/torch_server.py`` under ``.venv-peer``.

    ``peer.call(op, **kw)`` sends one JSON command and returns the JSON reply; the
    server runs until :meth:`close`. Construction raises :class:`PeerUnavailable` with
    a message saying how to build the environment.
    """

    def __init__(self, threads: int | None = None, python: pathlib.Path | str | None = None):
        py = pathlib.Path(python or PEER_PYTHON)
        if not py.exists():
            raise PeerUnavailable(f"{py} not found: run `make bench-peer` to build the PyTorch/diffusers "
                                  "environment; the diffusers column is skipped")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("XLA_FLAGS", None)
        self.proc = subprocess.Popen([str(py), str(ROOT / "bench" / "peer" / "torch_server.py"),
                                      "--threads", str(threads or os.cpu_count() or 1)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        try:
            self.info = self.call("hello")
        except Exception as err:
            self.close()
            raise PeerUnavailable(f"the peer server under {py} did not start ({err}); "
                                  "the diffusers column is skipped") from err

    def call(self, op: str, **kw):
        if self.proc.poll() is not None:
            raise PeerUnavailable(f"peer server exited with code {self.proc.returncode}")
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise PeerUnavailable(f"peer server closed its output during {op!r} "
                                  f"(exit code {self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"peer {op!r} failed: {reply['error']}")
        return reply

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_peer(enabled: bool = True, threads: int | None = None) -> Peer | None:
    """A :class:`Peer`, or None with the reason printed (missing env or ``--no-peer``)."""
    if not enabled:
        print("peer: skipped (--no-peer)")
        return None
    try:
        peer = Peer(threads=threads)
    except PeerUnavailable as err:
        print(f"peer: {err}")
        return None
    print(f"peer: torch {peer.info['torch']}, diffusers {peer.info['diffusers']}, "
          f"{peer.info['threads']} threads")
    return peer
