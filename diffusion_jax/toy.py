"""An exact toy: a Gaussian mixture whose optimal denoiser is known in closed form.

Data: x0 ~ sum_k pi_k N(mu_k, s_k^2 I) in D dimensions. Noised with any affine path
x_t = a x0 + b eps (VP diffusion: a = sqrt(ab_t), b = sqrt(1 - ab_t); rectified flow:
a = 1 - t, b = t), the marginal is again a mixture with components N(a mu_k, (a^2 s_k^2
+ b^2) I), and the MSE-optimal x0 prediction is the posterior mean

    E[x0 | x_t] = sum_k r_k(x_t) (mu_k + a s_k^2 / (a^2 s_k^2 + b^2) (x_t - a mu_k))

with responsibilities r_k proportional to pi_k N(x_t; a mu_k, (a^2 s_k^2 + b^2) I).
A denoiser built from it is what a perfectly trained network would output, so any
error a sampler makes on this toy is the sampler's own.

Conditioning: a label ``k`` in ``0..K-1`` selects component k (the conditional model);
the label ``K`` (:attr:`GaussianMixture.null_label`) means unconditional, as in CFG.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from diffusion_jax._checks import check_choice, is_concrete
from diffusion_jax.parameterization import PREDICTIONS, to_eps, velocity
from diffusion_jax.schedules import Schedule

__all__ = ["GaussianMixture", "mixture", "default_mixture", "DEFAULT_MIXTURE"]


@functools.partial(jax.tree_util.register_dataclass, data_fields=["weights", "means", "stds"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    weights: jax.Array  # (K,) mixing weights pi_k, summing to 1
    means: jax.Array  # (K, D) component means mu_k
    stds: jax.Array  # (K,) isotropic component standard deviations s_k > 0

    @property
    def num_components(self) -> int:
        return self.weights.shape[0]

    @property
    def null_label(self) -> int:
        return self.weights.shape[0]

    def sample(self, key, n: int):
        """``n`` draws: returns ``(x0 (n, D), labels (n,))``."""
        key_k, key_x = jax.random.split(key)
        labels = jax.random.choice(key_k, self.num_components, (n,), p=self.weights)
        noise = jax.random.normal(key_x, (n, self.means.shape[1]))
        return self.means[labels] + self.stds[labels, None] * noise, labels

    def log_prob(self, x, a=1.0, b=0.0):
        """log density of x_t = a x0 + b eps at ``x`` ``(B, D)``; defaults give the data."""
        return jax.nn.logsumexp(self._log_joint(x, a, b), axis=-1)

    def _log_joint(self, x, a, b):
        a, b = jnp.reshape(a, (-1, 1)), jnp.reshape(b, (-1, 1))  # (B or 1, 1)
        var = a**2 * self.stds[None, :] ** 2 + b**2  # (B, K)
        sq = jnp.sum((x[:, None, :] - a[..., None] * self.means[None]) ** 2, axis=-1)  # (B, K)
        D = x.shape[-1]
        return jnp.log(self.weights)[None] - 0.5 * D * jnp.log(2 * jnp.pi * var) - 0.5 * sq / var

    def responsibilities(self, x_t, a, b, labels=None):
        """Posterior component probabilities r_k(x_t), ``(B, K)``; one-hot for real labels.

        ``labels``: ``(B,)`` ints, a component ``0..K-1`` or the null label ``K``
        (unconditional). Any other label raises when concrete; traced (inside a jitted
        sampler) it turns its row into NaN rather than into a plausible point.
        """
        r = jax.nn.softmax(self._log_joint(x_t, a, b), axis=-1)
        if labels is None:
            return r
        labels = jnp.asarray(labels)
        K = self.num_components
        if is_concrete(labels) and labels.size and (int(labels.min()) < 0 or int(labels.max()) > K):
            raise ValueError(f"cond (the mixture component) must lie in [0, {K}] ({K} = unconditional), "
                             f"got values in [{int(labels.min())}, {int(labels.max())}]")
        one_hot = jax.nn.one_hot(labels, K)
        out = jnp.where((labels < K)[:, None], one_hot, r)
        return jnp.where(((labels >= 0) & (labels <= K))[:, None], out, jnp.nan)

    def posterior_x0(self, x_t, a, b, labels=None):
        """E[x0 | x_t] (and the label, if any) for the path x_t = a x0 + b eps; ``(B, D)``."""
        x_t = jnp.asarray(x_t)
        a, b = jnp.reshape(a, (-1, 1)), jnp.reshape(b, (-1, 1))  # (B or 1, 1)
        r = self.responsibilities(x_t, a, b, labels)  # (B, K)
        s2 = self.stds[None, :] ** 2  # (1, K)
        gain = a * s2 / (a**2 * s2 + b**2)  # (B, K)
        resid = x_t[:, None, :] - a[..., None] * self.means[None]  # (B, K, D)
        m = self.means[None] + gain[..., None] * resid  # (B, K, D)
        return jnp.sum(r[..., None] * m, axis=1)

    def denoiser(self, schedule: Schedule, prediction: str = "eps"):
        """The exact ``denoise(x_t, t, cond)`` for integer timesteps of ``schedule``."""
        check_choice(prediction, PREDICTIONS, name="prediction")
        # One function object per prediction kind, so the jit cache is shared across calls.
        return jax.tree_util.Partial(_VP_DENOISERS[prediction], self, schedule)

    def velocity_fn(self):
        """The exact rectified-flow velocity ``v(x_t, t, cond)`` (t = 0 data, 1 noise)."""
        return jax.tree_util.Partial(_flow_velocity, self)


def _vp_denoise(mixture, schedule, x_t, t, cond, *, prediction):
    alpha_bar = schedule.alpha_bars[t]  # (B,)
    x0 = mixture.posterior_x0(x_t, jnp.sqrt(alpha_bar), jnp.sqrt(1 - alpha_bar), cond)
    if prediction == "x0":
        return x0
    eps = to_eps(x0, x_t, alpha_bar, "x0")
    return eps if prediction == "eps" else velocity(x0, eps, alpha_bar)


_VP_DENOISERS = {p: functools.partial(_vp_denoise, prediction=p) for p in PREDICTIONS}


def _flow_velocity(mixture, x_t, t, cond):
    t = jnp.asarray(t, jnp.float32)
    x0 = mixture.posterior_x0(x_t, 1.0 - t, t, cond)
    return (x_t - x0) / t[:, None]  # v = (x_t - x0) / t on the straight path


def mixture(weights, means, stds) -> GaussianMixture:
    """Build and validate a mixture (weights normalised; shapes checked)."""
    weights = np.asarray(weights, np.float64)
    means = np.asarray(means, np.float64)
    stds = np.broadcast_to(np.asarray(stds, np.float64), weights.shape)
    if weights.ndim != 1 or means.ndim != 2 or means.shape[0] != weights.shape[0]:
        raise ValueError(
            f"weights must be (K,) and means (K, D); got weights {weights.shape}, means {means.shape}"
        )
    if not (np.all(np.isfinite(weights)) and np.all(np.isfinite(means)) and np.all(np.isfinite(stds))):
        raise ValueError("weights, means and stds must be finite numbers")
    if np.any(weights <= 0) or np.any(stds <= 0):
        raise ValueError("weights and stds must be positive")
    return GaussianMixture(
        jnp.asarray(weights / weights.sum(), jnp.float32),
        jnp.asarray(means, jnp.float32),
        jnp.asarray(stds, jnp.float32),
    )


#: The numbers of :func:`default_mixture`, as plain Python (readable without touching a device).
DEFAULT_MIXTURE = {"weights": (0.5, 0.3, 0.2), "means": ((-0.6, -0.4), (0.6, -0.4), (0.0, 0.6)),
                   "stds": (0.08, 0.08, 0.08)}


def default_mixture() -> GaussianMixture:
    """Three unequal, well separated 2-D clusters inside [-1, 1]^2, like normalised data."""
    return mixture(**DEFAULT_MIXTURE)

