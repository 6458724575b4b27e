"""Read a manifest of image-caption pairs (CSV, TSV, JSONL or Parquet) into a ``PairDataset``.

A manifest has one row per caption: an image path relative to the manifest's folder and a caption, plus
optional ``pair_id``, ``image_id``, ``category`` and ``split`` columns. Several rows may name the same
image. Rows that cannot be used are skipped and listed in ``PairDataset.skipped``. Problems with the
file as a whole raise ``ValueError``: a missing column, an unknown split or no usable row.

Image files are not opened here (that happens when they are encoded), but a missing file is detected
and its rows are skipped.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import logging
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.parquet

from srem_core.data.pairs import SPLITS, PairDataset, SkippedItem, build_dataset

logger = logging.getLogger(__name__)

MANIFEST_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}
"""File suffix -> manifest format; the format is chosen by suffix alone."""

DEFAULT_SPLIT = "train"
"""Split of a row whose ``split`` cell is empty or whose manifest has no ``split`` column."""

REASONS_IN_ERROR = 5
"""Skip reasons quoted when nothing usable remains: enough to show a pattern, short enough to read."""

OPTIONAL_COLUMNS = ("pair_id", "image_id", "category", "split")
RESERVED_COLUMNS = ("pair_id", "image_id", "image_path", "caption", "category", "split", "image_index")
"""Names of the output pair table's own columns: a manifest column of that name that is not mapped to
its role is dropped, so that it cannot overwrite the mapped one."""


class _SkipRow(Exception):
    """Internal signal: the current row cannot be used, for the reason given."""


@dataclasses.dataclass
class _RawRow:
    label: str
    """Location of the row, as ``pairs.csv:17`` (file name and line, or Parquet row, from 1)."""
    values: dict[str, object]
    problem: str | None = None
    """Set when the row could not even be read (invalid UTF-8 line, invalid JSON)."""


def read_manifest(
    path: str | os.PathLike,
    *,
    image_column: str = "image_path",
    caption_column: str = "caption",
    pair_id_column: str = "pair_id",
    image_id_column: str = "image_id",
    category_column: str = "category",
    split_column: str = "split",
    check_image_files: bool = True,
) -> PairDataset:
    """Read a CSV, TSV, JSONL or Parquet manifest and return its usable pairs.

    ``pair_id`` defaults to ``<image_id>-<k>``, where k counts the image's rows from 0 in file order,
    skipped rows included, so fixing one bad row does not renumber the others. ``image_id`` defaults
    to the image path as written, normalised to forward slashes. ``split`` defaults to "train".
    An optional column that keeps its default name may be absent; one given another name must exist.
    Any other columns are kept as extra pair columns. Skipped rows are recorded with
    ``source="<file name>:<line>"``: the line where the record starts in CSV, TSV and JSONL (the
    header is line 1), the row number from 1 in Parquet.

    Raises:
        FileNotFoundError: the manifest does not exist.
        ValueError: unknown suffix, unreadable file, missing column, a split other than train, val or
            test, or no usable row.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Manifest {path} not found. Check the path.")
    file_format = MANIFEST_FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise ValueError(
            f"Manifest {path} has the suffix {path.suffix!r}; expected one of "
            f"{', '.join(MANIFEST_FORMATS)}. Rename or convert the file."
        )
    columns, raw_rows = _READERS[file_format](path)
    requested = {
        "image_path": image_column,
        "caption": caption_column,
        "pair_id": pair_id_column,
        "image_id": image_id_column,
        "category": category_column,
        "split": split_column,
    }
    names = _resolve_columns(path, columns, requested)
    extras = _extra_columns(path, columns, names)
    root = path.resolve().parent
    rows, skipped = _RowValidator(names, extras, root, check_image_files).run(raw_rows)
    _report_skipped(path, skipped, n_rows=len(raw_rows), n_usable=len(rows))
    frame = _pairs_frame(rows, names, extras)
    return build_dataset(frame, root=root, source=str(path), skipped=skipped)


