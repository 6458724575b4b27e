#!/usr/bin/env python3
"""Build the bundled demo dataset (``demo/``) from the Debian Open Clip Art packages.

Each PNG of ``openclipart-png`` is paired with the SVG of the same path in ``openclipart-svg``.
The caption comes from the SVG's metadata (title, plus the description when it adds words), and
the image is flattened onto white, resized to 224 pixels on its longer side and saved as WebP.
The output is ``pairs.csv``, ``images/``, ``PROVENANCE.md`` and ``LICENSE.md``.

Rebuild with::

    python scripts/build_demo_data.py --debs-dir /path/to/debs --work-dir /tmp/oca

Without ``--debs-dir`` the script runs ``apt-get download openclipart-png openclipart-svg``,
so the versions it gets are whatever the configured Debian mirror serves. It needs the Debian
tools ``dpkg`` and ``dpkg-deb`` in any case.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import csv
import dataclasses
import hashlib
import html
import io
import logging
import os
import re
import subprocess
import sys
import tempfile
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.parsers import expat

from PIL import Image, features
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger("build_demo_data")

PACKAGES = ("openclipart-png", "openclipart-svg")
CLIPART_ROOT = Path("usr/share/openclipart")
CSV_COLUMNS = (
    "pair_id",
    "image_id",
    "image_path",
    "caption",
    "category",
    "split",
    "keywords",
    "source_path",
)

DC_NS = "http://purl.org/dc/elements/1.1/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
# Old Creative Commons RDF namespace (used by this package) and the current one.
CC_NAMESPACES = ("http://web.resource.org/cc/", "http://creativecommons.org/ns#")
SVG_NAMESPACES = ("http://www.w3.org/2000/svg", "")
# License URIs that mean public domain. An empty or missing cc:license counts as public domain
# too, because the Debian copyright file covers the whole package.
PUBLIC_DOMAIN_LICENSES = (
    "http://web.resource.org/cc/PublicDomain",
    "http://creativecommons.org/licenses/publicdomain/",
    "http://creativecommons.org/publicdomain/zero/1.0/",
)

# An e-mail address with an optional "contact:", "email:" or "mailto:" label before it.
EMAIL_RE = re.compile(
    r"(\b(contact|e-?mail)\s*:?\s*)?(mailto:)?[\w.+-]+@[\w-]+(\.[\w-]+)+", re.IGNORECASE
)
EMPTY_BRACKETS_RE = re.compile(r"\(\s*\)|\[\s*\]|<\s*>")
HTML_COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)
HTML_TAG_RE = re.compile(r"</?[A-Za-z][^<>]*>")
WORD_RE = re.compile(r"\w+")
# Words that do not count as new when deciding whether a description adds to the title.
STOP_WORDS = frozenset(
    "a an and are as at by for from in is it its of on or the this to with".split()
)
# An upstream script printed Perl hash references into the metadata: "HASH(0x850c64c)" as a
# description and "hash(0x8a09558)" or a bare "hash" as keywords (on the map of Australia, for
# example). They are removed from captions and keywords.
PERL_HASH_RE = re.compile(r"\bhash\(0x[0-9a-f]+\)", re.IGNORECASE)
JUNK_KEYWORD_RE = re.compile(r"hash(\(0x[0-9a-f]+\))?", re.IGNORECASE)

# Skip reasons, in the order the summary and PROVENANCE.md list them.
SKIP_REASONS = {
    "no_svg": "no SVG with the same path in openclipart-svg",
    "svg_too_large": "SVG file larger than --max-svg-bytes",
    "svg_parse_error": "SVG is not well-formed XML",
    "svg_unsafe_xml": "SVG declares an external entity",
    "not_public_domain": "SVG metadata names a license other than public domain",
    "no_text": "SVG has no usable title or description (empty after cleaning)",
    "duplicate_png": "PNG is a symbolic link to a PNG already used",
    "too_many_pixels": "PNG has more pixels than --max-pixels",
    "png_decode_error": "PNG could not be decoded",
    "duplicate_pixels": "resized image has the same pixels as one already used",
}


class SkipItem(Exception):
    """Raised when one clip-art item cannot be used. ``reason`` is a key of SKIP_REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class SvgMetadata:
    title: str
    description: str
    keywords: tuple[str, ...]
    license: str


