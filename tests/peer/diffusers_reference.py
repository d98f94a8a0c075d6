"""Reference numbers from diffusers (PyTorch), run in the separate peer environment.

Usage: <peer python> diffusers_reference.py OUT.npz
Writes schedules, add_noise, get_velocity, one DDPM step and DDIM steps for fixed inputs
that the test passes back in through the same seeds, and DPMSolverMultistepScheduler's grids
(spacings, Karras sigmas) and whole runs on replayed model outputs (each run's configuration
is saved beside it as JSON). Nothing here imports diffusion_jax.
"""

import json
import sys

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler

out = {}
rng = np.random.default_rng(0)
x0 = rng.standard_normal((6, 4, 4, 2)).astype(np.float32)
eps = rng.standard_normal((6, 4, 4, 2)).astype(np.float32)
pred = rng.standard_normal((6, 4, 4, 2)).astype(np.float32)
noise = rng.standard_normal((6, 4, 4, 2)).astype(np.float32)
t = np.array([0, 1, 10, 500, 998, 999], np.int64)
out.update(x0=x0, eps=eps, pred=pred, noise=noise, t=t)

for sched in ["linear", "scaled_linear", "squaredcos_cap_v2"]:
    for zero in [False, True]:
        # Stable Diffusion's betas for scaled_linear (diffusers' defaults are DDPM's).
        betas = dict(beta_start=0.00085, beta_end=0.012) if sched == "scaled_linear" else {}
        s = DDPMScheduler(num_train_timesteps=1000, beta_schedule=sched, rescale_betas_zero_snr=zero, **betas)
        tag = f"{sched}{'_zero' if zero else ''}"
        out[f"betas/{tag}"] = s.betas.numpy()
        out[f"alpha_bars/{tag}"] = s.alphas_cumprod.numpy()

s = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
tt = torch.from_numpy(t)
out["add_noise"] = s.add_noise(torch.from_numpy(x0), torch.from_numpy(eps), tt).numpy()
out["velocity"] = s.get_velocity(torch.from_numpy(x0), torch.from_numpy(eps), tt).numpy()

# DDPM step (fixed_small variance, no clipping): recover the mean by regenerating the
# same noise from the same seed.
for ptype in ["epsilon", "sample", "v_prediction"]:
    s = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False, prediction_type=ptype)
    means, variances = [], []
    for i, ti in enumerate(t):
        g = torch.Generator().manual_seed(int(ti))
        prev = s.step(torch.from_numpy(pred[i : i + 1]), int(ti), torch.from_numpy(eps[i : i + 1]), generator=g).prev_sample
        g = torch.Generator().manual_seed(int(ti))
        z = torch.randn(pred[i : i + 1].shape, generator=g)
        var = s._get_variance(int(ti)) if ti > 0 else torch.tensor(0.0)
        means.append((prev - var**0.5 * z).numpy()[0])
        variances.append(float(var))
    out[f"ddpm_mean/{ptype}"] = np.stack(means)
    out[f"ddpm_var/{ptype}"] = np.array(variances)

# DDIM steps with leading spacing (prev = next grid point) for eta 0 and 0.5.
for ptype in ["epsilon", "sample", "v_prediction"]:
    for eta in [0.0, 0.5]:
        s = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                          prediction_type=ptype, steps_offset=0, timestep_spacing="leading")
        s.set_timesteps(50)
        steps = []
        for i, ti in enumerate([980, 500, 20, 0]):
            steps.append(s.step(torch.from_numpy(pred[i : i + 1]), ti, torch.from_numpy(eps[i : i + 1]), eta=eta,
                                variance_noise=torch.from_numpy(noise[i : i + 1])).prev_sample.numpy()[0])
        out[f"ddim/{ptype}/{eta}"] = np.stack(steps)

for spacing in ["leading", "trailing", "linspace"]:
    for n in [1, 3, 7, 10, 50, 999, 1000]:
        s = DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing, steps_offset=0)
        s.set_timesteps(n)
        out[f"grid/{spacing}/{n}"] = s.timesteps.numpy()

for shift in [1.0, 3.0]:
    for n in [4, 28]:
        s = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
        s.set_timesteps(n)
        out[f"flow_sigmas/{shift}/{n}"] = s.sigmas.numpy()

# DPM-Solver++: the timestep and sigma grids of each spacing (n chosen where diffusers'
# trailing grid has n entries; see timesteps.dpm_timesteps for the others).
for spacing in ["leading", "trailing", "linspace"]:
    for n in [1, 2, 3, 7, 10, 20, 50, 100, 999]:
        s = DPMSolverMultistepScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
        s.set_timesteps(n)
        out[f"dpm_grid/{spacing}/{n}"] = s.timesteps.numpy()
        out[f"dpm_sigmas/{spacing}/{n}"] = s.sigmas.numpy()

