"""The interface every encoder implements: pretrained image and text towers with known output sizes."""

from __future__ import annotations

import abc
from typing import Sequence

import torch
from PIL import Image


class Encoder(abc.ABC):
    """A pair of pretrained towers that turn images and captions into feature vectors.

    Features are the towers' raw outputs (not projected into the joint space and not necessarily
    normalised): SREM trains projection heads on top of them. ``identity`` names the weights exactly,
    so that cached features and checkpoints can be matched to the encoder that made them.
    """

    image_dim: int
    """Size of one image feature vector."""
    text_dim: int
    """Size of one text feature vector."""

    @property
    @abc.abstractmethod
    def identity(self) -> str:
        """Return a string that changes whenever the features would change (model name, weights)."""

    @abc.abstractmethod
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Turn one RGB PIL image into the tower's input tensor (C, H, W)."""

    @abc.abstractmethod
    def encode_image_tensors(self, pixels: torch.Tensor) -> torch.Tensor:
        """Encode a batch of preprocessed images (N, C, H, W) into features (N, image_dim)."""

    @abc.abstractmethod
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Encode captions into features (N, text_dim)."""

    @abc.abstractmethod
    def to(self, device: torch.device) -> "Encoder":
        """Move both towers to ``device`` and return self."""

    def towers(self) -> torch.nn.Module:
        """Return one module holding both towers' parameters, for fine-tuning (``unfreeze``)."""
        raise NotImplementedError(f"{type(self).__name__} does not support fine-tuning its towers; train without --unfreeze")

    def image_features_with_grad(self, pixels: torch.Tensor) -> torch.Tensor:
        """Encode preprocessed images (N, C, H, W) into features (N, image_dim), keeping the graph."""
        raise NotImplementedError(f"{type(self).__name__} does not support fine-tuning its towers; train without --unfreeze")

    def text_features_with_grad(self, texts: Sequence[str]) -> torch.Tensor:
        """Encode captions into features (N, text_dim), keeping the graph."""
        raise NotImplementedError(f"{type(self).__name__} does not support fine-tuning its towers; train without --unfreeze")

    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Encode RGB PIL images into features (N, image_dim)."""
        pixels = torch.stack([self.preprocess(image) for image in images])
        return self.encode_image_tensors(pixels)