@dataclasses.dataclass
class Item:
    """One PNG of the package and what the build learns about it."""

    index: int
    """Position in the sorted list of all PNG paths, from which the image id is derived."""
    relative_stem: str
    """POSIX path below ``png/`` without ".png", shared by the PNG and its SVG."""
    png_path: Path
    svg_path: Path
    caption: str = ""
    keywords: tuple[str, ...] = ()
    webp_by_quality: dict[int, bytes] = dataclasses.field(default_factory=dict)
    """The image encoded at each candidate WebP quality."""
    webp: bytes = b""
    """The encoding at the quality chosen for the whole dataset."""
    pixel_hash: str = ""

    @property
    def image_id(self) -> str:
        return f"oca-{self.index:06d}"

    @property
    def category(self) -> str:
        return self.relative_stem.split("/")[0]

    @property
    def source_path(self) -> str:
        return f"/{CLIPART_ROOT.as_posix()}/png/{self.relative_stem}.png"


@dataclasses.dataclass(frozen=True)
class ImageSettings:
    side: int
    qualities: tuple[int, ...]
    """WebP qualities to encode each image at, highest first."""
    max_pixels: int


# ---------------------------------------------------------------------------------------------
# Debian packages


def run_command(command: list[str], cwd: Path | None = None) -> str:
    """Run a command and return its standard output. Exit with a message when it fails."""
    try:
        result = subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise SystemExit(
            f"Command {command[0]!r} not found. This script needs the Debian tools apt-get,"
            " dpkg and dpkg-deb."
        ) from None
    except subprocess.CalledProcessError as error:
        raise SystemExit(
            f"{' '.join(command)} failed with exit status {error.returncode}:"
            f" {error.stderr.strip()}"
        ) from None
    return result.stdout


def download_debs(dest: Path) -> None:
    """Download both packages into ``dest`` from the configured APT sources."""
    log.info("Downloading %s with apt-get into %s", " ".join(PACKAGES), dest)
    run_command(["apt-get", "download", *PACKAGES], cwd=dest)


def read_deb_field(deb: Path, field: str) -> str:
    return run_command(["dpkg-deb", "--field", str(deb), field]).strip()


def find_debs(debs_dir: Path) -> dict[str, Path]:
    """Return the .deb file of each package in PACKAGES, keyed by package name."""
    debs: dict[str, Path] = {}
    for deb in sorted(debs_dir.glob("*.deb")):
        package = read_deb_field(deb, "Package")
        if package not in PACKAGES:
            continue
        if package in debs:
            raise SystemExit(
                f"Found two .deb files for {package} in {debs_dir}: {debs[package].name} and"
                f" {deb.name}. Keep one version there and rerun."
            )
        debs[package] = deb
    missing = [package for package in PACKAGES if package not in debs]
    if missing:
        raise SystemExit(
            f"No .deb file for {', '.join(missing)} in {debs_dir}. Download the missing"
            f" packages with 'apt-get download {' '.join(missing)}' or omit --debs-dir."
        )
    return debs


def extract_debs(debs: dict[str, Path], dest: Path) -> Path:
    """Extract the packages with ``dpkg -x`` and return the clip-art root folder."""
    for package, deb in debs.items():
        log.info("Extracting %s (%s) into %s", package, deb.name, dest)
        run_command(["dpkg", "-x", str(deb), str(dest)])
    root = dest / CLIPART_ROOT
    for kind in ("png", "svg"):
        if not (root / kind).is_dir():
            raise SystemExit(
                f"Folder {root / kind} is missing after extraction. The package layout has"
                f" changed; update CLIPART_ROOT in {Path(__file__).name}."
            )
    return root


# ---------------------------------------------------------------------------------------------
# SVG metadata


def _clark_name(expat_name: str) -> str:
    """Convert expat's ``uri}local`` name into ElementTree's ``{uri}local`` form."""
    return "{" + expat_name if "}" in expat_name else expat_name


def parse_xml_safely(data: bytes) -> ET.Element:
    """Parse XML into an ElementTree element without loading anything outside ``data``.

    Raises SkipItem("svg_unsafe_xml") when the document declares an external entity and
    SkipItem("svg_parse_error") when it is not well-formed. With parameter entity parsing off,
    expat does not read the external DTD subset. Internal entities are allowed because Adobe
    Illustrator SVGs use them for namespace URIs, and expat's billion-laughs protection (checked
    with expat 2.5.0) stops exponential expansion with a parse error.
    """
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def start(name: str, attributes: dict[str, str]) -> None:
        builder.start(_clark_name(name), {_clark_name(k): v for k, v in attributes.items()})

    def end(name: str) -> None:
        builder.end(_clark_name(name))

    def entity_declaration(name, is_parameter, value, base, system_id, public_id, notation):
        if system_id is not None or public_id is not None or notation is not None:
            raise SkipItem("svg_unsafe_xml", f"external entity {name!r} ({system_id})")

    def external_entity_reference(context, base, system_id, public_id):
        raise SkipItem("svg_unsafe_xml", f"reference to external entity {system_id!r}")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    parser.EntityDeclHandler = entity_declaration
    parser.ExternalEntityRefHandler = external_entity_reference
    try:
        parser.Parse(data, True)
    except expat.ExpatError as error:
        raise SkipItem("svg_parse_error", str(error)) from error
    return builder.close()


