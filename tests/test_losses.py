import math

import pytest
import torch

from srem_core import losses


def _random_similarity(batch: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    images = torch.nn.functional.normalize(torch.randn(batch, 8, generator=generator), dim=1)
    texts = torch.nn.functional.normalize(torch.randn(batch, 8, generator=generator), dim=1)
    return images @ texts.T


def test_cross_entropy_hand_computed():
    similarity = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    logits_per_image, logits_per_text = losses.similarity_logits(similarity, tau=1.0)
    expected = math.log(1 + math.exp(-1))
    result = losses.per_pair_cross_entropy(logits_per_image, logits_per_text)
    assert torch.allclose(result, torch.tensor([expected, expected]), atol=1e-6)


def test_energy_hand_computed():
    similarity = torch.tensor([[2.0, 0.0], [1.0, 0.0]])
    logits_per_image, logits_per_text = losses.similarity_logits(similarity, tau=1.0)
    energy = losses.free_energy(logits_per_image, logits_per_text, tau=1.0)
    # Rows: logsumexp(2, 0) and logsumexp(1, 0); columns: logsumexp(2, 1) and logsumexp(0, 0).
    expected_0 = -(math.log(math.exp(2) + 1) + math.log(math.exp(2) + math.exp(1))) / 2
    expected_1 = -(math.log(math.exp(1) + 1) + math.log(2)) / 2
    assert energy[0].item() == pytest.approx(expected_0, abs=1e-6)
    assert energy[1].item() == pytest.approx(expected_1, abs=1e-6)


@pytest.mark.parametrize("tau", [0.05, 0.2, 1.0])
def test_energy_cross_entropy_identity(tau):
    similarity = _random_similarity(6)
    logits_per_image, logits_per_text = losses.similarity_logits(similarity, tau)
    targets = torch.arange(6)
    ce_image_to_text = torch.nn.functional.cross_entropy(logits_per_image, targets, reduction="none")
    energy_image_to_text = -tau * torch.logsumexp(logits_per_image, dim=1)
    assert torch.allclose(tau * ce_image_to_text, -similarity.diagonal() - energy_image_to_text, atol=1e-5)
    # The averaged form: tau * per_pair_ce = -S_ii - energy holds for both directions together.
    per_pair = losses.per_pair_cross_entropy(logits_per_image, logits_per_text)
    energy = losses.free_energy(logits_per_image, logits_per_text, tau)
    assert torch.allclose(tau * per_pair, -similarity.diagonal() - energy, atol=1e-5)


def test_swapped_entropy_hand_computed():
    similarity = torch.tensor([[2.0, 0.0], [1.0, 0.0]])
    logits_per_image, logits_per_text = losses.similarity_logits(similarity, tau=1.0)
    result = losses.swapped_entropy(logits_per_image, logits_per_text)
    assert result[0].item() == pytest.approx(0.5486377, abs=1e-6)


def test_swapped_entropy_matches_naive_loop():
    similarity = _random_similarity(5, seed=3)
    logits_per_image, logits_per_text = losses.similarity_logits(similarity, 0.1)
    p_i2t = torch.softmax(logits_per_image, 1).tolist()
    p_t2i = torch.softmax(logits_per_text, 1).tolist()
    result = losses.swapped_entropy(logits_per_image, logits_per_text)
    for i in range(5):
        first = -sum(p_t2i[i][j] * math.log(p_i2t[i][j]) for j in range(5))
        second = -sum(p_i2t[i][j] * math.log(p_t2i[i][j]) for j in range(5))
        assert result[i].item() == pytest.approx((first + second) / 2, rel=1e-4)


def test_swapped_entropy_low_for_confident_agreement():
    confident = torch.eye(4) * 1.0
    unsure = torch.full((4, 4), 0.5)
    low = losses.swapped_entropy(*losses.similarity_logits(confident, 0.05))
    high = losses.swapped_entropy(*losses.similarity_logits(unsure, 0.05))
    assert low.max() < 1e-3
    assert high.min() == pytest.approx(math.log(4), abs=1e-5)


@pytest.mark.parametrize("batch", [2, 3, 8])
def test_uniform_cmbcl_equals_rcl_plus_constant(batch):
    probabilities = torch.softmax(_random_similarity(batch, seed=batch) / 0.1, dim=1)
    general = losses.complementary_loss(probabilities, losses.uniform_transition(batch))
    closed_form = losses.uniform_complementary_loss(probabilities)
    constant = (batch - 1) * math.log(batch - 1)
    assert torch.allclose(general, closed_form + constant, atol=1e-5)


def test_rcl_loss_hand_computed():
    probabilities = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.25, 0.25, 0.5]])
    result = losses.uniform_complementary_loss(probabilities)
    expected_0 = -(math.log(0.7) + math.log(0.8))
    assert result[0].item() == pytest.approx(expected_0, abs=1e-6)
    assert result[2].item() == pytest.approx(-2 * math.log(0.75), abs=1e-6)


def test_complementary_loss_hand_computed():
    probabilities = torch.tensor([[0.6, 0.4], [0.3, 0.7]])
    transition = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    # q = p @ Q swaps the columns: q[0, 1] = p[0, 0] = 0.6, q[1, 0] = p[1, 1] = 0.7.
    result = losses.complementary_loss(probabilities, transition)
    assert result[0].item() == pytest.approx(-math.log(0.6), abs=1e-6)
    assert result[1].item() == pytest.approx(-math.log(0.7), abs=1e-6)


