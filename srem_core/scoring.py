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
STACK_ENTRIES = 1 << 18
"""Similarity entries scored in one stack of equal-size batches: 1 MiB of float32, which stays in a
core's cache (on a 2-core machine 1 MiB stacks scored faster than 4 or 16 MiB ones)."""
UNDERFLOW_SUM = 1e-30
"""A row or column sum of shifted exponentials below this is rescored on the stable per-batch path."""


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
    """Score each pair (row i of both (n, D) inputs) in the fixed batch context; arrays of shape (n,).

    The values equal ``losses.free_energy``, ``losses.swapped_entropy`` and
    ``losses.per_pair_cross_entropy`` applied batch by batch (within float32 rounding), but batches of
    equal size are stacked and scored together with one batched matrix product and one exponential
    per entry, which removes the per-batch Python overhead.
    """
    n_pairs = text_embeddings.shape[0]
    energy = np.zeros(n_pairs, dtype=np.float32)
    entropy = np.zeros(n_pairs, dtype=np.float32)
    loss = np.zeros(n_pairs, dtype=np.float32)
    images, texts = pair_image_embeddings.float().contiguous(), text_embeddings.float().contiguous()
    batches = batch_context(n_pairs, batch_size, seed)
    for size in sorted({len(batch) for batch in batches}):
        same_size = np.stack([batch for batch in batches if len(batch) == size])
        step = min(len(same_size), max(1, STACK_ENTRIES // (size * size)))
        # Buffers are reused across stacks: fresh multi-megabyte tensors cost a page fault per 4 KiB.
        shapes = [(step * size, images.shape[1]), (step * size, texts.shape[1]), (step, size, size), (step, size, size)]
        workspace = [torch.empty(shape, device=images.device) for shape in shapes]
        for start in range(0, len(same_size), step):
            rows = same_size[start : start + step]
            index = torch.as_tensor(rows.reshape(-1), device=images.device)
            count = len(rows)
            stacked_images = torch.index_select(images, 0, index, out=workspace[0][: count * size]).view(count, size, -1)
            stacked_texts = torch.index_select(texts, 0, index, out=workspace[1][: count * size]).view(count, size, -1)
            similarity = torch.bmm(stacked_images, stacked_texts.transpose(1, 2), out=workspace[2][:count])
            scores = _score_stack(similarity, tau, workspace[3][:count])
            for target, values in zip((energy, entropy, loss), scores):
                target[rows.reshape(-1)] = values.reshape(-1).cpu().numpy()
    return PairStatistics(energy=energy, swapped_entropy=entropy, per_pair_loss=loss)


def _score_stack(
    similarity: torch.Tensor, tau: float, buffer: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (energy, swapped entropy, per-pair loss), each (G, B), of G stacked (B, B) batches.

    ``similarity`` is overwritten with the shifted logits and ``buffer`` (its shape) with scratch values.

    With ``L = S / tau - M`` (``M`` the batch's largest logit) and ``E = exp(L)``, the row sums ``r``
    and column sums ``c`` of ``E`` give both log-sum-exps, and ``P = E * L.T`` gives both entropy
    terms: ``H_i2t[i] = log r[i] - sum_j P[j, i] / c[i]`` and ``H_t2i[i] = log c[i] - sum_j P[i, j] / r[i]``
    (each softmax sums to one, so the shift ``M`` cancels). A batch whose row or column sum falls below
    ``UNDERFLOW_SUM`` (logits spread over more than about 70, i.e. a tiny ``tau``) is rescored with
    the per-direction stable functions of ``losses``.
    """
    logits = similarity.div_(tau)
    shift = logits.amax(dim=(1, 2), keepdim=True)
    logits.sub_(shift)
    exponentials = torch.exp(logits, out=buffer)
    row_sums, column_sums = exponentials.sum(dim=2), exponentials.sum(dim=1)
    product = exponentials.mul_(logits.transpose(1, 2))
    log_rows, log_columns = row_sums.log(), column_sums.log()
    image_to_text_entropy = log_rows - product.sum(dim=1) / column_sums
    text_to_image_entropy = log_columns - product.sum(dim=2) / row_sums
    entropy = (image_to_text_entropy + text_to_image_entropy) / 2
    half_log_sums = (log_rows + log_columns) / 2
    energy = -tau * (half_log_sums + shift.reshape(-1, 1))
    loss = half_log_sums - logits.diagonal(dim1=1, dim2=2)
    unstable = (torch.minimum(row_sums.amin(dim=1), column_sums.amin(dim=1)) < UNDERFLOW_SUM).nonzero().reshape(-1)
    for batch in unstable.tolist():
        batch_logits = (logits[batch] + shift[batch]).contiguous()
        energy[batch] = losses.free_energy(batch_logits, batch_logits.T, tau)
        entropy[batch] = losses.swapped_entropy(batch_logits, batch_logits.T)
        loss[batch] = losses.per_pair_cross_entropy(batch_logits, batch_logits.T)
    return energy, entropy, loss
