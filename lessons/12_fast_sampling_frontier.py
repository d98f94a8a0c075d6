# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 12 — The fast-sampling frontier: better solvers and distilled students
#
# Lesson 07 ended with a budget: a guided DDIM route at 50 steps costs 100 network
# predictions per image, and the chapter's "interactive" route allows six. There are two
# ways to close that gap, and this lesson measures both on the course's MNIST model:
#
# 1. **A better solver, same network.** DDIM is the first-order (Euler) solver of the
#    probability-flow ODE. DPM-Solver++ (Lu et al., 2022) solves the same ODE with a
#    formula that is exact for its linear part and second order for the rest, at one
#    network call per step. It needs no training.
# 2. **A different network.** *Guidance distillation* (Meng et al., 2023) trains a student
#    that takes the guidance scale as an input, so one prediction replaces CFG's two.
#    *Progressive distillation* (Salimans & Ho, 2022) then trains, round after round, a
#    student that does in one step what its teacher does in two. Our students sample in
#    8, 4 and 2 steps.
#
# Then we put everything on one chart: quality (FID, KID, class accuracy with the
# reference classifier) against denoiser evaluations and wall time, from DDPM's 1,000
# steps down to the 2-step student: the *frontier* of what each budget can buy.

# %%
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from diffusion_jax import (
    data,
    denoisers,
    distill,
    dpm_solver,
    grids,
    metrics,
    pipeline,
    presets,
    sampling,
    schedules,
    studies,
    timesteps,
    toy,
    viz,
)
from diffusion_jax.demo import fast_mode
from diffusion_jax.exercises import check, check_answer

FAST = fast_mode()
print("fast mode:", FAST)

sched = schedules.linear(1000)
mix = toy.default_mixture()
exact = denoisers.denoiser(mix.denoiser(sched, "v"), "v")  # the MSE-optimal v-predictor of the toy


def rms(a, b):
    return float(jnp.sqrt(jnp.mean((jnp.asarray(a) - jnp.asarray(b)) ** 2)))


# %% [markdown]
# ## 1. DPM-Solver++: solve the linear part exactly
#
# On the path x_t = a·x₀ + s·ε, deterministic sampling follows an ODE. Change the time
# variable to λ = log(a/s) (half the log-SNR, which grows from −∞ at pure noise to +∞ at
# the data) and the ODE becomes *semi-linear*: a term proportional to x itself, plus a
# term that involves the network's clean-image estimate x̂₀. The linear term can be
# integrated exactly, so one step from λ to λ' = λ + h reads
#
#   x' = (s'/s)·x − a'·(e^(−h) − 1)·D,
#
# where D stands for "the x̂₀ the step should use". With D = x̂₀ at the start of the step
# this is exactly deterministic DDIM: DDIM is the first-order member of the family. The
# second-order multistep solver, DPM-Solver++(2M), keeps the x̂₀ of the previous step,
# draws a line through the two estimates and reads it half a step ahead:
#
#   D = x̂₀ + (h / h_prev)·(x̂₀ − x̂₀_prev) / 2.
#
# No extra network call: the second-order information is recycled from the last step.
# (`dpm_solver.dpmpp_2m_update` is that one step; the sampler `dpmpp_2m` runs it in a loop,
# with a first-order start and diffusers' rules for the last steps.)
#
# The order shows on the exact toy. To see it cleanly we need a smooth problem: a grid of
# continuous noise levels (Karras et al.'s σ = s/a from 20 down to 0.02, not landing on the
# data, where the mixture's narrow clusters make the ODE stiff), the toy's exact x̂₀ at each
# level, and a very fine third-order solve as the right answer. Doubling the steps should
# halve DDIM's error and quarter DPM-Solver++(2M)'s. We report the median over points:
# a point that starts on the boundary between two clusters may end in either under any
# finite step size and would dominate a mean.

# %%
def toy_x0_at_sigma(x, sigma, cond):
    """The toy's exact clean-data estimate at VE noise level sigma (passed as the network's time)."""
    a = 1.0 / jnp.sqrt(1.0 + sigma**2)
    return mix.posterior_x0(x, a, sigma * a)


exact_sigma = denoisers.denoiser(toy_x0_at_sigma, "x0")


def karras_levels(n):
    sig = timesteps.karras_sigmas(0.02, 20.0, n + 1)  # n + 1 levels: n steps
    return grids.sigma_grid(np.asarray(sig[:-1], np.float32), sig)


