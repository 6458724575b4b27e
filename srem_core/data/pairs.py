"""The in-memory form of an image-caption dataset, shared by every reader.

A dataset is a table with one row per caption (a *pair*), plus one row per distinct image. Several
captions may share an image; ``caption_to_image`` maps each caption row to its image row explicitly,
never by an implicit ``i // 5``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

PAIR_COLUMNS = ("pair_id", "image_id", "caption", "category", "split")
"""Columns every pair table has; ``category`` may be missing (None) for every row."""

IMAGE_COLUMNS = ("image_id", "image_path")
"""Columns every image table has; ``image_path`` is None for precomputed-feature datasets."""

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class SkippedItem:
    """One input row or file that could not be used, with the reason and the fix."""

    source: str
    """The manifest row (``pairs.csv:17``), image file or features file."""
    item_id: str
    """The pair id or image id concerned ("" when the row had none)."""
    reason: str
    """A full sentence: what is wrong and what to do about it."""


@dataclasses.dataclass
class PairDataset:
    """Image-caption pairs, their images, and what was skipped on the way in.

    ``pairs`` has one row per caption with the columns of ``PAIR_COLUMNS`` plus ``image_index`` (int,
    the row of ``images`` the caption belongs to). ``images`` has one row per distinct image with
    ``IMAGE_COLUMNS``. ``root`` is the folder that relative image paths start from.
    ``image_features`` is set only for precomputed-feature datasets: shape (n_images, D_image),
    possibly a read-only memory map.
    """

    pairs: pd.DataFrame
    images: pd.DataFrame
    root: Path
    source: str
    skipped: list[SkippedItem] = dataclasses.field(default_factory=list)
    image_features: np.ndarray | None = None

    @property
    def caption_to_image(self) -> np.ndarray:
        """Integer array (n_pairs,) giving each caption's image row."""
        return self.pairs["image_index"].to_numpy(dtype=np.int64)

    @property
    def n_pairs(self) -> int:
        return len(self.pairs)

    @property
    def n_images(self) -> int:
        return len(self.images)

    def image_path(self, image_index: int) -> Path | None:
        """Return the absolute path of one image, or None for precomputed features."""
        path = self.images["image_path"].iat[image_index]
        if path is None or (isinstance(path, float) and np.isnan(path)):
            return None
        path = Path(path)
        return path if path.is_absolute() else self.root / path

    def split_mask(self, split: str) -> np.ndarray:
        """Boolean mask over pairs of one split."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return (self.pairs["split"] == split).to_numpy()

    def subset(self, pair_mask: np.ndarray) -> "PairDataset":
        """Return the pairs selected by ``pair_mask`` with only the images they use, re-indexed."""
        pairs = self.pairs.loc[pair_mask].copy()
        used = np.unique(pairs["image_index"].to_numpy())
        remap = np.full(self.n_images, -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        pairs["image_index"] = remap[pairs["image_index"].to_numpy()]
        images = self.images.iloc[used].reset_index(drop=True)
        features = None if self.image_features is None else np.asarray(self.image_features[used])
        return PairDataset(
            pairs=pairs.reset_index(drop=True),
            images=images,
            root=self.root,
            source=self.source,
            skipped=list(self.skipped),
            image_features=features,
        )


def build_dataset(
    pair_rows: pd.DataFrame,
    root: Path,
    source: str,
    skipped: list[SkippedItem] | None = None,
    image_features: np.ndarray | None = None,
) -> PairDataset:
    """Build a ``PairDataset`` from a pair table that has an ``image_path`` column per row.

    ``pair_rows`` needs ``pair_id``, ``image_id``, ``image_path`` and ``caption``; ``category`` and
    ``split`` are optional (missing split means "train"). Images are the distinct ``image_id`` values in
    order of first appearance.
    """
    frame = pair_rows.copy()
    if "category" not in frame:
        frame["category"] = None
    if "split" not in frame:
        frame["split"] = "train"
    first = frame.drop_duplicates("image_id", keep="first")
    images = pd.DataFrame(
        {"image_id": first["image_id"].to_numpy(), "image_path": first["image_path"].to_numpy()}
    )
    index_of = {image_id: i for i, image_id in enumerate(images["image_id"])}
    frame["image_index"] = frame["image_id"].map(index_of).astype(np.int64)
    columns = [*PAIR_COLUMNS, "image_index"] + [
        c for c in frame.columns if c not in PAIR_COLUMNS and c not in ("image_index", "image_path")
    ]
    return PairDataset(
        pairs=frame[columns].reset_index(drop=True),
        images=images,
        root=Path(root),
        source=source,
        skipped=list(skipped or []),
        image_features=image_features,
    )
