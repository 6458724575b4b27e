"""zero_training_scores: the ImageNet bridge for the offline encoder and the CLIP score for open_clip."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch.nn.functional as F
import torch

from srem_core.data.pairs import build_dataset
from srem_core.encoders.bridge import class_name_embeddings, zero_training_scores
from srem_core.encoders.cache import extract_features


@pytest.fixture
def all_combinations(tmp_path, drawings, dataset_factory):
    """Every drawing paired with every drawing's caption: 4 matched and 12 mismatched pairs."""
    rows = []
    for image_name, (draw, _, _) in drawings.items():
        draw().save(tmp_path / f"{image_name}.png")
        for caption_name, (_, _, caption) in drawings.items():
            rows.append((image_name, f"{image_name}.png", caption))
    dataset = dataset_factory(tmp_path, rows)
    names = list(drawings)
    matched = np.array([image == caption for image in names for caption in names])
    return dataset, matched


def test_bridge_prefers_matching_captions(offline_encoder, all_combinations, bridge_cache_dir):
    dataset, matched = all_combinations
    scores = zero_training_scores(offline_encoder, dataset, cache_dir=bridge_cache_dir, progress=False)

    assert scores.shape == (16,)
    assert scores.dtype == np.float32
    assert ((scores >= -1.0) & (scores <= 1.0)).all()
    table = scores.reshape(4, 4)  # rows: images, columns: captions, same order
    for image in range(4):
        others = np.delete(table[image], image)
        assert table[image, image] > others.max(), f"image {image}: {table[image]}"
    for caption in range(4):
        others = np.delete(table[:, caption], caption)
        assert table[caption, caption] > others.max(), f"caption {caption}: {table[:, caption]}"
    assert scores[matched].min() > scores[~matched].max()


def test_bridge_equals_hand_computed_formula(offline_encoder, all_combinations, bridge_cache_dir):
    dataset, _ = all_combinations
    features = extract_features(offline_encoder, dataset, cache_dir=bridge_cache_dir, progress=False)
    scores = zero_training_scores(offline_encoder, dataset, features, cache_dir=bridge_cache_dir)

    names = [f"a photo of a {name}." for name in _class_names()]
    class_text = F.normalize(offline_encoder.encode_texts(names), dim=1)
    logits = offline_encoder.imagenet_logits_from_features(torch.from_numpy(features.image_features.copy()))
    bridged = torch.softmax(logits, dim=1) @ class_text
    pair_images = bridged[dataset.caption_to_image.copy()]
    expected = F.cosine_similarity(pair_images, torch.from_numpy(features.text_features.copy()))
    np.testing.assert_allclose(scores, expected.numpy(), atol=1e-4)


def _class_names():
    from srem_core.encoders.offline import imagenet_class_names

    return imagenet_class_names()


def test_class_name_embeddings_are_cached(offline_encoder, counting_encoder, bridge_cache_dir):
    first = class_name_embeddings(offline_encoder, cache_dir=bridge_cache_dir)
    counting = counting_encoder(offline_encoder)
    # Only an OfflineEncoder has the classifier, but the text cache is keyed by identity alone.
    second = class_name_embeddings(counting, cache_dir=bridge_cache_dir)
    assert counting.texts_encoded == 0
    assert first.shape == (1000, 384)
    torch.testing.assert_close(first, second)


def test_failed_image_scores_nan(offline_encoder, tmp_path, dataset_factory, drawings, bridge_cache_dir):
    drawings["clock"][0]().save(tmp_path / "clock.png")
    dataset = dataset_factory(
        tmp_path, [("clock", "clock.png", "a clock"), ("gone", "gone.png", "a missing picture")]
    )
    scores = zero_training_scores(offline_encoder, dataset, cache_dir=bridge_cache_dir, progress=False)
    assert np.isfinite(scores[0])
    assert np.isnan(scores[1])


def test_features_of_other_encoder_are_rejected(offline_encoder, all_combinations):
    dataset, _ = all_combinations
    features = extract_features(offline_encoder, dataset, cache_dir=None, progress=False)
    features.encoder_identity = "open_clip:ViT-B-32:tag=openai"
    with pytest.raises(ValueError, match=re.escape("`features` were extracted by 'open_clip:ViT-B-32:tag=openai'")):
        zero_training_scores(offline_encoder, dataset, features)


def test_features_of_other_dataset_are_rejected(offline_encoder, all_combinations):
    dataset, _ = all_combinations
    features = extract_features(offline_encoder, dataset, cache_dir=None, progress=False)
    features.text_features = features.text_features[:5]
    with pytest.raises(ValueError, match=r"`features.text_features` has 5 rows but the dataset has 16"):
        zero_training_scores(offline_encoder, dataset, features)


def test_precomputed_dataset_is_rejected(offline_encoder):
    frame = pd.DataFrame(
        {"pair_id": ["p0"], "image_id": ["i0"], "image_path": [None], "caption": ["a caption"]}
    )
    dataset = build_dataset(frame, root=".", source="precomputed", image_features=np.zeros((1, 4)))
    with pytest.raises(ValueError, match="needs the image files; this dataset has only precomputed"):
        zero_training_scores(offline_encoder, dataset)


def test_encoder_without_shared_space_is_rejected(offline_encoder, counting_encoder, all_combinations):
    dataset, _ = all_combinations
    with pytest.raises(TypeError, match="No zero-training score for CountingEncoder"):
        zero_training_scores(counting_encoder(offline_encoder), dataset, cache_dir=None, progress=False)


def test_open_clip_score_is_cosine_of_embeddings(all_combinations):
    from srem_core.encoders.openclip import OpenClipEncoder

    dataset, _ = all_combinations
    encoder = OpenClipEncoder("ViT-S-32-alt", pretrained=None)
    features = extract_features(encoder, dataset, cache_dir=None, progress=False)

    scores = zero_training_scores(encoder, dataset, features)

    pair_images = torch.from_numpy(features.image_features[dataset.caption_to_image])
    expected = F.cosine_similarity(pair_images, torch.from_numpy(features.text_features.copy()))
    np.testing.assert_allclose(scores, expected.numpy(), atol=1e-6)
