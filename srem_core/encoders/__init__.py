"""Pretrained image and text encoders, a feature cache, and the zero-training detection baseline.

``create_encoder("offline")`` needs no download: EfficientNet-Lite0 and all-MiniLM-L6-v2 ship in pip
packages. ``create_encoder("open_clip:<model_name>", pretrained=...)`` wraps an open_clip model.
The heavy libraries (sentence-transformers, open_clip) are imported only when an encoder is built.
"""

from __future__ import annotations

import os

import torch

from srem_core.encoders.base import Encoder
from srem_core.encoders.bridge import zero_training_scores
from srem_core.encoders.cache import ExtractedFeatures, encode_texts_cached, extract_features

OPEN_CLIP_PREFIX = "open_clip:"

VALID_NAME_FORMS = (
    "'offline' (EfficientNet-Lite0 + all-MiniLM-L6-v2, bundled, no download) or "
    "'open_clip:<model_name>' with a model from open_clip.list_models(), for example 'open_clip:ViT-B-32'"
)

__all__ = [
    "Encoder",
    "ExtractedFeatures",
    "create_encoder",
    "encode_texts_cached",
    "extract_features",
    "zero_training_scores",
]


def create_encoder(
    name: str = "offline",
    *,
    pretrained: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> Encoder:
    """Build the encoder called ``name`` on ``device``.

    ``pretrained`` applies to open_clip models only: None (random weights, for tests), a weights tag
    such as ``"laion2b_s34b_b79k"`` (downloaded by open_clip on first use) or a local checkpoint file.

    Raises:
        ValueError: ``name`` is not one of the valid forms, or ``pretrained`` is given for "offline".
    """
    if name == "offline":
        if pretrained is not None:
            raise ValueError(
                f"The offline encoder has fixed bundled weights, but got `pretrained`={str(pretrained)!r}. "
                "Leave `pretrained` unset, or use an 'open_clip:<model_name>' encoder."
            )
        from srem_core.encoders.offline import OfflineEncoder

        return OfflineEncoder(device=device)
    if name.startswith(OPEN_CLIP_PREFIX) and len(name) > len(OPEN_CLIP_PREFIX):
        from srem_core.encoders.openclip import OpenClipEncoder

        return OpenClipEncoder(name[len(OPEN_CLIP_PREFIX) :], pretrained=pretrained, device=device)
    raise ValueError(f"Unknown encoder {name!r}. Valid names: {VALID_NAME_FORMS}.")
