"""Tests for srem_core.data.load_dataset: manifest path, research folder and the demo keyword."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import srem_core.data as data
from srem_core.data import load_dataset


def test_load_dataset_manifest(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "pairs.tsv").write_text("image_path\tcaption\na.png\ta cat\n")

    dataset = load_dataset(tmp_path / "pairs.tsv")

    assert dataset.pairs["caption"].tolist() == ["a cat"]


def test_load_dataset_passes_options(tmp_path):
    (tmp_path / "pairs.csv").write_text("file,caption\nmissing.png,a cat\n")

    dataset = load_dataset(str(tmp_path / "pairs.csv"), image_column="file", check_image_files=False)

    assert dataset.images["image_path"].tolist() == ["missing.png"]


def test_load_dataset_research_folder(tmp_path):
    np.save(tmp_path / "train_ims.npy", np.ones((2, 36, 4), np.float32))
    (tmp_path / "train_caps.txt").write_text("a\nb\n")

    dataset = load_dataset(tmp_path, progress=False)

    assert dataset.image_features.shape == (2, 4)
    assert dataset.pairs["split"].tolist() == ["train", "train"]


def test_load_dataset_demo_missing(tmp_path, monkeypatch):
    missing = tmp_path / "demo" / "pairs.csv"
    monkeypatch.setattr(data, "DEMO_MANIFEST", missing)
    message = (
        f"The bundled demo is not available: {missing} not found. The demo ships with the source "
        "repository, not with an installed package. Run from a clone of the repository, or pass the "
        "path of a manifest."
    )

    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        load_dataset("demo")


def test_load_dataset_demo_keyword(tmp_path, monkeypatch):
    folder = tmp_path / "demo"
    (folder / "images").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(folder / "images" / "x.webp")
    (folder / "pairs.csv").write_text("image_path,caption\nimages/x.webp,a picture\n")
    monkeypatch.setattr(data, "DEMO_MANIFEST", folder / "pairs.csv")
    monkeypatch.chdir(tmp_path)

    dataset = load_dataset("demo")

    assert dataset.image_path(0) == (folder / "images" / "x.webp").resolve()


def test_demo_path_inside_source_checkout():
    package = data.DEMO_MANIFEST.parents[1] / "srem_core" / "data" / "__init__.py"

    assert package.resolve() == Path(data.__file__).resolve()


def test_bundled_demo_loads():
    if not data.DEMO_MANIFEST.is_file():
        pytest.skip(f"{data.DEMO_MANIFEST} is not present in this checkout")

    dataset = load_dataset("demo")

    assert dataset.n_pairs > 0
    assert dataset.skipped == []
    assert set(dataset.pairs["split"]) <= {"train", "val", "test"}
    assert dataset.image_path(0).is_file()


def test_load_dataset_not_found(tmp_path):
    path = tmp_path / "nothing.csv"
    message = (
        f"Dataset {path} not found. Pass a manifest (.csv, .tsv, .jsonl, .parquet), a folder of "
        "research-format features ({split}_ims.npy and {split}_caps.txt), or 'demo'."
    )

    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        load_dataset(path)
