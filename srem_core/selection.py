"""Clean/noisy splitting: a loss mixture (NCR-style), the energy filter and the swapped-entropy weights."""

from __future__ import annotations

import numpy as np
from sklearn.mixture import GaussianMixture

GMM_MAX_ITER = 20
"""EM iterations; the one-dimensional two-component fit converges in a few (NCR uses 10)."""
GMM_REG_COVAR = 5e-4
"""Variance floor of each component, so that a tight cluster of near-zero losses cannot collapse it."""
GMM_TOL = 1e-2
NORMALISATION_EPS = 1e-12
"""Added to a min-max range so that a constant input maps to zeros instead of NaN."""


def minmax(values: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Scale ``values`` to [0, 1] with the min and max of ``reference`` (default: ``values``) and clip."""
    reference = values if reference is None else reference
    low, high = float(np.min(reference)), float(np.max(reference))
    return np.clip((values - low) / (high - low + NORMALISATION_EPS), 0.0, 1.0)


class LossMixtureSplitter:
    """Two-component Gaussian mixture on min-max normalised per-pair loss (scikit-learn conventions).

    ``fit(per_pair_loss)`` learns the mixture; ``clean_prob(per_pair_loss)`` returns the posterior of
    the low-mean component, in [0, 1], higher = cleaner. Losses of other splits are normalised with the
    training losses' range, so their probabilities are comparable.
    """

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def fit(self, per_pair_loss: np.ndarray) -> "LossMixtureSplitter":
        losses = np.asarray(per_pair_loss, dtype=np.float64)
        if losses.ndim != 1 or losses.size < 2:
            raise ValueError(f"per_pair_loss must be a 1-D array of at least 2 values; got shape {losses.shape}")
        if not np.isfinite(losses).all():
            raise ValueError("per_pair_loss contains NaN or infinite values; check the learning rate and inputs")
        self.reference_ = losses
        self.mixture_ = GaussianMixture(
            n_components=2, max_iter=GMM_MAX_ITER, tol=GMM_TOL, reg_covar=GMM_REG_COVAR, random_state=self.random_state
        ).fit(minmax(losses)[:, None])
        self.clean_component_ = int(np.argmin(self.mixture_.means_.ravel()))
        return self

    def clean_prob(self, per_pair_loss: np.ndarray) -> np.ndarray:
        scaled = minmax(np.asarray(per_pair_loss, dtype=np.float64), self.reference_)
        return self.mixture_.predict_proba(scaled[:, None])[:, self.clean_component_].astype(np.float32)


def energy_filter(
    energy: np.ndarray, small_loss: np.ndarray, rule: str, *, quantile: float = 0.5, random_state: int = 0
) -> np.ndarray:
    """Return the boolean mask of pairs that pass the energy filter (low energy = kept).

    Rules: ``mean`` keeps energy below the mean energy of the small-loss pairs. ``quantile`` keeps
    energy below that quantile of their energies. ``gmm`` keeps the low-energy component of a
    two-component mixture on energy. ``off`` keeps every pair. The caller intersects the result with
    ``small_loss``.
    """
    energy = np.asarray(energy, dtype=np.float64)
    if rule == "off" or not small_loss.any():
        return np.ones_like(small_loss, dtype=bool)
    if rule == "mean":
        return energy < energy[small_loss].mean()
    if rule == "quantile":
        return energy < np.quantile(energy[small_loss], quantile)
    if rule == "gmm":
        mixture = GaussianMixture(n_components=2, max_iter=GMM_MAX_ITER, reg_covar=GMM_REG_COVAR, random_state=random_state)
        scaled = minmax(energy)[:, None]
        mixture.fit(scaled)
        low = int(np.argmin(mixture.means_.ravel()))
        return mixture.predict_proba(scaled)[:, low] > 0.5
    raise ValueError(f"energy_rule must be 'mean', 'gmm', 'quantile' or 'off'; got {rule!r}")


def entropy_weights(swapped_entropy: np.ndarray, clean: np.ndarray, rule: str, *, floor: float = 0.0) -> np.ndarray:
    """Return per-pair weights in [floor, 1] from the swapped entropy, min-max scaled over the clean set.

    ``confidence``: ``1 - minmax(entropy)`` (confident pairs weigh more); ``inverse``: ``minmax(entropy)``
    (hard-but-clean pairs weigh more); ``off``: 1. Pairs outside ``clean`` get weight 0.
    """
    weights = np.zeros(len(swapped_entropy), dtype=np.float32)
    if not clean.any():
        return weights
    if rule == "off":
        values = np.ones(int(clean.sum()))
    elif rule in ("confidence", "inverse"):
        scaled = minmax(np.asarray(swapped_entropy, dtype=np.float64)[clean])
        values = 1.0 - scaled if rule == "confidence" else scaled
    else:
        raise ValueError(f"weighting must be 'confidence', 'inverse' or 'off'; got {rule!r}")
    weights[clean] = np.maximum(values, floor)
    return weights
