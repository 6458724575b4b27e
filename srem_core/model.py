"""Projection heads that map frozen tower features into the joint image-text space."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MLP_HIDDEN_MULTIPLIER = 2
"""Hidden width of the MLP head as a multiple of the embedding size."""
STD_FLOOR = 1e-6
"""Smallest per-dimension scale, so that a constant input dimension is not divided by zero."""


def _make_head(in_dim: int, embed_dim: int, kind: str) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_dim, embed_dim)
    if kind == "mlp":
        hidden = MLP_HIDDEN_MULTIPLIER * embed_dim
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, embed_dim))
    raise ValueError(f"head must be 'linear' or 'mlp'; got {kind!r}")


class ProjectionHeads(nn.Module):
    """One head per modality; outputs are L2-normalised ``image_features`` / ``text_features`` (N, D)."""

    def __init__(self, image_dim: int, text_dim: int, embed_dim: int, head: str = "linear") -> None:
        super().__init__()
        self.image_dim, self.text_dim, self.embed_dim, self.head_kind = image_dim, text_dim, embed_dim, head
        self.image_head = _make_head(image_dim, embed_dim, head)
        self.text_head = _make_head(text_dim, embed_dim, head)
        # Input standardisation, fitted once on the training features and saved with the weights.
        self.register_buffer("image_mean", torch.zeros(image_dim))
        self.register_buffer("image_scale", torch.ones(image_dim))
        self.register_buffer("text_mean", torch.zeros(text_dim))
        self.register_buffer("text_scale", torch.ones(text_dim))

    @torch.no_grad()
    def fit_standardisation(self, image_inputs: torch.Tensor, text_inputs: torch.Tensor) -> None:
        """Set the per-dimension mean and scale of the inputs from training features (N, dim)."""
        for inputs, mean, scale in ((image_inputs, self.image_mean, self.image_scale), (text_inputs, self.text_mean, self.text_scale)):
            mean.copy_(inputs.mean(dim=0))
            scale.copy_(inputs.std(dim=0).clamp_min(STD_FLOOR))

    def embed_images(self, image_inputs: torch.Tensor) -> torch.Tensor:
        standardised = (image_inputs - self.image_mean) / self.image_scale
        return F.normalize(self.image_head(standardised), dim=-1)

    def embed_texts(self, text_inputs: torch.Tensor) -> torch.Tensor:
        standardised = (text_inputs - self.text_mean) / self.text_scale
        return F.normalize(self.text_head(standardised), dim=-1)

    def forward(self, image_inputs: torch.Tensor, text_inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed_images(image_inputs), self.embed_texts(text_inputs)


class HeadEnsemble(nn.Module):
    """One or more ``ProjectionHeads`` used as one model (the ncr baseline co-trains two).

    The joint embedding is the members' embeddings concatenated and scaled by ``1 / sqrt(n)``, so that a
    dot product of two ensemble embeddings is the mean of the members' cosine similarities.
    """

    def __init__(self, members: list[ProjectionHeads]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one ProjectionHeads member")
        self.members = nn.ModuleList(members)
        first = members[0]
        self.image_dim, self.text_dim, self.head_kind = first.image_dim, first.text_dim, first.head_kind
        self.member_dim = first.embed_dim
        self.embed_dim = first.embed_dim * len(members)

    def _combine(self, parts: list[torch.Tensor]) -> torch.Tensor:
        if len(parts) == 1:
            return parts[0]
        return torch.cat(parts, dim=-1) / len(parts) ** 0.5

    def embed_images(self, image_inputs: torch.Tensor) -> torch.Tensor:
        return self._combine([member.embed_images(image_inputs) for member in self.members])

    def embed_texts(self, text_inputs: torch.Tensor) -> torch.Tensor:
        return self._combine([member.embed_texts(text_inputs) for member in self.members])
