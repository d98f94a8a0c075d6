# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 11 — Interview prep: derivations, trade-offs, numbers and bugs
#
# Fifty-six questions on everything in lessons 01–10, in the form they tend to come up:
# derive a number, pick the right trade-off, or find the bug in a few lines of code that
# *run* but are wrong. Every question is graded like the exercises so far:
#
# * a **short answer** (a number, or one or more letters) goes in a small function
#   `qNN()` that returns it; `check_answer("name", qNN)` prints one line, ✔ with a short
#   explanation, or ✘ with the lesson that teaches it — never the answer. **Numbers:** give
#   two significant figures (the grader accepts one unit of the second figure either way),
#   whole numbers exactly; an answer rounded too coarsely is called "close" and asks for
#   more digits. **Letters** may be written `"b"`, `" B "`, or for several `"a, c"`; a
#   partly right set is told how many letters are right, missing or extra;
# * a **find-the-bug** question with code asks you to write the corrected function; it is
#   graded by `check(...)` against the library, as in earlier lessons, and a fix that
#   leaves a bug in is told which one.
#
# There are no formulas in the answer cells. If you are stuck, `hint("name")` gives a nudge
# and a second call the formula; an interviewer will not, so try first.
#
# Reference answers are computed by the library when you check (for instance the linear
# schedule's ᾱ at t = 500 is computed from `schedules.linear`), so they cannot drift from
# the code you learned with. Try each question before reading the hint; if you get stuck,
# the lesson in the arrow has the full story, and the worked answers are in
# `build/solutions/11_interview_prep.ipynb`.
#
# | part | topic | questions | taught in |
# |---|---|---|---|
# | A | forward process, schedules, SNR | Q01–Q06 | [01](01_forward_process.ipynb) |
# | B | the training objective | Q07–Q09 | [02](02_training_objective.ipynb) |
# | C | reverse process, DDPM sampling | Q10–Q12 | [03](03_reverse_process.ipynb) |
# | D | parameterizations, loss weights, zero-terminal SNR | Q13–Q18 | [04](04_parameterizations.ipynb) |
# | E | backbones: U-Net, FiLM, attention, DiT | Q19–Q23 | [05](05_backbones.ipynb) |
# | F | classifier-free guidance | Q24–Q28 | [06](06_guidance.ipynb) |
# | G | DDIM and fast sampling | Q29–Q33 | [07](07_fast_sampling.ipynb) |
# | H | latent diffusion | Q34–Q37 | [08](08_latent_diffusion.ipynb) |
# | I | flow matching, rectified flow, timestep sampling | Q38–Q42 | [09](09_flow_matching.ipynb) |
# | J | evaluation, safety, governance | Q43–Q47 | [10](10_evaluation_governance.ipynb) |
# | K | find the bug | Q48–Q56 | 02, 04, 06, 07, 08, 09 |
# | L | DPM-Solver++, Karras σ, distillation | lesson 12, Q1–Q5 | [12](12_fast_sampling_frontier.ipynb) |
#
# Part L lives at the end of lesson 12, next to the sampler and the student it asks about;
# `check_answer` grades it there the same way. For a closed-book session that mixes both,
# `diffusion-jax quiz --lessons 11:10,12:3` draws from the two banks.


# %%
import jax.numpy as jnp
import numpy as np

from diffusion_jax.demo import fast_mode
from diffusion_jax.exercises import answer_names, check, check_answer, exercise_names, hint

FAST = fast_mode()  # nothing here is slow; the flag is read for consistency with the other lessons
print(f"{len(answer_names(lesson=11))} short-answer questions and "
      f"{len(exercise_names(lesson=11))} find-the-bug functions")

# %% [markdown]
# ## A. The forward process, schedules and SNR

# %% [markdown]
# **Q01** (→ lesson 01) At some timestep ᾱ_t = 0.9. What is the signal-to-noise ratio SNR(t)?

# %% tags=["exercise"]
def q01():
    ### BEGIN SOLUTION
    return 0.9 / (1 - 0.9)
    ### END SOLUTION


check_answer("iq_snr_from_alpha_bar", q01)

# %% [markdown]
# **Q02** (→ lesson 01) A single pixel x₀ = 0.8 is noised to a timestep with ᾱ = 0.5 using the noise draw ε = −1. What is x_t?

# %% tags=["exercise"]
def q02():
    ### BEGIN SOLUTION
    return 0.5 ** 0.5 * 0.8 + 0.5 ** 0.5 * (-1.0)
    ### END SOLUTION


check_answer("iq_q_sample_scalar", q02)