x_T = jax.random.normal(jax.random.key(0), (512, 2))
fine = sampling.sample("dpmpp_3m", jax.random.key(0), exact_sigma, x_T.shape, grid=karras_levels(1024), x_T=x_T)
solver_steps = [16, 32, 64, 128]
errors = {}
for name in ("ddim", "dpmpp_2m", "dpmpp_3m"):
    errors[name] = []
    for n in solver_steps:
        out = sampling.sample(name, jax.random.key(0), exact_sigma, x_T.shape, grid=karras_levels(n), x_T=x_T)
        errors[name].append(float(jnp.median(jnp.linalg.norm(out - fine, axis=1))))
    ratios = [a / b for a, b in zip(errors[name][:-1], errors[name][1:])]
    print(f"{name:9s} median error: " + ", ".join(f"{e:.1e}" for e in errors[name])
          + "   error ratio per doubling: " + ", ".join(f"{r:.1f}" for r in ratios))

fig, ax = plt.subplots(figsize=(5, 3.4))
for name, style in (("ddim", "o-"), ("dpmpp_2m", "s-"), ("dpmpp_3m", "^-")):
    ax.loglog(solver_steps, errors[name], style, label=name)
ax.set_xlabel("steps (= denoiser evaluations)")
ax.set_ylabel("median distance to the fine solve")
ax.set_title("exact 2-D toy, Karras levels 20 -> 0.02, same x_T", fontsize=9)
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# One step by hand: the sampler's second step is `dpmpp_2m_update` applied to the point the
# first step reached, with the two x̂₀ estimates it recorded.

# %%
grid = sampling.make_grid("dpmpp_2m", 4, schedule=sched)
_, traj = dpm_solver.multistep_sample(exact, x_T[:5], grid, return_trajectory=True)  # integer timesteps
lam = dpm_solver.log_snr_half(grid.a, grid.s)  # (4,)
by_hand = dpm_solver.dpmpp_2m_update(traj.x[1], traj.x0[1], traj.x0[0], grid.a[1], grid.s[1], grid.a_next[1],
                                     grid.s_next[1], lam[1] - lam[0])
print("timesteps:", np.asarray(grid.t).tolist(), f"; step 2 by hand vs the sampler: max |diff| = "
      f"{float(jnp.max(jnp.abs(by_hand - traj.x[2]))):.1e}")

# %% [markdown]
# ## 2. Guidance distillation: the scale becomes an input
#
# Classifier-free guidance asks the network twice per step, with and without the label,
# and extrapolates: uncond + s·(cond − uncond). Meng et al. (2023) train a *student* to
# produce that extrapolated output directly, in one call. The student is our teacher's
# U-Net with one addition: an embedding of s added to the timestep embedding
# (`UNetConfig(guidance_embed=True)`). Its last layer starts at zero, so the student begins
# as an exact copy of the conditional teacher, whatever s it is given. Training
# (`distill.guidance_loss`) draws an image, a timestep, noise and a scale s ∈ [1, 5] per
# row, and regresses the student's output at s onto the teacher's guided output.
#
# How close is it? On noisy held-out digits, we compare the student at s with the teacher's
# CFG at s, and measure the error relative to what guidance changes (the distance between
# the teacher's guided and plain conditional outputs). s = 7 lies outside the training
# range.

# %%
preset = pipeline.get_preset("mnist-unet")
teacher = pipeline.train(preset)
guided_preset = pipeline.get_preset("mnist-unet-guided")
guided_student = pipeline.train(guided_preset)
test = data.load_dataset("mnist", "test")
rows = np.random.default_rng(0).permutation(len(test.images))[: 32 if FAST else 256]
x0 = jnp.asarray(data.to_float(test.images[rows]))  # (n, 28, 28, 1)
labels = jnp.asarray(test.labels[rows], jnp.int32)
t = jnp.asarray(np.random.default_rng(1).integers(0, 1000, len(rows)), jnp.int32)
ab = sched.alpha_bars[t][:, None, None, None]
x_t = jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * jax.random.normal(jax.random.key(2), x0.shape)
output = jax.jit(lambda d, x, t, y: d.output(x, t, y))  # one compilation per model: the scale is a leaf
plain = output(pipeline.denoiser(teacher, preset, 1.0), x_t, t, labels)
print(f"{'s':>4} {'guidance changes the output by':>31} {'student error':>14} {'relative':>9}")
for s in (1.0, 2.0, 3.0, 5.0, 7.0):
    cfg = output(pipeline.denoiser(teacher, preset, s), x_t, t, labels)  # CFG: two predictions
    one = output(pipeline.denoiser(guided_student, guided_preset, s), x_t, t, labels)  # one prediction
    change, err = rms(cfg, plain), rms(one, cfg)
    rel = f"{err / change:9.2f}" if change > 0 else f"{'-':>9}"
    print(f"{s:4.1f} {change:31.3f} {err:14.3f} {rel}" + ("   (outside [1, 5])" if s > 5 else ""))

