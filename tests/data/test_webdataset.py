"""Tests for srem_core.data.webdataset: key grouping, bad samples, damaged shards, shard lists, index."""

from __future__ import annotations

import io
import json
import logging
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from srem_core.data import load_dataset
from srem_core.data.images import ImageLoadError
from srem_core.data.shard_members import decode_image_bytes, load_member_image, read_member_bytes
from srem_core.data.shard_specs import expand_shards, is_webdataset_spec
from srem_core.data.webdataset import (
    MAX_LOGGED_SKIPS_PER_SHARD,
    iter_shard,
    iter_webdataset,
    read_webdataset_index,
    split_member_name,
)


def image_bytes(color=(200, 10, 10), size=(8, 6), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """Return a 1x1 PNG whose header claims width x height, with a valid header checksum."""
    data = image_bytes(size=(1, 1))
    header = bytearray(data[16:29])  # IHDR payload: width, height (big-endian), depth, colour type...
    header[0:8] = struct.pack(">II", width, height)
    checksum = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(header)) & 0xFFFFFFFF)
    return data[:16] + bytes(header) + checksum + data[33:]


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def pair(key: str, caption: str = "a red box", color=(200, 10, 10)) -> list[tuple[str, bytes]]:
    return [(f"{key}.jpg", image_bytes(color, fmt="JPEG")), (f"{key}.txt", caption.encode())]


def read_all(shard) -> tuple[list, list]:
    skipped = []
    samples = list(iter_shard(shard, skipped))
    return samples, skipped


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("000000001.jpg", ("000000001", "jpg")),
        ("a.b.jpg", ("a", "b.jpg")),
        ("photo.SEG.PNG", ("photo", "seg.png")),
        ("dir.v2/k.txt", ("dir.v2/k", "txt")),
        ("./k.png", ("k", "png")),
        ("noextension", ("noextension", "")),
    ],
)
def test_split_member_name_first_dot_rule(name, expected):
    assert split_member_name(name) == expected


def test_iter_shard_groups_members_by_key(tmp_path):
    metadata = json.dumps({"url": "https://example.org/1.jpg", "status": "success"}).encode()
    members = pair("0001", " a red box \n") + [("0001.json", metadata)]
    members += [("0002.png", image_bytes((0, 0, 255))), ("0002.txt", b"a blue box")]
    shard = write_shard(tmp_path / "00000.tar", members)

    samples, skipped = read_all(shard)

    assert skipped == []
    assert [sample.key for sample in samples] == ["0001", "0002"]
    assert [sample.caption for sample in samples] == ["a red box", "a blue box"]
    assert [sample.url for sample in samples] == ["https://example.org/1.jpg", None]
    assert [sample.image_extension for sample in samples] == ["jpg", "png"]
    assert samples[1].image.getpixel((0, 0)) == (0, 0, 255)
    assert samples[1].reference == f"{shard}#0002.png"
    assert samples[1].image_bytes == members[3][1]


