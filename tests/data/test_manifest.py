"""Tests for srem_core.data.manifest.read_manifest: the four formats, optional columns and bad rows."""

from __future__ import annotations

import json
import logging
import re

import pandas as pd
import pyarrow
import pyarrow.parquet
import pytest
from PIL import Image

from srem_core.data.manifest import read_manifest
from srem_core.data.pairs import SkippedItem

EMPTY_CAPTION = "the caption is empty. Write the caption, or remove the row."


def _make_images(folder, *names):
    (folder / "images").mkdir(exist_ok=True)
    for name in names:
        Image.new("RGB", (4, 4)).save(folder / "images" / name)


def _write_csv(path, text: str) -> None:
    path.write_bytes(text.encode("utf-8"))


def _pairs_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "pair_id": ["p1", "p2", "p3", "p4"],
            "image_id": ["cat", "cat", "dog", "bird"],
            "image_path": ["images/cat.png", "images/cat.png", "images/dog.png", "images/bird.png"],
            "caption": ['a cat, "sitting"', "a cat\non two lines", "a dog", "a bird"],
            "category": ["animal", "animal", "animal", "bird"],
            "split": ["train", "train", "val", "test"],
            "keywords": ["cat;pet", "cat", "dog", "bird;sky"],
        }
    )


def _write_all_formats(folder, table: pd.DataFrame) -> dict[str, object]:
    paths = {suffix: folder / f"pairs.{suffix}" for suffix in ("csv", "tsv", "jsonl", "parquet")}
    table.to_csv(paths["csv"], index=False)
    table.to_csv(paths["tsv"], index=False, sep="\t")
    table.to_json(paths["jsonl"], orient="records", lines=True, force_ascii=False)
    pyarrow.parquet.write_table(pyarrow.Table.from_pandas(table, preserve_index=False), paths["parquet"])
    return paths


def test_manifest_round_trip_all_formats(tmp_path):
    _make_images(tmp_path, "cat.png", "dog.png", "bird.png")
    paths = _write_all_formats(tmp_path, _pairs_table())

    datasets = {suffix: read_manifest(path) for suffix, path in paths.items()}

    reference = datasets["csv"]
    assert reference.pairs["caption"].tolist() == _pairs_table()["caption"].tolist()
    assert reference.pairs["keywords"].tolist() == ["cat;pet", "cat", "dog", "bird;sky"]
    assert reference.caption_to_image.tolist() == [0, 0, 1, 2]
    assert reference.images["image_id"].tolist() == ["cat", "dog", "bird"]
    for suffix, dataset in datasets.items():
        pd.testing.assert_frame_equal(dataset.pairs, reference.pairs, obj=suffix)
        pd.testing.assert_frame_equal(dataset.images, reference.images, obj=suffix)
        assert dataset.skipped == []
        assert dataset.root == tmp_path.resolve()


