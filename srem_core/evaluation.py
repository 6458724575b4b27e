"""Retrieval recall (R@K, rSum) with an explicit caption-to-image index, and noise-detection metrics."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

RECALL_KS = (1, 5, 10)
COCO_FOLD_IMAGES = 1000
"""MS-COCO's 1K protocol averages five folds of 1,000 test images each."""
SIMILARITY_CHUNK = 4096
"""Rows of the similarity matrix computed at once, to bound memory on large test sets."""


def _ranks_of_first_match(similarity_rows: torch.Tensor, is_match: torch.Tensor) -> torch.Tensor:
    """Rank (0 = best) of the best-ranked matching column of each row."""
    best_match_score = similarity_rows.masked_fill(~is_match, float("-inf")).max(dim=1, keepdim=True).values
    return (similarity_rows > best_match_score).sum(dim=1)


def retrieval_ranks(
    image_embeddings: np.ndarray, text_embeddings: np.ndarray, caption_to_image: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(image_to_text_ranks, text_to_image_ranks)``, 0-based, ties counted optimistically.

    ``image_embeddings`` (n_images, D) and ``text_embeddings`` (n_captions, D) are L2-normalised;
    ``caption_to_image`` (n_captions,) gives each caption's image row. An image's rank is that of the
    best-ranked of its captions (the field's convention with five captions per image).
    """
    images = torch.as_tensor(np.asarray(image_embeddings, dtype=np.float32))
    texts = torch.as_tensor(np.asarray(text_embeddings, dtype=np.float32))
    owner = torch.as_tensor(np.asarray(caption_to_image, dtype=np.int64))
    if owner.shape[0] != texts.shape[0]:
        raise ValueError(f"caption_to_image has {owner.shape[0]} entries for {texts.shape[0]} captions")
    if owner.numel() and (owner.min() < 0 or owner.max() >= images.shape[0]):
        raise ValueError(f"caption_to_image must index the {images.shape[0]} images; found {int(owner.max())}")
    image_ranks, text_ranks = [], []
    image_ids = torch.arange(images.shape[0])
    for start in range(0, images.shape[0], SIMILARITY_CHUNK):
        rows = images[start : start + SIMILARITY_CHUNK] @ texts.T
        image_ranks.append(_ranks_of_first_match(rows, owner[None, :] == image_ids[start : start + SIMILARITY_CHUNK, None]))
    for start in range(0, texts.shape[0], SIMILARITY_CHUNK):
        rows = texts[start : start + SIMILARITY_CHUNK] @ images.T
        text_ranks.append(_ranks_of_first_match(rows, image_ids[None, :] == owner[start : start + SIMILARITY_CHUNK, None]))
    return torch.cat(image_ranks).numpy(), torch.cat(text_ranks).numpy()


def recall_at_k(
    image_embeddings: np.ndarray, text_embeddings: np.ndarray, caption_to_image: np.ndarray
) -> dict[str, float]:
    """Return R@1/5/10 in percent for image->text (``i2t_r1`` ...) and text->image (``t2i_r1`` ...) and rSum."""
    image_ranks, text_ranks = retrieval_ranks(image_embeddings, text_embeddings, caption_to_image)
    result: dict[str, float] = {}
    for k in RECALL_KS:
        result[f"i2t_r{k}"] = float(100.0 * np.mean(image_ranks < k))
        result[f"t2i_r{k}"] = float(100.0 * np.mean(text_ranks < k))
    result["rsum"] = float(sum(result[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in RECALL_KS))
    return result


def coco_1k_recall(
    image_embeddings: np.ndarray, text_embeddings: np.ndarray, caption_to_image: np.ndarray
) -> dict[str, float]:
    """Return the mean of ``recall_at_k`` over five folds of 1,000 consecutive test images (MS-COCO 1K)."""
    n_images = image_embeddings.shape[0]
    if n_images < 5 * COCO_FOLD_IMAGES:
        raise ValueError(f"the 1K protocol needs 5,000 test images; got {n_images}")
    caption_to_image = np.asarray(caption_to_image)
    folds = []
    for fold in range(5):
        start = fold * COCO_FOLD_IMAGES
        captions = (caption_to_image >= start) & (caption_to_image < start + COCO_FOLD_IMAGES)
        folds.append(
            recall_at_k(
                image_embeddings[start : start + COCO_FOLD_IMAGES],
                text_embeddings[captions],
                caption_to_image[captions] - start,
            )
        )
    return {key: float(np.mean([fold[key] for fold in folds])) for key in folds[0]}


def detection_metrics(clean_prob: np.ndarray, is_injected_noise: np.ndarray, threshold: float) -> dict[str, float]:
    """Return AUROC and average precision of ``1 - clean_prob`` against injected noise, and the flag's
    precision and recall at ``clean_prob < threshold``. Undefined values (one class only) are NaN."""
    truth = np.asarray(is_injected_noise, dtype=bool)
    noise_score = 1.0 - np.asarray(clean_prob, dtype=np.float64)
    flagged = np.asarray(clean_prob) < threshold
    both_classes = truth.any() and not truth.all()
    true_positives = float(np.sum(flagged & truth))
    return {
        "auroc": float(roc_auc_score(truth, noise_score)) if both_classes else float("nan"),
        "ap": float(average_precision_score(truth, noise_score)) if both_classes else float("nan"),
        "precision": true_positives / flagged.sum() if flagged.any() else float("nan"),
        "recall": true_positives / truth.sum() if truth.any() else float("nan"),
        "threshold": float(threshold),
        "flagged": int(flagged.sum()),
        "injected": int(truth.sum()),
    }
