"""Compute every image and caption feature of a dataset once, and reuse them from disk afterwards.

Features are cached per item, keyed by the encoder's ``identity`` and the item's content: the SHA-256
of an image file's bytes, or of a caption's UTF-8 text. A re-run over unchanged files reads everything
from the cache without calling the encoder, and a changed image file is re-encoded alone. The store
format is described in ``srem_core.encoders.store``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from srem_core.data.pairs import PairDataset, SkippedItem
from srem_core.encoders.base import Encoder
from srem_core.encoders.hashing import file_sha256, text_sha256
from srem_core.encoders.store import FeatureStore

logger = logging.getLogger(__name__)

CHUNK_ROWS = 4096
"""Rows per cache chunk: an interrupted run keeps all but the last few thousand features, and
chunks stay a few MB (4096 x 1280 float32 = 21 MB)."""

POOL_ROWS = 256
"""Images mean-pooled per step when precomputed features are region features (n, regions, D), so that
a memory-mapped file is never read whole."""

NO_IMAGE_PATH_REASON = (
    "the dataset has neither an image file nor precomputed features for this image. "
    "Check the manifest row."
)


@dataclasses.dataclass
class ExtractedFeatures:
    """Encoder features of a whole dataset, in dataset order.

    ``image_features`` is (n_images, image_dim) float32. The row of an image that failed to load is
    all NaN. Drop those pairs with ``usable_pairs`` before training. For a dataset with precomputed
    features, these are the precomputed features (mean-pooled over regions when they are 3-D).
    ``text_features`` is (n_pairs, text_dim) float32, one row per caption.
    """

    image_features: np.ndarray
    text_features: np.ndarray
    failed_images: list[SkippedItem]
    """One entry per image that failed to load: ``item_id`` is the image id, ``source`` the file and
    ``reason`` the sentence from ``ImageLoadError``."""
    usable_pairs: np.ndarray
    """Boolean (n_pairs,): True where the pair's image has features (its row has no NaN)."""
    encoder_identity: str
    n_images_encoded: int
    """Images run through the encoder in this call, 0 when everything came from the cache."""
    n_texts_encoded: int
    """Distinct captions run through the encoder in this call."""


def extract_features(
    encoder: Encoder,
    dataset: PairDataset,
    *,
    cache_dir: str | os.PathLike | None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
    num_workers: int = 0,
) -> ExtractedFeatures:
    """Encode every image and caption of ``dataset`` (or read them from the cache) in batches.

    Moves ``encoder`` to ``device`` first. ``cache_dir=None`` turns the disk cache off.
    ``num_workers`` is the number of DataLoader processes that decode images, and the order of the
    results does not depend on it. Images that fail to load do not stop the run: each one is logged,
    listed in ``failed_images`` and gets a NaN feature row.

    Raises:
        ValueError: ``batch_size`` is below 1, or a caption is not a string.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be at least 1, got {batch_size}")
    encoder.to(torch.device(device))
    store = None if cache_dir is None else FeatureStore(cache_dir, encoder.identity)

    captions = _captions(dataset)
    text_features, n_texts = _text_features(encoder, captions, store, batch_size, progress)
    if dataset.image_features is not None:
        image_features, failed, n_images = _pool_precomputed(dataset.image_features), [], 0
    else:
        image_features, failed, n_images = _image_features(
            encoder, dataset, store, batch_size, num_workers, progress
        )

    usable_images = ~np.isnan(image_features).any(axis=1)
    usable_pairs = usable_images[dataset.caption_to_image]
    _log_failures(failed, int((~usable_pairs).sum()))
    return ExtractedFeatures(
        image_features=image_features,
        text_features=text_features,
        failed_images=failed,
        usable_pairs=usable_pairs,
        encoder_identity=encoder.identity,
        n_images_encoded=n_images,
        n_texts_encoded=n_texts,
    )


def encode_texts_cached(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    cache_dir: str | os.PathLike | None,
    batch_size: int = 64,
    progress: bool = True,
) -> np.ndarray:
    """Encode sentences through the caption cache of ``extract_features`` into float32 (n, text_dim).

    Each distinct text is encoded at most once, and texts already in the cache are not encoded.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be at least 1, got {batch_size}")
    store = None if cache_dir is None else FeatureStore(cache_dir, encoder.identity)
    features, _ = _text_features(encoder, list(texts), store, batch_size, progress)
    return features


