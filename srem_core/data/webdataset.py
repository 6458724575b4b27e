"""Read image-caption pairs from WebDataset tar shards, as img2dataset writes them.

A shard is an uncompressed tar file. The files of one sample share a *key* and differ in extension:
``000010042.jpg`` (img2dataset's webdataset writer names every image ``.jpg``, other writers use
``.png`` or ``.webp``), ``000010042.txt`` (the caption) and ``000010042.json`` (img2dataset's metadata,
of which only ``url`` is kept). img2dataset's per-shard ``.parquet`` and ``_stats.json`` files sit next
to the shards, outside the tar, and are not read.

Key rule, the one of the ``webdataset`` library (``tariterators.base_plus_ext``): the key is the member
path up to the first dot of its base name, and the extension is everything after that dot,
lower-cased. So ``a.b.jpg`` has key ``a`` and extension ``b.jpg``, and a key cannot contain a dot in
its base name. Consecutive members with the same key form one sample, as in WebDataset. A leading
``./`` is removed first. Members named ``__*__`` (WebDataset metadata) and entries that are not regular
files are ignored.

Two ways in: ``iter_webdataset`` streams samples one at a time for sets of any size (see
``srem_core.streaming``), and ``read_webdataset_index`` builds a ``PairDataset`` for small sets.
A bad sample or a damaged shard never stops the reading. It is appended to the caller's ``skipped``
list as a ``SkippedItem`` (``source`` the shard path, ``item_id`` the key, "" for the whole shard).

Shard lists and patterns are expanded by ``srem_core.data.shard_specs``. Opening one image by its
``<shard>.tar#<member>`` reference, and decoding image bytes, is ``srem_core.data.shard_members``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tarfile
from pathlib import Path
from typing import Iterator, Sequence

import pandas as pd
from PIL import Image

from srem_core.data.images import DEFAULT_MAX_PIXELS, MAX_FILE_BYTES, ImageLoadError
from srem_core.data.pairs import PairDataset, SkippedItem, build_dataset
from srem_core.data.shard_members import REFERENCE_SEPARATOR, decode_image_bytes
from srem_core.data.shard_specs import expand_shards

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
"""Extensions read as the sample's image."""
CAPTION_EXTENSION = "txt"
METADATA_EXTENSION = "json"
MAX_LOGGED_SKIPS_PER_SHARD = 10
"""Skipped samples logged one by one per shard; a count covers the rest, so a bad shard cannot flood
the log. Every skip is still returned in the caller's list."""



@dataclasses.dataclass(frozen=True)
class WebDatasetSample:
    """One image-caption pair read from a shard."""

    shard: Path
    key: str
    image_member: str
    """Name of the image inside the tar, such as ``000000001.jpg``."""
    image_bytes: bytes
    caption: str
    """The ``.txt`` member decoded as UTF-8, surrounding whitespace removed; never empty."""
    url: str | None
    """The ``url`` field of the ``.json`` member, when there is one."""
    image: Image.Image | None = None
    """The decoded RGB image, or None when the reader was asked not to decode images."""

    @property
    def image_extension(self) -> str:
        return split_member_name(self.image_member)[1]

    @property
    def reference(self) -> str:
        """The image as ``<shard path>#<member name>``, the form ``read_member_bytes`` opens."""
        return f"{self.shard}{REFERENCE_SEPARATOR}{self.image_member}"


def split_member_name(name: str) -> tuple[str, str]:
    """Split a tar member name into (key, extension) by the WebDataset rule; extension "" if none."""
    if name.startswith("./"):
        name = name[2:]
    folder, _, base = name.rpartition("/")
    stem, dot, extension = base.partition(".")
    key = f"{folder}/{stem}" if folder else stem
    return key, extension.lower() if dot else ""


def iter_webdataset(
    spec: str | os.PathLike | Sequence[str | os.PathLike],
    skipped: list[SkippedItem],
    *,
    decode_images: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = MAX_FILE_BYTES,
) -> Iterator[WebDatasetSample]:
    """Yield the usable samples of every shard of ``spec`` (see ``expand_shards``) in order."""
    for shard in expand_shards(spec, missing=skipped):
        yield from iter_shard(
            shard, skipped, decode_images=decode_images, max_pixels=max_pixels, max_bytes=max_bytes
        )


