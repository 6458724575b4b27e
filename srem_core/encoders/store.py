"""An on-disk store of feature vectors keyed by content hash, one folder per encoder identity.

Layout under ``cache_dir``::

    <identity slug>-<12 hex digits of sha256(identity)>/
        identity.json                   the full identity string and the format version
        image/chunk-<id>.npy            float32 (rows, dim)
        image/chunk-<id>.keys.txt       one content hash per row, in row order
        text/...                        the same for captions

Chunks are only ever added, never edited. A chunk's ``.npy`` is renamed into place before its
``.keys.txt``, and readers only use chunks whose keys file exists, so a crash or a second process never
exposes half-written rows. Two runs that encode the same new item both write it; either copy is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)

STORE_FORMAT_VERSION = 1
"""Layout version, bumped when the layout changes. Opening a folder of another version raises ValueError."""

KINDS = ("image", "text")
"""Feature kinds kept apart in the store, so an image and a caption never share a key space."""

SLUG_MAX_CHARS = 80
"""Maximum length of the readable identity prefix in a folder name. The hash suffix keeps names unique."""

IDENTITY_HASH_CHARS = 12
"""Hex digits of sha256(identity) in the folder name: 48 bits, so two identities never collide in practice."""

KEYS_SUFFIX = ".keys.txt"


class FeatureStore:
    """Feature vectors of one encoder, looked up and added by content hash (hex SHA-256)."""

    def __init__(self, cache_dir: str | os.PathLike, identity: str):
        self.identity = identity
        self.root = Path(cache_dir) / folder_name(identity)
        self.root.mkdir(parents=True, exist_ok=True)
        self._check_or_write_identity()

    def load(self, kind: str, keys: Sequence[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Return features (len(keys), dim) float32, NaN where missing, and a found mask (len(keys),)."""
        features = np.full((len(keys), dim), np.nan, dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        wanted: dict[str, list[int]] = {}
        for position, key in enumerate(keys):
            wanted.setdefault(key, []).append(position)
        for chunk, chunk_keys in self._chunks(kind):
            source_rows: list[int] = []
            targets: list[int] = []
            for row, key in enumerate(chunk_keys):
                for position in wanted.get(key, ()):
                    source_rows.append(row)
                    targets.append(position)
            if not targets:
                continue
            values = _read_chunk(chunk, len(chunk_keys), dim)
            if values is None:
                continue
            features[targets] = values[source_rows]
            found[targets] = True
        return features, found

    def save(self, kind: str, keys: Sequence[str], features: np.ndarray) -> None:
        """Add one chunk of features (len(keys), dim) with an atomic write."""
        if len(keys) != len(features):
            raise ValueError(f"got {len(keys)} keys for {len(features)} feature rows")
        if not keys:
            return
        folder = self._kind_folder(kind)
        folder.mkdir(exist_ok=True)
        chunk_id = hashlib.sha256("\n".join(keys).encode("ascii")).hexdigest()[:16]
        stem = folder / f"chunk-{chunk_id}"
        _write_atomic(stem.with_suffix(".npy"), lambda handle: np.save(handle, _as_float32(features)))
        text = "".join(f"{key}\n" for key in keys).encode("ascii")
        _write_atomic(Path(f"{stem}{KEYS_SUFFIX}"), lambda handle: handle.write(text))

    def _chunks(self, kind: str):
        """Yield (path of the .npy file, list of keys) for every complete chunk of ``kind``."""
        folder = self._kind_folder(kind)
        if not folder.is_dir():
            return
        for keys_file in sorted(folder.glob(f"chunk-*{KEYS_SUFFIX}")):
            chunk = Path(str(keys_file)[: -len(KEYS_SUFFIX)] + ".npy")
            yield chunk, keys_file.read_text(encoding="ascii").split()

    def _kind_folder(self, kind: str) -> Path:
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}")
        return self.root / kind

    def _check_or_write_identity(self) -> None:
        meta_path = self.root / "identity.json"
        expected = {"identity": self.identity, "format_version": STORE_FORMAT_VERSION}
        if meta_path.exists():
            found = json.loads(meta_path.read_text(encoding="utf-8"))
            if found != expected:
                raise ValueError(
                    f"Feature cache folder {self.root} belongs to {found}, not {expected}. "
                    "Delete the folder or use another cache_dir."
                )
            return
        payload = json.dumps(expected, indent=2).encode("utf-8")
        _write_atomic(meta_path, lambda handle: handle.write(payload))


def folder_name(identity: str) -> str:
    """Return a file-system-safe folder name for an encoder identity."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", identity)[:SLUG_MAX_CHARS]
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:IDENTITY_HASH_CHARS]
    return f"{slug}-{digest}"


def _read_chunk(chunk: Path, n_rows: int, dim: int) -> np.ndarray | None:
    """Memory-map one chunk, or log and return None when it is unreadable or has the wrong shape."""
    try:
        values = np.load(chunk, mmap_mode="r")
    except (OSError, ValueError) as error:
        logger.warning("Ignoring unreadable feature cache chunk %s: %s", chunk, error)
        return None
    if values.shape != (n_rows, dim) or values.dtype != np.float32:
        logger.warning(
            "Ignoring feature cache chunk %s: shape %s %s, expected (%d, %d) float32",
            chunk, values.shape, values.dtype, n_rows, dim,
        )
        return None
    return values


def _write_atomic(path: Path, write) -> None:
    """Write a file under a temporary name in the same folder, flush it to disk, then rename it."""
    temporary = path.with_name(f"tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _as_float32(features: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(features, dtype=np.float32)