def _captions(dataset: PairDataset) -> list[str]:
    captions = dataset.pairs["caption"].tolist()
    for position, caption in enumerate(captions):
        if not isinstance(caption, str):
            pair_id = dataset.pairs["pair_id"].iat[position]
            is_missing = pd.api.types.is_scalar(caption) and pd.isna(caption)
            problem = "missing" if is_missing else f"{caption!r}, not a string"
            raise ValueError(f"Caption of pair {pair_id!r} is {problem}. Fix or drop that row.")
    return captions


def _text_features(encoder, captions, store, batch_size, progress) -> tuple[np.ndarray, int]:
    """Return (n_pairs, text_dim) features and the number of distinct captions encoded now."""
    keys = [text_sha256(caption) for caption in captions]
    unique_keys = list(dict.fromkeys(keys))
    text_of = dict(zip(keys, captions))
    unique_features, found = _lookup(store, "text", unique_keys, encoder.text_dim)

    missing = [position for position in range(len(unique_keys)) if not found[position]]
    logger.info(
        "Texts: %d distinct, %d cached, %d to encode", len(unique_keys), int(found.sum()), len(missing)
    )
    writer = _ChunkWriter(store, "text")
    batches = [missing[start : start + batch_size] for start in range(0, len(missing), batch_size)]
    for batch in tqdm(batches, desc="Encoding captions", unit="batch", disable=not progress):
        texts = [text_of[unique_keys[position]] for position in batch]
        values = encoder.encode_texts(texts).detach().cpu().numpy().astype(np.float32)
        unique_features[batch] = values
        writer.add([unique_keys[position] for position in batch], values)
    writer.flush()

    row_of = {key: row for row, key in enumerate(unique_keys)}
    return unique_features[[row_of[key] for key in keys]], len(missing)


def _image_features(encoder, dataset, store, batch_size, num_workers, progress):
    """Return (n_images, image_dim) features, failures as SkippedItem, and the count encoded now."""
    keys, failures = _hash_image_files(dataset)
    unique_keys = list(dict.fromkeys(keys.values()))
    unique_features, found = _lookup(store, "image", unique_keys, encoder.image_dim)
    first_index: dict[str, int] = {}
    for index, key in keys.items():
        first_index.setdefault(key, index)
    to_encode = [first_index[key] for key, hit in zip(unique_keys, found) if not hit]
    logger.info(
        "Images: %d distinct files, %d cached, %d to encode",
        len(unique_keys), int(found.sum()), len(to_encode),
    )

    row_of = {key: row for row, key in enumerate(unique_keys)}
    writer = _ChunkWriter(store, "image")
    n_encoded = 0
    batches = _encode_image_files(encoder, dataset, to_encode, batch_size, num_workers, progress, failures)
    for indices, values in batches:
        batch_keys = [keys[index] for index in indices]
        unique_features[[row_of[key] for key in batch_keys]] = values
        writer.add(batch_keys, values)
        n_encoded += len(indices)
    writer.flush()

    features = np.full((dataset.n_images, encoder.image_dim), np.nan, dtype=np.float32)
    for index, key in keys.items():
        if first_index[key] in failures:
            # A byte-identical copy of a file that failed to decode fails the same way.
            failures[index] = (str(dataset.image_path(index)), failures[first_index[key]][1])
        else:
            features[index] = unique_features[row_of[key]]
    return features, _skipped_items(dataset, failures), n_encoded


def _hash_image_files(dataset: PairDataset) -> tuple[dict[int, str], dict[int, tuple[str, str]]]:
    """Return {image index: SHA-256 of the file} and {image index: (file, reason)} for unreadable files."""
    keys: dict[int, str] = {}
    failures: dict[int, tuple[str, str]] = {}
    for index in range(dataset.n_images):
        path = dataset.image_path(index)
        if path is None:
            failures[index] = ("", NO_IMAGE_PATH_REASON)
            continue
        try:
            keys[index] = _content_sha256(path)
        except OSError:
            failures[index] = (str(path), _load_failure_reason(path))
    return keys, failures


def _content_sha256(path: Path) -> str:
    """SHA-256 of an image file, or of the tar member that a ``<shard>.tar#<member>`` path names."""
    from srem_core.data import shard_members

    if shard_members.split_reference(path) is None:
        return file_sha256(path)
    import hashlib

    return hashlib.sha256(shard_members.read_member_bytes(path)).hexdigest()