def _resolve_columns(path: Path, columns: list[str], requested: dict[str, str]) -> dict[str, str | None]:
    """Map each standard column to the manifest's column, or None when an optional one is absent."""
    options = {"image_path": "image_column", "caption": "caption_column"}
    options.update({name: f"{name}_column" for name in OPTIONAL_COLUMNS})
    found = ", ".join(repr(c) for c in columns) or "none"
    names: dict[str, str | None] = {}
    for standard, column in requested.items():
        if column in columns:
            names[standard] = column
        elif standard in OPTIONAL_COLUMNS and column == standard:
            names[standard] = None
        else:
            raise ValueError(
                f"Manifest {path} has no column {column!r} (columns found: {found}). Pass "
                f"{options[standard]}='<column name>' to read_manifest to name the column that "
                f"contains the {standard.replace('_', ' ')}."
            )
    return names


def _extra_columns(path: Path, columns: list[str], names: dict[str, str | None]) -> list[str]:
    """Return the manifest columns kept as extra pair columns, in file order."""
    mapped = set(names.values())
    dropped = [c for c in columns if c not in mapped and c in RESERVED_COLUMNS]
    if dropped:
        logger.info("Ignoring column(s) %s of %s: another column has that role.", dropped, path)
    return [c for c in columns if c not in mapped and c not in RESERVED_COLUMNS]


def _read_delimited(path: Path, delimiter: str) -> tuple[list[str], list[_RawRow]]:
    """Read a CSV or TSV file; quoted fields may contain delimiters and newlines.

    Invalid UTF-8 bytes are kept as surrogate escapes so that only the rows containing them are
    skipped later, not the whole file.
    """
    separator = "comma" if delimiter == "," else "tab"
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        # strict: a malformed quote raises instead of silently swallowing the following lines.
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        start = 1
        try:
            header = [name.strip() for name in next(reader)]
            rows = []
            start = reader.line_num + 1
            for fields in reader:
                label = f"{path.name}:{start}"
                start = reader.line_num + 1
                if not fields:
                    continue
                if len(fields) != len(header):
                    problem = (
                        f"the row has {len(fields)} fields but the header has {len(header)} columns. "
                        f"Quote every field that contains a {separator} or a line break."
                    )
                    rows.append(_RawRow(label, {}, problem))
                    continue
                rows.append(_RawRow(label, dict(zip(header, fields))))
        except StopIteration:
            raise ValueError(
                f"Manifest {path} is empty. Expected a header line naming the columns, such as "
                f"image_path{delimiter}caption, then one line per pair."
            ) from None
        except csv.Error as error:
            raise ValueError(
                f"Manifest {path} cannot be parsed in the record that starts at line {start}: {error}. "
                'Check that quoted fields open and close with " and write a " inside one as "".'
            ) from error
    _check_header(path, header)
    return header, rows


def _check_header(path: Path, header: list[str]) -> None:
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise ValueError(
            f"Manifest {path} has the column(s) {', '.join(map(repr, duplicates))} more than once. "
            "Rename or remove the extra column(s)."
        )


def _read_jsonl(path: Path) -> tuple[list[str], list[_RawRow]]:
    """Read one JSON object per line; a line that is not valid UTF-8 or JSON is kept as a problem row."""
    columns: dict[str, None] = {}
    rows = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            label = f"{path.name}:{number}"
            try:
                text = line.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
                record = json.loads(text)
            except UnicodeDecodeError as error:
                problem = (
                    f"the line is not valid UTF-8 (invalid byte 0x{line[error.start]:02x} at byte "
                    f"{error.start + 1}). Save the manifest as UTF-8."
                )
                rows.append(_RawRow(label, {}, problem))
                continue
            except json.JSONDecodeError as error:
                problem = (
                    f"the line is not valid JSON ({error.msg} at column {error.colno}). Fix the line."
                )
                rows.append(_RawRow(label, {}, problem))
                continue
            if not isinstance(record, dict):
                problem = (
                    f"the line is a JSON {type(record).__name__}, not an object. Write one object per "
                    'line, such as {"image_path": "a.jpg", "caption": "a dog"}.'
                )
                rows.append(_RawRow(label, {}, problem))
                continue
            columns.update(dict.fromkeys(record))
            rows.append(_RawRow(label, record))
    if not rows:
        raise ValueError(f"Manifest {path} is empty. Write one JSON object per line, one line per pair.")
    return list(columns), rows