def test_manifest_image_paths_relative_to_manifest(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    _make_images(data, "cat.png")
    _write_csv(data / "pairs.csv", "image_path,caption\nimages/cat.png,a cat\n")
    monkeypatch.chdir(tmp_path)

    dataset = read_manifest("data/pairs.csv")

    assert dataset.image_path(0) == (data / "images" / "cat.png").resolve()
    assert dataset.image_path(0).is_file()


def test_manifest_quoted_newlines_and_line_numbers(tmp_path):
    _make_images(tmp_path, "a.png")
    _write_csv(
        tmp_path / "pairs.csv",
        'image_path,caption\nimages/a.png,"first line\nsecond line, with comma"\nimages/a.png,"   "\n',
    )

    dataset = read_manifest(tmp_path / "pairs.csv")

    assert dataset.pairs["caption"].tolist() == ["first line\nsecond line, with comma"]
    assert dataset.skipped == [SkippedItem("pairs.csv:4", "images/a.png-1", EMPTY_CAPTION)]


def test_manifest_several_captions_per_image(tmp_path):
    _make_images(tmp_path, "a.png", "b.png")
    _write_csv(
        tmp_path / "pairs.csv",
        "image_path,caption\nimages/a.png,one\nimages/b.png,two\n./images/a.png,three\nimages/a.png,four\n",
    )

    dataset = read_manifest(tmp_path / "pairs.csv")

    assert dataset.n_images == 2
    assert dataset.images["image_id"].tolist() == ["images/a.png", "images/b.png"]
    assert dataset.caption_to_image.tolist() == [0, 1, 0, 0]
    assert dataset.pairs["pair_id"].tolist() == [
        "images/a.png-0", "images/b.png-0", "images/a.png-1", "images/a.png-2"
    ]


def test_manifest_generated_ids_count_skipped_rows(tmp_path):
    _make_images(tmp_path, "a.png")
    _write_csv(tmp_path / "pairs.csv", "image_id,image_path,caption\na,images/a.png,\na,images/a.png,x\n")

    dataset = read_manifest(tmp_path / "pairs.csv")

    assert dataset.pairs["pair_id"].tolist() == ["a-1"]
    assert dataset.skipped == [SkippedItem("pairs.csv:2", "a-0", EMPTY_CAPTION)]


def test_manifest_defaults_for_optional_columns(tmp_path):
    _make_images(tmp_path, "a.png")
    _write_csv(tmp_path / "pairs.csv", "image_path,caption\nimages/a.png,a cat\n")

    dataset = read_manifest(tmp_path / "pairs.csv")

    row = dataset.pairs.iloc[0]
    assert row["pair_id"] == "images/a.png-0"
    assert row["image_id"] == "images/a.png"
    assert row["split"] == "train"
    assert row["category"] is None


def test_manifest_split_values(tmp_path):
    _make_images(tmp_path, "a.png")
    _write_csv(
        tmp_path / "pairs.csv",
        "image_path,caption,split\nimages/a.png,x,\nimages/a.png,y, Val \nimages/a.png,z,TEST\n",
    )

    dataset = read_manifest(tmp_path / "pairs.csv")

    assert dataset.pairs["split"].tolist() == ["train", "val", "test"]


def test_manifest_unknown_split(tmp_path):
    _make_images(tmp_path, "a.png")
    _write_csv(
        tmp_path / "pairs.csv",
        "image_path,caption,split\nimages/a.png,x,train\nimages/a.png,y,dev\nimages/a.png,z,holdout\n",
    )
    message = (
        "pairs.csv:3: the split 'dev' is not one of train, val, test (2 row(s) in all, with the "
        "values 'dev', 'holdout'). Rename the values (for example dev or validation to val), or leave "
        "the cell empty for train."
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        read_manifest(tmp_path / "pairs.csv")


def test_manifest_column_options(tmp_path):
    _make_images(tmp_path, "a.png")
    _write_csv(tmp_path / "pairs.csv", "file,text,subset,caption\nimages/a.png,a cat,val,unused\n")

    dataset = read_manifest(
        tmp_path / "pairs.csv", image_column="file", caption_column="text", split_column="subset"
    )

    assert dataset.pairs["caption"].tolist() == ["a cat"]
    assert dataset.pairs["split"].tolist() == ["val"]
    assert dataset.images["image_path"].tolist() == ["images/a.png"]
    assert "file" not in dataset.pairs.columns


def test_manifest_missing_caption_column(tmp_path):
    _write_csv(tmp_path / "pairs.csv", "image_path,text\nimages/a.png,a cat\n")
    message = (
        f"Manifest {tmp_path / 'pairs.csv'} has no column 'caption' (columns found: 'image_path', "
        "'text'). Pass caption_column='<column name>' to read_manifest to name the column that contains "
        "the caption."
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        read_manifest(tmp_path / "pairs.csv")


def test_manifest_missing_image_column(tmp_path):
    _write_csv(tmp_path / "pairs.csv", "path,caption\nimages/a.png,a cat\n")
    message = (
        f"Manifest {tmp_path / 'pairs.csv'} has no column 'image_path' (columns found: 'path', "
        "'caption'). Pass image_column='<column name>' to read_manifest to name the column that "
        "contains the image path."
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        read_manifest(tmp_path / "pairs.csv")


def test_manifest_renamed_optional_column_missing(tmp_path):
    _write_csv(tmp_path / "pairs.csv", "image_path,caption\nimages/a.png,a cat\n")
    message = (
        f"Manifest {tmp_path / 'pairs.csv'} has no column 'subset' (columns found: 'image_path', "
        "'caption'). Pass split_column='<column name>' to read_manifest to name the column that contains "
        "the split."
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        read_manifest(tmp_path / "pairs.csv", split_column="subset")


def test_manifest_duplicate_pair_id_keeps_first(tmp_path):
    _make_images(tmp_path, "a.png", "b.png")
    _write_csv(
        tmp_path / "pairs.csv",
        "pair_id,image_path,caption\nx,images/a.png,first\nx,images/b.png,second\ny,images/b.png,third\n",
    )

    dataset = read_manifest(tmp_path / "pairs.csv")

    assert dataset.pairs["caption"].tolist() == ["first", "third"]
    reason = "the pair id 'x' is already used by pairs.csv:2, which is kept. Give every row its own pair id."
    assert dataset.skipped == [SkippedItem("pairs.csv:3", "x", reason)]


def test_manifest_image_id_with_two_paths(tmp_path):
    _make_images(tmp_path, "a.png", "b.png")
    _write_csv(
        tmp_path / "pairs.csv",
        "image_id,image_path,caption\nimg,images/a.png,one\nimg,images/b.png,two\n",
    )

    dataset = read_manifest(tmp_path / "pairs.csv")

    reason = (
        "the image id 'img' names 'images/a.png' at pairs.csv:2 but 'images/b.png' here. Give each "
        "image file its own image id."
    )
    assert dataset.skipped == [SkippedItem("pairs.csv:3", "img-1", reason)]


def test_manifest_whitespace_caption(tmp_path):
    _make_images(tmp_path, "a.png")
    _write_csv(tmp_path / "pairs.csv", "image_path,caption\nimages/a.png,ok\nimages/a.png,\" \t \"\n")

    dataset = read_manifest(tmp_path / "pairs.csv")

    assert dataset.skipped == [SkippedItem("pairs.csv:3", "images/a.png-1", EMPTY_CAPTION)]


def test_manifest_invalid_utf8_skips_only_that_row(tmp_path):
    _make_images(tmp_path, "a.png")
    (tmp_path / "pairs.csv").write_bytes(
        b"image_path,caption\nimages/a.png,caf\xe9 au lait\nimages/a.png,caf\xc3\xa9\n"
    )

    dataset = read_manifest(tmp_path / "pairs.csv")

    assert dataset.pairs["caption"].tolist() == ["caf\u00e9"]
    reason = (
        "the caption is not valid UTF-8 (invalid byte 0xe9 at character 4). The file may be Latin-1 "
        "or Windows-1252 encoded: save it as UTF-8, or fix this row."
    )
    assert dataset.skipped == [SkippedItem("pairs.csv:2", "images/a.png-0", reason)]


def test_manifest_utf8_bom(tmp_path):
    _make_images(tmp_path, "a.png")
    (tmp_path / "pairs.csv").write_bytes(b"\xef\xbb\xbfimage_path,caption\nimages/a.png,x\n")

    dataset = read_manifest(tmp_path / "pairs.csv")

    assert dataset.pairs["caption"].tolist() == ["x"]


def test_manifest_empty_image_path(tmp_path):
    _make_images(tmp_path, "a.png")
    _write_csv(tmp_path / "pairs.csv", "image_path,caption\n,orphan\nimages/a.png,ok\n")

    dataset = read_manifest(tmp_path / "pairs.csv")

    reason = "the image path is empty. Fill in the image file's path, or remove the row."
    assert dataset.skipped == [SkippedItem("pairs.csv:2", "", reason)]


def test_manifest_missing_image_file(tmp_path):
    _make_images(tmp_path, "a.png")
    _write_csv(tmp_path / "pairs.csv", "image_path,caption\nimages/a.png,ok\nimages/gone.png,lost\n")

    dataset = read_manifest(tmp_path / "pairs.csv")

    reason = (
        f"the image file 'images/gone.png' was not found (looked for "
        f"{tmp_path.resolve() / 'images' / 'gone.png'}). Fix the path, add the file, or remove the row."
    )
    assert dataset.skipped == [SkippedItem("pairs.csv:3", "images/gone.png-0", reason)]
    assert dataset.n_pairs == 1


def test_manifest_check_image_files_off(tmp_path):
    _write_csv(tmp_path / "pairs.csv", "image_path,caption\nimages/gone.png,lost\n")

    dataset = read_manifest(tmp_path / "pairs.csv", check_image_files=False)

    assert dataset.n_pairs == 1
    assert dataset.skipped == []


def test_manifest_wrong_field_count(tmp_path):
    _make_images(tmp_path, "a.png")
    _write_csv(tmp_path / "pairs.csv", "image_path,caption\nimages/a.png,a cat, sitting\nimages/a.png,ok\n")

    dataset = read_manifest(tmp_path / "pairs.csv")

    reason = (
        "the row has 3 fields but the header has 2 columns. Quote every field that contains a comma "
        "or a line break."
    )
    assert dataset.skipped == [SkippedItem("pairs.csv:2", "", reason)]


def test_manifest_tsv_wrong_field_count(tmp_path):
    _make_images(tmp_path, "a.png")
    _write_csv(tmp_path / "pairs.tsv", "image_path\tcaption\nimages/a.png\tok\nimages/a.png\n")

    dataset = read_manifest(tmp_path / "pairs.tsv")

    reason = (
        "the row has 1 fields but the header has 2 columns. Quote every field that contains a tab "
        "or a line break."
    )
    assert dataset.skipped == [SkippedItem("pairs.tsv:3", "", reason)]


def test_manifest_unbalanced_quote(tmp_path):
    _write_csv(tmp_path / "pairs.csv", 'image_path,caption\na.png,ok\nb.png,"never closed\nc.png,x\n')
    message = (
        f"Manifest {tmp_path / 'pairs.csv'} cannot be parsed in the record that starts at line 3: "
        'unexpected end of data. Check that quoted fields open and close with " and write a " inside '
        'one as "".'
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        read_manifest(tmp_path / "pairs.csv")


def test_manifest_duplicate_header_column(tmp_path):
    _write_csv(tmp_path / "pairs.csv", "image_path,caption,caption\na.png,x,y\n")
    message = (
        f"Manifest {tmp_path / 'pairs.csv'} has the column(s) 'caption' more than once. Rename or "
        "remove the extra column(s)."
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        read_manifest(tmp_path / "pairs.csv")


def test_manifest_unknown_suffix(tmp_path):
    path = tmp_path / "pairs.xlsx"
    path.write_bytes(b"PK")
    message = (
        f"Manifest {path} has the suffix '.xlsx'; expected one of .csv, .tsv, .jsonl, .parquet. "
        "Rename or convert the file."
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        read_manifest(path)


def test_manifest_file_not_found(tmp_path):
    path = tmp_path / "pairs.csv"

    with pytest.raises(FileNotFoundError, match=re.escape(f"Manifest {path} not found. Check the path.")):
        read_manifest(path)


def test_manifest_empty_csv(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_bytes(b"")
    message = (
        f"Manifest {path} is empty. Expected a header line naming the columns, such as "
        "image_path,caption, then one line per pair."
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        read_manifest(path)


def test_manifest_header_only(tmp_path):
    path = tmp_path / "pairs.csv"
    _write_csv(path, "image_path,caption\n")

    with pytest.raises(ValueError, match=re.escape(f"Manifest {path} has no rows. Add one row per pair.")):
        read_manifest(path)


def test_manifest_nothing_usable(tmp_path):
    path = tmp_path / "pairs.csv"
    _write_csv(path, "image_path,caption\nimages/x.png,\n,y\n")
    message = (
        f"Manifest {path} has no usable pairs: all 2 rows were skipped. First reasons: pairs.csv:2: "
        f"{EMPTY_CAPTION}; pairs.csv:3: the image path is empty. Fill in the image file's path, or "
        "remove the row. Fix these rows and load the manifest again."
    )

    with pytest.raises(ValueError, match=re.escape(message)):
        read_manifest(path)


def test_manifest_warns_with_skip_count(tmp_path, caplog):
    _make_images(tmp_path, "a.png")
    _write_csv(tmp_path / "pairs.csv", "image_path,caption\nimages/a.png,ok\nimages/a.png,\n,z\n")

    with caplog.at_level(logging.WARNING, logger="srem_core.data.manifest"):
        read_manifest(tmp_path / "pairs.csv")

    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert message.startswith(f"Skipped 2 of 3 rows of {tmp_path / 'pairs.csv'};")
    assert f"First: pairs.csv:3: {EMPTY_CAPTION}" in message


def _write_jsonl(path, lines: list[bytes]) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_jsonl_bad_lines(tmp_path):
    _make_images(tmp_path, "a.png")
    good = json.dumps({"image_path": "images/a.png", "caption": "ok", "pair_id": 7}).encode()
    _write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            good,
            b'{"image_path": "images/a.png", "caption": 42}',
            b'{"image_path": "images/a.png", "caption": null}',
            b'{"image_path": "images/a.png", "caption": "caf\xe9"}',
            b'{"image_path": "images/a.png", "caption": ',
            b"",
            b'["images/a.png", "x"]',
        ],
    )

    dataset = read_manifest(tmp_path / "pairs.jsonl")

    assert dataset.pairs["pair_id"].tolist() == ["7"]
    assert dataset.skipped == [
        SkippedItem(
            "pairs.jsonl:2",
            "images/a.png-1",
            "the caption has type int (42), not text. Write it as a string.",
        ),
        SkippedItem("pairs.jsonl:3", "images/a.png-2", EMPTY_CAPTION),
        SkippedItem(
            "pairs.jsonl:4",
            "",
            "the line is not valid UTF-8 (invalid byte 0xe9 at byte 47). Save the manifest as UTF-8.",
        ),
        SkippedItem(
            "pairs.jsonl:5",
            "",
            "the line is not valid JSON (Expecting value at column 43). Fix the line.",
        ),
        SkippedItem(
            "pairs.jsonl:7",
            "",
            'the line is a JSON list, not an object. Write one object per line, such as {"image_path": '
            '"a.jpg", "caption": "a dog"}.',
        ),
    ]


def test_jsonl_empty_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"\n\n")
    message = f"Manifest {path} is empty. Write one JSON object per line, one line per pair."

    with pytest.raises(ValueError, match=re.escape(message)):
        read_manifest(path)


def test_parquet_binary_caption_not_utf8(tmp_path):
    _make_images(tmp_path, "a.png")
    table = pyarrow.table(
        {
            "image_path": ["images/a.png", "images/a.png"],
            "caption": pyarrow.array([b"ok", b"caf\xe9"], type=pyarrow.binary()),
        }
    )
    pyarrow.parquet.write_table(table, tmp_path / "pairs.parquet")

    dataset = read_manifest(tmp_path / "pairs.parquet")

    assert dataset.pairs["caption"].tolist() == ["ok"]
    reason = (
        "the caption is not valid UTF-8 (invalid byte 0xe9 at byte 4). The file may be Latin-1 or "
        "Windows-1252 encoded: save it as UTF-8, or fix this row."
    )
    assert dataset.skipped == [SkippedItem("pairs.parquet:2", "images/a.png-1", reason)]


def test_parquet_corrupt_file(tmp_path):
    path = tmp_path / "pairs.parquet"
    path.write_bytes(b"not parquet at all")

    with pytest.raises(ValueError) as caught:
        read_manifest(path)

    message = str(caught.value)
    assert message.startswith(f"Manifest {path} cannot be read as Parquet (")
    assert message.endswith("). Check that the file is complete, or export it again.")


def test_manifest_url_image_path(tmp_path):
    _make_images(tmp_path, "a.png")
    _write_csv(tmp_path / "pairs.csv", "image_path,caption\nhttps://example.org/a.jpg,x\nimages/a.png,y\n")

    dataset = read_manifest(tmp_path / "pairs.csv")

    reason = (
        "the image path 'https://example.org/a.jpg' is a URL. Download the images first and write "
        "their local paths, relative to the manifest's folder."
    )
    assert dataset.skipped == [SkippedItem("pairs.csv:2", "", reason)]