# Karras sigmas, the unrounded sigma -> t map, and the rounded grid diffusers uses.
for sched in ["linear", "scaled_linear", "squaredcos_cap_v2"]:
    betas = dict(beta_start=0.00085, beta_end=0.012) if sched == "scaled_linear" else {}
    for n in [1, 2, 5, 10, 25, 50]:
        s = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule=sched, use_karras_sigmas=True, **betas)
        s.set_timesteps(n)
        out[f"karras_grid/{sched}/{n}"] = s.timesteps.numpy()
        out[f"karras_sigmas/{sched}/{n}"] = s.sigmas.numpy()
        # set_timesteps' own float64 steps: sigmas from alpha_bar, Karras levels, sigma -> t.
        train_sigmas = (((1 - s.alphas_cumprod) / s.alphas_cumprod) ** 0.5).numpy()
        karras = s._convert_to_karras(in_sigmas=np.flip(train_sigmas).copy(), num_inference_steps=n)
        out[f"karras_t/{sched}/{n}"] = np.array([s._sigma_to_t(sig, np.log(train_sigmas)) for sig in karras])
        out[f"karras_sigmas64/{sched}/{n}"] = karras

# Whole runs: x_T and one fixed model output per step, replayed into the scheduler.
# name: (prediction_type, solver_order, scheduler options, number of steps)
DPM_RUNS = {
    "eps_2m": ("epsilon", 2, {}, 10),
    "v_2m": ("v_prediction", 2, {}, 10),
    "x0_2m_leading": ("sample", 2, dict(timestep_spacing="leading"), 7),
    "eps_3m": ("epsilon", 3, {}, 10),
    "v_3m_trailing": ("v_prediction", 3, dict(timestep_spacing="trailing"), 20),
    "eps_2m_karras": ("epsilon", 2, dict(use_karras_sigmas=True), 12),
    "v_3m_karras": ("v_prediction", 3, dict(use_karras_sigmas=True), 16),
    "eps_1_karras": ("epsilon", 1, dict(use_karras_sigmas=True), 10),
    "eps_2m_sigma_min": ("epsilon", 2, dict(final_sigmas_type="sigma_min"), 10),
    "eps_2m_sigma_min_long": ("epsilon", 2, dict(final_sigmas_type="sigma_min"), 20),
    "eps_3m_euler_at_final": ("epsilon", 3, dict(final_sigmas_type="sigma_min", euler_at_final=True), 20),
    "v_2m_no_lower_final": ("v_prediction", 2, dict(final_sigmas_type="sigma_min", lower_order_final=False), 8),
    "v_3m_zero_snr": ("v_prediction", 3, dict(rescale_betas_zero_snr=True, timestep_spacing="trailing"), 10),
    "flow_2m": ("flow_prediction", 2, dict(use_flow_sigmas=True, flow_shift=3.0), 8),
}
for name, (ptype, order, opts, n) in DPM_RUNS.items():
    s = DPMSolverMultistepScheduler(num_train_timesteps=1000, prediction_type=ptype, solver_order=order, **opts)
    s.set_timesteps(n)
    r = np.random.default_rng(1)
    x = r.standard_normal((3, 4, 4, 2)).astype(np.float32)
    outputs = r.standard_normal((n, 3, 4, 4, 2)).astype(np.float32)
    out[f"dpm_run/{name}/x_T"], out[f"dpm_run/{name}/outputs"] = x, outputs
    out[f"dpm_run/{name}/config"] = np.array(json.dumps(dict(prediction_type=ptype, solver_order=order, **opts)))
    out[f"dpm_run/{name}/timesteps"], out[f"dpm_run/{name}/sigmas"] = s.timesteps.numpy(), s.sigmas.numpy()
    xs, sample = [], torch.from_numpy(x)
    for i, t in enumerate(s.timesteps):
        sample = s.step(torch.from_numpy(outputs[i]), t, sample).prev_sample
        xs.append(sample.numpy())
    out[f"dpm_run/{name}/xs"] = np.stack(xs)

# Whole deterministic DDIM runs on replayed outputs, landing on alpha_bar = 1 or alpha_bar_0.
for tag, one in [("alpha_one", True), ("sigma_min", False)]:
    s = DDIMScheduler(num_train_timesteps=1000, clip_sample=False, steps_offset=0, set_alpha_to_one=one)
    s.set_timesteps(6)
    r = np.random.default_rng(2)
    x = r.standard_normal((3, 4, 4, 2)).astype(np.float32)
    outputs = r.standard_normal((6, 3, 4, 4, 2)).astype(np.float32)
    xs, sample = [], torch.from_numpy(x)
    for i, t in enumerate(s.timesteps):
        sample = s.step(torch.from_numpy(outputs[i]), t, sample, eta=0.0).prev_sample
        xs.append(sample.numpy())
    out[f"ddim_run/{tag}/x_T"], out[f"ddim_run/{tag}/outputs"] = x, outputs
    out[f"ddim_run/{tag}/xs"] = np.stack(xs)

np.savez(sys.argv[1], **out)