def test_iter_shard_ignores_metadata_and_folders(tmp_path):
    shard = tmp_path / "00000.tar"
    with tarfile.open(shard, "w") as tar:
        tar.addfile(tarfile.TarInfo("__index__"), io.BytesIO(b""))
        folder = tarfile.TarInfo("images")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    with tarfile.open(shard, "a") as tar:
        for name, data in pair("images/0001"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    samples, skipped = read_all(shard)

    assert [sample.key for sample in samples] == ["images/0001"]
    assert skipped == []


BAD_SAMPLES = [
    ("no-caption", [("k.jpg", image_bytes(fmt="JPEG"))], "the sample has no caption"),
    ("no-image", [("k.txt", b"a cat")], "the sample has no image"),
    ("bad-utf8", [("k.jpg", image_bytes(fmt="JPEG")), ("k.txt", b"\xff\xfe caption")], "not valid UTF-8"),
    ("blank-caption", [("k.jpg", image_bytes(fmt="JPEG")), ("k.txt", b" \n\t")], "the caption is empty"),
    ("corrupt-image", [("k.jpg", b"not an image"), ("k.txt", b"a cat")], "not an image that PIL can read"),
    ("cut-image", [("k.png", image_bytes(size=(64, 64))[:60]), ("k.txt", b"a cat")], "corrupt or truncated"),
    ("bomb", [("k.png", png_claiming_size(30_000, 30_000)), ("k.txt", b"a cat")], "decompression bomb"),
    ("two-images", [("k.jpg", image_bytes(fmt="JPEG")), ("k.png", image_bytes()), ("k.txt", b"a")], "2 images"),
    ("same-extension", [("k.txt", b"a"), ("k.txt", b"b"), ("k.jpg", image_bytes(fmt="JPEG"))], "two members with extension txt"),
    ("dotted-key", [("k.v2.jpg", image_bytes(fmt="JPEG")), ("k.v2.txt", b"a cat")], "so that the key has no dot"),
]


@pytest.mark.parametrize(("case", "members", "reason"), BAD_SAMPLES, ids=[case[0] for case in BAD_SAMPLES])
def test_iter_shard_reports_bad_sample(tmp_path, case, members, reason):
    shard = write_shard(tmp_path / "00003.tar", pair("before") + members + pair("after"))

    samples, skipped = read_all(shard)

    assert [sample.key for sample in samples] == ["before", "after"]
    assert len(skipped) == 1
    assert skipped[0].source == str(shard)
    assert skipped[0].item_id == "k"
    assert reason in skipped[0].reason


def test_iter_shard_rejects_repeated_key(tmp_path):
    members = pair("0001") + pair("0002") + [("0001.json", b"{}")]
    shard = write_shard(tmp_path / "00000.tar", members)

    samples, skipped = read_all(shard)

    assert [sample.key for sample in samples] == ["0001", "0002"]
    assert [item.item_id for item in skipped] == ["0001"]
    assert "occurs again after other keys" in skipped[0].reason


def test_iter_shard_pixel_limit(tmp_path):
    shard = write_shard(tmp_path / "00000.tar", pair("small") + [("big.png", image_bytes(size=(20, 20))), ("big.txt", b"a")])
    skipped = []

    samples = list(iter_shard(shard, skipped, max_pixels=100))

    assert [sample.key for sample in samples] == ["small"]
    assert skipped[0].item_id == "big"
    assert "20x20 = 400 pixels, more than the limit of 100 pixels" in skipped[0].reason


def test_iter_shard_without_decoding(tmp_path):
    shard = write_shard(tmp_path / "00000.tar", [("k.jpg", b"not an image"), ("k.txt", b"a cat")])
    skipped = []

    samples = list(iter_shard(shard, skipped, decode_images=False))

    assert [sample.key for sample in samples] == ["k"]
    assert samples[0].image is None
    assert skipped == []


def test_iter_shard_limits_warnings(tmp_path, caplog):
    members = [member for index in range(MAX_LOGGED_SKIPS_PER_SHARD + 5) for member in [(f"{index:04d}.txt", b"")]]
    shard = write_shard(tmp_path / "00000.tar", members)

    with caplog.at_level(logging.WARNING, logger="srem_core.data.webdataset"):
        _, skipped = read_all(shard)

    assert len(skipped) == MAX_LOGGED_SKIPS_PER_SHARD + 5
    assert len(caplog.records) == MAX_LOGGED_SKIPS_PER_SHARD + 1
    assert "Skipped 5 more samples" in caplog.records[-1].getMessage()


def full_shard_bytes(tmp_path: Path) -> bytes:
    """Return a shard of three pairs whose members each take 1,024 bytes of data or less."""
    members = pair("0001") + pair("0002", color=(0, 200, 0)) + pair("0003", color=(0, 0, 200))
    return write_shard(tmp_path / "full.tar", members).read_bytes()


def member_end(data: bytes, name: str) -> int:
    """Return the offset just past the data blocks of member ``name`` in tar bytes."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmember(name)
        return member.offset_data + -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def damaged_shards(data: bytes) -> dict[str, bytes]:
    end_of_0002 = member_end(data, "0002.txt")
    garbled = bytearray(data)
    garbled[end_of_0002 : end_of_0002 + tarfile.BLOCKSIZE] = b"x" * tarfile.BLOCKSIZE
    return {
        "cut-inside-data": data[: member_end(data, "0003.jpg") - 100],
        "cut-inside-header": data[: end_of_0002 + 200],
        "cut-at-member-end": data[:end_of_0002],
        "garbled-header": bytes(garbled),
    }


@pytest.mark.parametrize("case", ["cut-inside-data", "cut-inside-header", "cut-at-member-end", "garbled-header"])
def test_iter_shard_damaged_tar(tmp_path, case):
    shard = tmp_path / "00007.tar"
    shard.write_bytes(damaged_shards(full_shard_bytes(tmp_path))[case])

    samples, skipped = read_all(shard)

    assert [sample.key for sample in samples] == ["0001", "0002"]
    shard_items = [item for item in skipped if item.item_id == ""]
    assert len(shard_items) == 1
    assert shard_items[0].source == str(shard)
    expected_start = "the shard is damaged at its end (byte " if case == "cut-inside-data" else "the shard is damaged at byte "
    assert shard_items[0].reason.startswith(expected_start)
    assert "The rest of the shard is skipped." in shard_items[0].reason


def test_iter_shard_cut_sample_is_reported(tmp_path):
    data = full_shard_bytes(tmp_path)
    shard = tmp_path / "00007.tar"
    shard.write_bytes(data[: member_end(data, "0003.jpg")])

    samples, skipped = read_all(shard)

    assert [sample.key for sample in samples] == ["0001", "0002"]
    assert [item.item_id for item in skipped] == ["0003", ""]
    assert "the sample may be cut short" in skipped[0].reason
    assert "after member 0003.jpg: the file ends without the end-of-archive marker" in skipped[1].reason


@pytest.mark.parametrize(("content", "message"), [(b"", "empty file"), (b"plain text, not a tar" * 40, "invalid header")])
def test_iter_shard_unreadable_file(tmp_path, content, message):
    shard = tmp_path / "00000.tar"
    shard.write_bytes(content)

    samples, skipped = read_all(shard)

    assert samples == []
    assert len(skipped) == 1
    assert skipped[0].reason.startswith(f"the shard cannot be opened as an uncompressed tar file ({message})")


def test_iter_webdataset_continues_after_bad_shard(tmp_path):
    write_shard(tmp_path / "00000.tar", pair("a"))
    (tmp_path / "00001.tar").write_bytes(b"")
    write_shard(tmp_path / "00002.tar", pair("b"))
    skipped = []

    keys = [sample.key for sample in iter_webdataset(tmp_path, skipped)]

    assert keys == ["a", "b"]
    assert [Path(item.source).name for item in skipped] == ["00001.tar"]


def test_decode_image_bytes_matches_pixels():
    image = decode_image_bytes(image_bytes((1, 2, 3), size=(5, 4)), "x.png")

    assert image.mode == "RGB"
    assert image.size == (5, 4)
    assert image.getpixel((4, 3)) == (1, 2, 3)


def test_decode_image_bytes_errors():
    with pytest.raises(ImageLoadError, match="the image is empty"):
        decode_image_bytes(b"", "x.png")
    with pytest.raises(ImageLoadError, match="more than the limit of 10 bytes"):
        decode_image_bytes(image_bytes(), "x.png", max_bytes=10)


def test_expand_shards_orders_and_expands(tmp_path):
    for name in ("shard-2.tar", "shard-10.tar", "shard-1.tar", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    for number in range(3):
        (tmp_path / f"{number:05d}.tar").write_bytes(b"")

    assert [path.name for path in expand_shards(tmp_path / "shard-*.tar")] == ["shard-1.tar", "shard-2.tar", "shard-10.tar"]
    assert [path.name for path in expand_shards(f"{tmp_path}/{{00000..00002}}.tar")] == ["00000.tar", "00001.tar", "00002.tar"]
    assert [path.name for path in expand_shards(f"{tmp_path}/shard-{{10,1}}.tar")] == ["shard-1.tar", "shard-10.tar"]
    assert len(expand_shards(tmp_path)) == 6
    assert [path.name for path in expand_shards([tmp_path / "00001.tar", tmp_path / "00000.tar"])] == ["00000.tar", "00001.tar"]


def test_expand_shards_missing(tmp_path):
    (tmp_path / "00000.tar").write_bytes(b"")

    with pytest.raises(FileNotFoundError, match=r"Shards not found: .*00001.tar. Check the paths, or the pattern"):
        expand_shards(f"{tmp_path}/{{00000..00001}}.tar")
    with pytest.raises(FileNotFoundError, match="No .tar shards match"):
        expand_shards(tmp_path / "*.tgz.tar")

    missing = []
    assert [path.name for path in expand_shards(f"{tmp_path}/{{00000..00002}}.tar", missing=missing)] == ["00000.tar"]
    assert [Path(item.source).name for item in missing] == ["00001.tar", "00002.tar"]
    assert missing[0].reason.startswith("shard not found, so its samples are missing.")
    with pytest.raises(FileNotFoundError, match="No .tar shards match"):
        expand_shards([tmp_path / "nothing.tar"], missing=[])


def test_load_dataset_skips_missing_shard(tmp_path):
    write_shard(tmp_path / "00000.tar", pair("a"))
    write_shard(tmp_path / "00002.tar", pair("c"))

    dataset = load_dataset(f"{tmp_path}/{{00000..00002}}.tar")

    assert dataset.pairs["pair_id"].tolist() == ["a", "c"]
    assert [(Path(item.source).name, item.item_id) for item in dataset.skipped] == [("00001.tar", "")]


def test_is_webdataset_spec(tmp_path):
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "00000.tar").write_bytes(b"")
    (tmp_path / "research").mkdir()
    (tmp_path / "research" / "train_ims.npy").write_bytes(b"")

    assert is_webdataset_spec(tmp_path / "shards")
    assert is_webdataset_spec("data/{00000..00009}.tar")
    assert is_webdataset_spec("data/*.tar")
    assert not is_webdataset_spec(tmp_path / "research")
    assert not is_webdataset_spec("pairs.csv")


def test_read_webdataset_index(tmp_path):
    (tmp_path / "shards").mkdir()
    metadata = json.dumps({"url": "https://example.org/a.jpg"}).encode()
    write_shard(tmp_path / "shards" / "00000.tar", pair("a", "a red box") + [("a.json", metadata)] + [("bad.txt", b"x")])
    write_shard(tmp_path / "shards" / "00001.tar", [("b.png", image_bytes((0, 0, 255))), ("b.txt", b"a blue box")] + pair("a"))

    dataset = read_webdataset_index(tmp_path / "shards")

    assert dataset.pairs["pair_id"].tolist() == ["a", "b"]
    assert dataset.pairs["caption"].tolist() == ["a red box", "a blue box"]
    assert dataset.pairs["url"].iat[0] == "https://example.org/a.jpg"
    assert pd.isna(dataset.pairs["url"].iat[1])
    assert dataset.images["image_path"].tolist() == ["00000.tar#a.jpg", "00001.tar#b.png"]
    assert dataset.root == (tmp_path / "shards").resolve()
    assert load_member_image(dataset.image_path(1)).getpixel((0, 0)) == (0, 0, 255)
    assert [(Path(item.source).name, item.item_id) for item in dataset.skipped] == [("00000.tar", "bad"), ("00001.tar", "a")]
    assert "already used by shard 00000.tar" in dataset.skipped[1].reason


def test_read_webdataset_index_no_usable_sample(tmp_path):
    write_shard(tmp_path / "00000.tar", [("a.txt", b"a cat")])

    with pytest.raises(ValueError, match=r"No usable sample in 1 shards of .*First problems: a: the sample has no image"):
        read_webdataset_index(tmp_path)


@pytest.mark.parametrize("form", ["folder", "glob", "braces"])
def test_load_dataset_routes_shards(tmp_path, form):
    write_shard(tmp_path / "00000.tar", pair("a"))
    write_shard(tmp_path / "00001.tar", pair("b"))
    spec = {"folder": tmp_path, "glob": f"{tmp_path}/*.tar", "braces": f"{tmp_path}/{{00000..00001}}.tar"}[form]

    dataset = load_dataset(spec)

    assert dataset.pairs["pair_id"].tolist() == ["a", "b"]


def test_read_member_bytes(tmp_path):
    members = pair("a") + pair("b")
    shard = write_shard(tmp_path / "00000.tar", members)

    assert read_member_bytes(f"{shard}#b.txt") == b"a red box"
    assert np.array_equal(np.asarray(load_member_image(f"{shard}#a.jpg")), np.asarray(Image.open(io.BytesIO(members[0][1])).convert("RGB")))
    with pytest.raises(FileNotFoundError, match="has no member 'c.jpg'"):
        read_member_bytes(f"{shard}#c.jpg")
    with pytest.raises(ValueError, match="is not a shard reference"):
        read_member_bytes(tmp_path / "a.jpg")
    with pytest.raises(ImageLoadError, match="Shard .*missing.tar of reference"):
        load_member_image(f"{tmp_path}/missing.tar#a.jpg")
