"""Training objectives: SREM and the baselines, each turning a batch into a loss in the same loop.

An objective owns the per-epoch selection state (which pairs are clean, their weights) and turns a batch
of similarity matrices into a scalar loss plus named terms for the metrics file. The math lives in
``srem_core.losses`` and ``srem_core.selection``; this module decides which parts apply when.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from srem_core import losses
from srem_core.config import ObjectiveConfig, TrainConfig
from srem_core.selection import LossMixtureSplitter, energy_filter, entropy_weights


@dataclasses.dataclass
class PairStatistics:
    """Per-pair values of one scoring pass over the training pairs (all arrays have shape (n,))."""

    energy: np.ndarray
    swapped_entropy: np.ndarray
    per_pair_loss: np.ndarray


@dataclasses.dataclass
class Selection:
    """The clean/noisy decision for one epoch: what the next epoch trains on."""

    clean_prob: np.ndarray
    """Posterior of the low-loss component, in [0, 1], higher = cleaner."""
    selected_clean: np.ndarray
    """Pairs that get a positive (cross-entropy or triplet) term."""
    weights: np.ndarray
    """Weight of each pair's positive term (0 outside the clean set)."""


def select_clean(statistics: PairStatistics, config: ObjectiveConfig, seed: int) -> Selection:
    """Split the training pairs into clean and noisy with the loss mixture, energy rule and entropy weights."""
    splitter = LossMixtureSplitter(random_state=seed).fit(statistics.per_pair_loss)
    clean_prob = splitter.clean_prob(statistics.per_pair_loss)
    small_loss = clean_prob > config.gmm_threshold
    passes_energy = energy_filter(
        statistics.energy, small_loss, config.energy_rule, quantile=config.energy_quantile, random_state=seed
    )
    if config.clean_term == "hard":
        selected = small_loss & passes_energy
        weights = entropy_weights(statistics.swapped_entropy, selected, config.weighting, floor=config.weight_floor)
    else:
        selected = clean_prob > 0
        entropy_part = entropy_weights(
            statistics.swapped_entropy, np.ones_like(selected), config.weighting, floor=config.weight_floor
        )
        energy_part = np.where(passes_energy | ~small_loss, 1.0, 0.0)
        weights = (clean_prob * entropy_part * energy_part).astype(np.float32)
    return Selection(clean_prob=clean_prob, selected_clean=selected, weights=weights)


