"""The demo's guided sampler as ONE compiled program, and what it costs in FLOPs (for efficiency.py).

:class:`SamplerProgram` builds what ``pipeline.sample`` runs for the ``mnist-unet`` preset
(its denoiser with CFG, its schedule, a registry sampler on the registry's grid) around a
freshly initialised model, compiles the sampler function of :data:`sampling.SAMPLERS`
ahead of time with the rows split over ``devices`` (as ``sampling.sample(...,
devices=...)`` places them) and times calls of that compiled program.

FLOPs, two independent counts (a multiply-add is 2 FLOPs in both):
  * XLA's cost analysis of the whole compiled program. XLA counts a ``while`` loop's body
    ONCE, whatever its trip count (checked below: a 10-step scan of a matmul reports one
    matmul), so the sampler's total is that count x steps;
  * the model's forward FLOPs per image (``models.forward_flops``, the number the demo
    records) x 2N rows per call (batched CFG: conditional and null rows in one call) x steps.
:func:`count_flops` decides which reading of XLA's number holds and raises if neither
agrees with the forward count to within ``FLOP_TOLERANCE``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import _common as C
from diffusion_jax import pipeline, samplers, sampling, schedules
from diffusion_jax.distributed import make_mesh
from diffusion_jax.models import forward_flops
from diffusion_jax.train import create_train_state

PRESET = "mnist-unet"
FLOP_TOLERANCE = 0.25  # XLA's count includes the sampler's own arithmetic and the CFG mix


def parse_samplers(text: str) -> list[tuple[str, int]]:
    """``"ddim:50,dpmpp_2m:20"`` -> ``[("ddim", 50), ("dpmpp_2m", 20)]``; one-line errors."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, steps = part.partition(":")
        if name not in sampling.SAMPLERS or not steps.isdigit() or int(steps) < 1:
            raise ValueError(f"--samplers: expected NAME:STEPS items with NAME in {sorted(sampling.SAMPLERS)} "
                             f"and STEPS >= 1, got {part!r}")
        out.append((name, int(steps)))
    return out


def xla_counts_loop_once() -> bool:
    """True when XLA's cost analysis counts a scan's body once (not x its trip count)."""
    def ten_matmuls(x, w):
        return jax.lax.scan(lambda h, _: (jnp.tanh(h @ w), None), x, None, length=10)[0]

    x = jnp.ones((32, 32), jnp.float32)
    flops = C.compiled_flops(jax.jit(ten_matmuls).lower(x, x).compile())
    one = 2.0 * 32 ** 3
    if flops is None:
        raise RuntimeError("XLA reported no FLOP count for a scan of matmuls")
    if abs(flops / one - 1) < 0.1:
        return True
    if abs(flops / (10 * one) - 1) < 0.1:
        return False
    raise RuntimeError(f"XLA counted {flops:.4g} FLOPs for 10 matmuls of {one:.4g}: neither once nor 10 times")


def _jitter(key, params, scale: float = 0.02):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return tree.unflatten([p + scale * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)])


@functools.lru_cache(maxsize=2)
def _forward_flops_per_image(preset) -> float:
    """One image's forward FLOPs (XLA's count of the batch-1 forward, as the demo records it)."""
    hwc = pipeline.model_input_shape(preset)
    return forward_flops(pipeline.build_model(preset), jnp.zeros((1,) + hwc), jnp.zeros((1,), jnp.int32),
                         jnp.zeros((1,), jnp.int32))


