"""Atomic file writes: a temporary file in the target's folder, then ``os.replace``.

A reader sees either the old complete file or the new complete file, never a partial one, as long as
the folder is on one file system (``os.replace`` is atomic there on POSIX and Windows).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success move it over ``target``, else delete it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temporary = Path(temporary)
    # mkstemp creates the file readable by its owner only; give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_with(target: str | os.PathLike, writer: Callable[[Path], Any]) -> None:
    """Call ``writer(temporary_path)`` and move the result over ``target`` atomically."""
    with atomic_path(target) as temporary:
        writer(temporary)


def write_json(target: str | os.PathLike, value: Any) -> None:
    write_with(target, lambda path: path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n"))


def write_text(target: str | os.PathLike, text: str) -> None:
    write_with(target, lambda path: path.write_text(text))


def write_parquet(target: str | os.PathLike, frame: pd.DataFrame) -> None:
    write_with(target, lambda path: frame.to_parquet(path, index=False))


def write_npy(target: str | os.PathLike, array: np.ndarray) -> None:
    def save(path: Path) -> None:
        with open(path, "wb") as handle:
            np.save(handle, array)

    write_with(target, save)


def append_json_line(target: str | os.PathLike, value: dict) -> None:
    """Append one JSON object as a line by rewriting the file atomically (metrics files are small)."""
    target = Path(target)
    previous = target.read_text() if target.exists() else ""
    write_text(target, previous + json.dumps(value, sort_keys=True) + "\n")
