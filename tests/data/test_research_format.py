"""Tests for srem_core.data.research: the {split}_ims.npy / {split}_caps.txt features format."""

from __future__ import annotations

import logging
import os
import re
import tempfile

import numpy as np
import pytest

from srem_core.data import research
from srem_core.data.pairs import SkippedItem
from srem_core.data.research import (
    find_nonfinite_rows,
    pooled_image_features,
    read_research_folder,
    read_research_split,
)


def _write_split(folder, prefix, features, captions_per_image, caption_text=None):
    np.save(folder / f"{prefix}_ims.npy", features)
    n_captions = features.shape[0] * captions_per_image
    lines = caption_text or [f"{prefix} caption {j}" for j in range(n_captions)]
    (folder / f"{prefix}_caps.txt").write_text("".join(line + "\n" for line in lines))


def _regions(n_images, n_regions=36, dim=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n_images, n_regions, dim)).astype(np.float32)


def test_region_features_k5(tmp_path):
    regions = _regions(3)
    _write_split(tmp_path, "train", regions, 5)

    dataset = read_research_split(tmp_path, "train", progress=False)

    assert dataset.n_images == 3
    assert dataset.n_pairs == 15
    assert dataset.caption_to_image.tolist() == [j // 5 for j in range(15)]
    assert dataset.image_features.shape == (3, 8)
    assert dataset.image_features.dtype == np.float32
    np.testing.assert_allclose(dataset.image_features, regions.mean(axis=1), rtol=1e-6, atol=1e-6)
    assert dataset.pairs["pair_id"].tolist()[:6] == [
        "train-0-0", "train-0-1", "train-0-2", "train-0-3", "train-0-4", "train-1-0"
    ]
    assert dataset.pairs["caption"].iat[7] == "train caption 7"
    assert dataset.image_path(0) is None
    assert dataset.skipped == []


def test_pooled_features_k1(tmp_path):
    features = np.arange(12, dtype=np.float32).reshape(4, 3)
    _write_split(tmp_path, "train", features, 1)

    dataset = read_research_split(tmp_path, "train", progress=False)

    assert dataset.caption_to_image.tolist() == [0, 1, 2, 3]
    assert isinstance(dataset.image_features, np.memmap)
    np.testing.assert_array_equal(dataset.image_features, features)
    assert not (tmp_path / "train_ims_pooled.npy").exists()


def test_pooling_cache_next_to_source(tmp_path):
    regions = _regions(5, n_regions=4, dim=3)
    np.save(tmp_path / "train_ims.npy", regions)

    pooled = pooled_image_features(tmp_path / "train_ims.npy", chunk_rows=2, progress=False)

    cache = tmp_path / "train_ims_pooled.npy"
    assert cache.is_file()
    assert isinstance(pooled, np.memmap)
    np.testing.assert_allclose(pooled, regions.mean(axis=1), rtol=1e-6, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_pooling_cache_reused(tmp_path, monkeypatch):
    np.save(tmp_path / "train_ims.npy", _regions(2, n_regions=2, dim=2))
    pooled_image_features(tmp_path / "train_ims.npy", progress=False)

    def fail(*args):
        raise AssertionError("the cached array should have been reused")

    monkeypatch.setattr(research, "_write_pooled", fail)
    again = pooled_image_features(tmp_path / "train_ims.npy", progress=False)

    assert again.shape == (2, 2)


def test_pooling_stale_cache_recomputed(tmp_path):
    source = tmp_path / "train_ims.npy"
    cache = tmp_path / "train_ims_pooled.npy"
    np.save(cache, np.zeros((2, 2), dtype=np.float32))
    regions = _regions(2, n_regions=2, dim=2)
    np.save(source, regions)
    os.utime(cache, (1, 1))

    pooled = pooled_image_features(source, progress=False)

    np.testing.assert_allclose(pooled, regions.mean(axis=1), rtol=1e-6)


def test_pooling_wrong_shape_cache_recomputed(tmp_path):
    source = tmp_path / "train_ims.npy"
    regions = _regions(3, n_regions=2, dim=2)
    np.save(source, regions)
    np.save(tmp_path / "train_ims_pooled.npy", np.zeros((2, 2), dtype=np.float32))

    pooled = pooled_image_features(source, progress=False)

    assert pooled.shape == (3, 2)


def test_pooling_read_only_folder_uses_cache_dir(tmp_path, monkeypatch):
    data, cache_dir = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    regions = _regions(3, n_regions=2, dim=2)
    np.save(data / "train_ims.npy", regions)
    real_mkstemp = tempfile.mkstemp

    def mkstemp_read_only_data(*args, dir=None, **kwargs):
        # Tests may run as root, which ignores file modes, so the read-only folder is simulated.
        if os.path.samefile(dir, data):
            raise PermissionError(13, "Permission denied", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(research.tempfile, "mkstemp", mkstemp_read_only_data)
    pooled = pooled_image_features(data / "train_ims.npy", cache_dir=cache_dir, progress=False)

    assert not (data / "train_ims_pooled.npy").exists()
    cached = list(cache_dir.glob("train_ims_pooled-*.npy"))
    assert len(cached) == 1
    np.testing.assert_allclose(np.load(cached[0]), regions.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(pooled, regions.mean(axis=1), rtol=1e-6)


def test_find_nonfinite_rows_chunked():
    features = np.ones((7, 3), dtype=np.float32)
    features[1, 0] = np.nan
    features[5, 2] = np.inf
    features[6, 1] = -np.inf

    assert find_nonfinite_rows(features, chunk_rows=2).tolist() == [1, 5, 6]


@pytest.mark.parametrize("region_axis", [False, True])
def test_nan_image_skipped_with_captions(tmp_path, caplog, region_axis):
    features = _regions(4, n_regions=3, dim=2) if region_axis else np.ones((4, 2), np.float32)
    features[2, ..., 0] = np.nan
    features[3, ..., 1] = np.inf
    _write_split(tmp_path, "train", features, 2)

    with caplog.at_level(logging.WARNING, logger="srem_core.data.research"):
        dataset = read_research_split(tmp_path, "train", progress=False)

    reason = (
        "the image features contain NaN or inf values, so the image and its 2 caption(s) are "
        "skipped. Extract the features of this image again."
    )
    assert dataset.skipped == [
        SkippedItem("train_ims.npy:2", "train-2", reason),
        SkippedItem("train_ims.npy:3", "train-3", reason),
    ]
    assert dataset.images["image_id"].tolist() == ["train-0", "train-1"]
    assert dataset.pairs["caption"].tolist() == [f"train caption {j}" for j in range(4)]
    assert dataset.image_features.shape == (2, 2)
    assert np.isfinite(dataset.image_features).all()
    expected = (
        f"{tmp_path / 'train_ims.npy'}: 2 image(s) have NaN or inf features, first at row 2 (from "
        "0); they are skipped with their captions."
    )
    assert expected in [record.getMessage() for record in caplog.records]


def test_all_images_nan(tmp_path):
    _write_split(tmp_path, "train", np.full((2, 3), np.nan, np.float32), 1)
    message = (
        f"{tmp_path / 'train_caps.txt'} and {tmp_path / 'train_ims.npy'} have no usable pair: every "
        "caption is empty or its image features are not finite. Check the files."
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        read_research_split(tmp_path, "train", progress=False)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4, 5)])
def test_wrong_ndim(tmp_path, shape):
    _write_split(tmp_path, "train", np.zeros(shape, np.float32), 1)
    message = (
        f"{tmp_path / 'train_ims.npy'} has shape {shape}; expected (n_images, n_regions, D) region "
        "features or (n_images, D) pooled features, one row per image."
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        read_research_split(tmp_path, "train", progress=False)


def test_empty_axis(tmp_path):
    np.save(tmp_path / "train_ims.npy", np.zeros((3, 0), np.float32))
    (tmp_path / "train_caps.txt").write_text("a\nb\nc\n")
    message = f"{tmp_path / 'train_ims.npy'} has shape (3, 0), which has an empty axis. Export it again."

    with pytest.raises(ValueError, match=re.escape(message)):
        read_research_split(tmp_path, "train", progress=False)


def test_non_numeric_dtype(tmp_path):
    np.save(tmp_path / "train_ims.npy", np.array([["a", "b"]]))
    (tmp_path / "train_caps.txt").write_text("a\n")
    message = (
        f"{tmp_path / 'train_ims.npy'} has dtype <U1; expected real numbers. Export the features as "
        "float32."
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        read_research_split(tmp_path, "train", progress=False)


def test_not_an_npy_file(tmp_path):
    (tmp_path / "train_ims.npy").write_bytes(b"garbage")
    (tmp_path / "train_caps.txt").write_text("a\n")

    with pytest.raises(ValueError) as caught:
        read_research_split(tmp_path, "train", progress=False)

    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'train_ims.npy'} is not a readable .npy array (")
    assert message.endswith("). Check that it was saved with numpy.save and copied completely.")


def test_caption_count_not_multiple(tmp_path):
    np.save(tmp_path / "train_ims.npy", np.ones((4, 2), np.float32))
    (tmp_path / "train_caps.txt").write_text("".join(f"c{j}\n" for j in range(10)))
    message = (
        f"{tmp_path / 'train_caps.txt'} has 10 caption lines for the 4 images of "
        f"{tmp_path / 'train_ims.npy'}, which is not a whole number of captions per image (2.500). "
        "Check that both files belong to the same split and that every caption is on one line."
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        read_research_split(tmp_path, "train", progress=False)


def test_missing_caption_file(tmp_path):
    np.save(tmp_path / "train_ims.npy", np.ones((4, 2), np.float32))
    message = (
        f"{tmp_path / 'train_caps.txt'} not found. Each train_ims.npy needs a train_caps.txt with one "
        "caption per line (or a train_caps.tsv of image id and caption) next to it."
    )

    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        read_research_split(tmp_path, "train", progress=False)


def test_bad_caption_lines_skipped(tmp_path):
    np.save(tmp_path / "train_ims.npy", np.ones((2, 2), np.float32))
    (tmp_path / "train_caps.txt").write_bytes(b"one\r\n  \r\ncaf\xe9\r\nfour\r\n\r\n\n")

    dataset = read_research_split(tmp_path, "train", progress=False)

    assert dataset.pairs["caption"].tolist() == ["one", "four"]
    assert dataset.pairs["pair_id"].tolist() == ["train-0-0", "train-1-1"]
    assert dataset.caption_to_image.tolist() == [0, 1]
    assert dataset.skipped == [
        SkippedItem("train_caps.txt:2", "train-0-1", "the caption is empty. Write the caption on this line."),
        SkippedItem(
            "train_caps.txt:3",
            "train-1-0",
            "the caption is not valid UTF-8 (invalid byte 0xe9 at byte 4). Save train_caps.txt as "
            "UTF-8, or fix this line.",
        ),
    ]


def test_cc152k_tsv_captions(tmp_path):
    np.save(tmp_path / "train_ims.npy", np.ones((3, 2), np.float32))
    (tmp_path / "train_caps.tsv").write_bytes(b'id0\ta cat\nid1\t"quoted" dog\nno tab here\n')

    dataset = read_research_split(tmp_path, "train", progress=False)

    assert dataset.pairs["caption"].tolist() == ["a cat", '"quoted" dog']
    assert dataset.caption_to_image.tolist() == [0, 1]
    reason = "the line has no tab. Write the image id, a tab, then the caption."
    assert dataset.skipped == [SkippedItem("train_caps.tsv:3", "train-2-0", reason)]


def test_txt_captions_preferred_over_tsv(tmp_path):
    np.save(tmp_path / "train_ims.npy", np.ones((1, 2), np.float32))
    (tmp_path / "train_caps.txt").write_text("from txt\n")
    (tmp_path / "train_caps.tsv").write_text("id\tfrom tsv\n")

    dataset = read_research_split(tmp_path, "train", progress=False)

    assert dataset.pairs["caption"].tolist() == ["from txt"]


def test_folder_splits_and_dev_name(tmp_path):
    _write_split(tmp_path, "train", _regions(2, n_regions=3, dim=4), 5)
    _write_split(tmp_path, "dev", _regions(1, n_regions=3, dim=4, seed=1), 5)
    _write_split(tmp_path, "test", _regions(1, n_regions=3, dim=4, seed=2), 5)

    dataset = read_research_folder(tmp_path, progress=False)

    assert dataset.pairs["split"].value_counts().to_dict() == {"train": 10, "val": 5, "test": 5}
    assert dataset.images["image_id"].tolist() == ["train-0", "train-1", "val-0", "test-0"]
    assert dataset.caption_to_image.tolist() == [j // 5 for j in range(20)]
    assert dataset.image_features.shape == (4, 4)
    assert dataset.image_features.dtype == np.float32
    expected_val = np.load(tmp_path / "dev_ims.npy").mean(axis=1)[0]
    np.testing.assert_allclose(dataset.image_features[2], expected_val, rtol=1e-6, atol=1e-6)


def test_val_file_name_and_testall(tmp_path):
    _write_split(tmp_path, "val", np.ones((1, 2), np.float32), 1)
    _write_split(tmp_path, "test", np.ones((1, 2), np.float32), 1)
    _write_split(tmp_path, "testall", np.zeros((3, 2), np.float32), 1)

    dataset = read_research_folder(tmp_path, test_split_name="testall", progress=False)

    assert dataset.pairs["split"].tolist() == ["val", "test", "test", "test"]
    assert dataset.pairs["caption"].tolist()[1] == "testall caption 0"


def test_dev_and_val_both_present(tmp_path):
    _write_split(tmp_path, "dev", np.ones((1, 2), np.float32), 1)
    _write_split(tmp_path, "val", np.ones((1, 2), np.float32), 1)
    message = f"{tmp_path} has both dev_ims.npy and val_ims.npy for the val split. Move one of them out of the folder."

    with pytest.raises(ValueError, match=re.escape(message)):
        read_research_split(tmp_path, "val", progress=False)


def test_missing_split(tmp_path):
    message = (
        f"{tmp_path} has no dev_ims.npy or val_ims.npy for the val split. Check the folder, or pass "
        "test_split_name for a differently named test split."
    )

    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        read_research_split(tmp_path, "val", progress=False)


def test_unknown_split_name(tmp_path):
    with pytest.raises(ValueError, match=re.escape("split must be one of train, val, test, got 'dev'.")):
        read_research_split(tmp_path, "dev", progress=False)


def test_empty_folder(tmp_path):
    message = (
        f"{tmp_path} has no research-format features: expected train_ims.npy, dev_ims.npy or "
        "test_ims.npy with a matching _caps.txt file."
    )

    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        read_research_folder(tmp_path, progress=False)


def test_splits_with_different_sizes(tmp_path):
    _write_split(tmp_path, "train", np.ones((2, 3), np.float32), 1)
    _write_split(tmp_path, "test", np.ones((2, 4), np.float32), 1)
    message = (
        f"The splits of {tmp_path} have different feature sizes {{'train': 3, 'test': 4}}. Use "
        "features from one extractor for every split."
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        read_research_folder(tmp_path, progress=False)


def test_pooling_no_writable_place(tmp_path, monkeypatch):
    np.save(tmp_path / "train_ims.npy", _regions(2, n_regions=2, dim=2))

    def mkstemp_denied(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", str(dir))

    monkeypatch.setattr(research.tempfile, "mkstemp", mkstemp_denied)
    cache_dir = tmp_path / "cache"
    message = (
        f"Cannot write the pooled features of {tmp_path / 'train_ims.npy'} to {tmp_path} or "
        f"{cache_dir} ([Errno 13] Permission denied: '{cache_dir}'). Pass a writable cache_dir."
    )

    with pytest.raises(OSError, match=re.escape(message)):
        pooled_image_features(tmp_path / "train_ims.npy", cache_dir=cache_dir, progress=False)