def iter_shard(
    shard: str | os.PathLike,
    skipped: list[SkippedItem],
    *,
    decode_images: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = MAX_FILE_BYTES,
) -> Iterator[WebDatasetSample]:
    """Yield the usable samples of one shard in tar order and append the others to ``skipped``.

    A sample is skipped when it has no image or several, no caption, a caption that is not UTF-8 or
    is blank, two members with one extension, or a key that already occurred earlier in the shard.
    With ``decode_images`` the image is decoded as well (``decode_image_bytes``), so a corrupt,
    truncated or oversized image skips the sample. A shard that cannot be opened, is cut short or
    has a damaged header is reported once with ``item_id=""``, after the samples before the damage.
    """
    shard = Path(shard)
    reader = _MemberReader(shard)
    seen: set[str] = set()
    n_before = len(skipped)
    for key, members in _group_by_key(reader):
        try:
            sample = _make_sample(shard, key, members, seen)
            if decode_images:
                image = decode_image_bytes(sample.image_bytes, sample.reference, max_pixels, max_bytes)
                sample = dataclasses.replace(sample, image=image)
        except (_SampleError, ImageLoadError) as error:
            reason = error.reason if isinstance(error, ImageLoadError) else str(error)
            if reader.failure is not None:
                reason += " The shard is damaged right after this sample, so the sample may be cut short."
            _skip(skipped, shard, key, reason, len(skipped) - n_before)
            continue
        finally:
            seen.add(key)
        yield sample
    if reader.failure is not None:
        _skip(skipped, shard, "", reader.failure, 0)
    n_unlogged = len(skipped) - n_before - MAX_LOGGED_SKIPS_PER_SHARD
    if n_unlogged > 0:
        logger.warning(
            "Skipped %d more samples of shard %s without logging them; the skipped list has them all.",
            n_unlogged, shard,
        )


class _SampleError(ValueError):
    """A sample whose members cannot make a pair; the message is the reason for ``SkippedItem``."""


class _MemberReader:
    """Iterates over (member name, bytes) of a shard's regular files.

    ``failure`` is None after a clean read to the end-of-archive marker, else the reason the reading
    stopped early. Python's tarfile treats a cut-off or garbled header after the first one as the
    end of the archive, so the bytes after the last member are checked for the zero-filled marker.
    """

    def __init__(self, shard: Path):
        self.shard = shard
        self.failure: str | None = None
        self.last_member: str | None = None

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        try:
            tar = tarfile.open(self.shard, mode="r:")
        except (tarfile.TarError, OSError) as error:
            self.failure = (
                f"the shard cannot be opened as an uncompressed tar file ({error}). Check that the file "
                "is a complete .tar; decompress a .tar.gz first."
            )
            return
        with tar:
            try:
                while (member := tar.next()) is not None:
                    tar.members = []  # TarFile keeps every header it has read; a shard needs none of them.
                    if not member.isfile() or _is_metadata(member.name):
                        continue
                    data = tar.extractfile(member).read()
                    self.last_member = member.name
                    yield member.name, data
            except (tarfile.TarError, OSError) as error:
                self.failure = self._describe_damage(tar.offset, f"reading failed with: {error}")
                return
            self.failure = self._check_end_marker(tar)

    def _check_end_marker(self, tar: tarfile.TarFile) -> str | None:
        tar.fileobj.seek(tar.offset)
        block = tar.fileobj.read(tarfile.BLOCKSIZE)
        if block == tarfile.NUL * tarfile.BLOCKSIZE:
            return None
        if not block:
            return self._describe_damage(tar.offset, "the file ends without the end-of-archive marker")
        if len(block) < tarfile.BLOCKSIZE:
            return self._describe_damage(tar.offset, "the file ends inside a member header")
        return self._describe_damage(tar.offset, "the member header there is invalid")

    def _describe_damage(self, offset: int, problem: str) -> str:
        where = "before the first member"
        if self.last_member:
            where = f"after member {self.last_member}"
        size = self.shard.stat().st_size
        position = f"byte {offset} of {size}"
        if offset > size:
            # tarfile's offset already counts the data that the last header declares, past the cut.
            position = f"its end (byte {size}; the last member header declares data up to byte {offset})"
        return (
            f"the shard is damaged at {position}, {where}: {problem}. The rest of the shard "
            "is skipped. An interrupted download or copy is the usual cause, so fetch or write the shard "
            "again."
        )


def _is_metadata(name: str) -> bool:
    base = name.rpartition("/")[2]
    return base.startswith("__") and base.endswith("__")


def _group_by_key(members) -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """Yield (key, [(member name, extension, bytes)]) for each run of consecutive members of one key."""
    key, group = None, []
    for name, data in members:
        member_key, extension = split_member_name(name)
        if group and member_key != key:
            yield key, group
            group = []
        key = member_key
        group.append((name, extension, data))
    if group:
        yield key, group


def _make_sample(
    shard: Path, key: str, members: list[tuple[str, str, bytes]], seen: set[str]
) -> WebDatasetSample:
    names = ", ".join(name for name, _, _ in members)
    if key in seen:
        raise _SampleError(
            f"the key occurs again after other keys (members {names}). WebDataset reads a sample's "
            "files only while they are next to each other in the tar; write them together."
        )
    extensions = [extension for _, extension, _ in members]
    repeated = sorted({extension for extension in extensions if extensions.count(extension) > 1})
    if repeated:
        raise _SampleError(f"the sample has two members with extension {repeated[0]} ({names}). Keep one.")
    images = [(name, data) for name, extension, data in members if extension in IMAGE_EXTENSIONS]
    captions = [data for _, extension, data in members if extension == CAPTION_EXTENSION]
    if len(images) != 1 or not captions:
        raise _SampleError(_missing_member_reason(members, len(images), bool(captions)))
    metadata = [data for _, extension, data in members if extension == METADATA_EXTENSION]
    return WebDatasetSample(
        shard=shard,
        key=key,
        image_member=images[0][0],
        image_bytes=images[0][1],
        caption=_decode_caption(captions[0]),
        url=_url_from_metadata(metadata[0]) if metadata else None,
    )


