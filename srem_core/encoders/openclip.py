"""An encoder built from an open_clip model: image and text towers that share one embedding space."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from srem_core.encoders.base import Encoder
from srem_core.encoders.hashing import weights_sha256

logger = logging.getLogger(__name__)

RANDOM_INIT_SEED = 0
"""Seed for a model built without weights, so that ``identity`` names features that repeat exactly."""

COSINE_EPS = 1e-8
"""Smallest norm divided by in a cosine similarity, so that an all-zero feature gives 0, not NaN."""


class OpenClipEncoder(Encoder):
    """Image and text towers of an open_clip model, whose features are CLIP embeddings (not normalised).

    ``pretrained`` selects the weights, resolved in open_clip's order:

    - ``None``: random initialisation with a fixed seed (for tests and smoke runs only).
    - a tag from ``open_clip.list_pretrained_tags_by_model(model_name)`` such as
      ``"laion2b_s34b_b79k"``: open_clip downloads the weights into its cache on first use.
    - a path to a local checkpoint (``.pt``, ``.bin`` or ``.safetensors``) whose keys match the model.

    Image and text features both have ``embed_dim`` columns and live in one space: the cosine of an
    image's and a caption's features is the CLIP score.
    """

    joint_space = True
    """Image and text features can be compared directly (cosine similarity)."""

    def __init__(
        self,
        model_name: str,
        pretrained: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
    ):
        import open_clip

        # Only built-in names: get_model_config would fetch an 'hf-hub:' config over the network.
        config = open_clip.get_model_config(model_name) if model_name in open_clip.list_models() else None
        if config is None:
            raise ValueError(
                f"Unknown open_clip model {model_name!r}. Use one of open_clip.list_models(), "
                "for example 'ViT-B-32'."
            )
        self.model_name = model_name
        self.image_dim = self.text_dim = int(config["embed_dim"])
        self._weights_source = _resolve_weights(model_name, pretrained)
        self._model, self._transform = _create_model(model_name, self._weights_source)
        self._tokenizer = open_clip.get_tokenizer(model_name)
        self._identity: str | None = None
        self._device = torch.device("cpu")
        self.to(device)

    @property
    def identity(self) -> str:
        """``open_clip:<model>:`` then ``tag=<tag>``, ``sha256=<16 hex digits>`` or ``random-init-seed0``."""
        if self._identity is None:
            self._identity = f"open_clip:{self.model_name}:{_describe_weights(self._weights_source)}"
        return self._identity

    @property
    def device(self) -> torch.device:
        return self._device

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Apply the model's evaluation transform (resize, centre crop, normalise) to one image."""
        return self._transform(image.convert("RGB"))

    def encode_image_tensors(self, pixels: torch.Tensor) -> torch.Tensor:
        """Encode preprocessed images (N, 3, H, W) into CLIP image embeddings (N, embed_dim)."""
        with torch.no_grad():
            return self._model.encode_image(pixels.to(self._device)).float()

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Encode captions into CLIP text embeddings (N, embed_dim). Long captions are truncated."""
        texts = list(texts)
        if not texts:
            return torch.empty((0, self.text_dim), device=self._device)
        tokens = self._tokenizer(texts).to(self._device)
        with torch.no_grad():
            return self._model.encode_text(tokens).float()

    def towers(self) -> torch.nn.Module:
        return self._model

    def image_features_with_grad(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._model.encode_image(pixels.to(self._device)).float()

    def text_features_with_grad(self, texts: Sequence[str]) -> torch.Tensor:
        return self._model.encode_text(self._tokenizer(list(texts)).to(self._device)).float()

    def clip_score(self, images: Sequence[Image.Image], texts: Sequence[str]) -> torch.Tensor:
        """Return the CLIP score of each matched pair ``(images[i], texts[i])``, shape (N,).

        The score is the cosine similarity of the two embeddings, in [-1, 1]. Higher means the
        caption fits the image better. Unlike DataComp's CLIP score it is not multiplied by 100.
        """
        if len(images) != len(texts):
            raise ValueError(
                f"`images` and `texts` must have the same length, got {len(images)} and {len(texts)}"
            )
        return paired_cosine(self.encode_images(images), self.encode_texts(texts))

    def to(self, device: str | torch.device) -> "OpenClipEncoder":
        self._device = torch.device(device)
        self._model.to(self._device)
        return self


def paired_cosine(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """Return the cosine similarity of row i of ``image_features`` with row i of ``text_features``.

    Both inputs are (N, D) and the result is (N,), in [-1, 1]. A NaN row gives NaN.
    """
    if image_features.shape != text_features.shape:
        raise ValueError(
            "`image_features` and `text_features` must have the same shape, got "
            f"{tuple(image_features.shape)} and {tuple(text_features.shape)}"
        )
    images = F.normalize(image_features.float(), dim=1, eps=COSINE_EPS)
    texts = F.normalize(text_features.float(), dim=1, eps=COSINE_EPS)
    return (images * texts).sum(dim=1)


def _resolve_weights(model_name: str, pretrained: str | os.PathLike | None) -> str | Path | None:
    """Return None, a known tag (str) or an existing file (Path). Raise ValueError for anything else."""
    import open_clip

    if pretrained is None:
        return None
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if isinstance(pretrained, str) and pretrained in tags:
        return pretrained
    path = Path(pretrained)
    if path.is_file():
        return path
    raise ValueError(
        f"`pretrained`={str(pretrained)!r} is neither a weights tag of {model_name!r} nor an existing "
        f"file. Known tags: {tags or 'none'}. Pass a tag, a path to a checkpoint file, or None."
    )


def _create_model(model_name: str, weights: str | Path | None):
    """Build the model on the CPU in eval mode and return it with its evaluation transform."""
    import open_clip

    pretrained = None if weights is None else str(weights)
    # pretrained_text=False: without a full checkpoint, open_clip would otherwise download the
    # pretrained text tower of models whose text side comes from Hugging Face.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        model, _, transform = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained, pretrained_text=False, device="cpu"
        )
    if weights is None:
        logger.info(
            "open_clip model %s has random weights (seed %d): its features carry no meaning.",
            model_name,
            RANDOM_INIT_SEED,
        )
    return model.eval(), transform


def _describe_weights(weights: str | Path | None) -> str:
    if weights is None:
        return f"random-init-seed{RANDOM_INIT_SEED}"
    if isinstance(weights, Path):
        return f"sha256={weights_sha256(weights)[:16]}"
    return f"tag={weights}"
