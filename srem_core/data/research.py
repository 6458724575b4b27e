"""Read precomputed image features in the layout that noisy-correspondence research code uses.

A folder holds, per split, ``{split}_ims.npy`` (one row per image: region features of shape
(n_images, n_regions, D), typically (n, 36, 2048) bottom-up-attention regions, or pooled features of
shape (n_images, D)) and ``{split}_caps.txt`` (one caption per line, k consecutive lines per image:
k = 5 for Flickr30K and MS-COCO, 1 for CC152K, whose captions may instead come as ``{split}_caps.tsv``
lines of image id, tab, caption). The split files are named ``train``, ``dev`` (or ``val``) and
``test``. MS-COCO's 5K test set is ``testall``.

Arrays are memory-mapped. Region features are mean-pooled over the region axis chunk by chunk, and the
pooled array is cached as ``{split}_ims_pooled.npy`` next to the source, or in a cache folder when the
data folder is read-only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from srem_core.data.pairs import SPLITS, PairDataset, SkippedItem, build_dataset

logger = logging.getLogger(__name__)

CHUNK_ROWS = 256
"""Images read per step: 256 images of 36 x 2048 float32 regions are about 75 MB."""

SPLIT_FILE_PREFIXES = {"train": ("train",), "val": ("dev", "val")}
"""Split -> file name prefixes used for it; the test prefix is the ``test_split_name`` option."""

CAPTION_SUFFIXES = (".txt", ".tsv")
"""Caption file suffixes in order of preference: one caption per line, or CC152K's image id, tab,
caption."""

POOLED_SUFFIX = "_pooled"
"""Appended to the source file's stem to name the cached mean-pooled array."""


def default_cache_dir() -> Path:
    """Return the folder for pooled arrays whose data folder is read-only (``$XDG_CACHE_HOME/srem``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "srem" / "pooled_features"


def open_feature_array(path: str | os.PathLike) -> np.ndarray:
    """Memory-map a ``{split}_ims.npy`` file and check its shape and dtype.

    Raises:
        ValueError: the file is not a readable .npy array, is not 2-D or 3-D, has an empty axis or is
            not numeric.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Image features {path} not found. Check the folder and split name.")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as error:
        raise ValueError(
            f"{path} is not a readable .npy array ({error}). Check that it was saved with numpy.save "
            "and copied completely."
        ) from error
    if array.ndim not in (2, 3):
        raise ValueError(
            f"{path} has shape {array.shape}; expected (n_images, n_regions, D) region features or "
            "(n_images, D) pooled features, one row per image."
        )
    if 0 in array.shape:
        raise ValueError(f"{path} has shape {array.shape}, which has an empty axis. Export it again.")
    if array.dtype.kind not in "fiu":
        raise ValueError(
            f"{path} has dtype {array.dtype}; expected real numbers. Export the features as float32."
        )
    return array


def pooled_image_features(
    ims_path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    chunk_rows: int = CHUNK_ROWS,
    progress: bool = True,
) -> np.ndarray:
    """Return one feature vector per image, shape (n_images, D), as a read-only memory map.

    A 2-D file is returned as it is. A 3-D file of region features is mean-pooled over its region axis
    in chunks of ``chunk_rows`` images (float64 sums, float32 result) with a progress bar. The result
    is written to ``{stem}_pooled.npy`` next to the source. When that folder is not writable, it goes
    to ``cache_dir`` (default ``default_cache_dir()``). A cached array is reused while it is newer
    than the source and has the expected shape.
    """
    ims_path = Path(ims_path)
    source = open_feature_array(ims_path)
    if source.ndim == 2:
        return source
    expected_shape = (source.shape[0], source.shape[2])
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    candidates = [
        ims_path.with_name(ims_path.stem + POOLED_SUFFIX + ".npy"),
        _cache_file(ims_path, cache_dir),
    ]
    for candidate in candidates:
        cached = _fresh_cache(candidate, ims_path, expected_shape)
        if cached is not None:
            return cached
    last_error = None
    for candidate in candidates:
        try:
            _write_pooled(source, candidate, ims_path.name, chunk_rows, progress)
        except OSError as error:
            logger.info("Cannot write the pooled features to %s (%s).", candidate, error)
            last_error = error
            continue
        logger.info("Cached the mean-pooled features of %s in %s.", ims_path, candidate)
        return np.load(candidate, mmap_mode="r")
    raise OSError(
        f"Cannot write the pooled features of {ims_path} to {candidates[0].parent} or {cache_dir} "
        f"({last_error}). Pass a writable cache_dir."
    ) from last_error