# %% [markdown]
# **Q03** (→ lesson 01) For DDPM's linear schedule (T = 1000, β from 10⁻⁴ to 0.02, timesteps 0..999), what is ᾱ at t = 499 (the 500th step)?

# %% tags=["exercise"]
def q03():
    ### BEGIN SOLUTION
    betas = np.linspace(1e-4, 0.02, 1000)
    return float(np.prod(1 - betas[:500]))
    ### END SOLUTION


check_answer("iq_linear_alpha_bar_mid", q03)

# %% [markdown]
# **Q04** (→ lesson 01) Same schedule: what is SNR at the last timestep t = 999?

# %% tags=["exercise"]
def q04():
    ### BEGIN SOLUTION
    ab = np.prod(1 - np.linspace(1e-4, 0.02, 1000))
    return float(ab / (1 - ab))
    ### END SOLUTION


check_answer("iq_linear_terminal_snr", q04)

# %% [markdown]
# **Q05** (→ lesson 01) Why does training never simulate the forward chain step by step?
#
# - a) because the chain is deterministic
# - b) because β_t is learned jointly with the network
# - c) because q(x_t | x₀) is Gaussian in closed form, so x_t for any t is one sample away from x₀
# - d) because the chain only has to be run once per data set and is cached

# %% tags=["exercise"]
def q05():
    ### BEGIN SOLUTION
    return "c"
    ### END SOLUTION


check_answer("iq_why_closed_form", q05)

# %% [markdown]
# **Q06** (→ lesson 01) What is the main point of the cosine schedule compared with the linear one?
#
# - a) it makes training faster per step
# - b) ᾱ falls more gently, so fewer late steps are spent on almost pure noise and mid-range noise levels get more of the steps
# - c) it guarantees SNR = 0 at the last step
# - d) it removes the need for a timestep embedding

# %% tags=["exercise"]
def q06():
    ### BEGIN SOLUTION
    return "b"
    ### END SOLUTION


check_answer("iq_cosine_vs_linear", q06)

# %% [markdown]
# ## B. The training objective

# %% [markdown]
# **Q07** (→ lesson 02) In DDPM's "simple" loss, what is the network's ε-prediction compared with?
#
# - a) the noise ε that was actually added to make x_t
# - b) the clean image x₀
# - c) the previous state x_{t−1}
# - d) the posterior mean of q(x_{t−1} | x_t, x₀)

# %% tags=["exercise"]
def q07():
    ### BEGIN SOLUTION
    return "a"
    ### END SOLUTION


check_answer("iq_loss_target", q07)

# %% [markdown]
# **Q08** (→ lesson 02) An ε-model has ε-MSE 0.01 at t = 100 of the linear schedule. What x₀-MSE does that correspond to, for the clean estimate x̂₀ computed from ε̂?

# %% tags=["exercise"]
def q08():
    ### BEGIN SOLUTION
    ab = np.prod(1 - np.linspace(1e-4, 0.02, 1000)[:101])
    return 0.01 * (1 - ab) / ab
    ### END SOLUTION


check_answer("iq_eps_mse_equivalent_x0", q08)

# %% [markdown]
# **Q09** (→ lesson 02) Why is t drawn uniformly over all timesteps (or with a weighting that covers all of them)?
#
# - a) uniform draws make the loss unbiased for the data likelihood in every case
# - b) it halves the variance of the gradient
# - c) the network has no timestep input, so t does not matter
# - d) the sampler visits every noise level, and a noise level never trained on is one the model cannot denoise

# %% tags=["exercise"]
def q09():
    ### BEGIN SOLUTION
    return "d"
    ### END SOLUTION


check_answer("iq_uniform_t", q09)

# %% [markdown]
# ## C. The reverse process and DDPM sampling

# %% [markdown]
# **Q10** (→ lesson 03) For the linear schedule, what is the posterior variance β̃_t of q(x_{t−1} | x_t, x₀) at t = 1 (timesteps 0-based)?

# %% tags=["exercise"]
def q10():
    ### BEGIN SOLUTION
    betas = np.linspace(1e-4, 0.02, 1000)
    ab = np.cumprod(1 - betas)
    return betas[1] * (1 - ab[0]) / (1 - ab[1])
    ### END SOLUTION


check_answer("iq_posterior_variance_t1", q10)

# %% [markdown]
# **Q11** (→ lesson 03) How many network evaluations does one image cost with ancestral DDPM over all T = 1000 steps *with* classifier-free guidance (count conditional and unconditional predictions separately)?

# %% tags=["exercise"]
def q11():
    ### BEGIN SOLUTION
    return 1000 * 2
    ### END SOLUTION


check_answer("iq_ddpm_evals_with_cfg", q11)

