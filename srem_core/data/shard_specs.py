"""Shard lists of WebDataset sets: a folder, a list of paths, or a glob or brace pattern.

Brace groups follow the usual shell and WebDataset forms: ``{a,b}`` lists and ``{00000..00099}``
ranges. A range keeps the width of its first number when that number starts with 0.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from pathlib import Path
from typing import Sequence

from srem_core.data.pairs import SkippedItem

logger = logging.getLogger(__name__)

SHARD_SUFFIX = ".tar"

_BRACE = re.compile(r"\{([^{}]*)\}")
_NUMBER_RANGE = re.compile(r"^(\d+)\.\.(\d+)$")
_DIGITS = re.compile(r"(\d+)")


def is_webdataset_spec(spec: str | os.PathLike) -> bool:
    """Return True for a ``.tar`` file, a folder that contains ``.tar`` files, or a ``*.tar`` pattern."""
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        return any(child.suffix == SHARD_SUFFIX and child.is_file() for child in path.iterdir())
    return text.endswith(SHARD_SUFFIX)


def expand_shards(
    spec: str | os.PathLike | Sequence[str | os.PathLike], missing: list[SkippedItem] | None = None
) -> list[Path]:
    """Return the shard files of ``spec`` in natural order (``2.tar`` before ``10.tar``).

    ``spec`` is a folder (its ``*.tar`` files), a list of paths, or a pattern with glob wildcards and
    brace groups: ``{a,b}`` lists and ``{00000..00099}`` ranges, which keep the width of the first
    number when it starts with 0. A shard named without wildcards (in a list or a brace group) must
    exist. When ``missing`` is given, a shard that does not exist is appended there as a skipped item
    and left out, so the other shards can still be read.

    Raises:
        FileNotFoundError: nothing matches, or a named shard does not exist and ``missing`` is None.
    """
    named: list[Path] = []
    # A list of thousands of paths would flood every message, so messages name a list only as such.
    described = str(spec) if isinstance(spec, (str, os.PathLike)) else "the list of shards"
    if not isinstance(spec, (str, os.PathLike)):
        named = [Path(item) for item in spec]
        shards = list(named)
    elif Path(spec).is_dir():
        shards = [path for path in Path(spec).glob(f"*{SHARD_SUFFIX}") if path.is_file()]
    else:
        shards = []
        for pattern in _expand_braces(str(spec)):
            shards.extend(Path(path) for path in sorted(glob.glob(pattern)))
            if not glob.has_magic(pattern):
                named.append(Path(pattern))
    absent = [path for path in dict.fromkeys(named) if not path.is_file()]
    if absent and missing is None:
        shown = ", ".join(map(str, absent[:5]))
        raise FileNotFoundError(f"Shards not found: {shown}. Check the paths, or the pattern {described}.")
    for path in absent:
        reason = f"shard not found, so its samples are missing. Check the path or the pattern {described}, then run again to add it."
        missing.append(SkippedItem(source=str(path), item_id="", reason=reason))
        logger.warning("Shard %s not found; it is skipped", path)
    shards = [path for path in shards if path.is_file()]
    if not shards:
        raise FileNotFoundError(f"No {SHARD_SUFFIX} shards match {described}. Check the folder or the pattern.")
    return sorted(dict.fromkeys(shards), key=_natural_key)


def _expand_braces(pattern: str) -> list[str]:
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    expanded = []
    for item in _brace_items(match.group(1)):
        expanded.extend(_expand_braces(head + item + tail))
    return expanded


def _brace_items(body: str) -> list[str]:
    number_range = _NUMBER_RANGE.match(body)
    if number_range is None:
        return body.split(",")
    first, last = number_range.groups()
    width = len(first) if first.startswith("0") else 0
    step = 1 if int(last) >= int(first) else -1
    return [str(number).zfill(width) for number in range(int(first), int(last) + step, step)]


def _natural_key(path: Path) -> tuple:
    parts = _DIGITS.split(str(path))
    return tuple((0, int(part), part) if part.isdigit() else (1, 0, part) for part in parts), str(path)