class SamplerProgram:
    """``pipeline.sample``'s sampler for ``images`` guided images as one compiled program.

    ``run()`` computes all images once (blocking, returns None). Attributes: ``compile_s``,
    ``first_s`` (first call, excluded from statistics), ``program_flops`` (XLA's count of
    this program; per device when ``devices`` has several), ``forward_flops_per_image``,
    ``out`` (the first call's images, NumPy).
    """

    def __init__(self, name: str, steps: int, images: int, devices, seed: int = 0):
        preset = pipeline.get_preset(PRESET)
        if images % len(devices):
            raise ValueError(f"--sample-images {images} must split evenly over {len(devices)} devices")
        self.name, self.steps, self.images, self.devices = name, steps, images, len(devices)
        self.guidance_scale = preset.guidance_scale
        model = pipeline.build_model(preset, seed)
        hwc = pipeline.model_input_shape(preset)
        self.forward_flops_per_image = _forward_flops_per_image(preset)
        state = create_train_state(model, preset.train)
        # A fresh U-Net's zero-initialised modulation ignores time and label; jitter every
        # weight so the equality checks see a network whose output depends on both.
        state = state.replace(ema_params=_jitter(jax.random.key(seed + 1), state.ema_params))
        self.denoiser = pipeline.denoiser(state, preset)  # CFG at the preset's scale, as the demo samples
        self.spec = sampling.check_sampler(name, preset.path)
        self.grid = sampling.make_grid(name, steps, schedule=schedules.make_schedule(preset.schedule))
        self.key = jax.random.key(seed)
        labels = np.repeat(np.arange(pipeline.null_label(preset)), -(-images // pipeline.null_label(preset)))
        self.labels = jnp.asarray(labels[:images], jnp.int32)  # (N,) 0,0,...,1,1,... as the demo's
        x = samplers.initial_noise(self.key, (images,) + hwc)  # (N, H, W, C)
        args = (self.key, self.denoiser, x, self.grid, self.labels)
        if len(devices) == 1:
            self.args = jax.device_put(args, devices[0])
        else:  # sampling._spread's placement: rows over "data", everything else copied
            mesh = make_mesh(devices)
            rep, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
            self.args = jax.device_put(args, (rep, rep, rows, rep, rows))

        def program(key, denoiser, x, grid, cond):  # what sampling.sample calls per chunk
            return self.spec.fn(key, denoiser, x, grid, cond)

        self.compiled, self.compile_s = C.timed(lambda: jax.jit(program).lower(*self.args).compile())
        self.program_flops = C.compiled_flops(self.compiled)
        out, self.first_s = C.timed(lambda: self.compiled(*self.args))
        self.out = np.asarray(out)

    def run(self) -> None:
        jax.block_until_ready(self.compiled(*self.args))

    def matches_library(self, rows: int, devices) -> float:
        """Max |difference| of the first ``rows`` images against ``sampling.sample`` itself."""
        ref = sampling.sample(self.name, self.key, self.denoiser, (rows,) + self.out.shape[1:],
                              self.labels[:rows], grid=self.grid, devices=devices)
        return float(np.max(np.abs(np.asarray(ref) - self.out[:rows])))


def count_flops(program: SamplerProgram, loop_once: bool) -> dict:
    """The two FLOP counts of one single-device program and the total used for its rate."""
    rows_per_step = 2 * program.images if program.guidance_scale != 1.0 else program.images
    by_forward = program.forward_flops_per_image * rows_per_step * program.steps
    xla = program.program_flops
    by_xla = None if xla is None else xla * (program.steps if loop_once else 1)
    out = {"xla_program_flops": xla, "xla_counts_loop_body_once": loop_once,
           "forward_flops_per_image": program.forward_flops_per_image, "rows_per_network_call": rows_per_step,
           "flops_by_forward": by_forward, "flops_by_xla": by_xla,
           "xla_over_forward": None if by_xla is None else by_xla / by_forward}
    if by_xla is not None and abs(out["xla_over_forward"] - 1) > FLOP_TOLERANCE:
        raise AssertionError(f"{program.name}-{program.steps}: XLA's count ({by_xla:.4g}) and forward x rows x steps "
                             f"({by_forward:.4g}) disagree by more than {FLOP_TOLERANCE:.0%}")
    # The rate uses XLA's count when there is one (it includes the sampler's own arithmetic).
    out["flops"] = by_xla if by_xla is not None else by_forward
    return out
