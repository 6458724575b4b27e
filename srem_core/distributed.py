"""Data-parallel training on PyTorch's own engine (``torchrun``), with in-batch logits over the global batch.

Each rank embeds its slice of the global batch. The embeddings are gathered across ranks with
gradients, so every rank computes the same B x B similarity and the same loss as one process would on
the whole batch. Gradients are then averaged across ranks. Because each rank's loss is the full loss and the
gather's backward sums the ranks' gradients, the average equals the one-process gradient.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os

import numpy as np
import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

TIMEOUT_ENVIRONMENT = "SREM_DIST_TIMEOUT_MINUTES"
DEFAULT_TIMEOUT_MINUTES = 30.0
MAX_TIMEOUT_MINUTES = 7 * 24 * 60.0
"""Largest accepted timeout (one week). It rejects inf and huge values, which ``timedelta`` cannot hold."""
"""How long ranks wait for each other at start-up and at barriers. Rank 0 encodes any features missing
from the cache while the others wait, so a large uncached dataset needs ``srem encode`` first or a
longer timeout in ``SREM_DIST_TIMEOUT_MINUTES``."""


def process_group_timeout() -> datetime.timedelta:
    """Return the process group timeout: ``$SREM_DIST_TIMEOUT_MINUTES`` or 30 minutes.

    Raises:
        ValueError: the variable is set but is not a number of minutes in (0, MAX_TIMEOUT_MINUTES].
    """
    text = os.environ.get(TIMEOUT_ENVIRONMENT, "").strip()
    if not text:
        return datetime.timedelta(minutes=DEFAULT_TIMEOUT_MINUTES)
    try:
        minutes = float(text)
    except ValueError:
        minutes = -1.0
    if not 0 < minutes <= MAX_TIMEOUT_MINUTES:
        raise ValueError(
            f"{TIMEOUT_ENVIRONMENT}={text!r} is not a number of minutes in (0, {MAX_TIMEOUT_MINUTES:g}]; unset it or set e.g. 120"
        )
    return datetime.timedelta(minutes=minutes)


@dataclasses.dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job: rank, world size, and whether it writes files (rank 0)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def local_slice(self, rows: np.ndarray) -> np.ndarray:
        """Return this rank's contiguous part of a global batch (rank order = batch order)."""
        return np.array_split(rows, self.world_size)[self.rank]

    def slice_sizes(self, n_rows: int) -> list[int]:
        return [len(part) for part in np.array_split(np.arange(n_rows), self.world_size)]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_from_environment(device: torch.device) -> DistributedContext:
    """Join the process group that ``torchrun`` describes in ``WORLD_SIZE``/``RANK``; one process otherwise.

    The backend is NCCL on CUDA and gloo on the CPU. On CUDA each rank uses the GPU ``LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistributedContext()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend, timeout=process_group_timeout())
    context = DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size())
    logger.info("rank %d of %d joined the process group (%s)", context.rank, context.world_size, dist.get_backend())
    return context


def gather_with_grad(local: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenate every rank's rows (rank order), keeping gradients; ranks may hold different row counts."""
    largest = max(sizes)
    padded = torch.nn.functional.pad(local, (0, 0, 0, largest - local.shape[0]))
    parts = _AllGather.apply(padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])


class _AllGather(torch.autograd.Function):
    """All-gather equal-shape tensors into (world_size, ...) with a gradient for the local part.

    Every rank computes the full loss from the gathered rows, so the gradient of this rank's rows is the
    sum over ranks of each rank's gradient for them: an all-reduce of the whole gradient, then this
    rank's slice.
    """

    @staticmethod
    def forward(ctx, local: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, local.contiguous())
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:
        gradient = gradient.contiguous()
        dist.all_reduce(gradient, op=dist.ReduceOp.SUM)
        return gradient[dist.get_rank()]


def average_gradients(parameters) -> None:
    """All-reduce every parameter's gradient and divide by the world size (what DDP does)."""
    world_size = dist.get_world_size()
    for parameter in parameters:
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
            parameter.grad /= world_size
