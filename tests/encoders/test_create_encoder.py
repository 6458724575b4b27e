"""create_encoder: the encoder names users pass on the command line and in the app."""

from __future__ import annotations

import re

import pytest

from srem_core.encoders import create_encoder
from srem_core.encoders.offline import OfflineEncoder
from srem_core.encoders.openclip import OpenClipEncoder

VALID_FORMS = (
    "Valid names: 'offline' (EfficientNet-Lite0 + all-MiniLM-L6-v2, bundled, no download) or "
    "'open_clip:<model_name>' with a model from open_clip.list_models(), for example 'open_clip:ViT-B-32'."
)


def test_default_is_offline():
    encoder = create_encoder()
    assert isinstance(encoder, OfflineEncoder)
    assert encoder.identity.startswith("offline:")


def test_open_clip_name():
    encoder = create_encoder("open_clip:ViT-S-32-alt", device="cpu")
    assert isinstance(encoder, OpenClipEncoder)
    assert encoder.identity == "open_clip:ViT-S-32-alt:random-init-seed0"


@pytest.mark.parametrize("name", ["clip", "", "open_clip:", "Offline", "openclip:ViT-B-32"])
def test_unknown_name_lists_valid_forms(name):
    with pytest.raises(ValueError, match=re.escape(f"Unknown encoder {name!r}. {VALID_FORMS}")):
        create_encoder(name)


def test_unknown_open_clip_model():
    with pytest.raises(ValueError, match=r"Unknown open_clip model 'ViT-Q-99'"):
        create_encoder("open_clip:ViT-Q-99")


def test_offline_rejects_pretrained():
    with pytest.raises(ValueError, match=r"offline encoder has fixed bundled weights, but got `pretrained`='openai'"):
        create_encoder("offline", pretrained="openai")
