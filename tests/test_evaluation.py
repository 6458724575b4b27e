import numpy as np
import pytest

from srem_core.evaluation import coco_1k_recall, detection_metrics, recall_at_k, retrieval_ranks


def _normalised(rng, n, d=16):
    values = rng.normal(size=(n, d)).astype(np.float32)
    return values / np.linalg.norm(values, axis=1, keepdims=True)


def _naive_recall(images, texts, caption_to_image, k):
    """Reference R@K written as plain loops over images and captions."""
    hits_image = 0
    for i in range(len(images)):
        scores = [float(images[i] @ texts[j]) for j in range(len(texts))]
        order = sorted(range(len(texts)), key=lambda j: -scores[j])
        if any(caption_to_image[j] == i for j in order[:k]):
            hits_image += 1
    hits_text = 0
    for j in range(len(texts)):
        scores = [float(images[i] @ texts[j]) for i in range(len(images))]
        order = sorted(range(len(images)), key=lambda i: -scores[i])
        if caption_to_image[j] in order[:k]:
            hits_text += 1
    return 100.0 * hits_image / len(images), 100.0 * hits_text / len(texts)


@pytest.mark.parametrize("captions_per_image", [1, 5])
def test_recall_matches_naive_loop(captions_per_image):
    rng = np.random.default_rng(captions_per_image)
    n_images = 40
    caption_to_image = rng.permutation(np.repeat(np.arange(n_images), captions_per_image))
    images = _normalised(rng, n_images)
    texts = _normalised(rng, len(caption_to_image)) + 0.8 * images[caption_to_image]
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    result = recall_at_k(images, texts, caption_to_image)
    for k in (1, 5, 10):
        image_to_text, text_to_image = _naive_recall(images, texts, caption_to_image, k)
        assert result[f"i2t_r{k}"] == pytest.approx(image_to_text)
        assert result[f"t2i_r{k}"] == pytest.approx(text_to_image)
    expected_rsum = sum(result[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10))
    assert result["rsum"] == pytest.approx(expected_rsum)


def test_perfect_retrieval_gives_rsum_600():
    images = np.eye(8, dtype=np.float32)
    texts = np.repeat(images, 5, axis=0)
    result = recall_at_k(images, texts, np.repeat(np.arange(8), 5))
    assert result["rsum"] == pytest.approx(600.0)


def test_explicit_index_is_used_not_position():
    images = np.eye(3, dtype=np.float32)
    texts = images[[2, 0, 1]]
    assert recall_at_k(images, texts, np.array([2, 0, 1]))["t2i_r1"] == 100.0
    assert recall_at_k(images, texts, np.array([0, 1, 2]))["t2i_r1"] == 0.0


def test_ranks_are_zero_based():
    images = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    texts = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    image_ranks, text_ranks = retrieval_ranks(images, texts, np.array([0, 1]))
    assert image_ranks.tolist() == [1, 1]
    assert text_ranks.tolist() == [1, 1]


def test_caption_index_length_checked():
    with pytest.raises(ValueError, match="caption_to_image has 2 entries for 3 captions"):
        recall_at_k(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), np.array([0, 1]))


def test_coco_1k_averages_five_folds():
    rng = np.random.default_rng(0)
    images = _normalised(rng, 5000, d=32)
    caption_to_image = np.arange(5000)
    result = coco_1k_recall(images, images, caption_to_image)
    assert result["rsum"] == pytest.approx(600.0)
    with pytest.raises(ValueError, match="the 1K protocol needs 5,000 test images; got 10"):
        coco_1k_recall(images[:10], images[:10], caption_to_image[:10])


def test_detection_metrics_hand_computed():
    clean_prob = np.array([0.9, 0.8, 0.3, 0.2, 0.6])
    injected = np.array([False, False, True, True, True])
    result = detection_metrics(clean_prob, injected, threshold=0.5)
    assert result["auroc"] == pytest.approx(1.0)
    assert result["precision"] == pytest.approx(1.0)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["flagged"] == 2


def test_detection_metrics_single_class_is_nan():
    result = detection_metrics(np.array([0.2, 0.9]), np.array([False, False]), threshold=0.5)
    assert np.isnan(result["auroc"])
    assert np.isnan(result["recall"])