# %% [markdown]
# **Q12** (→ lesson 03) Why may each reverse step be modelled as a Gaussian?
#
# - a) because the data distribution is Gaussian
# - b) because for small β_t the true reverse step q(x_{t−1} | x_t) is close to Gaussian
# - c) because the network's output layer is linear
# - d) it may not; DDPM uses a mixture

# %% tags=["exercise"]
def q12():
    ### BEGIN SOLUTION
    return "b"
    ### END SOLUTION


check_answer("iq_reverse_gaussian", q12)

# %% [markdown]
# ## D. Parameterizations, loss weighting, zero-terminal SNR

# %% [markdown]
# **Q13** (→ lesson 04) x₀ = 0.5, ε = 1.0, ᾱ = 0.64. What is the v target?

# %% tags=["exercise"]
def q13():
    ### BEGIN SOLUTION
    return 0.8 * 1.0 - 0.6 * 0.5
    ### END SOLUTION


check_answer("iq_v_target", q13)

# %% [markdown]
# **Q14** (→ lesson 04) x_t = 0.3, the model predicts ε̂ = 0.5, ᾱ = 0.25. What is x̂₀?

# %% tags=["exercise"]
def q14():
    ### BEGIN SOLUTION
    return (0.3 - 0.75 ** 0.5 * 0.5) / 0.25 ** 0.5
    ### END SOLUTION


check_answer("iq_x0_from_eps", q14)

# %% [markdown]
# **Q15** (→ lesson 04) At ᾱ = 10⁻⁴ an ε-model is off by 0.01. How large is the resulting error in x̂₀?

# %% tags=["exercise"]
def q15():
    ### BEGIN SOLUTION
    return 0.01 * (1 - 1e-4) ** 0.5 / 1e-4 ** 0.5
    ### END SOLUTION


check_answer("iq_x0_error_amplification", q15)

# %% [markdown]
# **Q16** (→ lesson 04) Min-SNR weighting with γ = 5 for an **ε**-prediction model: what weight does a timestep with SNR = 20 get on its ε-MSE?

# %% tags=["exercise"]
def q16():
    ### BEGIN SOLUTION
    return min(20, 5) / 20
    ### END SOLUTION


check_answer("iq_min_snr_eps_weight", q16)

# %% [markdown]
# **Q17** (→ lesson 04) Same, for a **v**-prediction model at SNR = 1.

# %% tags=["exercise"]
def q17():
    ### BEGIN SOLUTION
    return min(1, 5) / (1 + 1)
    ### END SOLUTION


check_answer("iq_min_snr_v_weight", q17)

# %% [markdown]
# **Q18** (→ lesson 04) A schedule is rescaled to zero terminal SNR (ᾱ_{T−1} = 0). Which statements are true? (several)
#
# - a) an ε-prediction model cannot recover x₀ at the last step: the conversion divides by √ᾱ = 0
# - b) zero terminal SNR removes the need for classifier-free guidance
# - c) the sampler must actually start at t = T − 1 (e.g. trailing spacing), or the fix is wasted
# - d) zero terminal SNR makes the schedule's β_t all equal

# %% tags=["exercise"]
def q18():
    ### BEGIN SOLUTION
    return "a, c"
    ### END SOLUTION


check_answer("iq_zero_terminal_snr", q18)

# %% [markdown]
# ## E. Backbones

# %% [markdown]
# **Q19** (→ lesson 05) The course's sinusoidal timestep embedding of dimension 8 (lesson 05). What is the sum of its 8 entries at t = 0?

# %% tags=["exercise"]
def q19():
    ### BEGIN SOLUTION
    return 4 * 1.0 + 4 * 0.0
    ### END SOLUTION


check_answer("iq_embedding_t0_sum", q19)

# %% [markdown]
# **Q20** (→ lesson 05) FiLM/adaLN modulation as in the course's DiT (a zero scale leaves h unchanged), with feature h = 0.2, scale = 0.5 and shift = −0.05. Output?

# %% tags=["exercise"]
def q20():
    ### BEGIN SOLUTION
    return 0.2 * (1 + 0.5) - 0.05
    ### END SOLUTION


check_answer("iq_film_value", q20)

# %% [markdown]
# **Q21** (→ lesson 05) A DiT patchifies a 32×32×4 latent with patch size 2. How many tokens?

