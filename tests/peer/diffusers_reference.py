"""Reference numbers from diffusers (PyTorch), run in the separate peer environment.

Usage: <peer python> diffusers_reference.py OUT.npz
Writes schedules, add_noise, get_velocity, one DDPM step and DDIM steps for fixed inputs
that the test passes back in through the same seeds. Nothing here imports diffusion_jax.
"""

import sys

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler

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

np.savez(sys.argv[1], **out)
