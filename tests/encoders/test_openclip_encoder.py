"""OpenClipEncoder with random weights and with a weights file written by the test (no download)."""

from __future__ import annotations

import re

import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from srem_core.encoders.openclip import OpenClipEncoder, paired_cosine

MODEL_NAME = "ViT-S-32-alt"
"""The smallest built-in open_clip config (ViT-S/32 image tower, 256-wide text tower, 256-d embedding)."""

EMBED_DIM = 256


@pytest.fixture(scope="module")
def random_encoder() -> OpenClipEncoder:
    return OpenClipEncoder(MODEL_NAME, pretrained=None)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A checkpoint of the same architecture with other random weights, and the model it came from."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        model = open_clip.create_model(MODEL_NAME, pretrained=None).eval()
    path = tmp_path_factory.mktemp("open-clip") / "weights.pt"
    torch.save(model.state_dict(), path)
    return path, model


@pytest.fixture(scope="module")
def file_encoder(weights_file) -> OpenClipEncoder:
    return OpenClipEncoder(MODEL_NAME, pretrained=weights_file[0])


def colour_images() -> list[Image.Image]:
    return [Image.new("RGB", (64, 48), colour) for colour in [(200, 30, 30), (30, 200, 30), (30, 30, 200)]]


def test_dimensions_and_shapes(random_encoder):
    assert random_encoder.image_dim == random_encoder.text_dim == EMBED_DIM
    assert random_encoder.encode_images(colour_images()).shape == (3, EMBED_DIM)
    assert random_encoder.encode_texts(["a", "b c"]).shape == (2, EMBED_DIM)
    assert random_encoder.encode_texts([]).shape == (0, EMBED_DIM)
    assert random_encoder.preprocess(colour_images()[0]).shape == (3, 224, 224)


def test_random_init_identity_and_repeatability(random_encoder):
    assert random_encoder.identity == f"open_clip:{MODEL_NAME}:random-init-seed0"
    again = OpenClipEncoder(MODEL_NAME, pretrained=None)
    images = colour_images()
    assert torch.equal(again.encode_images(images), random_encoder.encode_images(images))
    assert torch.equal(again.encode_texts(["a red square"]), random_encoder.encode_texts(["a red square"]))


def test_weights_file_round_trip(weights_file, file_encoder, random_encoder):
    _, source_model = weights_file
    encoder = file_encoder
    images = colour_images()
    pixels = torch.stack([encoder.preprocess(image) for image in images])
    tokens = open_clip.get_tokenizer(MODEL_NAME)(["a red square", "a green square"])
    with torch.no_grad():
        expected_images = source_model.encode_image(pixels)
        expected_texts = source_model.encode_text(tokens)

    assert torch.allclose(encoder.encode_image_tensors(pixels), expected_images, atol=1e-5)
    assert torch.allclose(encoder.encode_texts(["a red square", "a green square"]), expected_texts, atol=1e-5)
    assert not torch.allclose(random_encoder.encode_image_tensors(pixels), expected_images, atol=1e-3)


def test_identity_follows_weights_content(weights_file, file_encoder, random_encoder, tmp_path):
    _, source_model = weights_file
    identity = file_encoder.identity
    assert re.fullmatch(rf"open_clip:{MODEL_NAME}:sha256=[0-9a-f]{{16}}", identity)
    assert identity != random_encoder.identity

    changed_state = {name: tensor.clone() for name, tensor in source_model.state_dict().items()}
    changed_state["logit_scale"] += 1.0
    changed = tmp_path / "changed.pt"
    torch.save(changed_state, changed)
    assert OpenClipEncoder(MODEL_NAME, pretrained=changed).identity != identity


def test_unknown_weights_are_rejected():
    message = (
        f"`pretrained`='no_such_tag' is neither a weights tag of '{MODEL_NAME}' nor an existing file. "
        "Known tags: none. Pass a tag, a path to a checkpoint file, or None."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        OpenClipEncoder(MODEL_NAME, pretrained="no_such_tag")


@pytest.mark.parametrize("name", ["ViT-Q-99", "hf-hub:someone/some-model", "local-dir:/nowhere"])
def test_unknown_model_is_rejected(name):
    expected = f"Unknown open_clip model {name!r}. Use one of open_clip.list_models(), for example 'ViT-B-32'."
    with pytest.raises(ValueError, match=re.escape(expected)):
        OpenClipEncoder(name)


def test_clip_score_is_cosine_of_matched_pairs(random_encoder):
    images = colour_images()
    texts = ["a red square", "a green square", "a blue square"]
    scores = random_encoder.clip_score(images, texts)
    expected = F.cosine_similarity(random_encoder.encode_images(images), random_encoder.encode_texts(texts))
    assert scores.shape == (3,)
    assert torch.allclose(scores, expected, atol=1e-6)
    with pytest.raises(ValueError, match="same length, got 3 and 2"):
        random_encoder.clip_score(images, texts[:2])


def test_paired_cosine_hand_computed():
    image_features = torch.tensor([[1.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    text_features = torch.tensor([[0.0, 2.0], [3.0, 4.0], [1.0, 1.0]])
    assert torch.allclose(paired_cosine(image_features, text_features), torch.tensor([0.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r"same shape, got \(3, 2\) and \(2, 2\)"):
        paired_cosine(image_features, text_features[:2])
