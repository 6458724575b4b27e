"""Per-pair scores and losses of SREM and of the baselines, as pure functions.

Every function takes a batch of B pairs whose matching partner sits on the diagonal: row i of
``similarity`` (B, B) scores image i against every text of the batch, so ``similarity[i, i]`` is the
pair's own score. Source: Dang et al., "Noisy Correspondence Learning with Self-Reinforcing Errors
Mitigation", AAAI 2024 (arXiv:2312.16478). The within-batch classification view and the three named
parts come from that paper. The exact formulas of the swapped entropy and of the biased transition
matrix are this project's reading (``docs/method.md``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PROBABILITY_FLOOR = 1e-8
"""Smallest probability passed to a log, so that a saturated softmax gives a large, finite loss."""


def similarity_logits(similarity: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(logits_per_image, logits_per_text) = (S / tau, S.T / tau)``, each (B, B)."""
    _check_square(similarity)
    logits_per_image = similarity / tau
    return logits_per_image, logits_per_image.T


def per_pair_cross_entropy(logits_per_image: torch.Tensor, logits_per_text: torch.Tensor) -> torch.Tensor:
    """Return ``ce_i = (CE(logits_per_image[i], i) + CE(logits_per_text[i], i)) / 2``, shape (B,).

    The in-batch classification loss of each pair, no reduction. In [0, inf); high means the batch
    prefers another partner for this image or this caption.
    """
    targets = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)
    image_to_text = F.cross_entropy(logits_per_image, targets, reduction="none")
    text_to_image = F.cross_entropy(logits_per_text, targets, reduction="none")
    return (image_to_text + text_to_image) / 2


def free_energy(logits_per_image: torch.Tensor, logits_per_text: torch.Tensor, tau: float) -> torch.Tensor:
    """Return the per-pair free energy ``(E_i2t + E_t2i) / 2``, shape (B,).

    ``E_i2t[i] = -tau * logsumexp(logits_per_image[i])`` and likewise for texts. Unbounded, in units of
    similarity; lower means more total logit mass for the anchor. It does not say which candidate
    matches. Identity: ``tau * CE_i2t[i] = -S[i, i] - E_i2t[i]``.
    """
    image_to_text = -tau * torch.logsumexp(logits_per_image, dim=1)
    text_to_image = -tau * torch.logsumexp(logits_per_text, dim=1)
    return (image_to_text + text_to_image) / 2


def swapped_entropy(logits_per_image: torch.Tensor, logits_per_text: torch.Tensor) -> torch.Tensor:
    """Return the swapped classification entropy of each pair, shape (B,), computed without gradient.

    ``-(sum_j p_t2i[i, j] log p_i2t[i, j] + sum_j p_i2t[i, j] log p_t2i[i, j]) / 2``, where
    ``p_i2t = softmax(logits_per_image)`` and ``p_t2i = softmax(logits_per_text)``: each direction's
    prediction scored against the other's. In [0, inf); small when both directions are confident and
    agree, large when either is unsure or they disagree. This formula is this project's reading of the
    paper's "swapped classification entropy".
    """
    with torch.no_grad():
        log_p_i2t = F.log_softmax(logits_per_image, dim=1)
        log_p_t2i = F.log_softmax(logits_per_text, dim=1)
        first = -(log_p_t2i.exp() * log_p_i2t).sum(dim=1)
        second = -(log_p_i2t.exp() * log_p_t2i).sum(dim=1)
    return (first + second) / 2


def uniform_transition(batch_size: int, device: torch.device | None = None) -> torch.Tensor:
    """Return the uniform complementary transition matrix: ``1 / (B - 1)`` off the diagonal, 0 on it."""
    if batch_size < 2:
        raise ValueError(f"a complementary label needs a batch of at least 2 pairs, got {batch_size}")
    matrix = torch.full((batch_size, batch_size), 1.0 / (batch_size - 1), device=device)
    matrix.fill_diagonal_(0.0)
    return matrix


