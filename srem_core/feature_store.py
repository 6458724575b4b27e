"""The feature store: float16 image and text features of WebDataset shards on disk, committed per shard.

Files of a store folder:

- ``progress.json``: the commit record. It contains the committed row count, the encoder identity,
  the feature sizes and one record per completed shard (path, bytes, fingerprint, rows, skipped samples).
- ``image_features.f16.npy`` and ``text_features.f16.npy``: float16 arrays (rows, dim) in .npy format.
  Rows past the committed count are left over from an interrupted shard.
- ``keys/chunk-NNNNN.parquet``: one per completed shard, with the columns of ``KEY_SCHEMA``.
- ``skipped/chunk-NNNNN.parquet``: that shard's skipped samples (source, item_id, reason).

``progress.json`` is rewritten atomically after each shard, and it alone decides what is committed.
Reopening a store for writing truncates the feature files to the committed rows, so the shard that was
in progress is encoded again from its start. Only one process may write to a store at a time, and
nothing enforces that.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from srem_core import atomic
from srem_core.data.pairs import SkippedItem

STORE_FORMAT_VERSION = 1
"""Layout version in ``progress.json``. Opening a store of another version raises ValueError."""
FEATURE_DTYPE = np.dtype("<f2")
"""float16 halves the disk of float32 and rounds with a relative error of at most 2**-11 (5e-4).
Its maximum of 65504 is far above encoder features (offline: image in [0, 6], unit-norm text), and a
row that overflows is skipped."""
PROGRESS_FILE = "progress.json"
FEATURE_FILES = {"image": "image_features.f16.npy", "text": "text_features.f16.npy"}
KEYS_FOLDER = "keys"
SKIPPED_FOLDER = "skipped"
KEY_SCHEMA = pa.schema(
    [("row", pa.int64()), ("shard", pa.string()), ("key", pa.string()), ("image_path", pa.string()),
     ("caption", pa.string()), ("url", pa.string())]
)
"""Columns of the key tables, and the first columns of the scores file."""
KEY_COLUMNS = tuple(KEY_SCHEMA.names)


class FeatureStore:
    """A store folder (see the module docstring) opened for reading; ``create`` opens it for writing."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        progress_path = self.folder / PROGRESS_FILE
        if not progress_path.is_file():
            raise FileNotFoundError(
                f"{progress_path} not found: {self.folder} is not a feature store. "
                "Create one with `srem encode --shards SHARDS --store FOLDER` (or extract_shard_features)."
            )
        self.progress = json.loads(progress_path.read_text())
        version = self.progress.get("format_version")
        if version != STORE_FORMAT_VERSION:
            raise ValueError(
                f"Feature store {self.folder} has format version {version}, expected {STORE_FORMAT_VERSION}. "
                "Extract the shards into a new folder."
            )
        self.dims = {"image": int(self.progress["image_dim"]), "text": int(self.progress["text_dim"])}
        self._offsets = {kind: _data_offset(self.folder / name) for kind, name in FEATURE_FILES.items()}

    @classmethod
    def create(cls, folder: str | os.PathLike, *, encoder_identity: str, image_dim: int, text_dim: int) -> "FeatureStore":
        """Open the store at ``folder`` for appending, creating it when absent.

        An existing store is truncated to its committed rows, which drops any half-written shard.

        Raises:
            ValueError: the existing store was made by another encoder or with other feature sizes.
        """
        folder = Path(folder)
        if not (folder / PROGRESS_FILE).is_file():
            _create_empty_store(folder, encoder_identity, image_dim, text_dim)
        store = cls(folder)
        expected = (encoder_identity, image_dim, text_dim)
        found = (store.encoder_identity, store.dims["image"], store.dims["text"])
        if found != expected:
            raise ValueError(
                f"Feature store {folder} contains features of (encoder, image_dim, text_dim) = {found}, "
                f"not {expected}. Use another store folder for this encoder."
            )
        store._drop_uncommitted()
        return store

    @property
    def n_rows(self) -> int:
        return int(self.progress["n_rows"])

    @property
    def encoder_identity(self) -> str:
        return self.progress["encoder_identity"]

    @property
    def completed_shards(self) -> list[dict]:
        """One record per encoded shard, in encoding order: ``path``, ``bytes``, ``fingerprint`` (absent in
        stores written before fingerprints), ``rows``, ``skipped``."""
        return list(self.progress["shards"])

    def features(self, kind: str) -> np.ndarray:
        """Return the committed ``kind`` ("image" or "text") features as a read-only float16 memory map."""
        if self.n_rows == 0:
            return np.empty((0, self.dims[kind]), dtype=FEATURE_DTYPE)
        shape = (self.n_rows, self.dims[kind])
        path = self.folder / FEATURE_FILES[kind]
        return np.memmap(path, dtype=FEATURE_DTYPE, mode="r", offset=self._offsets[kind], shape=shape)

    def read_rows(self, kind: str, start: int, stop: int) -> np.ndarray:
        """Return rows [start, stop) of ``kind`` features as a float16 array in memory.

        This uses a plain file read, not the memory map, because mapped pages count as resident memory
        of this process until the kernel evicts them: a full pass would look as if it kept every row.
        """
        stop = min(stop, self.n_rows)
        dim = self.dims[kind]
        count = max(0, stop - start) * dim
        offset = self._offsets[kind] + start * dim * FEATURE_DTYPE.itemsize
        values = np.fromfile(self.folder / FEATURE_FILES[kind], dtype=FEATURE_DTYPE, count=count, offset=offset)
        return values.reshape(-1, dim)

    def iter_keys(self) -> Iterator[pd.DataFrame]:
        """Yield the key table of each completed shard in row order (columns ``KEY_COLUMNS``)."""
        for position in range(len(self.progress["shards"])):
            yield pd.read_parquet(self.folder / KEYS_FOLDER / _chunk_name(position))

    def keys(self) -> pd.DataFrame:
        """Return the whole key table at once; ``iter_keys`` streams it for large stores."""
        frames = list(self.iter_keys())
        if not frames:
            return KEY_SCHEMA.empty_table().to_pandas()
        return pd.concat(frames, ignore_index=True)

    def skipped(self) -> list[SkippedItem]:
        """Return every sample skipped in the completed shards."""
        items = []
        for position in range(len(self.progress["shards"])):
            frame = pd.read_parquet(self.folder / SKIPPED_FOLDER / _chunk_name(position))
            items.extend(SkippedItem(**record) for record in frame.to_dict("records"))
        return items

    def append_rows(self, start: int, image_rows: np.ndarray, text_rows: np.ndarray) -> None:
        """Write feature rows from row ``start`` on, over whatever an interrupted run left there."""
        for kind, rows in (("image", image_rows), ("text", text_rows)):
            with open(self.folder / FEATURE_FILES[kind], "r+b") as handle:
                handle.seek(self._offsets[kind] + start * self.dims[kind] * FEATURE_DTYPE.itemsize)
                handle.write(np.ascontiguousarray(rows, dtype=FEATURE_DTYPE).tobytes())

    def commit_shard(self, shard: Path, keys: pd.DataFrame, skipped: list[SkippedItem]) -> None:
        """Record a shard whose rows are written: its keys, its skipped samples, the headers, then progress."""
        position = len(self.progress["shards"])
        key_table = pa.Table.from_pandas(keys, schema=KEY_SCHEMA, preserve_index=False)
        atomic.write_with(self.folder / KEYS_FOLDER / _chunk_name(position), lambda path: pq.write_table(key_table, path))
        records = [dataclasses.asdict(item) for item in skipped]
        skipped_frame = pd.DataFrame(records, columns=["source", "item_id", "reason"])
        atomic.write_parquet(self.folder / SKIPPED_FOLDER / _chunk_name(position), skipped_frame)

        n_rows = self.n_rows + len(keys)
        self._set_rows(n_rows)
        record = {"path": str(shard.resolve()), "bytes": shard.stat().st_size, "fingerprint": shard_fingerprint(shard),
                  "rows": len(keys), "skipped": len(skipped)}
        progress = {**self.progress, "n_rows": n_rows, "shards": [*self.progress["shards"], record]}
        atomic.write_json(self.folder / PROGRESS_FILE, progress)
        self.progress = progress

    def _drop_uncommitted(self) -> None:
        self._set_rows(self.n_rows)
        for folder in (KEYS_FOLDER, SKIPPED_FOLDER):
            for path in (self.folder / folder).glob("chunk-*.parquet"):
                if int(path.stem.split("-")[1]) >= len(self.progress["shards"]):
                    path.unlink()

    def _set_rows(self, n_rows: int) -> None:
        """Cut both feature files to ``n_rows`` rows, write that count in their headers and sync them."""
        for kind, name in FEATURE_FILES.items():
            with open(self.folder / name, "r+b") as handle:
                handle.truncate(self._offsets[kind] + n_rows * self.dims[kind] * FEATURE_DTYPE.itemsize)
                _write_header(handle, n_rows, self.dims[kind])
                if handle.tell() != self._offsets[kind]:
                    raise RuntimeError(
                        f"The .npy header of {handle.name} changed size, so this numpy version cannot grow "
                        "the file in place. Install the numpy version of pyproject.toml."
                    )
                handle.flush()
                os.fsync(handle.fileno())