def _cache_file(ims_path: Path, cache_dir: Path) -> Path:
    # The digest of the absolute source path keeps two data folders' train_ims.npy apart.
    digest = hashlib.sha256(str(ims_path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return cache_dir / f"{ims_path.stem}{POOLED_SUFFIX}-{digest}.npy"


def _fresh_cache(candidate: Path, ims_path: Path, expected_shape: tuple[int, int]) -> np.ndarray | None:
    """Return the cached pooled array at ``candidate`` if it is usable, else None."""
    try:
        if candidate.stat().st_mtime < ims_path.stat().st_mtime:
            logger.info("Ignoring %s: it is older than %s.", candidate, ims_path)
            return None
        cached = np.load(candidate, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if cached.shape != expected_shape or cached.dtype != np.float32:
        logger.info(
            "Ignoring %s: it has shape %s and dtype %s, expected %s and float32.",
            candidate, cached.shape, cached.dtype, expected_shape,
        )
        return None
    return cached


def _write_pooled(source: np.ndarray, target: Path, name: str, chunk_rows: int, progress: bool) -> None:
    """Mean-pool ``source`` over axis 1 into ``target``, written atomically via a temporary file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".tmp")
    os.close(handle)
    try:
        shape = (source.shape[0], source.shape[2])
        pooled = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32, shape=shape)
        bar = tqdm(total=shape[0], desc=f"Mean-pooling {name}", unit="image", disable=not progress)
        with bar:
            for start in range(0, shape[0], chunk_rows):
                stop = min(start + chunk_rows, shape[0])
                pooled[start:stop] = source[start:stop].mean(axis=1, dtype=np.float64)
                bar.update(stop - start)
        pooled.flush()
        del pooled
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def find_nonfinite_rows(features: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Return the sorted row indices of a 2-D array that contain NaN or inf, reading it in chunks."""
    bad = []
    for start in range(0, features.shape[0], chunk_rows):
        chunk = np.asarray(features[start : start + chunk_rows])
        rows = np.flatnonzero(~np.isfinite(chunk).all(axis=1))
        bad.append(rows + start)
    return np.concatenate(bad).astype(np.int64) if bad else np.zeros(0, dtype=np.int64)


def split_file_prefix(folder: Path, split: str, test_split_name: str = "test") -> str | None:
    """Return the file name prefix of ``split`` in ``folder`` (``dev`` for val, say), or None if absent.

    Raises:
        ValueError: ``split`` is not train, val or test, or both ``dev_ims.npy`` and ``val_ims.npy``
            exist.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}.")
    prefixes = SPLIT_FILE_PREFIXES.get(split, (test_split_name,))
    present = [prefix for prefix in prefixes if (folder / f"{prefix}_ims.npy").is_file()]
    if len(present) > 1:
        raise ValueError(
            f"{folder} has both {present[0]}_ims.npy and {present[1]}_ims.npy for the {split} split. "
            "Move one of them out of the folder."
        )
    return present[0] if present else None


def read_research_split(
    folder: str | os.PathLike,
    split: str,
    *,
    test_split_name: str = "test",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> PairDataset:
    """Read one split of a research-format folder as a ``PairDataset`` with ``image_features`` set.

    Image ids are ``<split>-<row>`` (row of the .npy array, from 0), pair ids ``<image_id>-<k>`` (k
    from 0 within the image). Caption line ``j`` (from 0) belongs to image row ``j // k``, and
    ``caption_to_image`` stores that mapping for every kept caption. Images whose features contain NaN
    or inf are skipped with their captions; empty or non-UTF-8 caption lines are skipped alone. Both
    are recorded in ``skipped``. ``image_path`` is None for every image.

    Raises:
        FileNotFoundError: the split's ``_ims.npy`` file or its caption file is missing.
        ValueError: a bad array (see ``open_feature_array``), a caption count that is not a whole
            multiple of the image count, or no usable pair.
    """
    folder = Path(folder)
    prefix = split_file_prefix(folder, split, test_split_name)
    if prefix is None:
        names = SPLIT_FILE_PREFIXES.get(split, (test_split_name,))
        raise FileNotFoundError(
            f"{folder} has no {' or '.join(n + '_ims.npy' for n in names)} for the {split} split. "
            "Check the folder, or pass test_split_name for a differently named test split."
        )
    pairs, features, skipped = _read_split_files(folder, split, prefix, cache_dir, progress)
    _log_skipped(folder, skipped)
    return build_dataset(
        pairs, root=folder, source=str(folder), skipped=skipped, image_features=features
    )


def read_research_folder(
    folder: str | os.PathLike,
    *,
    test_split_name: str = "test",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> PairDataset:
    """Read every split present in a research-format folder into one ``PairDataset``.

    Splits come in the order train, val, test, so training images take the first image indices and
    an image index equals the row of ``train_ims.npy``, the index that noise files made from the
    training split alone use. ``image_features`` is an in-memory float32 array of shape
    (n_images, D), about 1 GB for MS-COCO's 123K images pooled to 2048 floats.

    Raises:
        FileNotFoundError: the folder has no ``{split}_ims.npy`` of any split.
        ValueError: as ``read_research_split``, or splits with different feature sizes.
    """
    folder = Path(folder)
    prefixes = {split: split_file_prefix(folder, split, test_split_name) for split in SPLITS}
    present = [split for split, prefix in prefixes.items() if prefix is not None]
    if not present:
        raise FileNotFoundError(
            f"{folder} has no research-format features: expected train_ims.npy, dev_ims.npy or "
            f"{test_split_name}_ims.npy with a matching _caps.txt file."
        )
    parts = [_read_split_files(folder, s, prefixes[s], cache_dir, progress) for s in present]
    sizes = {split: part[1].shape[1] for split, part in zip(present, parts)}
    if len(set(sizes.values())) > 1:
        raise ValueError(
            f"The splits of {folder} have different feature sizes {sizes}. Use features from one "
            "extractor for every split."
        )
    skipped = [item for part in parts for item in part[2]]
    _log_skipped(folder, skipped)
    features = np.concatenate([np.asarray(part[1], dtype=np.float32) for part in parts])
    pairs = pd.concat([part[0] for part in parts], ignore_index=True)
    return build_dataset(
        pairs, root=folder, source=str(folder), skipped=skipped, image_features=features
    )


def _read_split_files(
    folder: Path, split: str, prefix: str, cache_dir, progress: bool
) -> tuple[pd.DataFrame, np.ndarray, list[SkippedItem]]:
    """Return one split's kept pair rows, the features of the images they use, and what was skipped."""
    ims_path = folder / f"{prefix}_ims.npy"
    caps_path = _caption_file(folder, prefix)
    features = pooled_image_features(ims_path, cache_dir=cache_dir, progress=progress)
    n_images = features.shape[0]
    captions, bad_lines = _read_captions(caps_path)
    per_image = _captions_per_image(len(captions), n_images, caps_path, ims_path)

    # Caption line j (from 0) belongs to image row j // per_image.
    image_row = np.arange(len(captions)) // per_image
    image_ids = [f"{split}-{row}" for row in range(n_images)]
    pair_ids = [f"{image_ids[image_row[j]]}-{j % per_image}" for j in range(len(captions))]
    skipped = [SkippedItem(f"{caps_path.name}:{j + 1}", pair_ids[j], reason) for j, reason in bad_lines]
    bad_rows = find_nonfinite_rows(features)
    skipped += _nonfinite_items(ims_path, bad_rows, image_ids, per_image)

    keep = np.array([c is not None for c in captions]) & ~np.isin(image_row, bad_rows)
    if not keep.any():
        raise ValueError(
            f"{caps_path} and {ims_path} have no usable pair: every caption is empty or its image "
            "features are not finite. Check the files."
        )
    kept_lines = np.flatnonzero(keep)
    pairs = pd.DataFrame({
        "pair_id": [pair_ids[j] for j in kept_lines],
        "image_id": [image_ids[image_row[j]] for j in kept_lines],
        "image_path": None,
        "caption": [captions[j] for j in kept_lines],
        "split": split,
    })
    used_rows = np.unique(image_row[kept_lines])
    features = features if len(used_rows) == n_images else np.asarray(features[used_rows])
    return pairs, features, skipped


def _caption_file(folder: Path, prefix: str) -> Path:
    """Return ``{prefix}_caps.txt``, or CC152K's ``{prefix}_caps.tsv`` when only that exists."""
    for suffix in CAPTION_SUFFIXES:
        path = folder / f"{prefix}_caps{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{folder / (prefix + '_caps.txt')} not found. Each {prefix}_ims.npy needs a {prefix}_caps.txt "
        f"with one caption per line (or a {prefix}_caps.tsv of image id and caption) next to it."
    )


def _read_captions(caps_path: Path) -> tuple[list[str | None], list[tuple[int, str]]]:
    """Return one entry per line (None for an empty or bad line) and (line index, reason) pairs.

    In a ``.tsv`` file the caption is the text after the first tab. Empty lines at the end of the file
    are dropped because they come from its trailing newline(s).
    """
    lines = caps_path.read_bytes().split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    captions: list[str | None] = []
    bad_lines = []
    for index, line in enumerate(lines):
        text, reason = _decode_caption_line(line, caps_path)
        captions.append(text)
        if text is None:
            bad_lines.append((index, reason))
    return captions, bad_lines


def _decode_caption_line(line: bytes, caps_path: Path) -> tuple[str | None, str]:
    """Return the caption of one line, or None and the reason it cannot be used."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, (
            f"the caption is not valid UTF-8 (invalid byte 0x{line[error.start]:02x} at byte "
            f"{error.start + 1}). Save {caps_path.name} as UTF-8, or fix this line."
        )
    if caps_path.suffix == ".tsv":
        # NOTE: no CSV quoting here, so a quoted caption keeps its quotes. Quoting could join lines
        # and break the caption-to-image alignment.
        _, tab, text = text.partition("\t")
        if not tab:
            return None, "the line has no tab. Write the image id, a tab, then the caption."
    text = text.strip()
    if not text:
        return None, "the caption is empty. Write the caption on this line."
    return text, ""


def _captions_per_image(n_captions: int, n_images: int, caps_path: Path, ims_path: Path) -> int:
    if n_captions == 0 or n_captions % n_images != 0:
        raise ValueError(
            f"{caps_path} has {n_captions} caption lines for the {n_images} images of {ims_path}, "
            f"which is not a whole number of captions per image ({n_captions / n_images:.3f}). Check "
            "that both files belong to the same split and that every caption is on one line."
        )
    return n_captions // n_images


def _nonfinite_items(
    ims_path: Path, bad_rows: np.ndarray, image_ids: list[str], per_image: int
) -> list[SkippedItem]:
    if len(bad_rows) == 0:
        return []
    logger.warning(
        "%s: %d image(s) have NaN or inf features, first at row %d (from 0); they are skipped with "
        "their captions.", ims_path, len(bad_rows), bad_rows[0],
    )
    reason = (
        f"the image features contain NaN or inf values, so the image and its {per_image} caption(s) "
        "are skipped. Extract the features of this image again."
    )
    return [SkippedItem(f"{ims_path.name}:{row}", image_ids[row], reason) for row in bad_rows]


def _log_skipped(folder: Path, skipped: list[SkippedItem]) -> None:
    if skipped:
        logger.warning(
            "Skipped %d item(s) of %s; PairDataset.skipped lists every reason. First: %s: %s",
            len(skipped), folder, skipped[0].source, skipped[0].reason,
        )