def biased_transition(similarity: torch.Tensor, tau_q: float, sign: float = -1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the biased transition matrices ``(Q_i2t, Q_t2i)``, each (B, B), row-stochastic, zero diagonal.

    ``Q_i2t[k, j] ∝ exp(sign * S[k, j] / tau_q)`` for ``j != k`` and ``Q_t2i[k, j] ∝ exp(sign * S[j, k] /
    tau_q)``, with ``S`` detached. ``sign=-1`` ("dissimilar", the default) gives texts far from pair
    k's image more complementary mass and likely false negatives less; ``sign=+1`` ("similar") flips
    it. This form of the bias is this project's reading of the paper.
    """
    _check_square(similarity)
    scores = sign * similarity.detach() / tau_q
    eye = torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)
    q_image_to_text = torch.softmax(scores.masked_fill(eye, float("-inf")), dim=1)
    q_text_to_image = torch.softmax(scores.T.masked_fill(eye, float("-inf")), dim=1)
    return q_image_to_text, q_text_to_image


def complementary_loss(probabilities: torch.Tensor, transition: torch.Tensor) -> torch.Tensor:
    """Return the forward-corrected complementary loss of each anchor, shape (B,).

    Every candidate ``j != i`` is a complementary label ("not a match") of anchor i. With the predicted
    class probabilities ``p`` (B, B, rows sum to 1) and a row-stochastic transition matrix ``Q`` with a
    zero diagonal, ``q = p @ Q`` and ``loss_i = sum_{j != i} -log q[i, j]`` (Yu et al., "Learning with
    Biased Complementary Labels", ECCV 2018). With the uniform ``Q`` this equals
    ``sum_{j != i} -log(1 - p[i, j]) + (B - 1) log(B - 1)``, the complementary contrastive loss of RCL
    plus a constant. Costs B x B x B multiply-adds.
    """
    _check_square(probabilities)
    corrected = (probabilities @ transition).clamp_min(PROBABILITY_FLOOR)
    off_diagonal = ~torch.eye(probabilities.shape[0], dtype=torch.bool, device=probabilities.device)
    return -(corrected.log() * off_diagonal).sum(dim=1)


def expected_complementary_loss(probabilities: torch.Tensor, transition: torch.Tensor) -> torch.Tensor:
    """Return ``(B - 1) * sum_{j != i} Q[i, j] * -log q[i, j]`` with ``q = p @ Q``, shape (B,).

    The forward-corrected loss averaged over complementary labels drawn from anchor i's own row of
    ``Q`` instead of summed over every candidate. As a cross-entropy between ``Q[i]`` and ``p @ Q`` it
    is smallest at ``p = e_i`` for any ``Q`` with linearly independent rows, so a biased ``Q`` cannot
    pull the prediction away from the true pair. With the uniform ``Q`` it equals
    ``complementary_loss`` exactly. The ``B - 1`` factor keeps that scale.
    """
    _check_square(probabilities)
    corrected = (probabilities @ transition).clamp_min(PROBABILITY_FLOOR)
    return -(probabilities.shape[0] - 1) * (transition * corrected.log()).sum(dim=1)


def uniform_complementary_loss(probabilities: torch.Tensor) -> torch.Tensor:
    """Return ``sum_{j != i} -log(1 - p[i, j])`` per anchor, shape (B,): the B x B closed form.

    Equals ``complementary_loss(p, uniform_transition(B))`` minus ``(B - 1) log(B - 1)``.
    """
    _check_square(probabilities)
    off_diagonal = ~torch.eye(probabilities.shape[0], dtype=torch.bool, device=probabilities.device)
    complement = (1 - probabilities).clamp_min(PROBABILITY_FLOOR)
    return -(complement.log() * off_diagonal).sum(dim=1)


def cmbcl_loss(
    logits_per_image: torch.Tensor,
    logits_per_text: torch.Tensor,
    similarity: torch.Tensor,
    *,
    bias: str,
    tau_q: float,
    form: str = "expected",
) -> torch.Tensor:
    """Return the cross-modal biased complementary loss of each pair, shape (B,), both directions averaged.

    ``bias`` is ``uniform`` (RCL's loss, computed in closed form, the constant dropped), ``dissimilar``
    or ``similar`` (see ``biased_transition``). ``form`` is ``sum`` (every candidate an observed
    complementary label, ``complementary_loss``) or ``expected`` (labels weighted by the biased ``Q``,
    ``expected_complementary_loss``). The two forms agree for the uniform ``Q``.
    """
    p_image_to_text = torch.softmax(logits_per_image, dim=1)
    p_text_to_image = torch.softmax(logits_per_text, dim=1)
    if bias == "uniform":
        image_to_text = uniform_complementary_loss(p_image_to_text)
        text_to_image = uniform_complementary_loss(p_text_to_image)
    elif bias in ("dissimilar", "similar"):
        sign = -1.0 if bias == "dissimilar" else 1.0
        q_image_to_text, q_text_to_image = biased_transition(similarity, tau_q, sign)
        n_candidates = similarity.shape[0] - 1
        # The constant (B - 1) log(B - 1) is removed so that the scale matches the uniform case.
        offset = n_candidates * math.log(n_candidates) if n_candidates > 1 else 0.0
        if form not in ("sum", "expected"):
            raise ValueError(f"form must be 'sum' or 'expected', got {form!r}")
        loss = complementary_loss if form == "sum" else expected_complementary_loss
        image_to_text = loss(p_image_to_text, q_image_to_text) - offset
        text_to_image = loss(p_text_to_image, q_text_to_image) - offset
    else:
        raise ValueError(f"bias must be 'uniform', 'dissimilar' or 'similar', got {bias!r}")
    return (image_to_text + text_to_image) / 2


def infonce_loss(logits_per_image: torch.Tensor, logits_per_text: torch.Tensor) -> torch.Tensor:
    """Return the symmetric InfoNCE (CLIP) loss, a scalar: the mean of ``per_pair_cross_entropy``."""
    return per_pair_cross_entropy(logits_per_image, logits_per_text).mean()


def hardest_negative_triplet(similarity: torch.Tensor, margin: float) -> torch.Tensor:
    """Return VSE++'s max-violation triplet loss per pair, shape (B,).

    ``[margin - S[i, i] + max_{j != i} S[i, j]]_+ + [margin - S[i, i] + max_{j != i} S[j, i]]_+``
    (Faghri et al., "VSE++", BMVC 2018). In [0, 2 * (margin + 2)].
    """
    margins = torch.full((similarity.shape[0],), margin, dtype=similarity.dtype, device=similarity.device)
    return soft_margin_triplet(similarity, margins)


def soft_margin_triplet(similarity: torch.Tensor, margins: torch.Tensor) -> torch.Tensor:
    """Return the hardest-negative triplet loss with a per-pair margin, shape (B,).

    NCR-style: the margin of pair i is ``margins[i]`` (B,), e.g. ``margin * clean_prob`` so that an
    uncertain pair is pushed apart less from its hardest negative.
    """
    _check_square(similarity)
    positive = similarity.diagonal()
    eye = torch.eye(similarity.shape[0], dtype=torch.bool, device=similarity.device)
    masked = similarity.masked_fill(eye, float("-inf"))
    hardest_text = masked.max(dim=1).values
    hardest_image = masked.max(dim=0).values
    return (margins - positive + hardest_text).clamp_min(0) + (margins - positive + hardest_image).clamp_min(0)


def _check_square(matrix: torch.Tensor) -> None:
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"expected a square (B, B) matrix, got shape {tuple(matrix.shape)}")
