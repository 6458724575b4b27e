"""Zero-training baseline for noisy-pair detection: rank pairs by an untrained image-caption similarity.

- open_clip encoders (``joint_space`` is True): the CLIP score, the cosine of the image and caption
  embeddings, as DataComp-style filtering uses it.
- The offline encoder, whose towers share no space: a bridge through ImageNet labels. The image's
  ImageNet class probabilities (softmax of EfficientNet-Lite0's logits) weight the MiniLM embeddings
  of the 1000 class names, and the weighted sum is compared with the caption's MiniLM embedding.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from srem_core.data.pairs import PairDataset
from srem_core.encoders.base import Encoder
from srem_core.encoders.cache import ExtractedFeatures, encode_texts_cached, extract_features
from srem_core.encoders.offline import OfflineEncoder, imagenet_class_names
from srem_core.encoders.openclip import paired_cosine

logger = logging.getLogger(__name__)

CLASS_NAME_TEMPLATE = "a photo of a {}."
"""Sentence each ImageNet class name is embedded in. On 199 Open Clip Art images with captions made
from their file names, this form, the bare name and "a drawing of a {}." were within 0.02 AUROC."""


def zero_training_scores(
    encoder: Encoder,
    dataset: PairDataset,
    features: ExtractedFeatures | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Score every pair of ``dataset`` by untrained image-caption similarity, shape (n_pairs,) float32.

    Scores are cosine similarities in [-1, 1]. Higher means the caption more likely matches its
    image, so the lowest-scored pairs are the first suspects for noise. The two scores (CLIP score
    or ImageNet bridge, see the module docstring) are on different scales and must not be mixed.
    A pair whose image failed to load scores NaN (``features.usable_pairs`` is False there).

    ``features`` must come from ``extract_features`` with the same encoder. When it is None, they
    are extracted now, using the cache in ``cache_dir`` when one is given.

    Raises:
        ValueError: the dataset has precomputed image features (no image files to classify), or
            ``features`` belong to another encoder or another dataset.
        TypeError: the encoder has neither a joint space nor ImageNet logits.
    """
    if dataset.image_features is not None:
        raise ValueError(
            "The zero-training baseline needs the image files; this dataset has only precomputed "
            "image features. Use a dataset with image files."
        )
    uses_bridge = isinstance(encoder, OfflineEncoder)
    if not uses_bridge and not getattr(encoder, "joint_space", False):
        raise TypeError(
            f"No zero-training score for {type(encoder).__name__}: its image and text features share "
            "no space and it has no ImageNet classifier. Use OfflineEncoder or OpenClipEncoder."
        )
    if features is None:
        features = extract_features(
            encoder, dataset, cache_dir=cache_dir, batch_size=batch_size, device=device, progress=progress
        )
    _check_features(encoder, dataset, features)

    if uses_bridge:
        image_side = imagenet_bridge_embeddings(
            encoder, features.image_features, cache_dir=cache_dir, batch_size=batch_size
        )
    else:
        image_side = torch.tensor(features.image_features, dtype=torch.float32)
    pair_images = image_side[torch.tensor(dataset.caption_to_image)]
    scores = paired_cosine(pair_images, torch.tensor(features.text_features, dtype=torch.float32))
    return scores.cpu().numpy().astype(np.float32)


def imagenet_bridge_embeddings(
    encoder: OfflineEncoder,
    image_features: np.ndarray,
    *,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """Map pooled image features (n, 1280) into MiniLM space (n, 384) through ImageNet class names.

    ``sum_c softmax(logits)[c] * embed(CLASS_NAME_TEMPLATE.format(name_c))``, where ``embed`` is the
    L2-normalised MiniLM embedding. The result is not normalised, and NaN rows stay NaN.
    """
    logits = encoder.imagenet_logits_from_features(torch.tensor(image_features, dtype=torch.float32))
    probabilities = torch.softmax(logits.float(), dim=1)
    class_embeddings = class_name_embeddings(encoder, cache_dir=cache_dir, batch_size=batch_size)
    return probabilities.cpu() @ class_embeddings


def class_name_embeddings(
    encoder: OfflineEncoder,
    *,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """Return the MiniLM embeddings of the 1000 ImageNet class-name sentences, (1000, 384) on the CPU.

    They go through the caption cache, so with a ``cache_dir`` they are encoded once per encoder.
    """
    sentences = [CLASS_NAME_TEMPLATE.format(name) for name in imagenet_class_names()]
    embeddings = encode_texts_cached(
        encoder, sentences, cache_dir=cache_dir, batch_size=batch_size, progress=False
    )
    return torch.from_numpy(embeddings)


def _check_features(encoder: Encoder, dataset: PairDataset, features: ExtractedFeatures) -> None:
    if features.encoder_identity != encoder.identity:
        raise ValueError(
            f"`features` were extracted by {features.encoder_identity!r}, not by this encoder "
            f"({encoder.identity!r}). Extract them with the same encoder."
        )
    expected = {"image_features": dataset.n_images, "text_features": dataset.n_pairs}
    for name, n_rows in expected.items():
        found = len(getattr(features, name))
        if found != n_rows:
            raise ValueError(
                f"`features.{name}` has {found} rows but the dataset has {n_rows}. "
                "Pass the features extracted from this dataset."
            )
