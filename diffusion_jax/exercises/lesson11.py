"""Lesson 11 (interview prep): short-answer questions and "find the bug" function fixes.

Numeric reference answers are computed with the library when the question is checked
(never typed in by hand where the library can compute them); letter answers are fixed.
Every question names the lesson that teaches it (``teaches``), shown with a wrong answer.
Numbers are graded to two significant figures (one unit of the second figure), whole
numbers exactly, as the lesson's introduction says. Numeric questions have two hint tiers:
a nudge, then the formula. Names start with ``iq_`` (answer questions) or ``fix_``
(function exercises).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffusion_jax import (
    flow,
    forward,
    guidance,
    losses,
    metrics,
    samplers,
    schedules,
    timesteps,
)
from diffusion_jax import parameterization as P
from diffusion_jax.exercises._answers import register_answer
from diffusion_jax.models import dit, embeddings
from diffusion_jax.models.vae import latent_scale_factor

LESSON = "11"


def _num(name, answer, teaches, hints, explanation="", *, sig_figs=2, exact=False, rtol=None, atol=0.0):
    """A numeric question: two significant figures by default; ``exact`` for whole numbers."""
    if exact:
        kw = dict(rtol=0.0, atol=0.5)
    elif rtol is not None or atol:
        kw = dict(rtol=rtol or 0.0, atol=atol)
    else:
        kw = dict(sig_figs=sig_figs)
    register_answer(name, lesson=LESSON, answer=answer, kind="numeric", hints=hints, teaches=teaches,
                    explanation=explanation, **kw)


def _pick(name, answer, teaches, hint, explanation="", choices="abcd", kind="choice"):
    register_answer(name, lesson=LESSON, answer=answer, kind=kind, hint=hint, teaches=teaches,
                    explanation=explanation, choices=choices)


def _lin():
    return schedules.linear(1000)


# ------------------------------------------------------------------ A. forward process (01)
_num("iq_snr_from_alpha_bar", lambda: float(0.9 / (1 - 0.9)), "01",
     ("SNR compares the power of the signal part of x_t with the power of the noise part.",
      "SNR = alpha_bar / (1 - alpha_bar)"),
     "SNR = 0.9 / 0.1 = 9; log-SNR = 2.2")
_num("iq_q_sample_scalar",
     lambda: float(forward.q_sample(schedules.from_betas(jnp.array([0.5])), jnp.array([0.8]),
                                    jnp.array([0]), jnp.array([-1.0]))[0]), "01",
     ("One forward sample: scale the pixel and the noise by their coefficients and add them.",
      "x_t = sqrt(ab) x0 + sqrt(1 - ab) eps"),
     "sqrt(0.5) * (0.8 - 1.0) = -0.141")
_num("iq_linear_alpha_bar_mid", lambda: float(_lin().alpha_bars[499]), "01",
     ("alpha_bar_t is what is left of the signal power after steps 0..t; write it as a product.",
      "alpha_bar_t = prod_{s<=t} (1 - beta_s); its log is a sum over a linear ramp of betas, or compute it"),
     "about 0.079: half-way through the linear schedule the image is already mostly noise")
_num("iq_linear_terminal_snr", lambda: float(_lin().snr[-1]), "01",
     ("You need alpha_bar at the last step first; then the same ratio as in Q01.",
      "alpha_bar_999 = prod (1 - beta_s) over all 1000 steps; SNR = alpha_bar / (1 - alpha_bar)"),
     "about 4e-5: small but not zero, so x_T still leaks a little signal")
_pick("iq_why_closed_form", "c", "01",
      "what does training need to do for a random timestep of a random image, cheaply?",
      "the marginal q(x_t | x0) is Gaussian, so any t is one sample away: no chain to simulate")
_pick("iq_cosine_vs_linear", "b", "01",
      "compare how fast alpha_bar falls near the ends of the two schedules (plot log-SNR)",
      "cosine keeps more signal in the middle and does not waste the last steps on near-pure noise")

# ------------------------------------------------------------------ B. training objective (02)
_pick("iq_loss_target", "a", "02",
      "in DDPM's simple loss, the network's output is compared with the thing that was added",
      "L_simple = E ||eps - eps_theta(x_t, t)||^2 with t uniform")
_num("iq_eps_mse_equivalent_x0", lambda: float(0.01 / _lin().snr[100]), "02",
     ("An error in eps turns into an error in x0_hat through the conversion x0_hat = (x_t - sqrt(1 - ab) eps) "
      "/ sqrt(ab); square it.",
      "eps-MSE = SNR(t) * x0-MSE, so x0-MSE = eps-MSE / SNR(t); evaluate SNR at t = 100 of the linear schedule"),
     "x0-MSE = eps-MSE / SNR: the same eps error is a much smaller x0 error at low noise")
_pick("iq_uniform_t", "d", "02",
      "what breaks if one range of timesteps never (or rarely) appears in training?",
      "sampling visits every noise level, so the model must be trained on all of them")

# ------------------------------------------------------------------ C. reverse process (03)
_num("iq_posterior_variance_t1", lambda: float(forward.posterior_variance(_lin())[1]), "03",
     ("The posterior variance is the forward step's beta_t times a factor below 1 that depends on "
      "alpha_bar at t and t - 1.",
      "beta_tilde_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)"),
     "about 5.5e-5: at t = 1 the posterior is almost deterministic")
_num("iq_ddpm_evals_with_cfg", lambda: float(2 * _lin().num_timesteps), "03",
     ("How many steps does ancestral DDPM take, and how many predictions does guidance combine per step?",
      "one step per timestep, two predictions (conditional and unconditional) per step"),
     "1,000 steps x (conditional + unconditional) = 2,000 network evaluations per image "
     "(run as 1,000 batched calls)", exact=True)
_pick("iq_reverse_gaussian", "b", "03",
      "when is a Gaussian reverse step a good approximation?",
      "for small beta_t the true reverse step is close to Gaussian; with few big steps it is not")

# ------------------------------------------------------------------ D. parameterizations (04)
_num("iq_v_target", lambda: float(P.velocity(jnp.array(0.5), jnp.array(1.0), 0.64)), "04",
     ("v mixes eps and x0 with the coefficients sqrt(ab) and sqrt(1 - ab); which goes with which, and which sign?",
      "v = sqrt(ab) eps - sqrt(1 - ab) x0"), "0.8 * 1.0 - 0.6 * 0.5 = 0.5")
_num("iq_x0_from_eps", lambda: float(P.to_x0(jnp.array(0.5), jnp.array(0.3), 0.25, "eps")), "04",
     ("Solve the forward equation for x0.", "x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab)"),
     "(0.3 - sqrt(0.75) * 0.5) / 0.5 = -0.266")
_num("iq_x0_error_amplification",
     lambda: float(P.to_x0(jnp.array(0.01), jnp.array(0.0), 1e-4, "eps")
                   - P.to_x0(jnp.array(0.0), jnp.array(0.0), 1e-4, "eps")) * -1, "04",
     ("Follow an error delta in eps through the conversion to x0_hat; what multiplies it?",
      "an eps error delta becomes an x0 error of delta * sqrt(1 - ab) / sqrt(ab)"),
     "0.01 * sqrt(0.9999) / 0.01 = 1.0: as large as the whole data range")
_num("iq_min_snr_eps_weight", lambda: float(losses.snr_weight(jnp.array(20.0), "eps", "min_snr", 5.0)), "04",
     ("The weight must turn the eps-MSE into min(SNR, gamma) times the x0-MSE; eps-MSE = SNR x0-MSE.",
      "the eps-loss weight is min(SNR, gamma) / SNR"), "min(20, 5) / 20 = 0.25")
_num("iq_min_snr_v_weight", lambda: float(losses.snr_weight(jnp.array(1.0), "v", "min_snr", 5.0)), "04",
     ("As in Q16, but the v-MSE is (SNR + 1) times the x0-MSE.",
      "the v-loss weight is min(SNR, gamma) / (SNR + 1)"), "min(1, 5) / 2 = 0.5")
register_answer("iq_zero_terminal_snr", lesson=LESSON, kind="multi", answer="a, c", teaches="04",
                hint="at alpha_bar = 0, which conversions divide by zero, and where must sampling start?",
                explanation="eps-prediction is useless at SNR = 0 (use v or x0), and the first sampled "
                "step must be T-1 (trailing spacing)")

# ------------------------------------------------------------------ E. backbones (05)
_num("iq_embedding_t0_sum", lambda: float(embeddings.timestep_embedding(jnp.array([0]), 8).sum()), "05",
     ("At t = 0 every angle t * f_i is 0.", "cos(0) = 1 and sin(0) = 0; half of the 8 entries are cosines"),
     "half of the 8 entries are cos(0) = 1: the sum is 4", exact=True)
_num("iq_film_value",
     lambda: float(dit.modulate(jnp.array(0.2), jnp.array(-0.05), jnp.array(0.5))), "05",
     ("FiLM scales the feature and then shifts it; in this course a zero scale leaves h unchanged.",
      "FiLM / adaLN: h * (1 + scale) + shift"), "0.2 * 1.5 - 0.05 = 0.25")
_num("iq_dit_tokens", lambda: float(dit.patchify(jnp.zeros((1, 32, 32, 4)), 2).shape[1]), "05",
     ("One token per patch; how many 2 x 2 patches tile a 32 x 32 grid?",
      "one token per p x p patch: (H / p) * (W / p)"), "(32 / 2)^2 = 256 tokens", exact=True)
_num("iq_attention_cost_ratio",
     lambda: float((dit.patchify(jnp.zeros((1, 64, 64, 4)), 2).shape[1]
                    / dit.patchify(jnp.zeros((1, 32, 32, 4)), 2).shape[1]) ** 2), "05",
     ("How does the number of tokens grow with the side length, and how does the score matrix grow with "
      "the number of tokens?", "tokens grow with the area; the score matrix with tokens squared"),
     "4x the tokens, 16x the attention scores", exact=True)
_pick("iq_cross_attention_qkv", "c", "05",
      "which stream asks the questions, and which one is looked up?",
      "image/latent features give the queries; text embeddings give keys and values")

# ------------------------------------------------------------------ F. guidance (06)
_num("iq_cfg_value", lambda: float(guidance.cfg_combine(jnp.array(0.2), jnp.array(0.5), 7.5)), "06",
     ("Start at the unconditional prediction and move s times the difference towards the conditional one.",
      "guided = uncond + s * (cond - uncond)"), "0.2 + 7.5 * 0.3 = 2.45", sig_figs=3)
_num("iq_cfg_w_to_s", lambda: 2.0 + 1.0, "06",
     ("Expand both forms and compare the coefficients of cond.",
      "(1 + w) cond - w uncond = uncond + (1 + w)(cond - uncond)"),
     "s = w + 1 = 3 (our demo's setting)", exact=True)
_pick("iq_cfg_scale_zero", "a", "06",
      "substitute the scale into uncond + s (cond - uncond)",
      "s = 0 gives the unconditional prediction; s = 1 the plain conditional one")
_pick("iq_cfg_high_scale", "b", "06",
      "guidance extrapolates past the conditional prediction; what happens to variety and to pixel ranges?",
      "fidelity to the condition rises, diversity falls, and very large scales over-saturate")
_num("iq_cfg_dropout_batch",
     lambda: float(np.sum(np.asarray(guidance.drop_labels(jax.random.key(0), jnp.arange(10000) % 10,
                                                          0.1, 10)) == 10) / 10000), "06",
     ("Each row is dropped independently with probability p.",
      "the expected fraction is p; with 10,000 rows it is within about 0.003 of it"),
     "about 10% of the batch trains the unconditional model", rtol=0.1)

# ------------------------------------------------------------------ G. DDIM / fast sampling (07)
_num("iq_leading_first_step", lambda: float(timesteps.ddim_timesteps(1000, 50, "leading")[0]), "07",
     ("Leading spacing counts up from 0 in equal steps; the sampler starts at the largest grid point.",
      "leading spacing is 0, k, 2k, ..., (n - 1) k with k = T // n"),
     "980: the leading grid never visits t = 999", exact=True)
_num("iq_trailing_first_step", lambda: float(timesteps.ddim_timesteps(1000, 50, "trailing")[0]), "07",
     ("Trailing spacing counts down from the end of the schedule; mind the 0-based timesteps.",
      "trailing spacing is round(T, T - T/n, ...) - 1"), "999: it starts at the noisiest trained step", exact=True)
_num("iq_ddim_sigma_eta0",
     lambda: float(samplers.ddim_sigma(_lin().alpha_bars[500], _lin().alpha_bars[480], 0.0)), "07",
     ("What does eta control in DDIM?", "sigma_t(eta) is proportional to eta"),
     "eta = 0: no noise is injected, the sampler is deterministic", atol=1e-6)
_pick("iq_ddim_eta1_is", "c", "07",
      "compare sigma_t(eta = 1) with the DDPM posterior standard deviation for adjacent steps",
      "with eta = 1 and every timestep visited, DDIM is ancestral DDPM sampling")
_pick("iq_fewer_steps_tradeoff", "d", "07",
      "what is the cost of a coarser grid, and is it always visible in FID?",
      "fewer steps = larger discretisation error: a measured trade-off, not a free lunch")

# ------------------------------------------------------------------ H. latent diffusion (08)
_num("iq_latent_compression", lambda: float((512 * 512 * 3) / (64 * 64 * 4)), "08",
     ("Count the numbers each array holds.", "H * W * C for the image and for the latent; divide"),
     "786,432 / 16,384 = 48x fewer values", exact=True)
_num("iq_latent_scale_factor",
     lambda: latent_scale_factor(np.random.default_rng(0).normal(0.0, 5.49, 200_000)), "08",
     ("Multiplying by the factor multiplies the standard deviation by it.",
      "the factor makes the scaled latents unit-std: 1 / std"), "1 / 5.49 = 0.182 (SD's 0.18215 was found this way)")
_pick("iq_forgot_scale_symptom", "b", "08",
      "the diffusion model was trained on scaled latents; what does the decoder receive if you skip the division?",
      "latents 5x too small decode to flat, washed-out, low-contrast images")
_pick("iq_vae_role", "a", "08",
      "which network runs once per image, and which one runs at every step?",
      "the denoiser runs every step on the small latent; the decoder runs once at the end")

# ------------------------------------------------------------------ I. flow matching (09)
_num("iq_flow_interpolant", lambda: float(flow.interpolate(jnp.array([1.0]), jnp.array([-1.0]), 0.25)[0]), "09",
     ("The path is a straight line from the data (t = 0) to the noise (t = 1).",
      "x_t = (1 - t) x0 + t eps"), "0.75 * 1 + 0.25 * (-1) = 0.5")
_num("iq_flow_velocity", lambda: float(flow.velocity_target(jnp.array(1.0), jnp.array(-1.0))), "09",
     ("Differentiate the straight path with respect to t.", "d/dt [(1 - t) x0 + t eps] = eps - x0"),
     "v = eps - x0 = -2")
_num("iq_flow_x0_from_v", lambda: float(flow.x0_from_velocity(jnp.array([-2.0]), jnp.array([0.5]), jnp.array([0.25]))[0]),
     "09", ("Walk the straight line back from time t to time 0 with the predicted velocity.",
            "x0 = x_t - t v"), "0.5 - 0.25 * (-2) = 1.0")
_num("iq_shifted_time", lambda: float(timesteps.shift_times(0.5, 3.0)), "09",
     ("Lesson 09's shift keeps 0 and 1 fixed and pushes the times in between towards the noise.",
      "SD3's shift: t' = s t / (1 + (s - 1) t)"), "1.5 / 2 = 0.75: a shift > 1 moves time towards the noise")
_pick("iq_logit_normal_why", "c", "09",
      "where along the path is the velocity hardest to predict?",
      "logit-normal sampling puts more training on the middle of the path, less on the trivial ends")

# ------------------------------------------------------------------ J. evaluation and governance (10)
_num("iq_fid_1d_gaussians", lambda: metrics.frechet_distance([0.0], [[1.0]], [1.0], [[4.0]]), "10",
     ("FID has a part for the means and a part for the spreads; in 1-D both are simple.",
      "in 1-D: (mu1 - mu2)^2 + (sigma1 - sigma2)^2"), "1 + (1 - 2)^2 = 2")
_pick("iq_fid_small_n", "b", "10",
      "what happens to the FID of two samples of the SAME distribution as N shrinks?",
      "FID is biased upward at small N; compare at equal N (or use KID / FID-infinity)")
_pick("iq_route_logo_only", "b", "10",
      "apply the chapter's rule: which flags send an asset to a person?",
      "a logo alone is enough for human_review", choices="abc")
register_answer("iq_provenance_fields", lesson=LESSON, kind="multi", answer="a, b, d", teaches="10",
                hint="what would someone need to know to reproduce the image and to know it is not real?",
                explanation="synthetic flag, tool + version, model fingerprint, seed and sampler settings; "
                "the training images themselves do not belong in a label", choices="abcde")
_pick("iq_memorisation_check", "d", "10",
      "a copy of a training image has what nearest-neighbour distance?",
      "look at the per-sample tail of the nearest-neighbour ratio, and test the check with planted copies")

# ------------------------------------------------------------------ K. find the bug (choice)
_pick("iq_bug_snr_weight", "c", "04",
      "which target does this model predict, and which weight belongs to that target under min-SNR?",
      "for eps-prediction the min-SNR weight is min(SNR, gamma) / SNR, not min(SNR, gamma)")
_pick("iq_bug_timestep_range", "b", "02",
      "list the valid indices of alpha_bars and compare with randint's range",
      "randint(1, T + 1) can draw T, one past the end; JAX clamps the index silently")
_pick("iq_bug_wrong_target", "a", "04",
      "the model predicts v; what is the loss comparing it with?",
      "the target must match the prediction type: v-MSE against v, not against eps")
_pick("iq_bug_latent_decode", "d", "08",
      "trace the latent's scale from the encoder, through diffusion, to the decoder",
      "divide by the scale factor before decoding")


# ======================================================================= function fixes
from diffusion_jax.exercises import _lesson11_fixes  # noqa: E402,F401 - registers the fix_* exercises