def test_biased_transition_properties():
    similarity = torch.tensor([[0.9, 0.8, -0.5], [0.1, 0.9, 0.3], [0.2, 0.0, 0.9]])
    q_image_to_text, q_text_to_image = losses.biased_transition(similarity, tau_q=0.2)
    for matrix in (q_image_to_text, q_text_to_image):
        assert torch.allclose(matrix.sum(dim=1), torch.ones(3), atol=1e-6)
        assert torch.all(matrix.diagonal() == 0)
    # Image 0: text 2 (similarity -0.5) is farther than text 1 (0.8), so it gets more complementary mass.
    assert q_image_to_text[0, 2] > q_image_to_text[0, 1]
    expected = math.exp(0.5 / 0.2) / (math.exp(0.5 / 0.2) + math.exp(-0.8 / 0.2))
    assert q_image_to_text[0, 2].item() == pytest.approx(expected, abs=1e-6)
    # Text 0 against images 1 (0.1) and 2 (0.2): the column of S.
    assert q_text_to_image[0, 1] > q_text_to_image[0, 2]
    similar, _ = losses.biased_transition(similarity, tau_q=0.2, sign=1.0)
    assert similar[0, 1] > similar[0, 2]


def test_cmbcl_rejects_unknown_bias():
    similarity = _random_similarity(3)
    logits = losses.similarity_logits(similarity, 0.1)
    with pytest.raises(ValueError, match=r"bias must be 'uniform', 'dissimilar' or 'similar', got 'odd'"):
        losses.cmbcl_loss(*logits, similarity, bias="odd", tau_q=0.2)


def test_cmbcl_lower_for_correct_predictions():
    good = torch.eye(4) * 0.9
    bad = good[[1, 0, 3, 2]]
    for bias in ("uniform", "dissimilar", "similar"):
        loss_good = losses.cmbcl_loss(*losses.similarity_logits(good, 0.05), good, bias=bias, tau_q=0.2).mean()
        # The transition matrix is built from the true structure for both, so only the prediction differs.
        logits_bad = losses.similarity_logits(bad, 0.05)
        loss_bad = losses.cmbcl_loss(*logits_bad, good, bias=bias, tau_q=0.2).mean()
        assert loss_good < loss_bad


def test_cmbcl_gradient_finite_when_saturated():
    similarity = (torch.eye(4) * 1.0).requires_grad_()
    logits = losses.similarity_logits(similarity, 0.01)
    loss = losses.cmbcl_loss(*logits, similarity, bias="dissimilar", tau_q=0.2).sum()
    loss.backward()
    assert torch.isfinite(similarity.grad).all()


def test_hardest_negative_triplet_hand_computed():
    similarity = torch.tensor([[0.8, 0.7, 0.1], [0.2, 0.9, 0.3], [0.75, 0.0, 0.5]])
    result = losses.hardest_negative_triplet(similarity, margin=0.2)
    # Pair 0: hardest text 0.7, hardest image 0.75 -> (0.2 - 0.8 + 0.7) + (0.2 - 0.8 + 0.75).
    assert result[0].item() == pytest.approx(0.1 + 0.15, abs=1e-6)
    # Pair 1: hardest text 0.3 -> 0; hardest image 0.7 -> 0.
    assert result[1].item() == pytest.approx(0.0, abs=1e-6)
    # Pair 2: hardest text 0.75 -> 0.45; hardest image 0.3 -> 0.0.
    assert result[2].item() == pytest.approx(0.45, abs=1e-6)


def test_soft_margin_scales_with_margin():
    similarity = torch.tensor([[0.8, 0.7], [0.6, 0.9]])
    zero = losses.soft_margin_triplet(similarity, torch.zeros(2))
    full = losses.soft_margin_triplet(similarity, torch.full((2,), 0.2))
    assert torch.all(zero <= full)
    assert zero[0].item() == pytest.approx(0.0, abs=1e-6)


def test_non_square_similarity_rejected():
    with pytest.raises(ValueError, match=r"expected a square \(B, B\) matrix, got shape \(2, 3\)"):
        losses.similarity_logits(torch.zeros(2, 3), 0.1)


def test_expected_form_equals_sum_form_for_uniform_q():
    probabilities = torch.softmax(_random_similarity(6, seed=9) / 0.1, dim=1)
    uniform = losses.uniform_transition(6)
    expected = losses.expected_complementary_loss(probabilities, uniform)
    summed = losses.complementary_loss(probabilities, uniform)
    assert torch.allclose(expected, summed, atol=1e-5)


def test_expected_form_keeps_true_label_optimum_under_bias():
    similarity = torch.tensor([[0.9, 0.85, -0.6, 0.1], [0.2, 0.9, 0.3, -0.4], [0.0, 0.5, 0.9, 0.2], [-0.3, 0.1, 0.4, 0.9]])
    q_image_to_text, _ = losses.biased_transition(similarity, tau_q=0.2)
    correct = torch.eye(4)
    hedged = 0.8 * torch.eye(4) + 0.2 * torch.full((4, 4), 0.25)
    expected_correct = losses.expected_complementary_loss(correct, q_image_to_text)
    expected_hedged = losses.expected_complementary_loss(hedged, q_image_to_text)
    assert torch.all(expected_correct < expected_hedged)
    # Summed over every candidate, a peaked Q rewards moving mass away from the true pair for anchor 0.
    summed_correct = losses.complementary_loss(correct, q_image_to_text)
    summed_hedged = losses.complementary_loss(hedged, q_image_to_text)
    assert summed_correct[0] > summed_hedged[0]
