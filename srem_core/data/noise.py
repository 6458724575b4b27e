"""Inject synthetic noisy correspondence into the training split, and save or load it as an index file.

Two conventions exist in the noisy-correspondence literature:

- caption level, as in NCR (github.com/XLearning-SCU/2021-NeurIPS-NCR): pick
  ``round(rate * n_train_captions)`` training captions and shuffle their image indices among
  themselves.
- image level, as in DECL (github.com/QinYang79/DECL): pick ``round(rate * n_train_images)`` training
  images and permute them, so every training caption of a picked image moves to the same new image.

Both reference implementations truncate with ``int``. This module rounds with Python's ``round``
(halves to even), so that 0.29 * 100 picks 29 and not 28. A shuffle can put a caption back on its own
image, so the ground truth is ``assigned != original``, not the set of sampled captions.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np

NOISE_LEVELS = ("caption", "image")


@dataclasses.dataclass(frozen=True)
class NoiseInjection:
    """Each caption's image index before and after noise injection.

    ``assigned`` and ``original`` are int64 arrays of shape (n_pairs,) over the whole dataset; they
    differ only on training captions (``train_mask``). ``sampled`` marks the captions chosen for the
    shuffle, which at image level are the training captions of the chosen images. It is not the
    ground truth, because a shuffle can leave a chosen caption on its image. ``level`` is "caption"
    or "image": how the noise was made, or for a loaded file, its layout. ``sampled``, ``rate`` and
    ``seed`` are None for a loaded file.
    """

    assigned: np.ndarray
    original: np.ndarray
    train_mask: np.ndarray
    sampled: np.ndarray | None
    level: str
    rate: float | None
    seed: int | None

    @property
    def is_injected_noise(self) -> np.ndarray:
        """Bool array (n_pairs,): True where the caption's image was changed (the ground truth)."""
        return self.assigned != self.original


def inject_noise(
    caption_to_image: np.ndarray,
    train_mask: np.ndarray,
    *,
    rate: float,
    level: str = "caption",
    seed: int,
) -> NoiseInjection:
    """Reassign a fraction ``rate`` of the training captions (or images) to other training images.

    Args:
        caption_to_image: int array (n_pairs,), each caption's image index.
        train_mask: bool array (n_pairs,), True for training captions; only these are changed.
        rate: fraction in [0, 1] of training captions (level "caption") or training images
            (level "image") that are shuffled.
        level: "caption" or "image" (see the module docstring).
        seed: seed of ``numpy.random.default_rng``; the same inputs and seed give the same result.
    """
    original, train_mask = _check_index_arrays(caption_to_image, train_mask)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be a fraction in [0, 1], got {rate!r}.")
    if level not in NOISE_LEVELS:
        raise ValueError(f"level must be one of {', '.join(NOISE_LEVELS)}, got {level!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer so that the noise can be reproduced, got {seed!r}.")
    rng = np.random.default_rng(seed)
    if level == "caption":
        assigned, sampled = _shuffle_captions(original, train_mask, rate, rng)
    else:
        assigned, sampled = _permute_images(original, train_mask, rate, rng)
    return NoiseInjection(assigned, original, train_mask, sampled, level, float(rate), int(seed))


def _check_index_arrays(caption_to_image, train_mask) -> tuple[np.ndarray, np.ndarray]:
    original = np.asarray(caption_to_image)
    train_mask = np.asarray(train_mask)
    if original.ndim != 1 or original.dtype.kind not in "iu":
        raise ValueError(
            f"caption_to_image must be a 1-D integer array, got dtype {original.dtype} and shape "
            f"{original.shape}."
        )
    if original.size and original.min() < 0:
        raise ValueError(
            f"caption_to_image must not contain negative image indices, got {original.min()}."
        )
    if train_mask.dtype != bool or train_mask.shape != original.shape:
        raise ValueError(
            f"train_mask must be a bool array of shape {original.shape} like caption_to_image, got "
            f"dtype {train_mask.dtype} and shape {train_mask.shape}."
        )
    return original.astype(np.int64), train_mask


def _shuffle_captions(original, train_mask, rate, rng) -> tuple[np.ndarray, np.ndarray]:
    train_captions = np.flatnonzero(train_mask)
    picked = rng.choice(train_captions, size=round(rate * len(train_captions)), replace=False)
    assigned = original.copy()
    assigned[picked] = original[picked][rng.permutation(len(picked))]
    sampled = np.zeros(len(original), dtype=bool)
    sampled[picked] = True
    return assigned, sampled


