"""Per-pair scores (energy, swapped entropy, per-pair loss) in a fixed, seeded batch context.

Energy and the in-batch loss depend on which other pairs share the batch. Scoring therefore splits the
pairs into batches with a seeded permutation that depends only on the number of pairs, the batch size
and the seed, so the same model gives the same scores on every run.
"""

from __future__ import annotations

import numpy as np
import torch

from srem_core import losses
from srem_core.model import ProjectionHeads
from srem_core.objective import PairStatistics

EMBED_CHUNK = 8192
"""Rows pushed through the heads at once when embedding a whole split."""


def batch_context(n_pairs: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """Return the fixed scoring batches: a seeded permutation cut into near-equal batches of at most
    ``batch_size`` pairs (none smaller than half of that unless ``n_pairs`` itself is)."""
    order = np.random.default_rng(seed).permutation(n_pairs)
    n_batches = max(1, -(-n_pairs // batch_size))
    return [batch for batch in np.array_split(order, n_batches) if len(batch)]


@torch.no_grad()
def embed_inputs(
    heads: ProjectionHeads, image_inputs: torch.Tensor, text_inputs: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return L2-normalised (image_embeddings, text_embeddings) in float32 on the CPU."""
    heads.eval()
    images = [heads.embed_images(image_inputs[i : i + EMBED_CHUNK].to(device)).float().cpu() for i in range(0, len(image_inputs), EMBED_CHUNK)]
    texts = [heads.embed_texts(text_inputs[i : i + EMBED_CHUNK].to(device)).float().cpu() for i in range(0, len(text_inputs), EMBED_CHUNK)]
    empty = torch.zeros(0, heads.embed_dim)
    return (torch.cat(images) if images else empty), (torch.cat(texts) if texts else empty)


@torch.no_grad()
def score_pairs(
    pair_image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, *, tau: float, batch_size: int, seed: int
) -> PairStatistics:
    """Score each pair (row i of both (n, D) inputs) in the fixed batch context; arrays of shape (n,)."""
    n_pairs = text_embeddings.shape[0]
    energy = np.zeros(n_pairs, dtype=np.float32)
    entropy = np.zeros(n_pairs, dtype=np.float32)
    loss = np.zeros(n_pairs, dtype=np.float32)
    for batch in batch_context(n_pairs, batch_size, seed):
        index = torch.as_tensor(batch)
        similarity = pair_image_embeddings[index].float() @ text_embeddings[index].float().T
        logits_per_image, logits_per_text = losses.similarity_logits(similarity, tau)
        energy[batch] = losses.free_energy(logits_per_image, logits_per_text, tau).numpy()
        entropy[batch] = losses.swapped_entropy(logits_per_image, logits_per_text).numpy()
        loss[batch] = losses.per_pair_cross_entropy(logits_per_image, logits_per_text).numpy()
    return PairStatistics(energy=energy, swapped_entropy=entropy, per_pair_loss=loss)
