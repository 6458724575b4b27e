"""The stacked scoring pass against the batch-by-batch loss functions it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srem_core import losses, scoring
from srem_core.scoring import batch_context, score_pairs


def reference_scores(images: torch.Tensor, texts: torch.Tensor, tau: float, batch_size: int, seed: int):
    """Score batch by batch with the functions of ``losses``, as the training objective does."""
    n_pairs = len(texts)
    energy, entropy, loss = np.zeros(n_pairs), np.zeros(n_pairs), np.zeros(n_pairs)
    for batch in batch_context(n_pairs, batch_size, seed):
        index = torch.as_tensor(batch)
        logits = (images[index].double() @ texts[index].double().T) / tau
        energy[batch] = losses.free_energy(logits, logits.T, tau).numpy()
        entropy[batch] = losses.swapped_entropy(logits, logits.T).numpy()
        loss[batch] = losses.per_pair_cross_entropy(logits, logits.T).numpy()
    return energy, entropy, loss


def unit_rows(n_rows: int, dim: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n_rows, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.mark.parametrize(("n_pairs", "batch_size"), [(1000, 128), (1000, 7), (130, 128), (5, 128), (1, 4)])
def test_stacked_scores_equal_batch_by_batch_losses(n_pairs, batch_size):
    images, texts = unit_rows(n_pairs, 32, 0), unit_rows(n_pairs, 32, 1)
    texts[: n_pairs // 2] = torch.nn.functional.normalize(images[: n_pairs // 2] + 0.3 * texts[: n_pairs // 2], dim=1)
    stats = score_pairs(images, texts, tau=0.05, batch_size=batch_size, seed=3)
    energy, entropy, loss = reference_scores(images, texts, 0.05, batch_size, 3)
    np.testing.assert_allclose(stats.energy, energy, atol=2e-6)
    np.testing.assert_allclose(stats.swapped_entropy, entropy, atol=2e-5)
    np.testing.assert_allclose(stats.per_pair_loss, loss, atol=2e-5)


def test_large_stacks_are_split(monkeypatch):
    monkeypatch.setattr(scoring, "STACK_ENTRIES", 3 * 16 * 16)
    images, texts = unit_rows(500, 16, 2), unit_rows(500, 16, 3)
    stats = score_pairs(images, texts, tau=0.1, batch_size=16, seed=0)
    energy, entropy, loss = reference_scores(images, texts, 0.1, 16, 0)
    np.testing.assert_allclose(stats.energy, energy, atol=2e-6)
    np.testing.assert_allclose(stats.swapped_entropy, entropy, atol=2e-5)
    np.testing.assert_allclose(stats.per_pair_loss, loss, atol=2e-5)


def test_tiny_temperature_falls_back_to_the_stable_path():
    # Logits spread over 2 / 0.002 = 1000: shifted exponentials of whole rows underflow to zero.
    images, texts = unit_rows(64, 8, 4), unit_rows(64, 8, 5)
    stats = score_pairs(images, texts, tau=0.002, batch_size=32, seed=0)
    energy, entropy, loss = reference_scores(images, texts, 0.002, 32, 0)
    assert np.isfinite(stats.per_pair_loss).all()
    assert np.isfinite(stats.swapped_entropy).all()
    np.testing.assert_allclose(stats.energy, energy, atol=1e-5)
    np.testing.assert_allclose(stats.per_pair_loss, loss, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(stats.swapped_entropy, entropy, rtol=1e-5, atol=1e-3)


def test_hand_computed_two_pair_batch():
    # Orthogonal unit vectors, tau 1: S = I, so each row's logits are (1, 0).
    images = torch.eye(2)
    texts = torch.eye(2)
    stats = score_pairs(images, texts, tau=1.0, batch_size=2, seed=0)
    log_sum = np.log(np.e + 1)
    p_match = np.e / (np.e + 1)
    np.testing.assert_allclose(stats.energy, [-log_sum] * 2, rtol=1e-6)
    np.testing.assert_allclose(stats.per_pair_loss, [log_sum - 1] * 2, rtol=1e-6)
    cross_entropy = -(p_match * np.log(p_match) + (1 - p_match) * np.log(1 - p_match))
    np.testing.assert_allclose(stats.swapped_entropy, [cross_entropy] * 2, rtol=1e-5)


def test_empty_input_gives_empty_scores():
    stats = score_pairs(torch.zeros(0, 4), torch.zeros(0, 4), tau=0.05, batch_size=8, seed=0)
    assert stats.energy.shape == stats.swapped_entropy.shape == stats.per_pair_loss.shape == (0,)