def _permute_images(original, train_mask, rate, rng) -> tuple[np.ndarray, np.ndarray]:
    train_images = np.unique(original[train_mask])
    picked = rng.choice(train_images, size=round(rate * len(train_images)), replace=False)
    new_image = np.arange(original.max(initial=0) + 1)
    new_image[picked] = picked[rng.permutation(len(picked))]
    assigned = original.copy()
    # Only training captions move, even when an image also has captions in another split.
    assigned[train_mask] = new_image[original[train_mask]]
    sampled = train_mask & np.isin(original, picked)
    return assigned, sampled


def save_noise_index(path: str | os.PathLike, injection: NoiseInjection) -> None:
    """Write the training captions' assigned image indices as an int64 ``.npy`` file, atomically.

    The file has one entry per training caption, in dataset order: the image index (a row of the
    dataset's image table) the caption is paired with after injection. It is written to a temporary
    file in the same folder and renamed, so a reader sees the old file or the complete new one.
    """
    path = Path(path)
    values = injection.assigned[injection.train_mask].astype(np.int64)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.save(file, values, allow_pickle=False)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_noise_index(
    path: str | os.PathLike, caption_to_image: np.ndarray, train_mask: np.ndarray
) -> NoiseInjection:
    """Read a noise index file made by ``save_noise_index`` or released with research code.

    The layout is chosen by length. One entry per training caption, as ``save_noise_index`` and NCR's
    ``NCR/data.py`` write it: the image index each training caption is paired with. One entry per
    training image, as DECL's ``data.py`` reads it: a permutation p of 0..n_train_images-1, where
    training image i is the i-th smallest training image index and the captions of training image i
    move to training image p[i]. With one caption per training image both lengths are equal. The file
    is then read as caption-level, and the two readings agree whenever caption j belongs to training
    image j.

    Research files index images within the training split, which equals the dataset's image index
    when training images come first (``read_research_folder`` puts them first). They cover the whole
    split, so their length no longer matches once a reader has skipped captions or images.

    Raises:
        ValueError: the file is not a 1-D integer array, its length matches neither layout, or its
            values are not training images (caption level) or not a permutation (image level).
    """
    original, train_mask = _check_index_arrays(caption_to_image, train_mask)
    values = _load_int_array(Path(path))
    train_images = np.unique(original[train_mask])
    n_captions, n_images = int(train_mask.sum()), len(train_images)
    assigned = original.copy()
    if len(values) == n_captions:
        _check_caption_values(path, values, train_images)
        assigned[train_mask] = values
        level = "caption"
    elif len(values) == n_images:
        _check_permutation(path, values)
        new_image = np.arange(original.max(initial=0) + 1)
        new_image[train_images] = train_images[values]
        assigned[train_mask] = new_image[original[train_mask]]
        level = "image"
    else:
        raise ValueError(
            f"Noise index {path} has {len(values)} entries, but the training split has {n_captions} "
            f"captions (caption-level file) and {n_images} images (image-level file). Check that the "
            "file was made for this dataset and its training split."
        )
    return NoiseInjection(assigned, original, train_mask, None, level, rate=None, seed=None)


def _load_int_array(path: Path) -> np.ndarray:
    try:
        values = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise ValueError(
            f"Noise index {path} is not a readable .npy array ({error}). Check the path."
        ) from error
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise ValueError(
            f"Noise index {path} must be a 1-D integer array, got dtype {values.dtype} and shape "
            f"{values.shape}. Save one image index per caption (or per image) as integers."
        )
    return values.astype(np.int64)


def _check_caption_values(path, values: np.ndarray, train_images: np.ndarray) -> None:
    outside = np.flatnonzero(~np.isin(values, train_images))
    if len(outside):
        first = outside[0]
        raise ValueError(
            f"Noise index {path}: entry {first} is {values[first]}, which is not a training image "
            f"index ({len(outside)} such entries). Check that the file was made for this dataset."
        )


def _check_permutation(path, values: np.ndarray) -> None:
    if not np.array_equal(np.sort(values), np.arange(len(values))):
        raise ValueError(
            f"Noise index {path} has one entry per training image but is not a permutation of "
            f"0..{len(values) - 1}. Check that the file was made for this dataset."
        )
