"""The sampler registry, the sampling front end, and what a sampler costs.

* :data:`SAMPLERS`: the one table of sampler names. Each entry is a function with the
  uniform signature of :mod:`diffusion_jax.samplers`, its denoiser evaluations per step,
  and the paths it runs on. :func:`make_grid` builds the grid a name implies.
* :func:`sample`: x_T from the key, then the sampler, in chunks of rows: row ``i`` always
  uses ``fold_in(key, i)``, so an image depends on (key, row) only, never on the chunk size.
* Budgets (plain arithmetic): :func:`denoiser_evaluations` per sample,
  :func:`sequential_calls` (the latency count) and :func:`route_budget` for deployment routes.

A study names a sampler with options as ``"ddim(eta=1)"`` (see :func:`parse_spec`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from diffusion_jax import dpm_solver, flow, grids
from diffusion_jax._checks import check_choice, check_shape
from diffusion_jax.denoisers import Denoiser
from diffusion_jax.samplers import initial_noise, sample_ddim, sample_heun
from diffusion_jax.schedules import Schedule

__all__ = ["SamplerSpec", "SAMPLERS", "check_sampler", "make_grid", "sample", "parse_spec",
           "denoiser_evaluations", "sequential_calls", "route_budget"]


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    fn: Callable  # fn(key, denoiser, x, grid, cond=None, *, row_offset=0, return_trajectory=False)
    stages: int  # denoiser evaluations per step (a 2-stage sampler's last step costs 1)
    paths: tuple[str, ...]  # grids it runs on: "vp" (diffusion), "flow"
    summary: str


SAMPLERS: dict[str, SamplerSpec] = {
    "ddpm": SamplerSpec(sample_ddim, 1, ("vp",),
                        "ancestral DDPM, posterior variance; all T steps, or the respaced chain for fewer"),
    "ddim": SamplerSpec(sample_ddim, 1, ("vp", "flow"),
                        "DDIM eq. 12; eta = 0 deterministic, eta = 1 the respaced DDPM (diffusion only)"),
    "sigma_hat": SamplerSpec(sample_ddim, 1, ("vp",),
                             "DDIM paper's larger variance: posterior mean plus sqrt(1 - ab / ab_next) noise"),
    "euler": SamplerSpec(sample_ddim, 1, ("vp", "flow"),
                         "Euler on the probability-flow ODE (the same update as deterministic DDIM)"),
    "heun": SamplerSpec(sample_heun, 2, ("vp", "flow"),
                        "Heun, 2nd order: in t on the flow path, in sigma = s / a on a diffusion path (EDM)"),
    "dpmpp_2m": SamplerSpec(dpm_solver.sample_dpmpp_2m, 1, ("vp", "flow"),
                            "DPM-Solver++(2M): 2nd-order multistep on the data prediction (Lu et al. 2022)"),
    "dpmpp_3m": SamplerSpec(dpm_solver.sample_dpmpp_3m, 1, ("vp", "flow"),
                            "DPM-Solver++(3M): 3rd-order multistep on the data prediction"),
}

#: Grid options each sampler accepts, besides ``num_steps``.
_OPTIONS = {"ddpm": {"spacing"}, "ddim": {"eta", "spacing", "shift", "karras", "final"},
            "sigma_hat": {"spacing"}, "euler": {"spacing", "shift", "karras"},
            "heun": {"spacing", "shift", "karras"},
            "dpmpp_2m": {"spacing", "shift", "karras", "final"}, "dpmpp_3m": {"spacing", "shift", "karras", "final"}}

#: Samplers whose default diffusion grid is diffusers' DPM-Solver grid (:func:`grids.dpm_grid`,
#: "linspace"); the others default to its DDIM grid (:func:`grids.ddim_grid`, "leading").
_DPM_GRID = {"dpmpp_2m", "dpmpp_3m"}


def check_sampler(name: str, path: str | None = None) -> SamplerSpec:
    """The registry entry for ``name``; with ``path``, also check it runs there."""
    check_choice(name, SAMPLERS, name="sampler")
    spec = SAMPLERS[name]
    if path is not None and path not in spec.paths:
        kind = {"vp": "a diffusion", "flow": "a rectified-flow"}[path]
        ok = [n for n, s in SAMPLERS.items() if path in s.paths]
        raise ValueError(f"sampler {name!r} does not run on {kind} model; expected one of {ok}")
    return spec


def _check_steps(steps, name="num_steps"):
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"{name} must be a positive integer, got {steps!r}")
    return int(steps)


def make_grid(name: str, num_steps: int | None = None, *, schedule: Schedule | None = None, eta: float = 0.0,
              spacing: str | None = None, shift: float = 1.0, karras: bool = False, final: str | None = None,
              times=None) -> grids.Grid:
    """The grid sampler ``name`` runs on: a diffusion ``schedule``, or flow times when it is None.

    ``num_steps`` (default: 50, or all T for ``ddpm``); ``eta`` (``ddim`` only);
    ``spacing`` ("leading", "trailing", "linspace"), placed as diffusers' scheduler for
    the sampler places it: DPM-Solver++ on :func:`grids.dpm_grid` (default "linspace",
    so ``make_grid("dpmpp_2m", n, schedule=s)`` is ``DPMSolverMultistepScheduler``'s
    default grid), the rest on :func:`grids.ddim_grid` (default "leading");
    ``shift`` / ``times`` (flow); ``karras``: Karras et al.'s sigma spacing (rho = 7,
    :func:`grids.karras_grid`), which sets its own timesteps; ``final``: "zero" (the
    default, land on the data) or "sigma_min" (stop at alpha_bar_0).
    """
    path = "flow" if schedule is None else "vp"
    check_sampler(name, path)
    given = {"eta": eta != 0.0, "shift": shift != 1.0, "karras": bool(karras), "spacing": spacing is not None,
             "final": final is not None}
    bad = sorted(k for k, on in given.items() if on and k not in _OPTIONS[name])
    if bad:
        raise ValueError(f"sampler {name!r} takes no {', '.join(bad)} option (it accepts {sorted(_OPTIONS[name])})")
    if path == "flow":
        if eta != 0.0 or karras or final is not None:
            raise ValueError("flow sampling is a deterministic ODE on fixed times: eta, karras and final do not apply")
        if times is None:
            times = flow.time_grid(_check_steps(50 if num_steps is None else num_steps), shift)
        return grids.flow_grid(times)
    if shift != 1.0 or times is not None:
        raise ValueError("shift and times are for flow models; a diffusion grid comes from the schedule")
    T = schedule.num_timesteps
    if name == "ddpm" and num_steps in (None, T):
        return grids.ddpm_grid(schedule)
    n = _check_steps(50 if num_steps is None else num_steps)
    if n > T:
        raise ValueError(f"num_steps ({n}) cannot exceed the schedule's T = {T}")
    final = "zero" if final is None else final
    if karras:
        if spacing is not None:
            raise ValueError("karras=True places its own timesteps (Karras et al.'s sigmas); spacing does not apply")
        return grids.karras_grid(schedule, n, final=final, eta=eta)
    if name in _DPM_GRID:
        return grids.dpm_grid(schedule, n, spacing="linspace" if spacing is None else spacing, final=final)
    noise = "sigma_hat" if name == "sigma_hat" else "eta"
    return grids.ddim_grid(schedule, n, eta=1.0 if name == "ddpm" else eta, spacing=spacing or "leading",
                           noise=noise, final=final)


def _spread(devices, denoiser, x, c):
    """Rows split over ``devices`` (padded to a multiple of their count), the network copied
    to each: one SPMD program, every core busy. Rows are independent, so this changes where
    a row is computed, not what it is."""
    mesh = Mesh(np.asarray(devices), ("data",))
    rows, pad = NamedSharding(mesh, P("data")), (-x.shape[0]) % len(devices)
    if pad:
        x = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])  # dropped afterwards
        c = None if c is None else jnp.concatenate([c, jnp.repeat(c[-1:], pad, axis=0)])
    return (jax.device_put(denoiser, NamedSharding(mesh, P())), jax.device_put(x, rows),
            None if c is None else jax.device_put(c, rows))


def sample(name: str, key, denoiser: Denoiser, shape, cond=None, *, grid: grids.Grid | None = None,
           schedule: Schedule | None = None, num_steps: int | None = None, x_T=None, chunk_size: int | None = None,
           row_offset: int = 0, devices=None, **grid_options):
    """Samples ``(N, ...)`` for ``shape = (N, ...)`` with sampler ``name``.

    The grid is ``grid``, or :func:`make_grid` ``(name, num_steps, schedule=...,
    **grid_options)``. Rows are drawn ``chunk_size`` at a time (default: all at once); row
    ``i`` starts from ``initial_noise(key, ...)``'s row ``row_offset + i`` and uses
    ``fold_in(key, row_offset + i)`` for its noise, whatever the chunking. ``devices``
    (e.g. ``jax.local_devices()``): split each chunk's rows over them.
    """
    shape = check_shape(shape)
    if grid is None:
        grid = make_grid(name, num_steps, schedule=schedule, **grid_options)
    spec = check_sampler(name, grid.path)
    n = shape[0]
    if chunk_size is None:
        chunk_size = n
    if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if x_T is not None and tuple(np.shape(x_T)) != shape:
        raise ValueError(f"x_T must have the sampling shape {shape}, got {tuple(np.shape(x_T))}")
    if cond is not None and np.shape(cond)[:1] != (n,):
        raise ValueError(f"cond must have one row per sample ({n}), got shape {np.shape(cond)}")
    out = []
    for start in range(0, n, int(chunk_size)):
        stop = min(start + int(chunk_size), n)
        rows = (stop - start,) + shape[1:]
        x = initial_noise(key, rows, row_offset + start) if x_T is None else jnp.asarray(x_T[start:stop])
        c = None if cond is None else jnp.asarray(cond[start:stop])
        d = denoiser
        if devices is not None and len(devices) > 1:
            d, x, c = _spread(devices, denoiser, x, c)
        out.append(spec.fn(key, d, x, grid, c, row_offset=row_offset + start)[: stop - start])
    return out[0] if len(out) == 1 else jnp.concatenate(out)


_SPEC = re.compile(r"^\s*([a-z_0-9]+)\s*(?:\((.*)\))?\s*$")


def parse_spec(text: str) -> tuple[str, dict]:
    """``"ddim(eta=1)"`` -> ``("ddim", {"eta": 1.0})``; a bare name has no options."""
    m = _SPEC.match(str(text))
    if not m:
        raise ValueError(f"sampler spec must look like 'ddim' or 'ddim(eta=1)', got {text!r}")
    name, args = m.group(1), m.group(2)
    check_sampler(name)
    opts = {}
    for part in filter(None, (p.strip() for p in (args or "").split(","))):
        key, _, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not key or not value:
            raise ValueError(f"sampler option must be key=value, got {part!r} in {text!r}")
        opts[key] = {"true": True, "false": False}.get(value.lower(), None)
        if opts[key] is None:
            opts[key] = float(value) if re.fullmatch(r"[-+0-9.eE]+", value) else value
    return name, opts


# ----------------------------------------------------------------------------------------
# budgets


def denoiser_evaluations(sampler: str, num_steps: int, *, predictions_per_step: int = 1) -> int:
    """Denoiser predictions one sample costs: stages x ``predictions_per_step``.

    ``num_steps``: the steps the sampler runs (1000 for the full DDPM chain). A 2-stage
    sampler (Heun) evaluates twice per step except on the last one (``2 S - 1``).
    ``predictions_per_step``: 2 for classifier-free guidance (a conditional and an
    unconditional prediction; batched CFG computes both in ONE call, see
    :func:`sequential_calls`), 1 without it or for a guidance-distilled model.
    """
    spec = check_sampler(sampler)
    steps = _check_steps(num_steps, "num_steps")
    if isinstance(predictions_per_step, bool) or int(predictions_per_step) != predictions_per_step \
            or predictions_per_step < 1:
        raise ValueError(f"predictions_per_step must be a positive integer (1, or 2 with CFG), "
                         f"got {predictions_per_step!r}")
    stages = spec.stages * steps - (spec.stages - 1)
    return stages * int(predictions_per_step)


def sequential_calls(sampler: str, num_steps: int, *, guidance: bool = False, batched_cfg: bool = True) -> int:
    """Network calls that must run one after another for one sample (the latency count).

    Stages depend on each other and cannot overlap. With guidance and ``batched_cfg`` (how
    :func:`diffusion_jax.guidance.guided_denoiser` works) both predictions share a call.
    """
    per_stage = 2 if (guidance and not batched_cfg) else 1
    return denoiser_evaluations(sampler, num_steps, predictions_per_step=per_stage)


def route_budget(routes: Iterable[dict]) -> list[dict]:
    """Evaluation budget per deployment route.

    Each route is a dict with ``name``, ``steps``, ``predictions_per_step`` and optionally
    ``sampler`` (default "ddim"). Returns one dict per route: ``route``,
    ``denoiser_evaluations`` and ``quality_gate_required``, always True: a cheaper route is
    acceptable only after its samples pass the same quality check as the expensive one.
    """
    out = []
    for i, route in enumerate(routes):
        missing = {"name", "steps", "predictions_per_step"} - set(route)
        if missing:
            raise ValueError(f"route {i} lacks {sorted(missing)}; expected keys name, steps, "
                             f"predictions_per_step (and optionally sampler)")
        out.append({"route": route["name"],
                    "denoiser_evaluations": denoiser_evaluations(route.get("sampler", "ddim"), route["steps"],
                                                                 predictions_per_step=route["predictions_per_step"]),
                    "quality_gate_required": True})
    return out
