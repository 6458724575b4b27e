"""extract_features: batched encoding, the per-item disk cache, failed images, precomputed features."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from srem_core.data.images import ImageLoadError, load_image
from srem_core.data.pairs import build_dataset
from srem_core.encoders.cache import encode_texts_cached, extract_features

RED, GREEN, BLUE, YELLOW = (220, 30, 30), (30, 200, 30), (30, 30, 220), (240, 220, 20)


def write_image(path, colour, size=(40, 30)):
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture
def three_images(tmp_path, dataset_factory):
    """Three image files and four pairs; image ``b`` has two captions."""
    write_image(tmp_path / "a.png", RED)
    write_image(tmp_path / "b.png", GREEN)
    write_image(tmp_path / "c.png", BLUE)
    rows = [
        ("a", "a.png", "a red rectangle"),
        ("b", "b.png", "a green rectangle"),
        ("b", "b.png", "a green box"),
        ("c", "c.png", "a blue rectangle"),
    ]
    return dataset_factory(tmp_path, rows)


def test_shapes_order_and_values(offline_encoder, three_images):
    features = extract_features(offline_encoder, three_images, cache_dir=None, progress=False)

    assert features.image_features.shape == (3, 1280)
    assert features.text_features.shape == (4, 384)
    assert features.image_features.dtype == features.text_features.dtype == np.float32
    assert features.failed_images == []
    assert features.usable_pairs.tolist() == [True, True, True, True]
    assert features.encoder_identity == offline_encoder.identity
    assert (features.n_images_encoded, features.n_texts_encoded) == (3, 4)

    images = [load_image(three_images.image_path(index)) for index in range(3)]
    expected_images = offline_encoder.encode_images(images).numpy()
    expected_texts = offline_encoder.encode_texts(three_images.pairs["caption"]).numpy()
    np.testing.assert_allclose(features.image_features, expected_images, atol=1e-4)
    np.testing.assert_allclose(features.text_features, expected_texts, atol=1e-5)


def test_second_run_reads_cache_without_encoder(offline_encoder, counting_encoder, three_images, tmp_path):
    cache_dir = tmp_path / "cache"
    first = extract_features(offline_encoder, three_images, cache_dir=cache_dir, progress=False)
    counting = counting_encoder(offline_encoder)

    second = extract_features(counting, three_images, cache_dir=cache_dir, progress=False)

    assert (counting.images_encoded, counting.texts_encoded) == (0, 0)
    assert (second.n_images_encoded, second.n_texts_encoded) == (0, 0)
    np.testing.assert_array_equal(second.image_features, first.image_features)
    np.testing.assert_array_equal(second.text_features, first.text_features)


def test_changed_image_reencodes_only_it(offline_encoder, counting_encoder, three_images, tmp_path):
    cache_dir = tmp_path / "cache"
    first = extract_features(offline_encoder, three_images, cache_dir=cache_dir, progress=False)
    write_image(tmp_path / "b.png", YELLOW)
    counting = counting_encoder(offline_encoder)

    second = extract_features(counting, three_images, cache_dir=cache_dir, progress=False)

    assert (counting.images_encoded, counting.texts_encoded) == (1, 0)
    np.testing.assert_array_equal(second.image_features[[0, 2]], first.image_features[[0, 2]])
    assert not np.allclose(second.image_features[1], first.image_features[1], atol=1e-2)
    fresh = offline_encoder.encode_images([load_image(tmp_path / "b.png")]).numpy()[0]
    np.testing.assert_allclose(second.image_features[1], fresh, atol=1e-4)


def test_changed_caption_reencodes_only_it(offline_encoder, counting_encoder, three_images, tmp_path):
    cache_dir = tmp_path / "cache"
    extract_features(offline_encoder, three_images, cache_dir=cache_dir, progress=False)
    three_images.pairs.loc[3, "caption"] = "a dark blue rectangle"
    counting = counting_encoder(offline_encoder)

    extract_features(counting, three_images, cache_dir=cache_dir, progress=False)

    assert (counting.images_encoded, counting.texts_encoded) == (0, 1)


def test_other_identity_does_not_share_cache(offline_encoder, counting_encoder, three_images, tmp_path):
    class RenamedEncoder(counting_encoder):
        @property
        def identity(self):
            return "renamed:" + self.inner.identity

    cache_dir = tmp_path / "cache"
    extract_features(offline_encoder, three_images, cache_dir=cache_dir, progress=False)
    renamed = RenamedEncoder(offline_encoder)

    extract_features(renamed, three_images, cache_dir=cache_dir, progress=False)

    assert (renamed.images_encoded, renamed.texts_encoded) == (3, 4)


def test_identical_content_encoded_once(offline_encoder, counting_encoder, tmp_path, dataset_factory):
    write_image(tmp_path / "one.png", RED)
    write_image(tmp_path / "copy.png", RED)
    dataset = dataset_factory(
        tmp_path, [("one", "one.png", "red"), ("copy", "copy.png", "red"), ("one", "one.png", "crimson")]
    )
    counting = counting_encoder(offline_encoder)

    features = extract_features(counting, dataset, cache_dir=None, progress=False)

    assert (counting.images_encoded, counting.texts_encoded) == (1, 2)
    np.testing.assert_array_equal(features.image_features[0], features.image_features[1])
    np.testing.assert_array_equal(features.text_features[0], features.text_features[1])


@pytest.fixture
def dataset_with_bad_images(tmp_path, dataset_factory):
    write_image(tmp_path / "good.png", RED)
    (tmp_path / "corrupt.png").write_bytes(b"this is not an image")
    valid = tmp_path / "valid.png"
    write_image(valid, GREEN, size=(300, 300))
    (tmp_path / "truncated.png").write_bytes(valid.read_bytes()[:200])
    rows = [
        ("good", "good.png", "a red square"),
        ("missing", "missing.png", "a photo that is gone"),
        ("corrupt", "corrupt.png", "a corrupt file"),
        ("truncated", "truncated.png", "a cut-off file"),
        ("good", "good.png", "another caption of the red square"),
        ("missing", "missing.png", "a second caption of the missing photo"),
    ]
    return dataset_factory(tmp_path, rows)


def test_failed_images_reported_with_reason(offline_encoder, dataset_with_bad_images, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="srem_core.encoders.cache"):
        features = extract_features(
            offline_encoder, dataset_with_bad_images, cache_dir=tmp_path / "cache", progress=False
        )

    failed = {item.item_id: item for item in features.failed_images}
    assert sorted(failed) == ["corrupt", "missing", "truncated"]
    for image_id, item in failed.items():
        path = tmp_path / f"{image_id}.png"
        with pytest.raises(ImageLoadError) as raised:
            load_image(path)
        assert item.reason == raised.value.reason
        assert item.source == str(path)
    assert failed["missing"].reason.startswith("file not found")
    assert "truncated" in failed["truncated"].reason
    assert "3 images failed to load; their 4 pairs have NaN image features" in caplog.text


def test_failed_images_get_nan_rows(offline_encoder, dataset_with_bad_images):
    features = extract_features(offline_encoder, dataset_with_bad_images, cache_dir=None, progress=False)

    image_ids = dataset_with_bad_images.images["image_id"].tolist()
    assert image_ids == ["good", "missing", "corrupt", "truncated"]
    assert np.isfinite(features.image_features[0]).all()
    assert np.isnan(features.image_features[1:]).all()
    assert features.usable_pairs.tolist() == [True, False, False, False, True, False]
    assert np.isfinite(features.text_features).all()
    assert features.n_images_encoded == 1


def test_repaired_image_is_encoded_next_run(offline_encoder, dataset_with_bad_images, tmp_path):
    cache_dir = tmp_path / "cache"
    extract_features(offline_encoder, dataset_with_bad_images, cache_dir=cache_dir, progress=False)
    write_image(tmp_path / "corrupt.png", BLUE)

    features = extract_features(offline_encoder, dataset_with_bad_images, cache_dir=cache_dir, progress=False)

    assert sorted(item.item_id for item in features.failed_images) == ["missing", "truncated"]
    assert np.isfinite(features.image_features[2]).all()
    assert features.n_images_encoded == 1


def test_worker_processes_give_same_result(offline_encoder, dataset_with_bad_images):
    in_process = extract_features(offline_encoder, dataset_with_bad_images, cache_dir=None, progress=False)
    with_worker = extract_features(
        offline_encoder, dataset_with_bad_images, cache_dir=None, progress=False, num_workers=1, batch_size=2
    )
    np.testing.assert_allclose(with_worker.image_features, in_process.image_features, atol=1e-4)
    assert with_worker.failed_images == in_process.failed_images


def test_batch_size_does_not_change_features(offline_encoder, three_images):
    batched = extract_features(offline_encoder, three_images, cache_dir=None, progress=False, batch_size=64)
    single = extract_features(offline_encoder, three_images, cache_dir=None, progress=False, batch_size=1)
    np.testing.assert_allclose(single.image_features, batched.image_features, atol=1e-4)
    np.testing.assert_allclose(single.text_features, batched.text_features, atol=1e-5)


def test_without_cache_dir_nothing_is_written(offline_encoder, three_images, tmp_path):
    before = sorted(tmp_path.rglob("*"))
    extract_features(offline_encoder, three_images, cache_dir=None, progress=False)
    assert sorted(tmp_path.rglob("*")) == before


def precomputed_dataset(image_features):
    frame = pd.DataFrame(
        {
            "pair_id": ["p0", "p1", "p2"],
            "image_id": ["i0", "i0", "i1"],
            "image_path": [None, None, None],
            "caption": ["first caption", "second caption", "third caption"],
        }
    )
    return build_dataset(frame, root=".", source="precomputed", image_features=image_features)


def test_precomputed_features_skip_image_encoder(offline_encoder, counting_encoder):
    image_features = np.arange(2 * 5, dtype=np.float64).reshape(2, 5)
    counting = counting_encoder(offline_encoder)

    features = extract_features(counting, precomputed_dataset(image_features), cache_dir=None, progress=False)

    assert counting.images_encoded == 0
    assert counting.texts_encoded == 3
    assert features.image_features.dtype == np.float32
    np.testing.assert_array_equal(features.image_features, image_features.astype(np.float32))
    assert features.text_features.shape == (3, 384)
    assert features.usable_pairs.all()


def test_precomputed_region_features_are_mean_pooled(offline_encoder):
    regions = np.random.default_rng(0).normal(size=(2, 36, 8)).astype(np.float32)
    features = extract_features(offline_encoder, precomputed_dataset(regions), cache_dir=None, progress=False)
    np.testing.assert_allclose(features.image_features, regions.mean(axis=1), rtol=1e-6)


def test_invalid_arguments(offline_encoder, three_images):
    with pytest.raises(ValueError, match="`batch_size` must be at least 1, got 0"):
        extract_features(offline_encoder, three_images, cache_dir=None, batch_size=0)
    three_images.pairs.loc[2, "caption"] = None
    with pytest.raises(ValueError, match=r"Caption of pair 'p2' is missing\. Fix or drop that row\."):
        extract_features(offline_encoder, three_images, cache_dir=None, progress=False)
    three_images.pairs["caption"] = three_images.pairs["caption"].astype(object)
    three_images.pairs.loc[2, "caption"] = 7
    with pytest.raises(ValueError, match=r"Caption of pair 'p2' is 7, not a string\. Fix or drop that row\."):
        extract_features(offline_encoder, three_images, cache_dir=None, progress=False)


def test_encode_texts_cached(offline_encoder, counting_encoder, tmp_path):
    counting = counting_encoder(offline_encoder)
    texts = ["a cat", "a dog", "a cat"]

    first = encode_texts_cached(counting, texts, cache_dir=tmp_path, progress=False)
    assert counting.texts_encoded == 2
    second = encode_texts_cached(counting, texts, cache_dir=tmp_path, progress=False)

    assert counting.texts_encoded == 2
    assert first.shape == (3, 384)
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_array_equal(second, first)
    expected = offline_encoder.encode_texts(texts).numpy()
    np.testing.assert_allclose(first, expected, atol=1e-5)


def test_progress_bar_option_runs(offline_encoder, three_images, capsys):
    extract_features(offline_encoder, three_images, cache_dir=None, progress=True)
    assert "Encoding images" in capsys.readouterr().err