def _encode_image_files(encoder, dataset, indices, batch_size, num_workers, progress, failures):
    """Yield (image indices, features) per batch for the images at ``indices``.

    Files that fail to load are added to ``failures`` as {image index: (file, reason)}.
    """
    files = _ImageFiles([dataset.image_path(index) for index in indices], encoder.preprocess)
    loader = torch.utils.data.DataLoader(
        files, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate
    )
    for positions, pixels, errors in tqdm(loader, desc="Encoding images", unit="batch", disable=not progress):
        for position, reason in errors:
            failures[indices[position]] = (str(files.paths[position]), reason)
        if not positions:
            continue
        values = encoder.encode_image_tensors(pixels).detach().cpu().numpy().astype(np.float32)
        yield [indices[position] for position in positions], values


class _ImageFiles(torch.utils.data.Dataset):
    """Image files decoded with ``load_image``. A failure is returned as its reason, not raised."""

    def __init__(self, paths: Sequence[Path], preprocess: Callable):
        self.paths = list(paths)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int):
        from srem_core.data.images import ImageLoadError, load_image

        try:
            image = load_image(self.paths[position])
        except ImageLoadError as error:
            return position, None, error.reason
        return position, self.preprocess(image), None


def _collate(items):
    """Split a batch into positions, stacked pixels (or None when all failed) and (position, reason)."""
    loaded = [(position, pixels) for position, pixels, _ in items if pixels is not None]
    errors = [(position, reason) for position, pixels, reason in items if pixels is None]
    positions = [position for position, _ in loaded]
    pixels = torch.stack([tensor for _, tensor in loaded]) if loaded else None
    return positions, pixels, errors


class _ChunkWriter:
    """Collects new features and saves them to the store every ``CHUNK_ROWS`` rows."""

    def __init__(self, store: FeatureStore | None, kind: str):
        self.store, self.kind = store, kind
        self.keys: list[str] = []
        self.rows: list[np.ndarray] = []

    def add(self, keys: Sequence[str], values: np.ndarray) -> None:
        self.keys.extend(keys)
        self.rows.append(values)
        if len(self.keys) >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.store is not None and self.keys:
            self.store.save(self.kind, self.keys, np.concatenate(self.rows))
        self.keys, self.rows = [], []


def _lookup(store, kind, keys, dim) -> tuple[np.ndarray, np.ndarray]:
    if store is None:
        return np.full((len(keys), dim), np.nan, dtype=np.float32), np.zeros(len(keys), dtype=bool)
    return store.load(kind, keys, dim)


def _load_failure_reason(path: Path) -> str:
    """Return ``ImageLoadError.reason`` for a file that could not even be read for hashing."""
    from srem_core.data.images import ImageLoadError, load_image

    try:
        load_image(path)
    except ImageLoadError as error:
        return error.reason
    return "the file could not be read while hashing it, but opened afterwards. Run again."


def _skipped_items(dataset: PairDataset, failures: dict[int, tuple[str, str]]) -> list[SkippedItem]:
    image_ids = dataset.images["image_id"]
    return [
        SkippedItem(source=source, item_id=str(image_ids.iat[index]), reason=reason)
        for index, (source, reason) in sorted(failures.items())
    ]


def _pool_precomputed(image_features: np.ndarray) -> np.ndarray:
    """Return precomputed features as float32 (n, D), mean-pooling region features (n, R, D) in steps."""
    if image_features.ndim == 2:
        return np.asarray(image_features, dtype=np.float32)
    if image_features.ndim != 3:
        raise ValueError(
            "Precomputed image features must have shape (n, D) or (n, regions, D), "
            f"got {image_features.shape}"
        )
    pooled = np.empty((image_features.shape[0], image_features.shape[2]), dtype=np.float32)
    for start in range(0, len(pooled), POOL_ROWS):
        block = np.asarray(image_features[start : start + POOL_ROWS], dtype=np.float32)
        pooled[start : start + POOL_ROWS] = block.mean(axis=1)
    return pooled


def _log_failures(failed: list[SkippedItem], n_unusable_pairs: int) -> None:
    for item in failed:
        logger.warning("Image %s (%s) failed to load: %s", item.item_id, item.source, item.reason)
    if failed:
        logger.warning(
            "%d images failed to load; their %d pairs have NaN image features and must be dropped.",
            len(failed), n_unusable_pairs,
        )
