"""Lesson 10 exercises: the review-routing rule, FID between Gaussians, memorisation ratio.

The references call the library (``governance.route``, ``metrics.frechet_distance``,
``metrics.nearest_neighbour_distances``); the learner writes each by hand.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np

from diffusion_jax import governance, metrics
from diffusion_jax.exercises._core import Variant, case, register

LESSON = "10"


def _routing_cases():
    all_four = list(itertools.product([False, True], repeat=2))
    sku = np.array([a for a, _ in all_four])
    logo = np.array([b for _, b in all_four])
    rng = np.random.default_rng(1000)
    big_sku, big_logo = rng.random(25) < 0.4, rng.random(25) < 0.3
    chapter = governance.chapter_assets()
    return [
        case("all four flag combinations", sku, logo,
             rows=["no flags", "logo only", "SKU claim only", "both flags"]),
        case("the chapter's assets", np.array([a.claims_real_sku for a in chapter]),
             np.array([a.contains_logo for a in chapter]), rows=[a.name for a in chapter]),
        case("25 random assets", big_sku, big_logo),
        case("one asset without flags", np.array([False]), np.array([False])),
    ]


def _routing_reference(claims_real_sku, contains_logo):
    decisions = [governance.route(governance.Asset(f"asset{i}", bool(s), bool(g)))
                 for i, (s, g) in enumerate(zip(claims_real_sku, contains_logo))]
    return np.array([d == governance.REVIEW for d in decisions])


register(
    "needs_human_review",
    lesson=LESSON,
    reference=_routing_reference,
    cases=_routing_cases,
    hints=(
        "Read the chapter's rule again: which flags, alone, are enough to send an asset to a person?",
        "Each flag alone triggers review, so the result is True where at least one of the two arrays is True; "
        "NumPy has an element-wise function for that (no Python loop needed).",
        "return np.logical_or(claims_real_sku, contains_logo)",
    ),
    variants=(
        Variant("both flags required", lambda a, b: np.logical_and(a, b),
                "review only when both flags are set; either flag alone is enough"),
        Variant("logo ignored", lambda a, b: np.asarray(a, bool),
                "only the SKU claim checked; a logo alone also sends the asset to review"),
        Variant("exclusive or", lambda a, b: np.logical_xor(a, b),
                "an exclusive or: an asset with both flags must go to review too"),
    ),
)


def _random_spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)  # (d, d), symmetric positive definite


def _gaussian_cases():
    rng = np.random.default_rng(1010)
    cases = []
    for d in (1, 2, 5, 16):
        cases.append(case(f"random Gaussians in {d}-D", rng.standard_normal(d), _random_spd(rng, d),
                          rng.standard_normal(d), _random_spd(rng, d)))
    eye = np.eye(3)
    cases.append(case("two identical Gaussians (distance 0)", np.zeros(3), eye, np.zeros(3), eye))
    cases.append(case("N(0, I) vs N(1, 4 I) in 3-D (the hand check: 6)", np.zeros(3), eye, np.ones(3), 4 * eye))
    return cases


def _fid_with(mean_term, cross):
    def fid(mu1, s1, mu2, s2):
        import scipy.linalg

        d = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
        s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
        return float(mean_term(d) + np.trace(s1) + np.trace(s2) - cross(s1, s2, scipy.linalg))
    return fid


register(
    "gaussian_fid",
    lesson=LESSON,
    reference=metrics.frechet_distance,
    cases=_gaussian_cases,
    hints=(
        "Two parts: how far apart the means are, and how different the covariances are. Check your answer on "
        "the hand example of the exercise text before running the grader.",
        "The mean part is the squared Euclidean distance. The covariance part is tr(S1) + tr(S2) minus twice "
        "the trace of the matrix square root of S1 @ S2 (scipy.linalg.sqrtm; keep the real part).",
        "d = mu1 - mu2; return float(d @ d + np.trace(S1) + np.trace(S2) - 2 * np.trace(scipy.linalg.sqrtm(S1 @ S2).real))",
    ),
    variants=(
        Variant("cross term without the 2", _fid_with(lambda d: d @ d, lambda a, b, la: np.trace(la.sqrtm(a @ b).real)),
                "the cross term without its factor 2: two identical Gaussians must be at distance 0"),
        Variant("mean distance not squared", _fid_with(lambda d: np.sqrt(d @ d),
                                                       lambda a, b, la: 2 * np.trace(la.sqrtm(a @ b).real)),
                "the distance between the means, not squared; FID adds the squared distance"),
        Variant("no matrix square root", _fid_with(lambda d: d @ d, lambda a, b, la: 2 * np.trace(a @ b)),
                "the trace of S1 @ S2 itself; the formula takes its matrix square root first"),
    ),
    rtol=1e-5,
    atol=1e-6,
)


def _memo_cases():
    cases = []
    for i, (n, m, k, hw) in enumerate([(6, 20, 5, 4), (10, 40, 8, 6), (3, 12, 4, 3)]):
        rng = np.random.default_rng(1020 + i)
        train = rng.uniform(-1, 1, (m, hw, hw, 1)).astype(np.float32)
        samples = rng.uniform(-1, 1, (n, hw, hw, 1)).astype(np.float32)
        samples[0] = train[3]  # a planted exact copy: its ratio is 0
        samples[1] = train[5] + 0.05 * rng.standard_normal((hw, hw, 1)).astype(np.float32)
        held_out = rng.uniform(-1, 1, (k, hw, hw, 1)).astype(np.float32)
        cases.append(case(f"{n} samples of {hw}x{hw}, {m} training, {k} held-out images", samples, train, held_out,
                          rows=["a planted copy", "a near copy"] + [f"sample {j}" for j in range(2, n)]))
    return cases


def _nn(x, train):
    a = np.asarray(x, np.float64).reshape(len(x), -1)  # (N, D)
    t = np.asarray(train, np.float64).reshape(len(train), -1)  # (M, D)
    return np.linalg.norm(a[:, None, :] - t[None, :, :], axis=-1).min(axis=1)


def _memo_reference(samples, train_images, held_out):
    d, _ = metrics.nearest_neighbour_distances(samples, train_images)
    d_ref, _ = metrics.nearest_neighbour_distances(held_out, train_images)
    return d / np.median(d_ref)


register(
    "memorisation_ratio",
    lesson=LESSON,
    reference=_memo_reference,
    cases=_memo_cases,
    hints=(
        "Two nearest-neighbour searches against the training images: one for the samples, one for the "
        "held-out images, which tell you what distance a genuinely new image has.",
        "Flatten images to (N, H*W*C) vectors, take the L2 distance from each to every training image, keep "
        "the smallest per row; then divide the samples' distances by the median of the held-out ones.",
        "d = norm(a[:, None] - train[None], axis=-1).min(axis=1) for samples and held-out; "
        "return d_samples / np.median(d_held_out)",
    ),
    variants=(
        Variant("mean instead of median", lambda s, t, h: _nn(s, t) / np.mean(_nn(h, t)),
                "divided by the mean held-out distance; the median is the reference, robust to a few far outliers"),
        Variant("squared distances", lambda s, t, h: _nn(s, t) ** 2 / np.median(_nn(h, t) ** 2),
                "squared distances; the ratio compares plain L2 distances"),
        Variant("not normalised", lambda s, t, h: _nn(s, t),
                "the raw distances; divide by the typical held-out distance so 1 means 'as far as a new image'"),
    ),
    rtol=1e-4,
    atol=1e-5,
)


# ------------------------------------------------------------------ fix_mmd (find the bugs)


def _mmd_cases():
    cases = []
    for i, (label, n, d, shift) in enumerate([
        ("two samples of one distribution, 20 x 4", 20, 4, 0.0),
        ("shifted by 0.5, 30 x 3", 30, 3, 0.5),
        ("shifted by 2, 10 x 8", 10, 8, 2.0),
    ]):
        rng = np.random.default_rng(1040 + i)
        cases.append(case(label, rng.standard_normal((n, d)), rng.standard_normal((n, d)) + shift))
    return cases


def _kernel(a, b):
    return (a @ b.T / a.shape[1] + 1.0) ** 3  # KID's polynomial kernel


def _mmd_with(drop_diagonal, pairs):
    def mmd(x, y):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        m = len(x)
        kxx, kyy = _kernel(x, x), _kernel(y, y)
        if drop_diagonal:
            kxx, kyy = kxx - np.diag(np.diag(kxx)), kyy - np.diag(np.diag(kyy))
        return float((kxx.sum() + kyy.sum()) / pairs(m) - 2.0 * _kernel(x, y).mean())
    return mmd


register(
    "fix_mmd",
    lesson=LESSON,
    reference=lambda x, y: metrics.kid(jax.random.key(0), x, y, num_subsets=1, subset_size=len(x))[0],
    cases=_mmd_cases,
    hints=(
        "An unbiased estimate averages k over pairs of DIFFERENT samples. Which terms of kxx and kyy pair "
        "a sample with itself, and how many pairs are left?",
        "Leave the diagonals of kxx and kyy out (k(x_i, x_i) is not a pair of two draws), and divide what "
        "is left by the number of ordered pairs i != j. The cross term keeps every pair.",
        "sxx = kxx.sum() - np.trace(kxx); syy = kyy.sum() - np.trace(kyy); "
        "return (sxx + syy) / (m * (m - 1)) - 2 * kxy.mean()",
    ),
    variants=(
        Variant("both bugs left", _mmd_with(False, lambda m: m * m),
                "the code as given: the diagonals are still in and the average is over m * m terms; the "
                "estimate stays above 0 even for two samples of one distribution"),
        Variant("diagonal removed, wrong count", _mmd_with(True, lambda m: m * m),
                "the diagonals are out, but the sums are still divided by m * m; count the pairs that are left"),
        Variant("right count, diagonal kept", _mmd_with(False, lambda m: m * (m - 1)),
                "the count of pairs is right now, but the diagonal terms k(x_i, x_i) are still in the sums"),
    ),
    rtol=1e-6,
    atol=1e-8,
)
