"""Open one image file as an RGB PIL image, with a clear error for every way the file can be bad."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PIL import Image

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest width * height decoded by default: 50 megapixels is above any camera photo in caption data
sets, and one decoded RGB copy of it already takes 150 MB."""

MAX_FILE_BYTES = 100 * 1024 * 1024
"""Largest image file read by default (100 MiB): web images in caption data sets are far smaller, so a
larger file is almost always a mistake (a video, an archive or a raw scan)."""

WHITE = (255, 255, 255)
"""Background that transparent pixels are composited on, so they do not turn black on RGB conversion."""

ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
"""PIL modes that carry an alpha channel."""


class ImageLoadError(ValueError):
    """An image file that cannot be used: missing, empty, oversized, not an image, corrupt or truncated.

    ``path`` is the file and ``reason`` a sentence saying what is wrong and what to do.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"Cannot load image {self.path}: {reason}")


def load_image(
    path: str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = MAX_FILE_BYTES,
) -> Image.Image:
    """Read and fully decode an image file and return it as an RGB image.

    Transparent images are composited on white. The size in pixels is read from the header and checked
    against ``max_pixels`` before any pixel is decoded, which stops decompression bombs. The whole file
    is decoded here (``Image.load``), so a truncated file fails now and not later inside an encoder.
    An animated image gives its first frame.

    Raises:
        ImageLoadError: the file is missing, empty, larger than ``max_bytes``, not an image, corrupt,
            truncated, or larger than ``max_pixels``. The message names the file and the fix.
    """
    from srem_core.data import shard_members

    if shard_members.split_reference(path) is not None:
        return shard_members.load_member_image(path, max_pixels, max_bytes)
    path = Path(path)
    _check_file(path, max_bytes)
    try:
        with Image.open(path) as image:
            _check_pixel_count(path, image.size, max_pixels)
            image.load()
            return _to_rgb(image)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as error:
        # PIL's own limit (twice Image.MAX_IMAGE_PIXELS) fires inside Image.open, before our check.
        reason = (
            f"PIL rejected the image as a possible decompression bomb ({error}) Downscale the image; "
            "for a trusted file, raise PIL.Image.MAX_IMAGE_PIXELS as well as max_pixels."
        )
        raise ImageLoadError(path, reason) from error
    except OSError as error:
        raise ImageLoadError(path, _decode_failure_reason(error)) from error
    except (SyntaxError, ValueError) as error:
        # Some PIL plugins raise these for malformed headers instead of OSError.
        raise ImageLoadError(path, _decode_failure_reason(error)) from error


def _check_file(path: Path, max_bytes: int) -> None:
    """Raise ImageLoadError unless ``path`` is a readable, non-empty file of at most ``max_bytes``."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageLoadError(
            path, "file not found. Check the image path in the manifest, or remove the row."
        ) from None
    except OSError as error:
        raise ImageLoadError(
            path, f"cannot read the file ({error.strerror}). Check the path and its permissions."
        ) from error
    if path.is_dir():
        raise ImageLoadError(path, "the path is a folder, not an image file. Point the row at the file.")
    if size == 0:
        raise ImageLoadError(
            path, "the file is empty (0 bytes). Download or export the image again, or remove the row."
        )
    if size > max_bytes:
        raise ImageLoadError(
            path,
            f"the file has {size} bytes, more than the limit of {max_bytes} bytes. Check that it is "
            "an image, or pass a larger max_bytes.",
        )


def _check_pixel_count(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        reason = (
            f"the image is {width}x{height} = {width * height} pixels, more than the limit of "
            f"{max_pixels} pixels (a possible decompression bomb). Downscale the image, or pass a "
            "larger max_pixels if the file is trusted."
        )
        raise ImageLoadError(path, reason)


def _decode_failure_reason(error: Exception) -> str:
    if "truncated" in str(error).lower():
        return (
            f"the file is truncated ({error}). Download or export the image again, or remove the row."
        )
    return (
        f"the file is not a readable image: it is corrupt, truncated or in an unsupported format "
        f"({type(error).__name__}: {error}). Open it in an image viewer to check, then re-export it "
        "as JPEG, PNG or WebP, or remove the row."
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    """Return an RGB copy of ``image``; transparent pixels are composited on white."""
    has_alpha = image.mode in ALPHA_MODES or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, WHITE)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background