def _namespace_and_name(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        namespace, _, name = tag[1:].partition("}")
        return namespace, name
    return "", tag


def _has_name(element: ET.Element, namespaces: tuple[str, ...], name: str) -> bool:
    namespace, local_name = _namespace_and_name(element.tag)
    return local_name == name and namespace in namespaces


def _children(element: ET.Element, namespaces: tuple[str, ...], name: str) -> list[ET.Element]:
    return [child for child in element if _has_name(child, namespaces, name)]


def normalize_text(text: str) -> str:
    """Collapse all runs of whitespace, including line breaks, into single spaces."""
    return " ".join(text.split())


def _first_text(elements: list[ET.Element]) -> str:
    for element in elements:
        text = normalize_text("".join(element.itertext()))
        if text:
            return text
    return ""


def read_svg_metadata(svg_path: Path, max_bytes: int) -> SvgMetadata:
    """Read title, description, keywords and license URI from an SVG file.

    The RDF ``cc:Work`` values (``dc:title``, ``dc:description``, ``dc:subject``) come first.
    A ``<title>`` or ``<desc>`` child of the root is the fallback. Authors' names are also
    stored as ``dc:title`` (inside ``cc:Agent``), so only direct children of ``cc:Work`` count.
    """
    size = svg_path.stat().st_size
    if size > max_bytes:
        raise SkipItem("svg_too_large", f"{size} bytes")
    root = parse_xml_safely(svg_path.read_bytes())

    works = [element for element in root.iter() if _has_name(element, CC_NAMESPACES, "Work")]
    title = _first_text([t for work in works for t in _children(work, (DC_NS,), "title")])
    description = _first_text(
        [d for work in works for d in _children(work, (DC_NS,), "description")]
    )
    if not title:
        title = _first_text(_children(root, SVG_NAMESPACES, "title"))
    if not description:
        description = _first_text(_children(root, SVG_NAMESPACES, "desc"))

    keywords: list[str] = []
    license_uri = ""
    for work in works:
        for subject in _children(work, (DC_NS,), "subject"):
            items = list(subject.iter(f"{{{RDF_NS}}}li"))
            texts = ["".join(li.itertext()) for li in items] if items else [
                "".join(subject.itertext())
            ]
            keywords.extend(normalize_text(text).replace(";", ",") for text in texts)
        for license_element in _children(work, CC_NAMESPACES, "license"):
            license_uri = license_uri or license_element.get(f"{{{RDF_NS}}}resource", "").strip()
    unique_keywords = tuple(dict.fromkeys(
        keyword for keyword in keywords if keyword and not JUNK_KEYWORD_RE.fullmatch(keyword)
    ))
    return SvgMetadata(title, description, unique_keywords, license_uri)


def clean_text(text: str) -> str:
    """Remove markup, Perl hash references and e-mail addresses from a title or description.

    Some texts contain escaped HTML such as ``&quot;``, a license badge, or the author's address
    ("Telefono (email: frollandin@email.it)"). Returns "" when no word is left.
    """
    text = html.unescape(text)
    text = HTML_COMMENT_RE.sub(" ", text)
    text = HTML_TAG_RE.sub(" ", text)
    text = PERL_HASH_RE.sub(" ", text)
    text = EMAIL_RE.sub(" ", text)
    text = EMPTY_BRACKETS_RE.sub(" ", text)
    # A sentence that held only an address leaves a lone full stop: "by ringe. Email: a@b.no."
    text = re.sub(r"([.!?])\s+\.(?=\s|$)", r"\1", normalize_text(text))
    text = text.strip(" ,;:-")
    return text if WORD_RE.search(text) else ""


def truncate_on_word(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars`` characters at a word boundary, ending with "…"."""
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:.-") + "…"


def build_caption(title: str, description: str, max_chars: int) -> str:
    """Return the title, followed by the description when the description adds new words.

    Words are compared case-insensitively and STOP_WORDS are ignored, so "Shield" / "A simple
    shield" gives "Shield. A simple shield" while "Duck" / "A duck" gives "Duck".
    """
    title = clean_text(title)
    description = clean_text(description)
    title_words = set(WORD_RE.findall(title.lower()))
    description_words = set(WORD_RE.findall(description.lower())) - STOP_WORDS
    if not description or description_words <= title_words:
        caption = title
    elif not title:
        caption = description
    else:
        separator = " " if title[-1] in ".!?:;" else ". "
        caption = title + separator + description
    return truncate_on_word(caption, max_chars)


# ---------------------------------------------------------------------------------------------
# Images


def convert_png(png_path: Path, settings: ImageSettings) -> tuple[dict[int, bytes], str]:
    """Flatten a PNG onto white, resize it and encode it as WebP at each quality of ``settings``.

    Returns the WebP bytes keyed by quality and a SHA-1 of the resized RGB pixels. The pixel
    count is checked from the PNG header before any pixel data is decoded. Raises
    SkipItem("too_many_pixels") or SkipItem("png_decode_error").
    """
    Image.MAX_IMAGE_PIXELS = settings.max_pixels
    with warnings.catch_warnings():
        # Pillow warns above MAX_IMAGE_PIXELS, which the size check below turns into a skip,
        # and raises DecompressionBombError above twice that.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(png_path) as image:
                width, height = image.size
                if width * height > settings.max_pixels:
                    raise SkipItem("too_many_pixels", f"{width}x{height}")
                image.load()
                rgba = image.convert("RGBA")
        except Image.DecompressionBombError as error:
            raise SkipItem("too_many_pixels", f"rejected by Pillow: {error}") from error
        except (OSError, ValueError, SyntaxError) as error:
            # Pillow raises OSError for truncated data or an unidentified file, ValueError for
            # oversized text chunks and SyntaxError for a broken chunk or checksum.
            raise SkipItem("png_decode_error", f"{type(error).__name__}: {error}") from error

    # Composite at full size, then resize the opaque RGB image, so that colors of fully
    # transparent pixels cannot bleed into the edges.
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    background.alpha_composite(rgba)
    rgb = background.convert("RGB")

    scale = settings.side / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    rgb = rgb.resize(new_size, Image.Resampling.LANCZOS, reducing_gap=3.0)

    pixel_hash = hashlib.sha1(repr(rgb.size).encode() + rgb.tobytes()).hexdigest()
    webp_by_quality = {}
    for quality in settings.qualities:
        buffer = io.BytesIO()
        rgb.save(buffer, format="WEBP", quality=quality, method=6)
        webp_by_quality[quality] = buffer.getvalue()
    return webp_by_quality, pixel_hash


def _convert_item(
    job: tuple[int, Path, ImageSettings],
) -> tuple[int, dict[int, bytes], str, str, str]:
    """Worker entry point. Returns (index, webp_by_quality, pixel_hash, reason, detail).

    A skip comes back as plain strings because an exception with extra fields does not
    survive pickling between processes.
    """
    index, png_path, settings = job
    try:
        webp_by_quality, pixel_hash = convert_png(png_path, settings)
    except SkipItem as error:
        return index, {}, "", error.reason, error.detail
    return index, webp_by_quality, pixel_hash, "", ""


# ---------------------------------------------------------------------------------------------
# Splits and output files


def assign_splits(source_paths: list[str], test_size: int, val_size: int) -> list[str]:
    """Assign each path a split by ranking the SHA-256 of the path.

    The ``test_size`` lowest hashes go to test, the next ``val_size`` to val, the rest to train.
    A path keeps its split when other pairs are added or removed, unless it sits at a boundary.
    """
    if test_size + val_size > len(source_paths):
        raise SystemExit(
            f"Only {len(source_paths)} pairs were kept, fewer than --test-size {test_size} plus"
            f" --val-size {val_size}. Lower those sizes."
        )
    order = sorted(range(len(source_paths)),
                   key=lambda i: hashlib.sha256(source_paths[i].encode()).hexdigest())
    splits = ["train"] * len(source_paths)
    for rank, i in enumerate(order):
        if rank < test_size:
            splits[i] = "test"
        elif rank < test_size + val_size:
            splits[i] = "val"
    return splits


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path`` and rename it over ``path``."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        # mkstemp creates the file readable by its owner only. Use the mode open() would give.
        os.chmod(temporary, _default_file_mode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def render_pairs_csv(items: list[Item], splits: list[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for item, split in zip(items, splits):
        writer.writerow([
            f"{item.image_id}-0",
            item.image_id,
            f"images/{item.image_id}.webp",
            item.caption,
            item.category,
            split,
            ";".join(item.keywords),
            item.source_path,
        ])
    return buffer.getvalue().encode("utf-8")


def non_default_options(args: argparse.Namespace) -> list[str]:
    """Return the output-affecting command-line options whose values differ from the defaults."""
    defaults = parse_args([])
    options = []
    for name in ("side", "quality", "min_quality", "image_budget_mb", "max_pixels",
                 "max_svg_bytes", "max_caption_chars", "test_size", "val_size"):
        if getattr(args, name) != getattr(defaults, name):
            options.append(f"--{name.replace('_', '-')} {getattr(args, name)}")
    return options


def render_provenance(
    debs: dict[str, Path],
    versions: dict[str, str],
    counts: collections.Counter,
    found: dict[str, int],
    split_counts: collections.Counter,
    image_bytes: int,
    chosen_quality: int,
    args: argparse.Namespace,
) -> str:
    skipped_rows = "\n".join(
        f"| `{reason}` | {counts[reason]} | {description} |"
        for reason, description in SKIP_REASONS.items()
    )
    rebuild_command = " ".join(
        ["python scripts/build_demo_data.py", "--debs-dir DEBS_DIR"] + non_default_options(args)
    )
    packages = "\n".join(
        f"- `{package}` version `{versions[package]}` (file `{debs[package].name}`)"
        for package in PACKAGES
    )
    return f"""# Provenance of the demo dataset

The demo is built from the Open Clip Art Library release 0.18, as packaged by Debian:

{packages}

`pairs.csv` has one caption per image. `source_path` is the PNG's path inside `openclipart-png`.
The SVG with the same path under `/usr/share/openclipart/svg/` in `openclipart-svg` supplied the
text.

## Captions

- Text comes from the SVG's RDF metadata: `dc:title` and `dc:description` of `cc:Work`. When the
  title is empty, the root `<title>` is used, and when the description is empty, the root `<desc>`.
- The caption is the title, followed by the description when the description contains a word
  (case-insensitive, ignoring {len(STOP_WORDS)} stop words such as "a" and "the") that the title
  does not. Before that, HTML entities in titles and descriptions are decoded, and HTML tags
  and comments, Perl hash references ("HASH(0x850c64c)") and e-mail addresses (with any
  "contact:" or "email:" label) are removed. Whitespace is collapsed.
  Captions longer than {args.max_caption_chars} characters are cut at a word boundary and end
  with "…".
- Apart from that cleaning, titles are kept as the authors wrote them, noise included. Many
  are collection names such as "gramastar", "Part of the Flat Icon Collection (…)" or "card",
  or a file name. They are kept on purpose as real-world caption noise.
- `keywords` holds the `dc:subject` items (`rdf:Bag/rdf:li`) of the same SVG, joined with `;`.
  Duplicates are removed, `;` inside an item becomes `,`, and the items "hash" and
  "hash(0x…)", which an upstream script left in many files, are dropped.
- `category` is the top-level folder under `/usr/share/openclipart/png/`.

## Duplicates

Items are considered in path order, regular files before symbolic links. A PNG that is a
symbolic link to a PNG already used is skipped, so a picture filed in two folders appears once,
under the folder of its regular file. An image whose {args.side}-pixel RGB pixels equal those of an
image already used is skipped too.

## Images

Each PNG is composited over a white background, converted to RGB, resized with Lanczos so
that its longer side is {args.side} pixels (smaller images are enlarged), and saved as WebP with
quality {chosen_quality} (Pillow {Image.__version__}, libwebp {features.version("webp")}).
The build tries qualities from {args.quality} down to {args.min_quality} in steps of 2 and uses the
highest one at which `images/` fits in {args.image_budget_mb:g} MB (10^6 bytes), the same for
every image.
PNGs with more than {args.max_pixels:,} pixels are skipped without decoding.

## Counts

- PNG files found: {found["png"]}, of which {found["png_links"]} are symbolic links that Debian
  uses to deduplicate files listed in several folders.
- SVG files found: {found["svg"]}.
- PNGs with an SVG of the same path: {found["paired"]}.
- Pairs kept: {sum(split_counts.values())}, with {split_counts["train"]} in train,
  {split_counts["val"]} in val and {split_counts["test"]} in test.
- Total size of `images/`: {image_bytes:,} bytes.

Skipped items by reason:

| reason | count | meaning |
|---|---|---|
{skipped_rows}

## Splits

Pairs are ranked by the SHA-256 of `source_path`. The {args.test_size} lowest go to test, the
next {args.val_size} to val and the rest to train, so the split does not depend on any random
state. Near-duplicate images (color variants, numbered series, the same flag in two sizes) can
still fall into different splits.

## Rebuild

From the repository root:

```
{rebuild_command}
```

Without `--debs-dir`, the script runs `apt-get download openclipart-png openclipart-svg` in a
temporary folder. To reproduce these counts exactly, pass a folder holding the two package
versions listed above, because the mirror may serve another version.
"""


def quote_copyright_files(copyright_texts: dict[str, str]) -> str:
    """Return Markdown that quotes the copyright file of each package, or one copy if all match.

    Trailing whitespace is removed from each line. Everything else is quoted verbatim.
    """
    def fence(text: str) -> str:
        lines = [line.rstrip() for line in text.rstrip().splitlines()]
        return "```text\n" + "\n".join(lines) + "\n```"

    paths = [f"`/usr/share/doc/{package}/copyright`" for package in copyright_texts]
    texts = list(copyright_texts.values())
    if all(text == texts[0] for text in texts):
        return (f"The files {' and '.join(paths)} are identical.\nTheir full text"
                f" (trailing whitespace removed) is:\n\n{fence(texts[0])}")
    return "\n\n".join(
        f"The full text of {path} (trailing whitespace removed) is:\n\n{fence(text)}"
        for path, text in zip(paths, texts)
    )


def render_license(
    copyright_texts: dict[str, str], rejected_licenses: collections.Counter
) -> str:
    """Render LICENSE.md, quoting the packages' copyright files."""
    if rejected_licenses:
        listed = ", ".join(f"`{uri}` ({n})" for uri, n in sorted(rejected_licenses.items()))
        rejected = (f"The build skipped the {sum(rejected_licenses.values())} items whose SVG"
                    f" names another license:\n{listed}.")
    else:
        rejected = "No SVG named a license other than public domain."
    return f"""# License of the demo dataset

The images and captions in this folder are derived from the Open Clip Art Library 0.18 as
packaged by Debian (`openclipart-png`, `openclipart-svg`). Each image is a package PNG
flattened onto white and resized, and each caption is built from the metadata of the matching
SVG.

{quote_copyright_files(copyright_texts)}

This is the Creative Commons "Copyright-Only Dedication (based on United States law) or Public
Domain Certification". It is not the CC0 1.0 legal text, but it too places the works in the
public domain.

The file refers to per-image `.txt` files with author information. Those files are not in
these packages. Instead, the SVGs record the author in `dc:creator`, which is empty in a few
of them. Most SVGs also declare `cc:license` as `http://web.resource.org/cc/PublicDomain`, and
the build treats an empty `cc:license` as covered by the copyright file.

{rejected}
"""


# ---------------------------------------------------------------------------------------------
# Build steps


def list_items(root: Path) -> tuple[list[Item], dict[str, int]]:
    png_paths = sorted(root.joinpath("png").rglob("*.png"), key=lambda p: p.as_posix())
    svg_count = sum(1 for _ in root.joinpath("svg").rglob("*.svg"))
    items = []
    for index, png_path in enumerate(png_paths):
        # Strip ".png" as text because Path.with_suffix would treat the dots in names such as
        # "warning..._cedric_bosdon_.png" as a suffix too.
        relative_stem = png_path.relative_to(root / "png").as_posix().removesuffix(".png")
        svg_path = root / "svg" / f"{relative_stem}.svg"
        items.append(Item(index, relative_stem, png_path, svg_path))
    found = {
        "png": len(png_paths),
        "png_links": sum(1 for p in png_paths if p.is_symlink()),
        "svg": svg_count,
        "paired": sum(1 for item in items if item.svg_path.is_file()),
    }
    return items, found


def record_skip(counts: collections.Counter, item: Item, error: SkipItem, level: int) -> None:
    counts[error.reason] += 1
    log.log(level, "Skipped %s (%s): %s", item.source_path, error.reason,
            error.detail or SKIP_REASONS[error.reason])


def attach_captions(
    items: list[Item],
    counts: collections.Counter,
    rejected_licenses: collections.Counter,
    args: argparse.Namespace,
) -> list[Item]:
    """Read each SVG and return the items that have a caption and a public-domain license."""
    captioned = []
    for item in tqdm(items, desc="SVG metadata", unit="file"):
        try:
            if not item.svg_path.is_file():
                raise SkipItem("no_svg", item.svg_path.name)
            metadata = read_svg_metadata(item.svg_path, args.max_svg_bytes)
            if metadata.license and metadata.license not in PUBLIC_DOMAIN_LICENSES:
                rejected_licenses[metadata.license] += 1
                raise SkipItem("not_public_domain", metadata.license)
            caption = build_caption(metadata.title, metadata.description, args.max_caption_chars)
            if not caption:
                raise SkipItem("no_text")
        except SkipItem as error:
            level = logging.DEBUG if error.reason == "no_text" else logging.WARNING
            record_skip(counts, item, error, level)
            continue
        item.caption = caption
        item.keywords = metadata.keywords
        captioned.append(item)
    return captioned


def drop_linked_duplicates(items: list[Item], counts: collections.Counter) -> list[Item]:
    """Keep one item per PNG file, preferring the regular file over symbolic links to it."""
    used_targets: set[Path] = set()
    unique_files = []
    for item in sorted(items, key=lambda i: (i.png_path.is_symlink(), i.index)):
        target = item.png_path.resolve()
        if target in used_targets:
            record_skip(counts, item, SkipItem("duplicate_png", str(target)), logging.DEBUG)
            continue
        used_targets.add(target)
        unique_files.append(item)
    return sorted(unique_files, key=lambda i: i.index)


def attach_images(
    items: list[Item], counts: collections.Counter, args: argparse.Namespace
) -> list[Item]:
    """Convert the PNGs in worker processes and return the items that converted."""
    settings = ImageSettings(args.side, candidate_qualities(args), args.max_pixels)
    by_index = {item.index: item for item in items}
    converted = []
    jobs = [(item.index, item.png_path, settings) for item in items]
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = pool.map(_convert_item, jobs, chunksize=8)
        for index, webp_by_quality, pixel_hash, reason, detail in tqdm(
            results, total=len(jobs), desc="Images", unit="image"
        ):
            item = by_index[index]
            if reason:
                record_skip(counts, item, SkipItem(reason, detail), logging.WARNING)
                continue
            item.webp_by_quality, item.pixel_hash = webp_by_quality, pixel_hash
            converted.append(item)
    return converted


def drop_pixel_duplicates(items: list[Item], counts: collections.Counter) -> list[Item]:
    """Keep one item per resized image, preferring regular files, then the lowest index."""
    first_by_hash: dict[str, Item] = {}
    for item in sorted(items, key=lambda i: (i.png_path.is_symlink(), i.index)):
        if item.pixel_hash in first_by_hash:
            detail = f"same pixels as {first_by_hash[item.pixel_hash].source_path}"
            record_skip(counts, item, SkipItem("duplicate_pixels", detail), logging.DEBUG)
            continue
        first_by_hash[item.pixel_hash] = item
    return sorted(first_by_hash.values(), key=lambda i: i.index)


def candidate_qualities(args: argparse.Namespace) -> tuple[int, ...]:
    """Return the WebP qualities to try: --quality down to --min-quality in steps of 2."""
    return tuple(range(args.quality, args.min_quality - 1, -2)) or (args.quality,)


def choose_quality(items: list[Item], budget_bytes: int) -> int:
    """Pick the highest quality whose images fit ``budget_bytes`` and set each item's ``webp``.

    One quality for all images keeps them comparable. When even the lowest candidate is over
    the budget, it is used anyway and a warning is logged.
    """
    qualities = sorted(items[0].webp_by_quality, reverse=True)
    totals = {q: sum(len(item.webp_by_quality[q]) for item in items) for q in qualities}
    for quality in qualities:
        log.info("WebP quality %d: images total %.2f MB", quality, totals[quality] / 1e6)
    fitting = [q for q in qualities if totals[q] <= budget_bytes]
    if fitting:
        chosen = fitting[0]
    else:
        chosen = qualities[-1]
        log.warning("Images take %.2f MB even at quality %d, over the budget of %.2f MB."
                    " Lower --min-quality or raise --image-budget-mb.",
                    totals[chosen] / 1e6, chosen, budget_bytes / 1e6)
    for item in items:
        item.webp = item.webp_by_quality[chosen]
    return chosen


def write_images(items: list[Item], images_dir: Path) -> int:
    """Write the WebP files, delete stale ``oca-*.webp`` files and return the total bytes."""
    images_dir.mkdir(parents=True, exist_ok=True)
    expected_names = {f"{item.image_id}.webp" for item in items}
    for stale in images_dir.glob("oca-*.webp"):
        if stale.name not in expected_names:
            stale.unlink()
    for item in items:
        write_atomically(images_dir / f"{item.image_id}.webp", item.webp)
    return sum(len(item.webp) for item in items)


def build(args: argparse.Namespace, debs_dir: Path, work_dir: Path) -> None:
    debs = find_debs(debs_dir)
    versions = {package: read_deb_field(deb, "Version") for package, deb in debs.items()}
    root = extract_debs(debs, work_dir)

    items, found = list_items(root)
    log.info("Found %d PNG files (%d symbolic links) and %d SVG files. %d PNGs have an SVG.",
             found["png"], found["png_links"], found["svg"], found["paired"])

    counts: collections.Counter = collections.Counter()
    rejected_licenses: collections.Counter = collections.Counter()
    items = attach_captions(items, counts, rejected_licenses, args)
    items = drop_linked_duplicates(items, counts)
    items = attach_images(items, counts, args)
    items = drop_pixel_duplicates(items, counts)
    if not items:
        raise SystemExit("No pairs were kept. Check the skipped items logged above.")
    chosen_quality = choose_quality(items, round(args.image_budget_mb * 1e6))

    for reason in SKIP_REASONS:
        log.info("Skipped %5d %s: %s", counts[reason], reason, SKIP_REASONS[reason])
    if len(items) < args.min_pairs:
        raise SystemExit(
            f"Only {len(items)} pairs were kept, fewer than --min-pairs {args.min_pairs}. Check"
            " the skip counts logged above. Nothing was written."
        )
    source_paths = [item.source_path for item in items]
    splits = assign_splits(source_paths, args.test_size, args.val_size)
    split_counts = collections.Counter(splits)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    image_bytes = write_images(items, out / "images")
    write_atomically(out / "pairs.csv", render_pairs_csv(items, splits))

    copyright_texts = {
        package: (work_dir / "usr/share/doc" / package / "copyright").read_text(encoding="utf-8")
        for package in PACKAGES
    }
    provenance = render_provenance(
        debs, versions, counts, found, split_counts, image_bytes, chosen_quality, args
    )
    write_atomically(out / "PROVENANCE.md", provenance.encode("utf-8"))
    license_text = render_license(copyright_texts, rejected_licenses)
    write_atomically(out / "LICENSE.md", license_text.encode("utf-8"))

    log.info("Kept %d pairs: %d train, %d val, %d test", len(items), split_counts["train"],
             split_counts["val"], split_counts["test"])
    log.info("Wrote %s: images total %.2f MB (%d bytes)", out, image_bytes / 1e6, image_bytes)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    repo_root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])

    parser.add_argument("--debs-dir", type=Path,
                        help="folder with the openclipart-png and openclipart-svg .deb files"
                        " (default: download them with apt-get into a temporary folder)")
    parser.add_argument("--out", type=Path, default=repo_root / "demo",
                        help="output folder (default: demo/ at the repository root)")
    parser.add_argument("--work-dir", type=Path,
                        help="empty or new folder to extract the packages into, kept afterwards"
                        " (default: a temporary folder, deleted afterwards)")

    parser.add_argument("--side", type=int, default=224,
                        help="longer side of the output images, in pixels (default: 224)")
    parser.add_argument("--quality", type=int, default=80,
                        help="highest WebP quality to use, from 0 to 100 (default: 80)")
    parser.add_argument("--min-quality", type=int, default=70,
                        help="lowest WebP quality to fall back to, in steps of 2 from --quality,"
                        " when the images exceed --image-budget-mb (default: 70)")
    parser.add_argument("--image-budget-mb", type=float, default=16.0,
                        help="target total size of images/ in megabytes of 10^6 bytes"
                        " (default: 16)")
    parser.add_argument("--max-pixels", type=int, default=50_000_000,
                        help="skip PNGs with more pixels than this, read from the header before"
                        " decoding (default: 50000000)")

    parser.add_argument("--max-svg-bytes", type=int, default=20_000_000,
                        help="skip SVG files larger than this many bytes (default: 20000000)")
    parser.add_argument("--max-caption-chars", type=int, default=200,
                        help="maximum caption length in characters (default: 200)")

    parser.add_argument("--test-size", type=int, default=1000,
                        help="number of pairs in the test split (default: 1000)")
    parser.add_argument("--val-size", type=int, default=500,
                        help="number of pairs in the val split (default: 500)")
    parser.add_argument("--min-pairs", type=int, default=6000,
                        help="exit with an error when fewer pairs are kept (default: 6000)")

    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="image conversion processes (default: the number of CPUs)")
    parser.add_argument("--verbose", action="store_true",
                        help="also log each duplicate and each item without text")

    args = parser.parse_args(argv)
    if not 0 <= args.min_quality <= args.quality <= 100:
        parser.error(f"--min-quality {args.min_quality} and --quality {args.quality} are invalid."
                     " Pass 0 <= --min-quality <= --quality <= 100.")
    if args.side < 1 or args.max_caption_chars < 2 or args.max_pixels < 1:
        parser.error("--side, --max-pixels and --max-caption-chars must be positive"
                     " (--max-caption-chars at least 2).")
    if args.workers is None or args.workers < 1:
        args.workers = 1
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    with logging_redirect_tqdm(), tempfile.TemporaryDirectory(prefix="oca-") as temporary:
        temporary = Path(temporary)
        work_dir = args.work_dir or temporary / "extracted"
        if work_dir.exists() and any(work_dir.iterdir()):
            sys.exit(f"--work-dir {work_dir} is not empty. Pass an empty or new folder.")
        work_dir.mkdir(parents=True, exist_ok=True)

        debs_dir = args.debs_dir
        if debs_dir is None:
            debs_dir = temporary / "debs"
            debs_dir.mkdir()
            download_debs(debs_dir)
        build(args, debs_dir, work_dir)


if __name__ == "__main__":
    main()