def _missing_member_reason(members: list[tuple[str, str, bytes]], n_images: int, has_caption: bool) -> str:
    names = ", ".join(name for name, _, _ in members)
    if n_images > 1:
        return f"the sample has {n_images} images ({names}). Keep one image per key."
    if n_images:
        missing = "no caption"
    elif has_caption:
        missing = "no image"
    else:
        missing = "neither an image nor a caption"
    image_extensions = ", ".join("." + extension for extension in IMAGE_EXTENSIONS)
    reason = (
        f"the sample has {missing} (members: {names}). A sample needs one .{CAPTION_EXTENSION} caption "
        f"and one image ({image_extensions})."
    )
    if any("." in extension for _, extension, _ in members):
        reason += (
            " The key ends at the first dot of the file name, so 'a.b.jpg' is key 'a' with extension "
            "'b.jpg'. Rename the files so that the key has no dot."
        )
    return reason


def _decode_caption(data: bytes) -> str:
    try:
        caption = data.decode("utf-8").strip()
    except UnicodeDecodeError as error:
        reason = f"the caption is not valid UTF-8 ({error}). Re-encode the .txt member as UTF-8."
        raise _SampleError(reason) from None
    if not caption:
        raise _SampleError("the caption is empty. Write the caption, or remove the sample.")
    return caption


def _url_from_metadata(data: bytes) -> str | None:
    """Return the ``url`` of img2dataset's metadata; unreadable metadata is optional and gives None."""
    try:
        url = json.loads(data).get("url")
    except (ValueError, AttributeError):
        return None
    return url if isinstance(url, str) else None


def _skip(skipped: list[SkippedItem], shard: Path, key: str, reason: str, n_earlier: int) -> None:
    """Append one SkippedItem, and log it unless ``n_earlier`` skips of this shard were logged already."""
    skipped.append(SkippedItem(source=str(shard), item_id=key, reason=reason))
    if n_earlier >= MAX_LOGGED_SKIPS_PER_SHARD:
        return
    if key:
        logger.warning("Skipped sample %s of shard %s: %s", key, shard, reason)
    else:
        logger.warning("Skipped the rest of shard %s: %s", shard, reason)


def read_webdataset_index(
    spec: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    check_images: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = MAX_FILE_BYTES,
) -> PairDataset:
    """Read every usable sample of small shard sets into a ``PairDataset`` (all in the train split).

    ``pair_id`` and ``image_id`` are the key. ``image_path`` is a reference ``<shard>#<member>``, the
    shard relative to ``root`` (the shards' common folder), which ``read_member_bytes`` and
    ``load_member_image`` open. Extra pair columns: ``shard``, ``key`` and ``url`` (when any sample has
    one). With ``check_images`` every image is decoded once, so bad images are skipped here.
    A key that another shard already used is skipped, because pair ids must be unique.

    Raises:
        FileNotFoundError: no shard exists (a missing shard among others is skipped and reported).
        ValueError: no shard has a usable sample.
    """
    skipped: list[SkippedItem] = []
    shards = expand_shards(spec, missing=skipped)
    root = Path(os.path.commonpath([str(shard.resolve().parent) for shard in shards]))
    rows, shard_of_key = [], {}
    for shard in shards:
        relative = shard.resolve().relative_to(root).as_posix()
        samples = iter_shard(shard, skipped, decode_images=check_images, max_pixels=max_pixels, max_bytes=max_bytes)
        for sample in samples:
            if sample.key in shard_of_key:
                reason = (
                    f"the key is already used by shard {shard_of_key[sample.key]}. Keys must be unique "
                    "across shards."
                )
                _skip(skipped, shard, sample.key, reason, 0)
                continue
            shard_of_key[sample.key] = relative
            rows.append(_index_row(sample, relative))
    if not rows:
        reasons = "; ".join(f"{item.item_id or item.source}: {item.reason}" for item in skipped[:3])
        raise ValueError(f"No usable sample in {len(shards)} shards of {spec}. First problems: {reasons}")
    frame = pd.DataFrame(rows)
    if frame["url"].isna().all():
        frame = frame.drop(columns="url")
    logger.info("Read %d pairs from %d shards; skipped %d items", len(frame), len(shards), len(skipped))
    return build_dataset(frame, root, source=str(spec), skipped=skipped)


def _index_row(sample: WebDatasetSample, relative_shard: str) -> dict:
    return {
        "pair_id": sample.key,
        "image_id": sample.key,
        "image_path": f"{relative_shard}{REFERENCE_SEPARATOR}{sample.image_member}",
        "caption": sample.caption,
        "shard": relative_shard,
        "key": sample.key,
        "url": sample.url,
    }
