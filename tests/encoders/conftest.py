"""Shared fixtures: one offline encoder per session, drawn test images and tiny datasets."""

from __future__ import annotations

import math
import random
import socket
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest
from PIL import Image, ImageDraw

from srem_core.data.pairs import PairDataset, build_dataset
from srem_core.encoders.base import Encoder

DRAWING_SIZE = 256
"""Side of the drawn images in pixels; EfficientNet-Lite0 crops its 224 input from a 256 resize."""


@pytest.fixture(scope="session")
def network_attempts() -> list:
    """Addresses that code under test tried to connect to while the offline encoder was built."""
    return []


@pytest.fixture(scope="session")
def offline_encoder(network_attempts):
    from srem_core.encoders.offline import OfflineEncoder

    def refuse(sock, address, *args, **kwargs):
        network_attempts.append(address)
        raise OSError(f"test blocked a network connection to {address}")

    with mock.patch.object(socket.socket, "connect", refuse):
        return OfflineEncoder(device="cpu")


@pytest.fixture(scope="session")
def bridge_cache_dir(tmp_path_factory) -> Path:
    """A cache shared by the tests that need the 1000 class-name embeddings (slow to encode)."""
    return tmp_path_factory.mktemp("bridge-cache")


class CountingEncoder(Encoder):
    """Wraps an encoder and counts the images and texts that reach it."""

    def __init__(self, inner: Encoder):
        self.inner = inner
        self.image_dim = inner.image_dim
        self.text_dim = inner.text_dim
        self.images_encoded = 0
        self.texts_encoded = 0

    @property
    def identity(self) -> str:
        return self.inner.identity

    def preprocess(self, image):
        return self.inner.preprocess(image)

    def encode_image_tensors(self, pixels):
        self.images_encoded += len(pixels)
        return self.inner.encode_image_tensors(pixels)

    def encode_texts(self, texts):
        texts = list(texts)
        self.texts_encoded += len(texts)
        return self.inner.encode_texts(texts)

    def to(self, device):
        self.inner.to(device)
        return self


def draw_crossword() -> Image.Image:
    image = Image.new("RGB", (DRAWING_SIZE, DRAWING_SIZE), "white")
    draw = ImageDraw.Draw(image)
    cells = 13
    cell = DRAWING_SIZE / cells
    rng = random.Random(1)
    for column in range(cells):
        for row in range(cells):
            fill = "black" if rng.random() < 0.2 else "white"
            box = [column * cell, row * cell, (column + 1) * cell, (row + 1) * cell]
            draw.rectangle(box, fill=fill, outline="black")
    return image


def draw_clock() -> Image.Image:
    image = Image.new("RGB", (DRAWING_SIZE, DRAWING_SIZE), "white")
    draw = ImageDraw.Draw(image)
    centre = DRAWING_SIZE / 2
    radius = DRAWING_SIZE * 0.42
    draw.ellipse(
        [centre - radius, centre - radius, centre + radius, centre + radius],
        outline="black", width=8, fill=(250, 250, 240),
    )

    def spoke(angle: float, inner: float, outer: float, width: int) -> None:
        dx, dy = math.sin(angle), -math.cos(angle)
        draw.line(
            [centre + inner * radius * dx, centre + inner * radius * dy,
             centre + outer * radius * dx, centre + outer * radius * dy],
            fill="black", width=width,
        )

    for hour in range(12):
        spoke(hour * math.pi / 6, 0.8, 0.95, 6)
    spoke(2.0, 0.0, 0.5, 8)
    spoke(5.0, 0.0, 0.8, 5)
    return image


def draw_honeycomb() -> Image.Image:
    image = Image.new("RGB", (DRAWING_SIZE, DRAWING_SIZE), (200, 140, 20))
    draw = ImageDraw.Draw(image)
    radius = 18
    for row in range(12):
        for column in range(10):
            x = column * radius * 1.75 + (row % 2) * radius * 0.87
            y = row * radius * 1.5
            corners = [
                (x + radius * math.cos(math.pi / 3 * k + math.pi / 6),
                 y + radius * math.sin(math.pi / 3 * k + math.pi / 6))
                for k in range(6)
            ]
            draw.polygon(corners, fill=(240, 190, 40), outline=(150, 90, 10))
    return image


def draw_traffic_light() -> Image.Image:
    image = Image.new("RGB", (DRAWING_SIZE, DRAWING_SIZE), (135, 190, 235))
    draw = ImageDraw.Draw(image)
    draw.rectangle([98, 20, 158, 236], fill=(30, 30, 30))
    for slot, colour in enumerate(["red", "yellow", "green"]):
        draw.ellipse([108, 30 + slot * 68, 148, 70 + slot * 68], fill=colour)
    return image


def solid_image(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Image.Image:
    return Image.new("RGB", size, colour)


def make_dataset(root: Path, rows: list[tuple[str, str, str]]) -> PairDataset:
    """Build a dataset from (image_id, file name under ``root``, caption) rows; pair ids are p0, p1, ..."""
    frame = pd.DataFrame(
        {
            "pair_id": [f"p{position}" for position in range(len(rows))],
            "image_id": [image_id for image_id, _, _ in rows],
            "image_path": [file_name for _, file_name, _ in rows],
            "caption": [caption for _, _, caption in rows],
        }
    )
    return build_dataset(frame, root, source="test")


@pytest.fixture
def counting_encoder():
    """The ``CountingEncoder`` class, for wrapping an encoder in a test."""
    return CountingEncoder


@pytest.fixture
def dataset_factory():
    """``make_dataset(root, rows)``: a PairDataset from (image_id, file name, caption) rows."""
    return make_dataset


@pytest.fixture
def drawings() -> dict:
    """Drawn images that EfficientNet-Lite0 classifies as one ImageNet class, with a fitting caption.

    Top-1 classes checked by hand: crossword puzzle (p = 0.95), analog clock (0.80), honeycomb (0.65),
    traffic light (0.30).
    """
    return {
        "crossword": (draw_crossword, "crossword puzzle", "a crossword puzzle printed in the newspaper"),
        "clock": (draw_clock, "analog clock", "an analog clock hanging on the wall"),
        "honeycomb": (draw_honeycomb, "honeycomb", "a honeycomb full of honey made by bees"),
        "traffic_light": (draw_traffic_light, "traffic light", "a traffic light at a street crossing"),
    }
