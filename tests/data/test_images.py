"""Tests for srem_core.data.images.load_image: good images, alpha compositing and every bad-file error."""

from __future__ import annotations

import io
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from srem_core.data.images import DEFAULT_MAX_PIXELS, ImageLoadError, load_image


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _png_with_header_size(width: int, height: int) -> bytes:
    """Return a 1x1 PNG whose header claims width x height, with a valid header checksum."""
    data = _png_bytes(Image.new("L", (1, 1)))
    # Bytes 8..16 are the IHDR chunk's length and type; width and height follow as big-endian ints.
    header = bytearray(data[16:29])
    header[0:8] = struct.pack(">II", width, height)
    checksum = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(header)) & 0xFFFFFFFF)
    return data[:16] + bytes(header) + checksum + data[33:]


def _expected(path, reason: str) -> str:
    return f"Cannot load image {path}: {reason}"


def test_load_image_rgb_png(tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (7, 5), (200, 10, 10)).save(path)

    image = load_image(path)

    assert image.mode == "RGB"
    assert image.size == (7, 5)
    assert image.getpixel((3, 2)) == (200, 10, 10)


def test_load_image_grayscale_becomes_rgb(tmp_path):
    path = tmp_path / "gray.png"
    Image.new("L", (4, 4), 90).save(path)

    image = load_image(path)

    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (90, 90, 90)


def test_load_image_alpha_composited_on_white(tmp_path):
    path = tmp_path / "alpha.png"
    pixels = np.zeros((2, 2, 4), dtype=np.uint8)
    pixels[0, 0] = (0, 0, 0, 0)  # fully transparent black -> white
    pixels[0, 1] = (0, 0, 0, 255)  # opaque black stays black
    pixels[1, 0] = (0, 0, 255, 128)  # half-transparent blue -> light blue
    pixels[1, 1] = (10, 20, 30, 255)
    Image.fromarray(pixels, mode="RGBA").save(path)

    image = load_image(path)

    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((1, 0)) == (0, 0, 0)
    red, green, blue = image.getpixel((0, 1))
    assert blue == 255
    assert red == green
    assert 120 <= red <= 135
    assert image.getpixel((1, 1)) == (10, 20, 30)


def test_load_image_palette_transparency_on_white(tmp_path):
    path = tmp_path / "palette.png"
    image = Image.new("P", (2, 1), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 0
    image.save(path, transparency=0)

    loaded = load_image(path)

    assert loaded.getpixel((0, 0)) == (255, 255, 255)
    assert loaded.getpixel((1, 0)) == (255, 0, 0)


def test_load_image_webp(tmp_path):
    path = tmp_path / "photo.webp"
    Image.new("RGB", (16, 16), (0, 128, 0)).save(path, lossless=True)

    image = load_image(path)

    assert image.mode == "RGB"
    assert image.getpixel((8, 8)) == (0, 128, 0)


def test_load_image_missing_file(tmp_path):
    path = tmp_path / "nope.jpg"
    reason = "file not found. Check the image path in the manifest, or remove the row."

    with pytest.raises(ImageLoadError, match=re.escape(_expected(path, reason))) as caught:
        load_image(path)

    assert caught.value.path == path
    assert caught.value.reason == reason


def test_image_load_error_is_value_error():
    assert issubclass(ImageLoadError, ValueError)


def test_load_image_zero_bytes(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    reason = "the file is empty (0 bytes). Download or export the image again, or remove the row."

    with pytest.raises(ImageLoadError, match=re.escape(_expected(path, reason))):
        load_image(path)


def test_load_image_folder(tmp_path):
    reason = "the path is a folder, not an image file. Point the row at the file."

    with pytest.raises(ImageLoadError, match=re.escape(_expected(tmp_path, reason))):
        load_image(tmp_path)


def test_load_image_file_too_large(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(_png_bytes(Image.new("RGB", (8, 8))))
    size = path.stat().st_size
    reason = (
        f"the file has {size} bytes, more than the limit of 10 bytes. Check that it is an image, "
        "or pass a larger max_bytes."
    )

    with pytest.raises(ImageLoadError, match=re.escape(_expected(path, reason))):
        load_image(path, max_bytes=10)


def test_load_image_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is text, not a JPEG")
    reason = (
        "the file is not a readable image: it is corrupt, truncated or in an unsupported format "
        f"(UnidentifiedImageError: cannot identify image file {str(path)!r}). Open it in an image "
        "viewer to check, then re-export it as JPEG, PNG or WebP, or remove the row."
    )

    with pytest.raises(ImageLoadError) as caught:
        load_image(path)

    assert str(caught.value) == _expected(path, reason)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_load_image_truncated(tmp_path, image_format):
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, format=image_format)
    path = tmp_path / f"cut.{image_format.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])

    with pytest.raises(ImageLoadError) as caught:
        load_image(path)

    message = str(caught.value)
    assert message.startswith(_expected(path, "the file is truncated (image file is truncated"))
    assert message.endswith("). Download or export the image again, or remove the row.")


def test_load_image_truncated_webp(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, format="WEBP")
    path = tmp_path / "cut.webp"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])

    with pytest.raises(ImageLoadError) as caught:
        load_image(path)

    assert str(caught.value).startswith(_expected(path, "the file is not a readable image"))


def test_truncated_image_setting_left_alone(tmp_path):
    from PIL import ImageFile

    before = ImageFile.LOAD_TRUNCATED_IMAGES
    path = tmp_path / "cut.png"
    path.write_bytes(_png_bytes(Image.new("RGB", (64, 64)))[:-20])

    with pytest.raises(ImageLoadError):
        load_image(path)

    assert ImageFile.LOAD_TRUNCATED_IMAGES is before


def test_load_image_oversized_checked_before_decoding(tmp_path):
    # The file contains one pixel of data: decoding it would fail as truncated, so the oversize error
    # proves that the header size is checked first.
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_header_size(8000, 8000))
    reason = (
        f"the image is 8000x8000 = 64000000 pixels, more than the limit of {DEFAULT_MAX_PIXELS} "
        "pixels (a possible decompression bomb). Downscale the image, or pass a larger max_pixels if "
        "the file is trusted."
    )

    with pytest.raises(ImageLoadError, match=re.escape(_expected(path, reason))):
        load_image(path)


def test_load_image_max_pixels_option(tmp_path):
    path = tmp_path / "small.png"
    Image.new("RGB", (30, 20)).save(path)
    reason = (
        "the image is 30x20 = 600 pixels, more than the limit of 599 pixels (a possible "
        "decompression bomb). Downscale the image, or pass a larger max_pixels if the file is "
        "trusted."
    )

    with pytest.raises(ImageLoadError, match=re.escape(_expected(path, reason))):
        load_image(path, max_pixels=599)
    assert load_image(path, max_pixels=600).size == (30, 20)


def test_load_image_pil_bomb_limit(tmp_path):
    # 30000 x 30000 is above twice PIL's MAX_IMAGE_PIXELS, so PIL itself raises inside Image.open.
    path = tmp_path / "huge.png"
    path.write_bytes(_png_with_header_size(30000, 30000))
    limit = 2 * Image.MAX_IMAGE_PIXELS
    reason = (
        "PIL rejected the image as a possible decompression bomb (Image size (900000000 pixels) "
        f"exceeds limit of {limit} pixels, could be decompression bomb DOS attack.) Downscale the "
        "image; for a trusted file, raise PIL.Image.MAX_IMAGE_PIXELS as well as max_pixels."
    )

    with pytest.raises(ImageLoadError) as caught:
        load_image(path, max_pixels=10**10)

    assert str(caught.value) == _expected(path, reason)
