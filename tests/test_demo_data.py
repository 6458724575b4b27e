"""Checks of the committed demo dataset in demo/ (built by scripts/build_demo_data.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
COLUMNS = [
    "pair_id",
    "image_id",
    "image_path",
    "caption",
    "category",
    "split",
    "keywords",
    "source_path",
]
MAX_DEMO_BYTES = 18_000_000


@pytest.fixture(scope="module")
def pairs() -> pd.DataFrame:
    return pd.read_csv(DEMO_DIR / "pairs.csv", dtype=str, keep_default_na=False, encoding="utf-8")


def test_pairs_csv_columns(pairs):
    assert list(pairs.columns) == COLUMNS


def test_pair_ids_unique(pairs):
    assert pairs["pair_id"].is_unique
    assert pairs["image_id"].is_unique


def test_pair_id_is_image_id_plus_zero(pairs):
    mismatched = pairs[pairs["pair_id"] != pairs["image_id"] + "-0"]
    assert mismatched.empty, mismatched.head()


def test_captions_not_empty(pairs):
    empty = pairs[pairs["caption"].str.strip() == ""]
    assert empty.empty, empty.head()


def test_categories_not_empty(pairs):
    assert (pairs["category"].str.strip() != "").all()


def test_split_counts(pairs):
    counts = pairs["split"].value_counts().to_dict()
    assert set(counts) == {"train", "val", "test"}
    assert 900 <= counts["test"] <= 1100, counts
    assert 450 <= counts["val"] <= 550, counts
    assert counts["train"] >= 4500, counts


def test_at_least_6000_pairs(pairs):
    assert len(pairs) >= 6000


def test_image_paths_relative_inside_images(pairs):
    for image_path in pairs["image_path"]:
        path = Path(image_path)
        assert not path.is_absolute(), image_path
        assert path.parent == Path("images"), image_path
        assert path.suffix == ".webp", image_path


def test_images_decode_as_rgb_224(pairs):
    for image_path in pairs["image_path"]:
        path = DEMO_DIR / image_path
        assert path.is_file(), f"missing image {path}"
        with Image.open(path) as image:
            image.load()
            assert image.format == "WEBP", image_path
            assert image.mode == "RGB", image_path
            assert max(image.size) == 224, (image_path, image.size)


def test_no_unreferenced_images(pairs):
    referenced = {Path(image_path).name for image_path in pairs["image_path"]}
    on_disk = {path.name for path in (DEMO_DIR / "images").iterdir()}
    assert on_disk - referenced == set()


def test_source_paths_in_package(pairs):
    assert pairs["source_path"].is_unique
    assert pairs["source_path"].str.startswith("/usr/share/openclipart/png/").all()
    assert pairs["source_path"].str.endswith(".png").all()


def test_license_and_provenance_present():
    assert "public domain" in (DEMO_DIR / "LICENSE.md").read_text(encoding="utf-8").lower()
    assert "openclipart-png" in (DEMO_DIR / "PROVENANCE.md").read_text(encoding="utf-8")


def test_demo_size_under_limit():
    files = [path for path in DEMO_DIR.rglob("*") if path.is_file()]
    data = sum(path.stat().st_size for path in files if "run" not in path.relative_to(DEMO_DIR).parts)
    total = sum(path.stat().st_size for path in files)
    assert data < MAX_DEMO_BYTES, f"demo/ data is {data} bytes"
    # The bundled run comes on top; together they keep the repository quick to clone.
    assert total < 30_000_000, f"demo/ with its run is {total} bytes"
