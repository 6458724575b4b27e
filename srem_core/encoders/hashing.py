"""SHA-256 content hashes that key cached features and name encoder weights."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

READ_BLOCK_BYTES = 1 << 20
"""Bytes read per step while hashing a file: large enough to be fast, small enough to bound memory."""

WEIGHTS_HASH_MEMO_SIZE = 64
"""Weight files whose hash is kept per process. A session uses a handful of models at most."""


def file_sha256(path: str | os.PathLike) -> str:
    """Return the hex SHA-256 of a file's bytes, read now (no memo).

    Raises:
        OSError: the file is missing or unreadable.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(READ_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    """Return the hex SHA-256 of a string's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def weights_sha256(path: str | os.PathLike) -> str:
    """Return the hex SHA-256 of a weights file, memoised per (path, size, modification time).

    Weight files are large (tens to hundreds of MB) and rarely change, so the hash is computed once per
    process. A file rewritten with the same size and modification time keeps its old hash.
    """
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _memoised_sha256(str(resolved), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=WEIGHTS_HASH_MEMO_SIZE)
def _memoised_sha256(path: str, size: int, mtime_ns: int) -> str:
    # size and mtime_ns are part of the memo key only, so that an edited file is hashed again.
    del size, mtime_ns
    return file_sha256(path)
