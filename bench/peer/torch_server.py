"""The PyTorch / diffusers side of the benchmarks, run under ``.venv-peer/bin/python``.

A small server: one JSON command per line on stdin, one JSON reply per line on stdout,
so the bench process can interleave these timings with its own (A, B, A, B, ...).
Nothing here imports diffusion_jax, and nothing is downloaded: models are built from a
config with random weights.

Commands (``{"op": ..., ...}``):
  hello                        -> torch / diffusers versions, threads
  build name target_params channels attention_levels in_channels image num_classes
                               -> a diffusers UNet2DModel whose width is searched so its
                                  parameter count is closest to ``target_params``
  train_init name batch lr     -> AdamW (+ clip 1.0, EMA 0.995), one warm-up step
  train name steps             -> seconds for ``steps`` train steps
  sample_init name n steps eta -> DDIMScheduler loop, one warm-up run
  sample name seed             -> seconds for one DDIM run of ``n`` images
  matmul n repeats             -> f32 matmul GFLOP/s
  quit
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

STATE: dict = {}


def unet_config(widths, attention_levels, in_channels, image, num_classes, heads=4, groups=8):
    """UNet2DModel kwargs mirroring our U-Net: one resnet per level down, attention where ours has it."""
    levels = len(widths)
    down = tuple("AttnDownBlock2D" if i in attention_levels else "DownBlock2D" for i in range(levels))
    up = tuple("AttnUpBlock2D" if i in attention_levels else "UpBlock2D" for i in reversed(range(levels)))
    return {"sample_size": tuple(image), "in_channels": in_channels, "out_channels": in_channels,
            "layers_per_block": 1, "block_out_channels": tuple(widths), "down_block_types": down,
            "up_block_types": up, "norm_num_groups": groups, "attention_head_dim": widths[-1] // heads,
            "num_class_embeds": None if num_classes is None else num_classes + 1}


def n_params(model):
    return int(sum(p.numel() for p in model.parameters()))


def build(name, target_params, channels, attention_levels, in_channels, image, num_classes, groups=8):
    """Scale our widths by a common factor (multiples of ``groups``), keep the closest count."""
    best = None
    for f in np.linspace(0.5, 1.3, 33):
        widths = tuple(max(groups, round(c * f / groups) * groups) for c in channels)
        if widths[-1] % 4 or (best and widths == best[1]):
            continue
        torch.manual_seed(0)
        model = UNet2DModel(**unet_config(widths, attention_levels, in_channels, image, num_classes, groups=groups))
        n = n_params(model)
        if best is None or abs(n - target_params) < abs(best[0] - target_params):
            best = (n, widths, model)
    n, widths, model = best
    STATE[name] = {"model": model, "num_classes": num_classes, "in_channels": in_channels, "image": image}
    return {"params": n, "block_out_channels": list(widths),
            "config": unet_config(widths, attention_levels, in_channels, image, num_classes, groups=groups)}


def train_init(name, batch, lr=1e-3, seed=0):
    s = STATE[name]
    model = s["model"]
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand((batch, s["in_channels"], *s["image"]), generator=g) * 2 - 1  # (B, C, H, W)
    labels = torch.randint(0, s["num_classes"] or 1, (batch,), generator=g)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="v_prediction")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    ema = [p.detach().clone() for p in params]

    def step():
        # The same work as our train step: random t and noise, 10% null labels, v target,
        # MSE, backward, global-norm clip 1.0, AdamW, EMA 0.995.
        t = torch.randint(0, 1000, (batch,))
        noise = torch.randn_like(x0)
        x_t = sched.add_noise(x0, noise, t)
        target = sched.get_velocity(x0, noise, t)
        cond = None
        if s["num_classes"]:
            cond = torch.where(torch.rand(batch) < 0.1, s["num_classes"], labels)
        loss = F.mse_loss(model(x_t, t, class_labels=cond).sample, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, params, 1.0 - 0.995)
        return loss

    s["step"] = step
    t0 = time.perf_counter()
    loss = step()
    return {"first_s": time.perf_counter() - t0, "loss": float(loss.detach())}


def train(name, steps=1):
    step = STATE[name]["step"]
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    return {"seconds": time.perf_counter() - t0, "loss": float(loss.detach())}


def sample_init(name, n=64, steps=50, eta=1.0):
    s = STATE[name]
    model = s["model"]
    model.eval()
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                          timestep_spacing="leading", steps_offset=0)
    labels = torch.zeros((n,), dtype=torch.long) if s["num_classes"] else None

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        sched.set_timesteps(steps)
        with torch.inference_mode():
            x = torch.randn((n, s["in_channels"], *s["image"]), generator=g)  # (N, C, H, W)
            for t in sched.timesteps:
                out = model(x, t, class_labels=labels).sample
                x = sched.step(out, t, x, eta=eta, generator=g).prev_sample
        return x

    s["sample"] = run
    t0 = time.perf_counter()
    x = run(0)
    return {"first_s": time.perf_counter() - t0, "finite": bool(torch.isfinite(x).all())}


def sample(name, seed=1):
    t0 = time.perf_counter()
    STATE[name]["sample"](seed)
    return {"seconds": time.perf_counter() - t0}


def matmul(n=2048, repeats=5):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn((n, n), generator=g), torch.randn((n, n), generator=g)
    a @ b
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        runs.append(time.perf_counter() - t0)
    flops = 2.0 * n ** 3
    return {"n": n, "min_s": min(runs), "median_s": statistics.median(runs),
            "gflops_best": flops / min(runs) / 1e9, "gflops_median": flops / statistics.median(runs) / 1e9}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import diffusers

    ops = {"build": build, "train_init": train_init, "train": train, "sample_init": sample_init,
           "sample": sample, "matmul": matmul,
           "hello": lambda: {"torch": torch.__version__, "diffusers": diffusers.__version__,
                             "threads": torch.get_num_threads()}}
    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints (warnings) must not break the protocol
    for line in sys.stdin:
        msg = json.loads(line)
        op = msg.pop("op")
        if op == "quit":
            break
        try:
            reply = ops[op](**msg)
        except Exception as err:  # noqa: BLE001 - reported to the bench, which raises
            reply = {"error": f"{type(err).__name__}: {err}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
