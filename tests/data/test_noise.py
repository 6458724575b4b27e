"""Tests for srem_core.data.noise: caption- and image-level injection and noise index files."""

from __future__ import annotations

import re

import numpy as np
import pytest

from srem_core.data.noise import inject_noise, load_noise_index, save_noise_index


def _dataset_index(n_train_images=40, n_val_images=10, per_image=5):
    """Return caption_to_image and train_mask: training images first, then val images."""
    n_images = n_train_images + n_val_images
    caption_to_image = np.repeat(np.arange(n_images), per_image)
    train_mask = caption_to_image < n_train_images
    return caption_to_image, train_mask


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.61, 1.0])
def test_caption_level_picks_exact_count(rate):
    caption_to_image, train_mask = _dataset_index()

    injection = inject_noise(caption_to_image, train_mask, rate=rate, level="caption", seed=3)

    assert injection.sampled.sum() == round(rate * 200)
    assert not (injection.sampled & ~train_mask).any()
    assert not (injection.is_injected_noise & ~injection.sampled).any()


def test_caption_level_shuffles_among_picked():
    caption_to_image, train_mask = _dataset_index()

    injection = inject_noise(caption_to_image, train_mask, rate=0.4, level="caption", seed=0)

    picked = injection.sampled
    assert sorted(injection.assigned[picked]) == sorted(caption_to_image[picked])
    np.testing.assert_array_equal(injection.assigned[~picked], caption_to_image[~picked])


@pytest.mark.parametrize("level", ["caption", "image"])
def test_only_train_split_touched(level):
    caption_to_image, train_mask = _dataset_index()

    injection = inject_noise(caption_to_image, train_mask, rate=1.0, level=level, seed=1)

    np.testing.assert_array_equal(injection.assigned[~train_mask], caption_to_image[~train_mask])
    assert set(injection.assigned[train_mask]) <= set(caption_to_image[train_mask])
    assert injection.is_injected_noise[train_mask].any()


@pytest.mark.parametrize("level", ["caption", "image"])
def test_same_seed_same_noise(level):
    caption_to_image, train_mask = _dataset_index()

    first = inject_noise(caption_to_image, train_mask, rate=0.4, level=level, seed=7)
    second = inject_noise(caption_to_image, train_mask, rate=0.4, level=level, seed=7)

    np.testing.assert_array_equal(first.assigned, second.assigned)


@pytest.mark.parametrize("level", ["caption", "image"])
def test_different_seeds_differ(level):
    caption_to_image, train_mask = _dataset_index()

    first = inject_noise(caption_to_image, train_mask, rate=0.4, level=level, seed=7)
    second = inject_noise(caption_to_image, train_mask, rate=0.4, level=level, seed=8)

    assert not np.array_equal(first.assigned, second.assigned)


def test_image_level_moves_captions_together():
    caption_to_image, train_mask = _dataset_index()

    injection = inject_noise(caption_to_image, train_mask, rate=0.5, level="image", seed=2)

    for image in range(40):
        new_images = set(injection.assigned[caption_to_image == image])
        assert len(new_images) == 1
    assert len(set(caption_to_image[injection.sampled])) == 20
    assert injection.sampled.sum() == 100
    moved_images = set(caption_to_image[injection.is_injected_noise])
    assert moved_images <= set(caption_to_image[injection.sampled])
    new_image_of = {image: injection.assigned[caption_to_image == image][0] for image in range(40)}
    assert sorted(new_image_of.values()) == list(range(40))


def test_image_level_with_unequal_caption_counts():
    caption_to_image = np.array([0, 0, 0, 1, 2, 2, 3, 4, 4, 4, 4])
    train_mask = np.ones(11, dtype=bool)

    injection = inject_noise(caption_to_image, train_mask, rate=1.0, level="image", seed=4)

    assert injection.sampled.all()
    for image in range(5):
        assert len(set(injection.assigned[caption_to_image == image])) == 1


def test_ground_truth_is_assigned_not_sampled():
    caption_to_image, train_mask = _dataset_index()

    injection = inject_noise(caption_to_image, train_mask, rate=0.4, level="caption", seed=0)

    np.testing.assert_array_equal(
        injection.is_injected_noise, injection.assigned != injection.original
    )
    # With five captions per image, some picked captions land back on their own image.
    assert (injection.sampled & ~injection.is_injected_noise).any()
    assert injection.is_injected_noise.sum() < injection.sampled.sum()


def test_rate_zero_changes_nothing():
    caption_to_image, train_mask = _dataset_index()

    injection = inject_noise(caption_to_image, train_mask, rate=0.0, level="image", seed=0)

    assert not injection.is_injected_noise.any()
    assert injection.rate == 0.0
    assert injection.seed == 0
    assert injection.level == "image"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": 1.5}, "rate must be a fraction in [0, 1], got 1.5."),
        ({"level": "pair"}, "level must be one of caption, image, got 'pair'."),
        (
            {"seed": None},
            "seed must be an integer so that the noise can be reproduced, got None.",
        ),
    ],
)
def test_inject_noise_bad_arguments(options, message):
    caption_to_image, train_mask = _dataset_index()
    arguments = {"rate": 0.2, "level": "caption", "seed": 0, **options}

    with pytest.raises(ValueError, match=re.escape(message)):
        inject_noise(caption_to_image, train_mask, **arguments)