def _read_parquet(path: Path) -> tuple[list[str], list[_RawRow]]:
    try:
        table = pyarrow.parquet.read_table(path)
    except (pyarrow.ArrowException, OSError) as error:
        raise ValueError(
            f"Manifest {path} cannot be read as Parquet ({error}). Check that the file is complete, "
            "or export it again."
        ) from error
    rows = [_RawRow(f"{path.name}:{i}", values) for i, values in enumerate(table.to_pylist(), start=1)]
    return table.column_names, rows


_READERS = {
    "csv": functools.partial(_read_delimited, delimiter=","),
    "tsv": functools.partial(_read_delimited, delimiter="\t"),
    "jsonl": _read_jsonl,
    "parquet": _read_parquet,
}


def _text(value: object, field: str, allow_numbers: bool = False) -> str | None:
    """Return a cell as stripped text, or None when it is empty.

    Raises _SkipRow when the value is not text (or an integer, if ``allow_numbers``) or not valid UTF-8.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as error:
            where = f"byte 0x{value[error.start]:02x} at byte {error.start + 1}"
            raise _SkipRow(_invalid_utf8_reason(field, where)) from None
    if allow_numbers and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _SkipRow(
            f"the {field} has type {type(value).__name__} ({value!r}), not text. Write it as a string."
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _SkipRow(_invalid_utf8_reason(field, _describe_surrogate(value, error.start))) from None
    return value.strip() or None


def _describe_surrogate(value: str, position: int) -> str:
    code = ord(value[position])
    if 0xDC80 <= code <= 0xDCFF:
        # A surrogate escape: the reader's stand-in for one byte that failed to decode as UTF-8.
        return f"byte 0x{code - 0xDC00:02x} at character {position + 1}"
    return f"unpaired surrogate U+{code:04X} at character {position + 1}"


def _invalid_utf8_reason(field: str, where: str) -> str:
    return (
        f"the {field} is not valid UTF-8 (invalid {where}). The file may be Latin-1 or "
        "Windows-1252 encoded: save it as UTF-8, or fix this row."
    )


class _RowValidator:
    """Turn raw rows into pair records, skipping bad rows and collecting unknown split values."""

    def __init__(self, names: dict[str, str | None], extras: list[str], root: Path, check_files: bool):
        self.names = names
        self.extras = extras
        self.root = root
        self.check_files = check_files
        self.kept_pair_ids: dict[str, str] = {}
        self.kept_image_paths: dict[str, tuple[str, str]] = {}
        self.rows_per_image: dict[str, int] = {}
        self.file_found: dict[str, bool] = {}
        self.bad_splits: list[tuple[str, str]] = []
        self.item_id = ""

    def run(self, raw_rows: Iterable[_RawRow]) -> tuple[list[dict], list[SkippedItem]]:
        rows, skipped = [], []
        for raw in raw_rows:
            self.item_id = ""
            try:
                rows.append(self._validate(raw))
            except _SkipRow as skip:
                skipped.append(SkippedItem(source=raw.label, item_id=self.item_id, reason=str(skip)))
        self._raise_for_bad_splits()
        return rows, skipped

    def _cell(self, raw: _RawRow, standard: str, field: str, allow_numbers: bool = True) -> str | None:
        column = self.names[standard]
        return None if column is None else _text(raw.values.get(column), field, allow_numbers)

    def _validate(self, raw: _RawRow) -> dict:
        if raw.problem is not None:
            raise _SkipRow(raw.problem)
        split = self._split(raw)
        image_path = self._image_path(raw)
        image_id = self._cell(raw, "image_id", "image id") or image_path
        self.item_id = image_id
        k = self.rows_per_image.get(image_id, 0)
        self.rows_per_image[image_id] = k + 1
        pair_id = self._cell(raw, "pair_id", "pair id") or f"{image_id}-{k}"
        self.item_id = pair_id
        caption = self._cell(raw, "caption", "caption", allow_numbers=False)
        if caption is None:
            raise _SkipRow("the caption is empty. Write the caption, or remove the row.")
        record = {"pair_id": pair_id, "image_id": image_id, "image_path": image_path, "caption": caption}
        if self.names["category"] is not None:
            record["category"] = self._cell(raw, "category", "category")
        record["split"] = split
        self._check_unique(raw.label, pair_id, image_id, image_path)
        self._check_file(image_path)
        self.kept_pair_ids[pair_id] = raw.label
        self.kept_image_paths.setdefault(image_id, (image_path, raw.label))
        for column in self.extras:
            value = raw.values.get(column)
            record[column] = None if value == "" else value
        return record

    def _image_path(self, raw: _RawRow) -> str:
        image_path = self._cell(raw, "image_path", "image path", allow_numbers=False)
        if image_path is None:
            raise _SkipRow("the image path is empty. Fill in the image file's path, or remove the row.")
        if "://" in image_path:
            raise _SkipRow(
                f"the image path {image_path!r} is a URL. Download the images first and write "
                "their local paths, relative to the manifest's folder."
            )
        return Path(image_path).as_posix()

    def _split(self, raw: _RawRow) -> str:
        value = self._cell(raw, "split", "split")
        if value is None:
            return DEFAULT_SPLIT
        if value.lower() not in SPLITS:
            self.bad_splits.append((raw.label, value))
        return value.lower()

    def _check_unique(self, label: str, pair_id: str, image_id: str, image_path: str) -> None:
        if pair_id in self.kept_pair_ids:
            raise _SkipRow(
                f"the pair id {pair_id!r} is already used by {self.kept_pair_ids[pair_id]}, which "
                "is kept. Give every row its own pair id."
            )
        known_path, known_label = self.kept_image_paths.get(image_id, (image_path, label))
        if known_path != image_path:
            raise _SkipRow(
                f"the image id {image_id!r} names {known_path!r} at {known_label} but {image_path!r} "
                "here. Give each image file its own image id."
            )

    def _check_file(self, image_path: str) -> None:
        if not self.check_files:
            return
        if image_path not in self.file_found:
            self.file_found[image_path] = os.path.isfile(self.root / image_path)
        if not self.file_found[image_path]:
            raise _SkipRow(
                f"the image file {image_path!r} was not found (looked for {self.root / image_path}). "
                "Fix the path, add the file, or remove the row."
            )

    def _raise_for_bad_splits(self) -> None:
        if not self.bad_splits:
            return
        label, value = self.bad_splits[0]
        values = sorted({v for _, v in self.bad_splits})
        raise ValueError(
            f"{label}: the split {value!r} is not one of {', '.join(SPLITS)} "
            f"({len(self.bad_splits)} row(s) in all, with the values {', '.join(map(repr, values))}). "
            "Rename the values (for example dev or validation to val), or leave the cell empty for "
            "train."
        )


def _report_skipped(path: Path, skipped: list[SkippedItem], n_rows: int, n_usable: int) -> None:
    if n_usable == 0:
        if n_rows == 0:
            raise ValueError(f"Manifest {path} has no rows. Add one row per pair.")
        first = "; ".join(f"{item.source}: {item.reason}" for item in skipped[:REASONS_IN_ERROR])
        raise ValueError(
            f"Manifest {path} has no usable pairs: all {n_rows} rows were skipped. First reasons: "
            f"{first} Fix these rows and load the manifest again."
        )
    if skipped:
        logger.warning(
            "Skipped %d of %d rows of %s; PairDataset.skipped lists every reason. First: %s: %s",
            len(skipped), n_rows, path, skipped[0].source, skipped[0].reason,
        )


def _pairs_frame(rows: list[dict], names: dict[str, str | None], extras: list[str]) -> pd.DataFrame:
    standard = ["pair_id", "image_id", "image_path", "caption"]
    if names["category"] is not None:
        standard.append("category")
    return pd.DataFrame(rows, columns=[*standard, "split", *extras])