# %% tags=["exercise"]
def q21():
    ### BEGIN SOLUTION
    return (32 // 2) * (32 // 2)
    ### END SOLUTION


check_answer("iq_dit_tokens", q21)

# %% [markdown]
# **Q22** (→ lesson 05) The latent grows from 32×32 to 64×64 with the same patch size. By what factor does the cost of the self-attention score matrix grow?

# %% tags=["exercise"]
def q22():
    ### BEGIN SOLUTION
    return ((64 * 64) / (32 * 32)) ** 2
    ### END SOLUTION


check_answer("iq_attention_cost_ratio", q22)

# %% [markdown]
# **Q23** (→ lesson 05) In text-conditioned cross-attention inside the denoiser, where do queries, keys and values come from?
#
# - a) all three from the text embeddings
# - b) queries from text, keys and values from the image features
# - c) queries from the image (latent) features, keys and values from the text embeddings
# - d) all three from the image features; the text is added to the timestep embedding

# %% tags=["exercise"]
def q23():
    ### BEGIN SOLUTION
    return "c"
    ### END SOLUTION


check_answer("iq_cross_attention_qkv", q23)

# %% [markdown]
# ## F. Classifier-free guidance

# %% [markdown]
# **Q24** (→ lesson 06) Unconditional prediction 0.2, conditional 0.5, guidance scale s = 7.5 (diffusers' convention). Guided value?

# %% tags=["exercise"]
def q24():
    ### BEGIN SOLUTION
    return 0.2 + 7.5 * (0.5 - 0.2)
    ### END SOLUTION


check_answer("iq_cfg_value", q24)

# %% [markdown]
# **Q25** (→ lesson 06) The CFG paper writes (1 + w)·cond − w·uncond. Which diffusers scale s equals w = 2?

# %% tags=["exercise"]
def q25():
    ### BEGIN SOLUTION
    return 2 + 1
    ### END SOLUTION


check_answer("iq_cfg_w_to_s", q25)

# %% [markdown]
# **Q26** (→ lesson 06) With s = 0 the guided prediction is…
#
# - a) the unconditional prediction
# - b) the conditional prediction
# - c) zero
# - d) undefined

# %% tags=["exercise"]
def q26():
    ### BEGIN SOLUTION
    return "a"
    ### END SOLUTION


check_answer("iq_cfg_scale_zero", q26)

# %% [markdown]
# **Q27** (→ lesson 06) Raising the guidance scale far above the trained regime typically…
#
# - a) improves both diversity and fidelity
# - b) increases prompt fidelity, reduces diversity, and eventually over-saturates images
# - c) has no effect after training with condition dropout
# - d) makes sampling cheaper

# %% tags=["exercise"]
def q27():
    ### BEGIN SOLUTION
    return "b"
    ### END SOLUTION


check_answer("iq_cfg_high_scale", q27)

# %% [markdown]
# **Q28** (→ lesson 06) Training with condition dropout p = 0.1 on a batch of 10,000 rows: about what *fraction* of rows trains the unconditional model?

# %% tags=["exercise"]
def q28():
    ### BEGIN SOLUTION
    return 0.1
    ### END SOLUTION


check_answer("iq_cfg_dropout_batch", q28)

# %% [markdown]
# ## G. DDIM and fast sampling

# %% [markdown]
# **Q29** (→ lesson 07) T = 1000, 50 DDIM steps with **leading** spacing. At which timestep does sampling start?

# %% tags=["exercise"]
def q29():
    ### BEGIN SOLUTION
    return (50 - 1) * (1000 // 50)
    ### END SOLUTION


check_answer("iq_leading_first_step", q29)

# %% [markdown]
# **Q30** (→ lesson 07) Same with **trailing** spacing. First timestep?

# %% tags=["exercise"]
def q30():
    ### BEGIN SOLUTION
    return 1000 - 1
    ### END SOLUTION


check_answer("iq_trailing_first_step", q30)

# %% [markdown]
# **Q31** (→ lesson 07) What is DDIM's σ_t for η = 0, at any step?

# %% tags=["exercise"]
def q31():
    ### BEGIN SOLUTION
    return 0.0
    ### END SOLUTION


check_answer("iq_ddim_sigma_eta0", q31)

# %% [markdown]
# **Q32** (→ lesson 07) DDIM with η = 1 on the full grid of all T timesteps is…
#
# - a) deterministic ODE sampling
# - b) rectified-flow Euler sampling
# - c) ancestral DDPM sampling (the same per-step noise as the DDPM posterior)
# - d) not a valid sampler

# %% tags=["exercise"]
def q32():
    ### BEGIN SOLUTION
    return "c"
    ### END SOLUTION


check_answer("iq_ddim_eta1_is", q32)

# %% [markdown]
# **Q33** (→ lesson 07) Which statement about cutting DDIM from 50 to 10 steps is right?
#
# - a) it is free: DDIM is exact for any number of steps
# - b) quality can only improve, since fewer steps accumulate less error
# - c) it changes the trained model, so it needs retraining
# - d) it is a speed–quality trade-off from a larger discretisation error, to be measured on the task

# %% tags=["exercise"]
def q33():
    ### BEGIN SOLUTION
    return "d"
    ### END SOLUTION


check_answer("iq_fewer_steps_tradeoff", q33)

# %% [markdown]
# ## H. Latent diffusion

# %% [markdown]
# **Q34** (→ lesson 08) A 512×512×3 image is encoded to a 64×64×4 latent. How many times fewer values does the denoiser process?

# %% tags=["exercise"]
def q34():
    ### BEGIN SOLUTION
    return (512 * 512 * 3) / (64 * 64 * 4)
    ### END SOLUTION


check_answer("iq_latent_compression", q34)

# %% [markdown]
# **Q35** (→ lesson 08) A VAE's encoded latents have standard deviation 5.49. Which latent scale factor makes them unit-variance for diffusion?

# %% tags=["exercise"]
def q35():
    ### BEGIN SOLUTION
    return 1 / 5.49
    ### END SOLUTION


check_answer("iq_latent_scale_factor", q35)

# %% [markdown]
# **Q36** (→ lesson 08) You sample a latent model and decode **without** dividing by the scale factor (≈ 0.18). What do you expect?
#
# - a) nothing changes, the decoder normalises its input
# - b) flat, washed-out, low-contrast images (the decoder gets latents ~5× too small)
# - c) a shape error
# - d) images that are exactly 5× brighter

# %% tags=["exercise"]
def q36():
    ### BEGIN SOLUTION
    return "b"
    ### END SOLUTION


check_answer("iq_forgot_scale_symptom", q36)

# %% [markdown]
# **Q37** (→ lesson 08) Why is latent diffusion cheaper than pixel diffusion at the same resolution?
#
# - a) the many denoising steps run on the small latent; the decoder runs once at the end
# - b) the VAE replaces the denoiser
# - c) latents need no noise schedule
# - d) the decoder is run at every step but is cheap

# %% tags=["exercise"]
def q37():
    ### BEGIN SOLUTION
    return "a"
    ### END SOLUTION


check_answer("iq_vae_role", q37)

# %% [markdown]
# ## I. Flow matching and rectified flow
# (Convention of this project: **t = 0 is data, t = 1 is noise**.)

# %% [markdown]
# **Q38** (→ lesson 09) x₀ = 1, ε = −1, t = 0.25. What is x_t on the straight (rectified-flow) path?

# %% tags=["exercise"]
def q38():
    ### BEGIN SOLUTION
    return (1 - 0.25) * 1.0 + 0.25 * (-1.0)
    ### END SOLUTION


check_answer("iq_flow_interpolant", q38)

# %% [markdown]
# **Q39** (→ lesson 09) Same x₀ and ε: what is the velocity target v = dx_t/dt?

# %% tags=["exercise"]
def q39():
    ### BEGIN SOLUTION
    return -1.0 - 1.0
    ### END SOLUTION


check_answer("iq_flow_velocity", q39)

# %% [markdown]
# **Q40** (→ lesson 09) At t = 0.25 a model predicts v = −2 for x_t = 0.5. What clean sample does that imply?

# %% tags=["exercise"]
def q40():
    ### BEGIN SOLUTION
    return 0.5 - 0.25 * (-2.0)
    ### END SOLUTION


check_answer("iq_flow_x0_from_v", q40)

# %% [markdown]
# **Q41** (→ lesson 09) SD3's timestep shift with s = 3: what is the shifted time t' for t = 0.5?

# %% tags=["exercise"]
def q41():
    ### BEGIN SOLUTION
    return 3 * 0.5 / (1 + 2 * 0.5)
    ### END SOLUTION


check_answer("iq_shifted_time", q41)

# %% [markdown]
# **Q42** (→ lesson 09) Why sample training times from a logit-normal instead of uniformly?
#
# - a) it is required for the loss to be unbiased
# - b) it makes the path straighter
# - c) it spends more training on the middle of the path, where the velocity is hardest to predict, and less on the near-trivial ends
# - d) it removes the need for a time embedding

# %% tags=["exercise"]
def q42():
    ### BEGIN SOLUTION
    return "c"
    ### END SOLUTION


check_answer("iq_logit_normal_why", q42)

# %% [markdown]
# ## J. Evaluation, safety and governance

# %% [markdown]
# **Q43** (→ lesson 10) FID between two 1-D Gaussians N(0, 1) and N(1, 2²)?

# %% tags=["exercise"]
def q43():
    ### BEGIN SOLUTION
    return (0 - 1) ** 2 + (1 - 2) ** 2
    ### END SOLUTION


check_answer("iq_fid_1d_gaussians", q43)

# %% [markdown]
# **Q44** (→ lesson 10) Two sets of 50 **real** held-out digits are compared by FID. What do you expect?
#
# - a) exactly 0, since they are the same distribution
# - b) a clearly positive number that would shrink with larger sets
# - c) a negative number half of the time
# - d) the same number as for 5,000 digits

# %% tags=["exercise"]
def q44():
    ### BEGIN SOLUTION
    return "b"
    ### END SOLUTION


check_answer("iq_fid_small_n", q44)

# %% [markdown]
# **Q45** (→ lesson 10) A generated banner claims no real SKU but shows a brand logo. Under the chapter's routing rule it goes to…
#
# - a) synthetic_labeled_preview
# - b) human_review
# - c) nowhere: it is blocked

# %% tags=["exercise"]
def q45():
    ### BEGIN SOLUTION
    return "b"
    ### END SOLUTION


check_answer("iq_route_logo_only", q45)

# %% [markdown]
# **Q46** (→ lesson 10) Which belong in a provenance label embedded in a generated image? (several)
#
# - a) a flag saying it is synthetic
# - b) the tool and its version
# - c) copies of the training images it is closest to
# - d) the model fingerprint, seed and sampler settings
# - e) the password of the account that generated it

# %% tags=["exercise"]
def q46():
    ### BEGIN SOLUTION
    return "a, b, d"
    ### END SOLUTION


check_answer("iq_provenance_fields", q46)

# %% [markdown]
# **Q47** (→ lesson 10) The mean nearest-neighbour ratio of 500 samples is 0.97. What is the right next step for a memorisation audit?
#
# - a) nothing: 0.97 proves there are no copies
# - b) retrain with fewer steps
# - c) switch to KID
# - d) look at the smallest per-sample ratios and their nearest training images, and confirm the check catches planted copies

# %% tags=["exercise"]
def q47():
    ### BEGIN SOLUTION
    return "d"
    ### END SOLUTION


check_answer("iq_memorisation_check", q47)

# %% [markdown]
# ## K. Find the bug
#
# Each snippet runs without an error and is wrong. The first four ask which line is wrong;
# the last five ask you to write the corrected function (graded with `check`).

# %% [markdown]
# **Q48** (→ lesson 04) An **ε**-prediction model is trained with "min-SNR" weighting, γ = 5:
#
# ```python
# snr = schedule.snr[t]
# w = jnp.minimum(snr, 5.0)                                  # line 1
# loss = w * ((eps_pred - eps) ** 2).mean(axis=(1, 2, 3))    # line 2
# loss = loss.mean()                                         # line 3
# ```
# Which statement is right?
#
# - a) line 2 must compare with x₀, not ε
# - b) line 3 must divide by the batch size
# - c) line 1 is the x₀-prediction weight; for ε it must be min(SNR, γ)/SNR, otherwise high-SNR steps are weighted SNR·min(SNR, γ) in x₀ terms
# - d) there is no bug

# %% tags=["exercise"]
def q48():
    ### BEGIN SOLUTION
    return "c"
    ### END SOLUTION


check_answer("iq_bug_snr_weight", q48)

# %% [markdown]
# **Q49** (→ lesson 02) A training step draws timesteps like this:
#
# ```python
# t = jax.random.randint(key, (B,), 1, T + 1)      # line 1: DDPM's t ~ U{1..T}
# ab = schedule.alpha_bars[t]                      # line 2
# x_t = jnp.sqrt(ab)[:, None, None, None] * x0 + jnp.sqrt(1 - ab)[:, None, None, None] * eps
# ```
# What is wrong?
#
# - a) nothing; DDPM counts timesteps from 1
# - b) `alpha_bars` is indexed 0..T−1: t = T is out of range (JAX silently clamps it), and t = 0 is never trained
# - c) the noise must be drawn after x_t
# - d) line 2 needs `alpha_bars[t - 2]`

# %% tags=["exercise"]
def q49():
    ### BEGIN SOLUTION
    return "b"
    ### END SOLUTION


check_answer("iq_bug_timestep_range", q49)

# %% [markdown]
# **Q50** (→ lesson 04) A preset says `prediction="v"`. The training step:
#
# ```python
# pred = model(x_t, t, cond)
# loss = ((pred - eps) ** 2).mean()
# ```
# What is the bug?
#
# - a) the target must match the prediction type: compare with v = √ᾱ·ε − √(1−ᾱ)·x₀
# - b) the loss must be an L1 loss for v
# - c) `cond` must be dropped at every step
# - d) there is none; v and ε are the same target

# %% tags=["exercise"]
def q50():
    ### BEGIN SOLUTION
    return "a"
    ### END SOLUTION


check_answer("iq_bug_wrong_target", q50)

# %% [markdown]
# **Q51** (→ lesson 08) A latent pipeline, abridged:
#
# ```python
# z = vae.encode(images) * scale        # training latents, scale ≈ 0.18
# ...
# z0 = sampler(model, shape)            # a sampled latent
# images = vae.decode(z0)               # line 4
# ```
# What is wrong?
#
# - a) the encode line should divide by the scale
# - b) the sampler must be given the scale
# - c) nothing; the decoder was trained on scaled latents
# - d) line 4 must decode z0 / scale: the VAE was trained on unscaled latents

# %% tags=["exercise"]
def q51():
    ### BEGIN SOLUTION
    return "d"
    ### END SOLUTION


check_answer("iq_bug_latent_decode", q51)

# %% [markdown]
# **Q52** (→ lesson 04) Clipping x̂₀ to the data range inside a sampler:
#
# ```python
# x0 = (x_t - jnp.sqrt(1 - ab) * eps) / jnp.sqrt(ab)
# x0 = jnp.clip(x0, -1, 1)
# return x0, eps            # eps is the model's original prediction
# ```
# After clipping, x₀ and ε no longer reconstruct x_t, so the DDIM update mixes two
# inconsistent estimates. Write the corrected version that re-derives ε from the clipped x₀.


# %% tags=["exercise"]
def fix_clipped_x0_eps(eps, x_t, alpha_bar):
    """eps, x_t: (B, ...); alpha_bar: (B,). Return (x0, eps) with x0 clipped to [-1, 1] and eps consistent with it."""
    ### BEGIN SOLUTION
    ab = jnp.asarray(alpha_bar).reshape((-1,) + (1,) * (x_t.ndim - 1))
    x0 = jnp.clip((x_t - jnp.sqrt(1 - ab) * eps) / jnp.sqrt(ab), -1.0, 1.0)
    return x0, (x_t - jnp.sqrt(ab) * x0) / jnp.sqrt(1 - ab)
    ### END SOLUTION


check("fix_clipped_x0_eps", fix_clipped_x0_eps)

# %% [markdown]
# **Q53** (→ lesson 07) A DDIM step that accepts η but never uses the noise:
#
# ```python
# sigma = eta * jnp.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
# x_prev = jnp.sqrt(ab_prev) * x0 + jnp.sqrt(1 - ab_prev - sigma**2) * eps
# ```
# With η > 0 the direction term shrinks but nothing replaces the removed variance: samples
# come out too smooth. Write the correct step (ε-prediction, no clipping).


# %% tags=["exercise"]
def fix_ddim_eta_step(eps, x_t, ab, ab_prev, eta, noise):
    """eps, x_t, noise: (B, ...); ab, ab_prev: (B,); eta: float. Return x_prev, shape (B, ...)."""
    ### BEGIN SOLUTION
    shape = (-1,) + (1,) * (x_t.ndim - 1)
    ab, ab_prev = jnp.asarray(ab).reshape(shape), jnp.asarray(ab_prev).reshape(shape)
    x0 = (x_t - jnp.sqrt(1 - ab) * eps) / jnp.sqrt(ab)
    sigma = eta * jnp.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
    return jnp.sqrt(ab_prev) * x0 + jnp.sqrt(jnp.maximum(1 - ab_prev - sigma**2, 0.0)) * eps + sigma * noise
    ### END SOLUTION


check("fix_ddim_eta_step", fix_ddim_eta_step)

# %% [markdown]
# **Q54** (→ lesson 06) A config file stores the CFG paper's **w** = 2, and the code does
#
# ```python
# guided = uncond + w * (cond - uncond)
# ```
# That is diffusers' formula with s = w, one unit weaker than intended. Write the guided
# prediction for the paper's w.


# %% tags=["exercise"]
def fix_cfg_paper_w(uncond, cond, w):
    """uncond, cond: arrays of the same shape; w: the paper's guidance weight. Return the guided prediction."""
    ### BEGIN SOLUTION
    return (1.0 + w) * cond - w * uncond
    ### END SOLUTION


check("fix_cfg_paper_w", fix_cfg_paper_w)

# %% [markdown]
# **Q55** (→ lesson 09) Code copied from a project that uses the opposite time convention:
#
# ```python
# x_t = (1 - t) * eps + t * x0      # t = 0 noise, t = 1 data
# ```
# In *this* project t = 0 is data and t = 1 is noise, so a model trained on these pairs and
# sampled with our samplers runs backwards. Write the interpolant in our convention.


# %% tags=["exercise"]
def fix_flow_interpolant(x0, eps, t):
    """x0, eps: (B, D); t: (B,) in [0, 1], 0 = data, 1 = noise. Return x_t, shape (B, D)."""
    ### BEGIN SOLUTION
    t = jnp.asarray(t).reshape(-1, 1)
    return (1.0 - t) * x0 + t * eps
    ### END SOLUTION


check("fix_flow_interpolant", fix_flow_interpolant)

# %% [markdown]
# **Q56** (→ lesson 07) A "trailing" grid written as
#
# ```python
# grid = np.arange(T, 0, -T // n)     # starts at T: one past the last valid timestep
# ```
# is wrong twice over. Write the trailing grid as the library builds it (lesson 07): n
# descending integer timesteps, the first one T − 1, also when T / n is not a whole number.


# %% tags=["exercise"]
def fix_trailing_grid(T, n):
    """T: number of training timesteps; n: sampling steps. Return the n descending int timesteps."""
    ### BEGIN SOLUTION
    return (np.round(np.arange(T, 0, -T / n)) - 1)[:n].astype(np.int64)
    ### END SOLUTION


check("fix_trailing_grid", fix_trailing_grid)

# %% [markdown]
# ## Check your understanding
#
# These are open questions for a whiteboard; sketch an answer before opening the notes.
#
# 1. Derive q(x_t | x₀) from the one-step forward process, and say which property of
#    Gaussians you used.
# 2. Show that ε-MSE = SNR · x₀-MSE, and use it to explain why plain ε-training
#    under-weights the noisy timesteps.
# 3. When would you choose v-prediction over ε-prediction, and why does zero terminal SNR
#    force the choice?
# 4. Explain how CFG doubles the cost per step, and two ways to pay less for it.
# 5. You must cut sampling latency by 5×. List the options from lessons 07–09 and how you
#    would decide between them with measurements.
# 6. A product team wants to publish generated "product detail" images. What checks would
#    you put between the sampler and the shop page?
#
# <details>
# <summary>Notes</summary>
#
# 1. x_t = √α_t x_{t−1} + √β_t ε_t; substitute recursively: a sum of independent Gaussians
#    is Gaussian with the variances adding, giving mean √ᾱ_t x₀ and variance 1 − ᾱ_t
#    (→ lesson 01).
# 2. x̂₀ − x₀ = −√(1−ᾱ)/√ᾱ · (ε̂ − ε), so squared errors scale by (1−ᾱ)/ᾱ = 1/SNR. At high
#    noise SNR ≪ 1, so a given x₀ error shows up as a tiny ε error and gets little gradient
#    (→ lessons 02, 04).
# 3. v (or x₀) when the noisy end matters (high resolution, zero terminal SNR, few steps):
#    v stays well conditioned at every SNR. At SNR = 0 an ε-prediction carries no
#    information about x₀ (→ lesson 04).
# 4. Two predictions per step (conditional + unconditional, usually one batched call).
#    Cheaper: guide only part of the steps (interval guidance), distil the guided model,
#    or lower the step count (→ lessons 06, 07).
# 5. Fewer DDIM steps (trailing grid), a better ODE solver (Heun), a flow model with
#    straighter paths, a latent model, distillation; measure quality (FID/KID at equal N,
#    class accuracy) against wall time on the same hardware (→ lessons 07–10).
# 6. A routing gate (SKU claims and logos go to a person), a provenance label in every
#    file, memorisation and quality checks on the model, and a rule that synthetic images
#    are never evidence (→ lesson 10).
# </details>
#
# ## Summary
#
# * The same machinery grades everything: `check(name, fn)` for functions and
#   `check_answer(name, value)` for numbers and letters; a wrong answer names the lesson to
#   reread, never the answer.
# * The recurring numbers — SNR, ᾱ of the linear schedule, the ε→x₀ error factor
#   √(1−ᾱ)/√ᾱ, min-SNR weights, CFG's s = w + 1, trailing vs leading grids, the latent
#   compression factor, the flow interpolant — are each one line of algebra away from the
#   forward process x_t = √ᾱ x₀ + √(1−ᾱ) ε (or its straight-line twin).
# * The recurring bugs are convention mismatches: a target that does not match the
#   prediction type, a weight for the wrong target, a guidance scale in the other
#   convention, an index range off by one, a time axis flipped, a scale factor forgotten,
#   and an estimate (ε after clipping x₀) not kept consistent with its partner.