class Objective:
    """Base class: one network, plain losses, no selection. Subclasses override ``batch_loss``."""

    n_networks = 1

    def __init__(self, objective: ObjectiveConfig, train: TrainConfig) -> None:
        self.config, self.train_config = objective, train
        self.selection: Selection | list[Selection] | None = None

    def in_warmup(self, epoch: int) -> bool:
        return False

    def update_selection(self, statistics: list[PairStatistics], epoch: int) -> None:
        """Fit the clean/noisy split for the next epoch from each network's scoring pass."""
        self.selection = None

    def batch_loss(
        self, similarities: list[torch.Tensor], pair_indices: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError


class InfoNceObjective(Objective):
    """Symmetric InfoNCE (CLIP loss) on all pairs: the no-noise-handling baseline."""

    def batch_loss(self, similarities, pair_indices, epoch):
        logits_per_image, logits_per_text = losses.similarity_logits(similarities[0], self.config.tau)
        loss = losses.infonce_loss(logits_per_image, logits_per_text)
        return loss, {"loss_clean": float(loss.detach())}


class TripletObjective(Objective):
    """VSE++ hardest-negative triplet loss on all pairs (the self-reinforcing hard-negative baseline)."""

    def batch_loss(self, similarities, pair_indices, epoch):
        loss = losses.hardest_negative_triplet(similarities[0], self.train_config.triplet_margin).mean()
        return loss, {"loss_clean": float(loss.detach())}


class SremObjective(Objective):
    """SREM: warm-up on the complementary loss, then weighted cross-entropy on the selected clean pairs
    plus the cross-modal biased complementary loss on all pairs (one network, no co-teaching)."""

    def in_warmup(self, epoch: int) -> bool:
        return epoch < self.config.warmup_epochs

    def update_selection(self, statistics, epoch):
        self.selection = select_clean(statistics[0], self.config, seed=self.train_config.seed + epoch)

    def batch_loss(self, similarities, pair_indices, epoch):
        similarity = similarities[0]
        logits_per_image, logits_per_text = losses.similarity_logits(similarity, self.config.tau)
        per_pair_ce = losses.per_pair_cross_entropy(logits_per_image, logits_per_text)
        # With a zero weight the complementary term is skipped, not computed and multiplied by 0.
        use_complementary = self.config.lambda_cmbcl != 0
        if self.in_warmup(epoch) or self.selection is None:
            if use_complementary:
                complementary = losses.cmbcl_loss(logits_per_image, logits_per_text, similarity, bias="uniform", tau_q=self.config.tau_q)
            clean_term = self.config.warmup_clean_weight * per_pair_ce.mean()
        else:
            if use_complementary:
                complementary = losses.cmbcl_loss(
                    logits_per_image, logits_per_text, similarity, bias=self.config.bias, tau_q=self.config.tau_q,
                    form=self.config.cmbcl_form,
                )
            weights = torch.as_tensor(self.selection.weights[pair_indices.cpu().numpy()], device=similarity.device)
            selected = torch.as_tensor(self.selection.selected_clean[pair_indices.cpu().numpy()], device=similarity.device)
            if self.config.clean_term == "hard":
                normaliser = selected.sum().clamp_min(1)
            else:
                normaliser = weights.sum().clamp_min(1e-6)
            clean_term = (weights * per_pair_ce).sum() / normaliser
        complementary_term = self.config.lambda_cmbcl * complementary.mean() if use_complementary else similarity.new_zeros(())
        loss = clean_term + complementary_term
        return loss, {"loss_clean": float(clean_term.detach()), "loss_complementary": float(complementary_term.detach())}


class NcrObjective(Objective):
    """NCR-style baseline (this project's implementation, not the NCR code): two co-taught networks.

    Each network trains on the clean split found by a loss mixture fitted on the *other* network's
    per-pair losses, with a hardest-negative triplet whose margin is ``margin * clean_prob``. Warm-up
    uses the plain triplet loss on all pairs.
    """

    n_networks = 2

    def in_warmup(self, epoch: int) -> bool:
        return epoch < self.config.warmup_epochs

    def update_selection(self, statistics, epoch):
        selections = []
        for network, stats in enumerate(statistics):
            splitter = LossMixtureSplitter(random_state=self.train_config.seed + epoch + network).fit(stats.per_pair_loss)
            clean_prob = splitter.clean_prob(stats.per_pair_loss)
            clean = clean_prob > self.config.gmm_threshold
            selections.append(Selection(clean_prob=clean_prob, selected_clean=clean, weights=clean.astype(np.float32)))
        self.selection = selections

    def batch_loss(self, similarities, pair_indices, epoch):
        margin = self.train_config.triplet_margin
        total = similarities[0].new_zeros(())
        for network, similarity in enumerate(similarities):
            if self.in_warmup(epoch) or self.selection is None:
                total = total + losses.hardest_negative_triplet(similarity, margin).mean()
                continue
            peer = self.selection[1 - network]
            indices = pair_indices.cpu().numpy()
            clean = torch.as_tensor(peer.selected_clean[indices], device=similarity.device)
            if clean.sum() < 2:
                continue
            margins = margin * torch.as_tensor(peer.clean_prob[indices], device=similarity.device)[clean]
            total = total + losses.soft_margin_triplet(similarity[clean][:, clean], margins).mean()
        return total, {"loss_clean": float(total.detach())}


OBJECTIVES = {"srem": SremObjective, "infonce": InfoNceObjective, "triplet": TripletObjective, "ncr": NcrObjective}


def create_objective(objective: ObjectiveConfig, train: TrainConfig) -> Objective:
    return OBJECTIVES[train.method](objective, train)
