"""Lesson 10 exercises: the review-routing rule, FID between Gaussians, memorisation ratio.

The references call the library (``governance.route``, ``metrics.frechet_distance``,
``metrics.nearest_neighbour_distances``); the learner writes each by hand.
"""

from __future__ import annotations

import itertools

import numpy as np

from diffusion_jax import governance, metrics
from diffusion_jax.exercises._core import register

LESSON = "10"


def _routing_cases():
    all_four = list(itertools.product([False, True], repeat=2))
    sku = np.array([a for a, _ in all_four])
    logo = np.array([b for _, b in all_four])
    rng = np.random.default_rng(1000)
    big_sku, big_logo = rng.random(25) < 0.4, rng.random(25) < 0.3
    chapter = governance.chapter_assets()
    return [
        ((sku, logo), {}),
        ((np.array([a.claims_real_sku for a in chapter]), np.array([a.contains_logo for a in chapter])), {}),
        ((big_sku, big_logo), {}),
        ((np.array([False]), np.array([False])), {}),
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
    hint="an asset needs review when it claims a real SKU OR shows a logo: an element-wise "
    "logical or of the two boolean arrays (np.logical_or), shape (N,)",
)


def _random_spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)  # (d, d), symmetric positive definite


def _gaussian_cases():
    rng = np.random.default_rng(1010)
    cases = []
    for d in (1, 2, 5, 16):
        cases.append(((rng.standard_normal(d), _random_spd(rng, d),
                       rng.standard_normal(d), _random_spd(rng, d)), {}))
    eye = np.eye(3)
    cases.append(((np.zeros(3), eye, np.zeros(3), eye), {}))  # identical: 0
    cases.append(((np.zeros(3), eye, np.ones(3), 4 * eye), {}))  # 3 + 3 * (2 - 1)^2 = 6
    return cases


register(
    "gaussian_fid",
    lesson=LESSON,
    reference=metrics.frechet_distance,
    cases=_gaussian_cases,
    hint="||mu1 - mu2||^2 + trace(S1) + trace(S2) - 2 * trace(sqrtm(S1 @ S2)); scipy.linalg.sqrtm "
    "gives the matrix square root (take .real); return a float",
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
        cases.append(((samples, train, held_out), {}))
    return cases


def _memo_reference(samples, train_images, held_out):
    d, _ = metrics.nearest_neighbour_distances(samples, train_images)
    d_ref, _ = metrics.nearest_neighbour_distances(held_out, train_images)
    return d / np.median(d_ref)


register(
    "memorisation_ratio",
    lesson=LESSON,
    reference=_memo_reference,
    cases=_memo_cases,
    hint="flatten images to (N, H*W*C); for every sample the L2 distance to its closest training "
    "image; do the same for the held-out images; divide the samples' distances by the MEDIAN "
    "held-out distance; shape (N,)",
    rtol=1e-4,
    atol=1e-5,
)