# %% [markdown]
# At s = 1 guidance changes nothing and the student should match the plain teacher; for
# s in the training range the student's error should be a fraction of what guidance
# changes, and outside the range nothing was trained, so expect it to grow there.
#
# ## 3. Progressive distillation: two teacher steps become one
#
# Salimans & Ho's round (their Algorithm 2): the student will sample with n deterministic
# DDIM steps, the teacher with 2n, on grids where every other teacher point is a student
# point (`distill.student_grid`, trailing spacing). For a noisy x_t at a student point:
#
# 1. the teacher takes its two steps, x_t → x_mid → x_next;
# 2. the target is the x̂₀ that makes **one** DDIM step from x_t land exactly on x_next
#    (`distill.one_step_x0`). A DDIM step is linear in x̂₀, so that is one division.
#
# The student is trained on this target with the v-loss, which weighs x̂₀ errors by SNR + 1
# (it stays finite at almost pure noise, where an ε-student would blow up), starting from
# its teacher's weights. On the exact toy, two teacher steps (orange) and one step with
# the distillation target (green) end at the same points:

# %%
grid2 = distill.check_nested(sched, 2)  # the teacher's 4 steps; the student's 2
g_student = distill.student_grid(sched, 2)
print("teacher timesteps:", np.asarray(grid2.t).tolist(), "  student timesteps:", np.asarray(g_student.t).tolist())
pts = jax.random.normal(jax.random.key(3), (6, 2)) * 0.5
k = jnp.ones((6,), jnp.int32)  # student step 1 of 2: t = 499 -> the data
xk = jnp.sqrt(sched.alpha_bars[499]) * mix.sample(jax.random.key(4), 6)[0] + jnp.sqrt(1 - sched.alpha_bars[499]) * pts
target, x_next = distill.progressive_target(exact, xk, k, grid2)
x0_teacher, _ = exact(xk, g_student.t[k], g_student.a[k], g_student.s[k])
one_step = distill.ddim_to(target, xk, g_student.a[1], g_student.s[1], g_student.a_next[1], g_student.s_next[1])
plain_step = distill.ddim_to(x0_teacher, xk, g_student.a[1], g_student.s[1], g_student.a_next[1], g_student.s_next[1])
print(f"one step with the target lands on the teacher's two-step result: max |diff| = "
      f"{float(jnp.max(jnp.abs(one_step - x_next))):.1e}; one plain DDIM step misses it by "
      f"{rms(plain_step, x_next):.3f} (RMS)")

fig, ax = plt.subplots(figsize=(5, 4))
viz.plot_density(ax, mix)
g1 = jax.tree.map(lambda v: v[2], grid2)
x_mid = distill.ddim_to(exact(xk, g1.t, g1.a, g1.s)[0], xk, g1.a, g1.s, g1.a_next, g1.s_next)
for i in range(6):
    ax.plot([xk[i, 0], x_mid[i, 0], x_next[i, 0]], [xk[i, 1], x_mid[i, 1], x_next[i, 1]], "-o", color="C1", ms=3,
            label="teacher: 2 steps" if i == 0 else None)
    ax.annotate("", xy=tuple(np.asarray(one_step[i])), xytext=tuple(np.asarray(xk[i])),
                arrowprops={"arrowstyle": "->", "color": "C2"})
    ax.plot(*plain_step[i], "x", color="C3", label="1 plain DDIM step" if i == 0 else None)