FINGERPRINT_BYTES = 1 << 16


def shard_fingerprint(path: Path) -> str:
    """Return a SHA-256 hex digest of a shard's size, first 64 KiB and last 64 KiB.

    Tar files are padded to 10,240-byte blocks, so two different shards often have the same size. Their
    first member headers and contents differ, so their fingerprints differ too, and no whole shard of
    hundreds of megabytes has to be read.
    """
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(FINGERPRINT_BYTES))
        handle.seek(max(0, size - FINGERPRINT_BYTES))
        digest.update(handle.read(FINGERPRINT_BYTES))
    return digest.hexdigest()


def _create_empty_store(folder: Path, encoder_identity: str, image_dim: int, text_dim: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for kind, dim in (("image", image_dim), ("text", text_dim)):
        with open(folder / FEATURE_FILES[kind], "wb") as handle:
            _write_header(handle, 0, dim)
    progress = {
        "format_version": STORE_FORMAT_VERSION, "encoder_identity": encoder_identity,
        "image_dim": image_dim, "text_dim": text_dim, "n_rows": 0, "shards": [],
    }
    atomic.write_json(folder / PROGRESS_FILE, progress)


def _write_header(handle, n_rows: int, dim: int) -> None:
    # numpy (1.23 and later) pads the header so that the first axis can grow to 21 digits in place.
    handle.seek(0)
    header = {"descr": np.lib.format.dtype_to_descr(FEATURE_DTYPE), "fortran_order": False, "shape": (n_rows, dim)}
    np.lib.format.write_array_header_1_0(handle, header)


def _data_offset(path: Path) -> int:
    with open(path, "rb") as handle:
        np.lib.format.read_magic(handle)
        np.lib.format.read_array_header_1_0(handle)
        return handle.tell()


def _chunk_name(position: int) -> str:
    return f"chunk-{position:05d}.parquet"