def test_inject_noise_mask_shape_mismatch():
    message = (
        "train_mask must be a bool array of shape (3,) like caption_to_image, got dtype bool and "
        "shape (2,)."
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        inject_noise(np.array([0, 1, 2]), np.array([True, False]), rate=0.5, seed=0)


def test_inject_noise_float_index():
    message = "caption_to_image must be a 1-D integer array, got dtype float64 and shape (2,)."

    with pytest.raises(ValueError, match=re.escape(message)):
        inject_noise(np.array([0.0, 1.0]), np.array([True, True]), rate=0.5, seed=0)


@pytest.mark.parametrize("level", ["caption", "image"])
def test_save_load_round_trip(tmp_path, level):
    caption_to_image, train_mask = _dataset_index()
    injection = inject_noise(caption_to_image, train_mask, rate=0.4, level=level, seed=5)
    path = tmp_path / "noise_index.npy"

    save_noise_index(path, injection)
    loaded = load_noise_index(path, caption_to_image, train_mask)

    stored = np.load(path)
    assert stored.dtype == np.int64
    assert stored.shape == (200,)
    np.testing.assert_array_equal(loaded.assigned, injection.assigned)
    np.testing.assert_array_equal(loaded.is_injected_noise, injection.is_injected_noise)
    assert loaded.level == "caption"
    assert loaded.rate is None
    assert loaded.sampled is None
    assert [p.name for p in tmp_path.iterdir()] == ["noise_index.npy"]


def test_save_overwrites_existing(tmp_path):
    caption_to_image, train_mask = _dataset_index()
    path = tmp_path / "noise_index.npy"
    path.write_bytes(b"old")

    save_noise_index(path, inject_noise(caption_to_image, train_mask, rate=0.2, seed=0))

    assert np.load(path).shape == (200,)


def test_train_images_not_first(tmp_path):
    caption_to_image = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    train_mask = np.array([False, False, True, True, False, False, True, True])
    injection = inject_noise(caption_to_image, train_mask, rate=1.0, level="image", seed=0)
    path = tmp_path / "noise.npy"

    save_noise_index(path, injection)
    loaded = load_noise_index(path, caption_to_image, train_mask)

    np.testing.assert_array_equal(loaded.assigned, injection.assigned)
    assert set(injection.assigned[train_mask]) == {1, 3}


def test_research_caption_level_file(tmp_path):
    caption_to_image, train_mask = _dataset_index()
    # Caption-level file as NCR-style code writes it: each training caption's image index.
    per_caption = np.arange(200) // 5
    rng = np.random.default_rng(0)
    chosen = rng.choice(200, size=80, replace=False)
    per_caption[chosen] = per_caption[chosen][rng.permutation(80)]
    path = tmp_path / "f30k_precomp_0.4.npy"
    np.save(path, per_caption.astype(np.int32))

    loaded = load_noise_index(path, caption_to_image, train_mask)

    assert loaded.level == "caption"
    np.testing.assert_array_equal(loaded.assigned[train_mask], per_caption)
    np.testing.assert_array_equal(loaded.assigned[~train_mask], caption_to_image[~train_mask])
    np.testing.assert_array_equal(loaded.is_injected_noise[train_mask], per_caption != np.arange(200) // 5)


def test_research_image_level_file(tmp_path):
    caption_to_image, train_mask = _dataset_index()
    permutation = np.arange(40)
    permutation[[3, 10, 20]] = [10, 20, 3]
    path = tmp_path / "image_noise.npy"
    np.save(path, permutation)

    loaded = load_noise_index(path, caption_to_image, train_mask)

    assert loaded.level == "image"
    np.testing.assert_array_equal(loaded.assigned[caption_to_image == 3], [10] * 5)
    np.testing.assert_array_equal(loaded.assigned[caption_to_image == 20], [3] * 5)
    assert set(caption_to_image[loaded.is_injected_noise]) == {3, 10, 20}
    np.testing.assert_array_equal(loaded.assigned[~train_mask], caption_to_image[~train_mask])


def test_image_level_file_local_indices(tmp_path):
    # Training images 5 and 9 come after the val image 0, so the file indexes them as 0 and 1.
    caption_to_image = np.array([0, 5, 5, 9, 9, 9])
    train_mask = np.array([False, True, True, True, True, True])
    path = tmp_path / "swap.npy"
    np.save(path, np.array([1, 0]))

    loaded = load_noise_index(path, caption_to_image, train_mask)

    assert loaded.assigned.tolist() == [0, 9, 9, 5, 5, 5]


def test_noise_file_wrong_length(tmp_path):
    caption_to_image, train_mask = _dataset_index()
    path = tmp_path / "noise.npy"
    np.save(path, np.arange(7))
    message = (
        f"Noise index {path} has 7 entries, but the training split has 200 captions (caption-level "
        "file) and 40 images (image-level file). Check that the file was made for this dataset and "
        "its training split."
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        load_noise_index(path, caption_to_image, train_mask)


def test_noise_file_value_not_train_image(tmp_path):
    caption_to_image, train_mask = _dataset_index()
    values = np.arange(200) // 5
    values[17] = 45
    path = tmp_path / "noise.npy"
    np.save(path, values)
    message = (
        f"Noise index {path}: entry 17 is 45, which is not a training image index (1 such entries). "
        "Check that the file was made for this dataset."
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        load_noise_index(path, caption_to_image, train_mask)


def test_noise_file_not_permutation(tmp_path):
    caption_to_image, train_mask = _dataset_index()
    values = np.arange(40)
    values[0] = 1
    path = tmp_path / "noise.npy"
    np.save(path, values)
    message = (
        f"Noise index {path} has one entry per training image but is not a permutation of 0..39. "
        "Check that the file was made for this dataset."
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        load_noise_index(path, caption_to_image, train_mask)


def test_noise_file_float_values(tmp_path):
    caption_to_image, train_mask = _dataset_index()
    path = tmp_path / "noise.npy"
    np.save(path, np.zeros(200))
    message = (
        f"Noise index {path} must be a 1-D integer array, got dtype float64 and shape (200,). Save "
        "one image index per caption (or per image) as integers."
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        load_noise_index(path, caption_to_image, train_mask)