ax.plot([], [], color="C2", label="1 step with the target")
ax.set_xlim(-1.3, 1.3)
ax.set_ylim(-1.3, 1.3)
ax.legend(fontsize=7, loc="lower right")
ax.set_title("last student step (t = 499 -> data) on the exact toy", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# Our MNIST students come from a chain of such runs, each starting from the weights of the
# one before (`diffusion_jax.presets`; the first round's teacher is the guidance student of
# section 2, sampled with 16 steps):
#
#   mnist-unet (CFG, 2 predictions/step) → guidance student → 8 steps → 4 steps → 2 steps
#
# Each is an ordinary preset: `pipeline.train` loads its shipped weights, or the cached run,
# or distils it (from its teacher, which it gets the same way). What each one cost, as
# recorded when it was made:

# %%
STUDENTS = {"guided": "mnist-unet-guided", **{n: name for n, name in presets.STUDENTS.items()}}
models = {"teacher": (preset, teacher), "guided": (guided_preset, guided_student)}
for which, name in STUDENTS.items():
    p = pipeline.get_preset(name)
    if which != "guided":
        models[which] = (p, pipeline.train(p))
    rec = pipeline.shipped_record(p) or {}
    cost = f"{rec['wall_s'] / 60:.0f} min on {rec['machine']}" if rec else "(trained here; see its log.jsonl)"
    what = "guidance" if p.distill.student_steps is None else f"{2 * p.distill.student_steps} -> {p.sampler_steps} steps"
    print(f"{name:22s} from {p.distill.teacher:22s} {what:16s} {p.train.steps} steps of {p.train.batch_size}, {cost}")

# %% [markdown]
# ## 4. The frontier on MNIST
#
# Every row below samples the same labels from the same key at guidance scale s = 3 and is
# scored with the project's reference classifier (`studies.quality_vs_steps`): domain FID
# and KID against the held-out digits, and the share of samples the classifier reads as the
# intended digit. The teacher pays two predictions per step (CFG, batched into one call);
# the students one. One more row family is the *control*: the guidance student before any
# progressive round, sampled with DDIM on the students' grids; the gap between it and a
# student at the same step count is what the rounds bought. Wall time excludes
# compilation; the machine may be shared, so compare rows with each other.
#
# To read an FID difference we need to know what FID does on *real* digits at the same N:
# `studies.fid_floor` scores several random draws of N training digits (with the samples'
# class counts) against the same reference. Its spread is the noise: FIDs closer than about
# two spreads cannot be told apart. Its mean is what data-like samples score at this N;
# guided samples can score *below* it, because at small N FID's covariance terms reward
# low spread, and guidance at s = 3 makes samples less diverse than the data (lesson 06).

# %%
classifier = metrics.reference("mnist")
real_feats, _ = metrics.features_and_logits(classifier, test.images)  # the FID reference
N = 20 if FAST else 100
key = jax.random.key(11)
common = {"num_samples": N, "guidance_scale": 3.0, "kid_subset_size": N}
t0 = time.perf_counter()
frontier = studies.quality_vs_steps(key, teacher, preset, classifier, real_feats, samplers=("ddim",),
                                    steps=(10,) if FAST else (10, 20, 50), **common)
frontier += studies.quality_vs_steps(key, teacher, preset, classifier, real_feats, samplers=("dpmpp_2m",),
                                     steps=(5,) if FAST else (5, 10, 20), **common)
RUN_DDPM = not FAST  # 1,000 guided steps: most of this lesson's run time (about 6-12 min on 2 cores)
if RUN_DDPM:
    frontier += studies.quality_vs_steps(key, teacher, preset, classifier, real_feats, samplers=("ddpm",),
                                         steps=(1000,), **common)
# The control: the guidance student *before* progressive distillation, on the same grids.
for r in studies.quality_vs_steps(key, guided_student, guided_preset, classifier, real_feats,
                                  samplers=("ddim(spacing=trailing)",), steps=tuple(sorted(presets.STUDENTS)), **common):
    frontier.append({**r, "sampler": "guided-only"})
for n in presets.STUDENTS:
    p, st = models[n]
    for r in studies.quality_vs_steps(key, st, p, classifier, real_feats, samplers=("ddim(spacing=trailing)",),
                                      steps=(n,), **common):
        frontier.append({**r, "sampler": f"student-{n}"})
train_split = data.load_dataset("mnist", "train")
floor = studies.fid_floor(jax.random.key(3), classifier, train_split.images, real_feats, N, repeats=3 if FAST else 8,
                          labels=train_split.labels)
print(f"frontier: {time.perf_counter() - t0:.0f} s")

print(f"\n{'route':>14} {'steps':>5} {'evals':>5} {'FID':>7} {'KID':>7} {'accuracy':>8} {'seconds':>8}")
for r in frontier:
    print(f"{r['sampler']:>14} {r['steps']:5d} {r['evaluations']:5d} {r['fid']:7.2f} {r['kid']:7.4f} "
          f"{r['accuracy']:8.1%} {r['seconds']:8.2f}")
print(f"real digits vs the reference at N = {N}: FID {floor['mean']:.2f} ± {floor['std']:.2f} "
      f"(mean ± std over {len(floor['values'])} draws)")

# %%
styles = {"ddim": ("C0", "o-", "DDIM + CFG"), "dpmpp_2m": ("C1", "s-", "DPM-Solver++(2M) + CFG"),
          "ddpm": ("k", "*", "DDPM-1000 + CFG"), "guided-only": ("C4", "v--", "guidance student, DDIM (no rounds)"),
          "student": ("C2", "D-", "progressive students (s as input)")}
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
for kind, (color, style, label) in styles.items():
    sel = sorted((r for r in frontier if r["sampler"].startswith(kind)), key=lambda r: r["evaluations"])
    if not sel:
        continue
    ev = [r["evaluations"] for r in sel]
    axes[0].plot(ev, [r["fid"] for r in sel], style, color=color, label=label, ms=10 if kind == "ddpm" else 5)
    axes[1].plot(ev, [r["accuracy"] for r in sel], style, color=color, ms=10 if kind == "ddpm" else 5)
    axes[2].plot([r["seconds"] for r in sel], [r["fid"] for r in sel], style, color=color,
                 ms=10 if kind == "ddpm" else 5)
    below = kind in ("dpmpp_2m", "student")  # keep the step labels of neighbouring curves apart
    for r in sel:
        axes[0].annotate(str(r["steps"]), (r["evaluations"], r["fid"]), fontsize=7, xytext=(3, -10 if below else 4),
                         textcoords="offset points")
for ax in (axes[0], axes[2]):
    ax.axhspan(floor["mean"] - floor["std"], floor["mean"] + floor["std"], color="0.85",
               label=f"real vs real at N = {N} (± 1 std)")
    ax.set_ylabel(f"domain FID, N = {N} (lower is better)")
evals = sorted({r["evaluations"] for r in frontier})
for ax in axes[:2]:
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(evals, [str(e) for e in evals], fontsize=6)
axes[0].set_xlabel("denoiser evaluations per image (steps × predictions per step)")
axes[1].set_xlabel("denoiser evaluations per image")
axes[1].set_ylabel("class accuracy (reference classifier)")
axes[1].set_ylim(min(0.9, min(r["accuracy"] for r in frontier) - 0.02), 1.005)
axes[2].set_xscale("log")
axes[2].set_xlabel(f"sampling wall time for {N} images, s (no compile)")
axes[0].legend(fontsize=7)
fig.suptitle("the fast-sampling frontier on MNIST, s = 3 (numbers next to points: steps)", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# What the measurement says, in sentences the code writes from the numbers above (rerun it
# and they follow your run). Two FIDs within about two floor spreads of each other cannot
# be told apart at this N. (KID is unbiased, so with 100 samples it can come out slightly
# negative; only large differences in it mean anything here.)

# %%
def row(name, steps):
    return next(r for r in frontier if r["sampler"] == name and r["steps"] == steps)


def verdict(a, b):
    gap = abs(a["fid"] - b["fid"])
    return "within the noise" if gap <= 2 * floor["std"] else f"{gap / max(floor['std'], 1e-9):.0f} floor spreads apart"


if not FAST:
    ref = row("ddim", 50)
    for n in (5, 10, 20):
        r = row("dpmpp_2m", n)
        print(f"DPM-Solver++(2M), {n} steps ({r['evaluations']} evaluations): FID {r['fid']:.2f} against DDIM-50's "
              f"{ref['fid']:.2f} (100 evaluations): {verdict(r, ref)}.")
    if RUN_DDPM:
        r = row("ddpm", 1000)
        print(f"DDPM-1000 ({r['evaluations']} evaluations, {r['seconds']:.0f} s): FID {r['fid']:.2f}, "
              f"{verdict(r, ref)} of DDIM-50.")
    for n in presets.STUDENTS:
        r, c = row(f"student-{n}", n), row("guided-only", n)
        print(f"Student, {n} steps ({r['evaluations']} evaluations, {r['seconds']:.2f} s): FID {r['fid']:.2f}, "
              f"accuracy {r['accuracy']:.0%}; {verdict(r, ref)} of DDIM-50 (accuracy {ref['accuracy']:.0%}). "
              f"The same network before the rounds, {n} DDIM steps: FID {c['fid']:.2f}, accuracy {c['accuracy']:.0%}.")
else:
    print("fast mode: too few samples for these comparisons to mean anything; run without DIFFUSION_JAX_FAST.")

# %% [markdown]
# ## 5. Teacher against student at equal wall time
#
# Evaluations are a proxy; latency is what a user waits for. Give the teacher (with CFG)
# exactly the wall time the 4-step student took and see what it can do with it: we time one
# guided teacher step on the same N images and take as many steps as fit.

# %%
s4 = row("student-4", 4)
per_step = np.median([r["seconds"] / r["steps"] for r in frontier if r["sampler"] == "ddim"])
equal_steps = max(1, int(round(s4["seconds"] / per_step)))
same_time = studies.quality_vs_steps(key, teacher, preset, classifier, real_feats,
                                     samplers=("dpmpp_2m", "ddim(spacing=trailing)"), steps=(equal_steps,), **common)
print(f"one guided teacher step on {N} images: {per_step:.3f} s; the 4-step student took {s4['seconds']:.3f} s, "
      f"time for {equal_steps} teacher step(s)")
for r in same_time + [s4]:
    print(f"{r['sampler']:>22} {r['steps']:3d} steps, {r['evaluations']:3d} evaluations, {r['seconds']:6.3f} s: "
          f"FID {r['fid']:7.2f}, KID {r['kid']:.4f}, accuracy {r['accuracy']:.0%}")
best = min(same_time, key=lambda r: r["fid"])
print(f"\nAt the student's wall time the teacher reaches FID {best['fid']:.2f} ({best['sampler']}, {best['steps']} "
      f"step(s)) against the student's {s4['fid']:.2f}.")
teacher_rows = [r for r in frontier if r["sampler"] in ("ddim", "dpmpp_2m", "ddpm")]
as_good = [r for r in teacher_rows if r["fid"] <= s4["fid"] + 2 * floor["std"]]
if as_good:
    cheap = min(as_good, key=lambda r: r["seconds"])
    print(f"The fastest teacher route in the table within the noise of the student's FID is {cheap['sampler']} with "
          f"{cheap['steps']} steps (FID {cheap['fid']:.2f}, {cheap['seconds']:.1f} s): "
          f"{cheap['seconds'] / s4['seconds']:.0f} times the student's {s4['seconds']:.2f} s.")
else:
    print("No teacher route in the table comes within the noise of the student's FID.")

# %% [markdown]
# And what the samples look like: one row per model, digits 0–9, every row from the **same**
# starting noise. Distillation keeps the teacher's deterministic map from noise to image, so
# the students should draw recognisably the same digits as the teacher, not just some
# digits.

# %%
digits = np.arange(10, dtype=np.int32)
show = [("teacher, DDIM-50 + CFG (100 evals)", "teacher", {"num_steps": 50}),
        ("guidance student, 16 steps", "guided", {"num_steps": 16}),
        ("student, 8 steps", 8, {}), ("student, 4 steps", 4, {}), ("student, 2 steps", 2, {})]
picture, names = [], []
for label, which, kw in show:
    p, st = models[which]
    picture.append(pipeline.sample(jax.random.key(5), st, p, digits, guidance_scale=3.0, **kw))
    names.append(label)
fig, ax = plt.subplots(figsize=(8, 0.85 * len(picture) + 0.6))
viz.show_images(np.concatenate(picture), 10, ax, row_labels=names)
ax.set_title("same x_T in every row, s = 3 (synthetic digits)", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6. The chapter's interactive route, for real
#
# The chapter budgets an interactive route at 6 steps with 1 prediction per step, and
# insists that a cheaper route ships only after it passes the same quality check as the
# expensive one. We can now run it: the guidance student makes one prediction per step
# possible, DPM-Solver++ makes 6 steps enough, and the 4-step student goes below budget.
# The gate: FID within two floor spreads of the offline route's, and class accuracy no more
# than 5 points below it.

# %%
routes = [
    {"name": "offline_ddim_cfg", "steps": 10 if FAST else 50, "predictions_per_step": 2},
    {"name": "interactive_distilled", "steps": 6, "predictions_per_step": 1, "sampler": "dpmpp_2m"},
    {"name": "interactive_student_4", "steps": 4, "predictions_per_step": 1},
]
budget = {b["route"]: b["denoiser_evaluations"] for b in sampling.route_budget(routes)}
offline = row("ddim", 50) if not FAST else row("ddim", 10)
measured = {
    "offline_ddim_cfg": offline,
    "interactive_distilled": studies.quality_vs_steps(key, guided_student, guided_preset, classifier, real_feats,
                                                      samplers=("dpmpp_2m(spacing=trailing)",), steps=(6,),
                                                      **common)[0],
    "interactive_student_4": s4,
}
for name, r in measured.items():
    passed = (r["fid"] <= offline["fid"] + 2 * floor["std"]) and (r["accuracy"] >= offline["accuracy"] - 0.05)
    assert r["evaluations"] == budget[name], (name, r["evaluations"], budget[name])
    print(f"{name:22s} {budget[name]:4d} evaluations, {r['seconds']:6.2f} s for {N} images: FID {r['fid']:6.2f}, "
          f"accuracy {r['accuracy']:.0%} -> quality gate " + ("passed" if passed else "NOT passed")
          + (" (it is the reference)" if name == "offline_ddim_cfg" else ""))
if FAST:
    print("(fast mode: the offline route here is DDIM-10 and N is tiny; the verdicts mean nothing)")

# %% [markdown]
# The evaluation count is now a fact about the route, checked against `route_budget` above,
# not a promise. Whether the gate passes depends on the model and on N: a gate at N = 100 is
# a coarse filter, and a production route would be gated on far more samples and on the
# slices that matter to it (lesson 10).
#
# ## Exercises
#
# Implement each function and run its cell; `hint("name")` gives a nudge, a second call more.

# %% tags=["exercise"]
def dpmpp_2m_step(x, x0_now, x0_prev, a, s, a_next, s_next, h_prev):
    """One DPM-Solver++(2M) step from the level (a, s) to (a_next, s_next).

    x, x0_now, x0_prev: arrays (B, ...): the current point, the x0 estimate here and the one
    from the previous step. a, s, a_next, s_next: floats, path coefficients (a^2 + s^2 = 1).
    h_prev: the previous step's width, measured in half the log-SNR (lambda). Return the next point.
    """
    ### BEGIN SOLUTION
    # HINT: work in lambda = log(a / s); the step's width h, the slope between the two estimates, then the exact linear part
    h = jnp.log(a_next / s_next) - jnp.log(a / s)
    d = x0_now + 0.5 * (h / h_prev) * (x0_now - x0_prev)
    return (s_next / s) * x - a_next * jnp.expm1(-h) * d
    ### END SOLUTION


check("dpmpp_2m_step", dpmpp_2m_step)


# %% tags=["exercise"]
def distillation_target(x_t, x0_first, x0_second, a, s, a_mid, s_mid, a_next, s_next):
    """The student's x0 target for one progressive-distillation round.

    The teacher takes two deterministic DDIM steps: from x_t (level a, s) to the level
    (a_mid, s_mid) using its estimate x0_first, then to (a_next, s_next) using x0_second.
    Return the x0 with which ONE DDIM step from x_t lands where the teacher landed.
    Arrays (B, ...); coefficients are floats.
    """
    ### BEGIN SOLUTION
    # HINT: take the teacher's two steps first; one DDIM step is linear in x0, so solve it for x0
    x_mid = a_mid * x0_first + s_mid * (x_t - a * x0_first) / s
    x_next = a_next * x0_second + s_next * (x_mid - a_mid * x0_second) / s_mid
    r = s_next / s
    return (x_next - r * x_t) / (a_next - r * a)
    ### END SOLUTION


check("distillation_target", distillation_target)

# %% [markdown]
# ## Interview questions
#
# Short answers, graded like lesson 11's (numbers: whole numbers exactly; letters as `"b"`).
#
# **Q1** A teacher samples well with 64 DDIM steps. Progressive distillation halves the
# number of steps in every round. How many rounds until the student samples in 4 steps?

# %% tags=["exercise"]
def q1():
    ### BEGIN SOLUTION
    return 4
    ### END SOLUTION


check_answer("iq_distill_rounds", q1)

# %% [markdown]
# **Q2** The offline route is DDIM with 50 steps and classifier-free guidance. The
# interactive route is a guidance-distilled, progressively distilled student with 4 steps.
# By what factor does the number of denoiser evaluations per image drop?

# %% tags=["exercise"]
def q2():
    ### BEGIN SOLUTION
    return 25
    ### END SOLUTION


check_answer("iq_guided_student_saving", q2)

# %% [markdown]
# **Q3** How many denoiser evaluations does DPM-Solver++(2M) with 10 steps take for one
# image, without guidance?

# %% tags=["exercise"]
def q3():
    ### BEGIN SOLUTION
    return 10
    ### END SOLUTION


check_answer("iq_dpm_2m_evals", q3)

# %% [markdown]
# **Q4** A student predicts v and is trained with a plain MSE on v. As a weighting of the
# error in its clean-image estimate x̂₀, that loss is
#
# - a) SNR(t)
# - b) SNR(t) + 1
# - c) max(SNR(t), 1)
# - d) 1, the same at every t

# %% tags=["exercise"]
def q4():
    ### BEGIN SOLUTION
    return "b"
    ### END SOLUTION


check_answer("iq_v_mse_weighting", q4)

# %% [markdown]
# **Q5** Why do progressive-distillation students predict v (or x₀) rather than ε?
#
# - a) at almost pure noise the clean-image estimate divides the ε error by a ≈ 0, and a
#   1- or 2-step sampler relies on that estimate
# - b) an ε-prediction network cannot take the guidance scale as an input
# - c) the ε target has no gradient with respect to the student's weights
# - d) ε-prediction needs twice as many network calls per step

# %% tags=["exercise"]
def q5():
    ### BEGIN SOLUTION
    return "a"
    ### END SOLUTION


check_answer("iq_eps_student", q5)

# %% [markdown]
# ## Check your understanding
#
# 1. DPM-Solver++(2M) is second order at one network call per step. Where does the second
#    order come from, and what does it need at the very first step?
# 2. Why is deterministic DDIM "first-order DPM-Solver++"?
# 3. A guidance-distilled student at s = 1 should behave like which model? And at s = 7, if
#    it was trained on s ∈ [1, 5]?
# 4. Why must the student's grid be nested in the teacher's (every other teacher point)?
# 5. Why does each distillation round start from the previous student's weights instead of
#    from scratch?
# 6. The 4-step student and the teacher at equal wall time: which of the two comparisons in
#    section 5 would you show a product manager, and which to a researcher?
#
# <details>
# <summary>Answers</summary>
#
# 1. From the previous step's x̂₀: the line through the last two estimates approximates how
#    x̂₀ changes along λ. The first step has no history, so it is first order (DDIM).
# 2. With D = x̂₀ at the start of the step, the exact-linear-part formula reduces to DDIM's
#    update with σ = 0 (section 1).
# 3. The plain conditional teacher (CFG with s = 1 is the conditional model). At s = 7 the
#    scale embedding was never trained; the output is an extrapolation of unknown quality
#    (the table in section 2 measures it).
# 4. The target says where the teacher lands after two steps that *start at the student's
#    point and end at the student's next point*; if the grids were not nested, the two
#    teacher steps would end at a level the student step never reaches.
# 5. The student must approximate almost the same function as its teacher (two small steps
#    vs one bigger one); starting from it, a short fine-tune suffices. From scratch, each
#    round would cost a full training run.
# 6. The wall-time comparison answers the product question (what quality does a user get
#    for a fixed latency); the evaluations-matched and FID-with-floor comparisons answer
#    whether the method is better at equal compute, and whether differences are real.
# </details>
#
# ## Summary
#
# * DPM-Solver++ (`dpm_solver`, samplers `dpmpp_2m`, `dpmpp_3m`) integrates the linear part
#   of the probability-flow ODE exactly and extrapolates x̂₀ from earlier steps: higher order
#   at one call per step; DDIM is its first-order member.
# * Guidance distillation (`distill.guidance_loss`) makes the guidance scale an input: one
#   prediction per step instead of two, at any scale in the trained range.
# * Progressive distillation (`distill.progressive_target`, `distill.progressive_loss`)
#   halves the steps per round: the target is the x̂₀ that makes one step land where two
#   teacher steps land.
# * Students are presets (`mnist-unet-guided`, `mnist-unet-student-8/-4/-2`), distilled
#   through the ordinary training loop with a custom loss (`train.fit(..., loss=...)`).
# * Measure the frontier, not single points: evaluations and wall time against FID, KID
#   and accuracy, with the real-vs-real floor and its spread at the same N
#   (`studies.fid_floor`) to tell differences from noise; then gate the route.
