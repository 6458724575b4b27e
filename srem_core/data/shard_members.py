"""Random access to single members of WebDataset shards, and image decoding from bytes.

A pair read from shards refers to its image as ``<shard>.tar#<member>``. ``read_member_bytes`` finds the
member through an index of the shard's member offsets, cached per shard, so the app and the encoders
can open one image without scanning the tar again.
"""

from __future__ import annotations

import functools
import io
import os
import tarfile
from pathlib import Path

from PIL import Image

# The byte decoder shares the pixel-limit check and RGB conversion of load_image, which only opens files.
from srem_core.data.images import DEFAULT_MAX_PIXELS, MAX_FILE_BYTES, ImageLoadError
from srem_core.data.images import _check_pixel_count, _to_rgb
from srem_core.data.shard_specs import SHARD_SUFFIX

REFERENCE_SEPARATOR = "#"
"""Joins a shard path and a member name in an image reference: ``shards/00000.tar#000000001.jpg``."""
MEMBER_INDEX_CACHE_SHARDS = 64
"""Shards whose member offsets ``read_member_bytes`` keeps, so random access scans each header once."""


def decode_image_bytes(
    data: bytes, source: str, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES
) -> Image.Image:
    """Decode image bytes into an RGB image with the checks of ``load_image``.

    The pixel count is checked against ``max_pixels`` from the header, before decoding.

    Raises:
        ImageLoadError: empty, over ``max_bytes``, not an image, corrupt, truncated or over
            ``max_pixels``. ``source`` names the image in the message.
    """
    if not data:
        raise ImageLoadError(source, "the image is empty (0 bytes). Remove the sample or download it again.")
    if len(data) > max_bytes:
        raise ImageLoadError(
            source, f"the image has {len(data)} bytes, more than the limit of {max_bytes} bytes. Check "
            "that it is an image, or pass a larger max_bytes."
        )
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_pixel_count(Path(source), image.size, max_pixels)
            image.load()
            return _to_rgb(image)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as error:
        reason = f"PIL rejected the image as a possible decompression bomb ({error})."
        raise ImageLoadError(source, reason) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(source, _bytes_failure_reason(error)) from error


def _bytes_failure_reason(error: Exception) -> str:
    if isinstance(error, Image.UnidentifiedImageError):
        return "the bytes are not an image that PIL can read. Check the member, or remove the sample."
    return (
        f"the image is corrupt or truncated ({type(error).__name__}: {error}). Download the image again, "
        "or remove the sample."
    )


def split_reference(reference: str | os.PathLike) -> tuple[Path, str] | None:
    """Split ``<shard>.tar#<member>`` into (shard path, member name); None for any other path."""
    marker = SHARD_SUFFIX + REFERENCE_SEPARATOR
    text = str(reference)
    position = text.find(marker)
    if position < 0:
        return None
    return Path(text[: position + len(SHARD_SUFFIX)]), text[position + len(marker) :]


def read_member_bytes(reference: str | os.PathLike) -> bytes:
    """Return the bytes of the tar member that a ``<shard>.tar#<member>`` reference names.

    Raises:
        ValueError: ``reference`` has no ``.tar#`` part.
        FileNotFoundError: the shard does not exist, or has no such member.
    """
    parts = split_reference(reference)
    if parts is None:
        raise ValueError(f"{reference} is not a shard reference of the form <shard>.tar#<member>.")
    shard, member = parts
    if not shard.is_file():
        raise FileNotFoundError(
            f"Shard {shard} of reference {reference} not found. Check the dataset folder."
        )
    status = shard.stat()
    offsets = _member_offsets(str(shard.resolve()), status.st_size, status.st_mtime_ns)
    if member not in offsets:
        raise FileNotFoundError(
            f"Shard {shard} has no member {member!r}. Read the shards again to rebuild the references."
        )
    offset, size = offsets[member]
    with open(shard, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


def load_member_image(
    reference: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES
) -> Image.Image:
    """Read and decode the image that a ``<shard>.tar#<member>`` reference names (see ``load_image``).

    Raises:
        ImageLoadError: the shard or member is missing, or the image is bad (see ``decode_image_bytes``).
    """
    try:
        data = read_member_bytes(reference)
    except (OSError, ValueError) as error:
        raise ImageLoadError(reference, str(error)) from error
    return decode_image_bytes(data, str(reference), max_pixels, max_bytes)


@functools.lru_cache(maxsize=MEMBER_INDEX_CACHE_SHARDS)
def _member_offsets(shard: str, size: int, mtime_ns: int) -> dict[str, tuple[int, int]]:
    """Return {member name: (data offset, size)} of a shard; size and mtime key the cache."""
    offsets = {}
    with tarfile.open(shard, mode="r:") as tar:
        while (member := tar.next()) is not None:
            tar.members = []
            if member.isfile():
                offsets[member.name] = (member.offset_data, member.size)
    return offsets
