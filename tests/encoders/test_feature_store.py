"""FeatureStore: per-item features on disk, keyed by content hash, with atomic append-only chunks."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from srem_core.encoders.store import FeatureStore, folder_name

IDENTITY = "test:encoder/with odd:chars"


def keys(*labels: str) -> list[str]:
    return [label * 64 for label in labels]


def test_save_then_load_round_trip(tmp_path):
    store = FeatureStore(tmp_path, IDENTITY)
    values = np.arange(6, dtype=np.float32).reshape(3, 2)
    store.save("image", keys("a", "b", "c"), values)

    loaded, found = FeatureStore(tmp_path, IDENTITY).load("image", keys("c", "x", "a", "c"), dim=2)

    assert found.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(loaded[[0, 2, 3]], values[[2, 0, 2]])
    assert np.isnan(loaded[1]).all()
    assert loaded.dtype == np.float32


def test_kinds_are_separate(tmp_path):
    store = FeatureStore(tmp_path, IDENTITY)
    store.save("image", keys("a"), np.ones((1, 2), dtype=np.float32))
    _, found = store.load("text", keys("a"), dim=2)
    assert found.tolist() == [False]
    with pytest.raises(ValueError, match=r"`kind` must be one of \('image', 'text'\), got 'audio'"):
        store.load("audio", keys("a"), dim=2)


def test_layout_and_no_temporary_files_left(tmp_path):
    store = FeatureStore(tmp_path, IDENTITY)
    store.save("text", keys("a", "b"), np.zeros((2, 3), dtype=np.float32))

    assert store.root == tmp_path / folder_name(IDENTITY)
    names = sorted(path.name for path in (store.root / "text").iterdir())
    assert len(names) == 2
    assert names[0].endswith(".keys.txt")
    assert names[1].endswith(".npy")
    assert not list(store.root.rglob("tmp-*"))
    meta = json.loads((store.root / "identity.json").read_text())
    assert meta == {"identity": IDENTITY, "format_version": 1}


def test_folder_name_is_safe_and_unique():
    name = folder_name(IDENTITY)
    assert name.startswith("test_encoder_with_odd_chars-")
    assert all(character.isalnum() or character in "._-" for character in name)
    assert folder_name(IDENTITY + "x") != name
    assert len(folder_name("x" * 500)) <= 80 + 1 + 12


def test_chunk_without_keys_file_is_invisible(tmp_path):
    store = FeatureStore(tmp_path, IDENTITY)
    store.save("image", keys("a"), np.ones((1, 2), dtype=np.float32))
    keys_file = next((store.root / "image").glob("*.keys.txt"))
    keys_file.unlink()

    _, found = store.load("image", keys("a"), dim=2)

    assert found.tolist() == [False]


def test_damaged_chunk_is_ignored_with_warning(tmp_path, caplog):
    store = FeatureStore(tmp_path, IDENTITY)
    store.save("image", keys("a"), np.ones((1, 2), dtype=np.float32))
    store.save("image", keys("b"), np.full((1, 2), 2.0, dtype=np.float32))
    chunk_of_a = next(
        path for path in (store.root / "image").glob("*.keys.txt") if path.read_text().startswith("a")
    )
    chunk_of_a.with_name(chunk_of_a.name.replace(".keys.txt", ".npy")).write_bytes(b"garbage")

    with caplog.at_level(logging.WARNING, logger="srem_core.encoders.store"):
        loaded, found = store.load("image", keys("a", "b"), dim=2)

    assert found.tolist() == [False, True]
    np.testing.assert_array_equal(loaded[1], [2.0, 2.0])
    assert "Ignoring unreadable feature cache chunk" in caplog.text


def test_wrong_dimension_chunk_is_ignored(tmp_path, caplog):
    store = FeatureStore(tmp_path, IDENTITY)
    store.save("text", keys("a"), np.ones((1, 3), dtype=np.float32))
    with caplog.at_level(logging.WARNING, logger="srem_core.encoders.store"):
        _, found = store.load("text", keys("a"), dim=4)
    assert found.tolist() == [False]
    assert "expected (1, 4) float32" in caplog.text


def test_folder_of_other_identity_is_rejected(tmp_path):
    store = FeatureStore(tmp_path, IDENTITY)
    (store.root / "identity.json").write_text(json.dumps({"identity": "other", "format_version": 1}))
    with pytest.raises(ValueError, match=r"belongs to .*'other'.* Delete the folder or use another cache_dir"):
        FeatureStore(tmp_path, IDENTITY)


def test_save_checks_lengths(tmp_path):
    store = FeatureStore(tmp_path, IDENTITY)
    with pytest.raises(ValueError, match="got 2 keys for 1 feature rows"):
        store.save("image", keys("a", "b"), np.ones((1, 2), dtype=np.float32))
