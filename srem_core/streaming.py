"""Encode, score and export WebDataset shards of any size with bounded memory, resumable per shard.

``extract_shard_features`` encodes shards in order into a ``FeatureStore`` folder and commits after
each shard, so a killed run resumes at the shard it was in. ``score_store`` scores every pair chunk by
chunk into a Parquet file, and ``export_store`` streams that file's row groups into CSV, JSONL or
Parquet. Memory depends on the batch and chunk sizes, not on the number of pairs.

The store's files and their commit rule are described in ``srem_core.feature_store``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from srem_core import atomic
from srem_core.data.images import DEFAULT_MAX_PIXELS, MAX_FILE_BYTES
from srem_core.data.pairs import SkippedItem
from srem_core.data.shard_members import REFERENCE_SEPARATOR
from srem_core.data.shard_specs import expand_shards
from srem_core.data.webdataset import iter_shard
from srem_core.encoders.base import Encoder
from srem_core.feature_store import FEATURE_DTYPE, KEY_COLUMNS, KEY_SCHEMA, FeatureStore, shard_fingerprint
from srem_core.scoring import embed_inputs, score_pairs
from srem_core.selection import LossMixtureSplitter

logger = logging.getLogger(__name__)

SCORE_SCHEMA = pa.schema([("energy", pa.float32()), ("swapped_entropy", pa.float32()), ("per_pair_loss", pa.float32())])
DECISION_SCHEMA = pa.schema([("clean_prob", pa.float32()), ("is_noisy", pa.bool_())])

SCORE_CHUNK_ROWS = 65_536
"""Pairs scored together: one batch context and one Parquet row group. Their float32 embeddings take
65,536 x 256 x 2 x 4 bytes = 134 MB at the default embedding size."""
READ_ROWS = 8_192
"""Feature rows read from disk per step: 8,192 x 1,664 (offline dims) float32 copies are 55 MB."""
SPLITTER_SAMPLE_SIZE = 100_000
"""Losses the loss mixture is fitted on when no fitted splitter is passed: a seeded uniform sample of
the rows, enough for a two-component 1-D mixture and cheap to fit."""
DEFAULT_NOISE_THRESHOLD = 0.5
"""``is_noisy = clean_prob < threshold``, the default of the training config."""
EXPORT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
KEEP_CHOICES = ("clean", "noisy", "all")


@dataclasses.dataclass(frozen=True)
class ExtractionSummary:
    """Counts and shard lists of one ``extract_shard_features`` call."""

    n_rows: int
    """Committed rows in the store after the call."""
    shards_encoded: list[str]
    shards_already_done: list[str]
    """Shards found complete in ``progress.json`` (by path, or by name and size) and not read again."""
    n_skipped: int
    """Samples skipped in the shards encoded by this call."""
    shards_missing: list[str] = dataclasses.field(default_factory=list)
    """Named shards that do not exist. They are left out, and a later call encodes them once they exist."""


def extract_shard_features(
    encoder: Encoder,
    shards: str | os.PathLike | Sequence[str | os.PathLike],
    store_dir: str | os.PathLike,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = MAX_FILE_BYTES,
) -> ExtractionSummary:
    """Encode the pairs of every shard (see ``expand_shards``) in order into the store at ``store_dir``.

    Shards already completed in the store are not read. A shard is committed only after all its rows
    are written, so after a crash or ``kill -9`` a rerun starts that shard again from its start.
    Skipped samples are kept in the store (``FeatureStore.skipped``) and logged.

    Raises:
        ValueError: ``batch_size`` is below 1, the store belongs to another encoder, or a completed
            shard changed size since it was encoded.
        FileNotFoundError: no shard of ``shards`` exists. Missing shards among existing ones are
            skipped, logged and listed in ``ExtractionSummary.shards_missing``.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be at least 1, got {batch_size}")
    missing: list[SkippedItem] = []
    paths = expand_shards(shards, missing=missing)
    encoder.to(torch.device(device))
    store = FeatureStore.create(
        store_dir, encoder_identity=encoder.identity, image_dim=encoder.image_dim, text_dim=encoder.text_dim
    )
    done = _completed_shards(store, paths)
    todo = [path for path in paths if path not in done]
    logger.info("Shards: %d in total, %d already in %s, %d to encode", len(paths), len(done), store.folder, len(todo))

    n_skipped = 0
    with tqdm(total=len(paths), initial=len(done), desc="Shards", unit="shard", disable=not progress) as bar:
        for path in todo:
            n_skipped += _extract_shard(encoder, store, path, batch_size, progress, max_pixels, max_bytes)
            bar.update(1)
    return ExtractionSummary(
        n_rows=store.n_rows,
        shards_encoded=[str(path) for path in todo],
        shards_already_done=[str(path) for path in paths if path in done],
        n_skipped=n_skipped,
        shards_missing=[item.source for item in missing],
    )


def _completed_shards(store: FeatureStore, paths: list[Path]) -> set[Path]:
    """Return the shards of ``paths`` that the store completed already.

    A shard matches a record by its resolved path, or else by file name, size and fingerprint
    (``shard_fingerprint``), so that a moved shard folder does not encode every shard a second time.
    The keys of a moved shard keep the old paths. Records written before fingerprints existed match a
    moved shard by name and size alone.

    Raises:
        ValueError: a shard at a recorded path has another size or fingerprint than when it was encoded.
    """
    by_path = {record["path"]: record for record in store.completed_shards}
    by_name: dict[tuple[str, int], list[dict]] = {}
    for record in store.completed_shards:
        by_name.setdefault((Path(record["path"]).name, record["bytes"]), []).append(record)
    done = set()
    for path in paths:
        size = path.stat().st_size
        record = by_path.get(str(path.resolve()))
        if record is not None:
            fingerprint = shard_fingerprint(path) if "fingerprint" in record else None
            if record["bytes"] != size or fingerprint != record.get("fingerprint"):
                raise ValueError(
                    f"Shard {path} changed since it was encoded into {store.folder} ({size} bytes now, "
                    f"{record['bytes']} then). Encode the changed shards into a new store folder."
                )
            done.add(path)
            continue
        candidates = by_name.get((path.name, size), [])
        if candidates and any("fingerprint" in item for item in candidates):
            fingerprint = shard_fingerprint(path)
            candidates = [item for item in candidates if item.get("fingerprint", fingerprint) == fingerprint]
        if candidates:
            logger.warning(
                "Shard %s has the name, size and content of completed shard %s, so it is not encoded again. "
                "Its keys keep the old path.", path, candidates[0]["path"],
            )
            done.add(path)
    return done


def _extract_shard(encoder, store, path, batch_size, progress, max_pixels, max_bytes) -> int:
    """Encode one shard into the store, commit it and return the number of skipped samples.

    Images are decoded and preprocessed in this process, one sample at a time.
    """
    skipped: list[SkippedItem] = []
    samples = iter_shard(path, skipped, decode_images=True, max_pixels=max_pixels, max_bytes=max_bytes)
    key_rows: list[dict] = []
    batch: list = []
    for sample in tqdm(samples, desc=path.name, unit="pair", leave=False, disable=not progress):
        pixels = encoder.preprocess(sample.image)
        batch.append(_PendingPair(sample.key, sample.image_member, sample.caption, sample.url, pixels))
        if len(batch) == batch_size:
            _encode_batch(encoder, store, path, batch, key_rows, skipped)
            batch = []
    if batch:
        _encode_batch(encoder, store, path, batch, key_rows, skipped)
    keys = pd.DataFrame(key_rows, columns=list(KEY_COLUMNS)).astype({"row": np.int64})
    store.commit_shard(path, keys, skipped)
    logger.info("Shard %s: %d pairs encoded, %d skipped", path, len(keys), len(skipped))
    return len(skipped)


class _PendingPair(NamedTuple):
    """A decoded sample waiting for its encoder batch."""

    key: str
    image_member: str
    caption: str
    url: str | None
    pixels: torch.Tensor


def _encode_batch(encoder, store, path, batch: list[_PendingPair], key_rows, skipped) -> None:
    """Encode one batch, write its usable rows after the shard's earlier rows and record their keys."""
    with torch.no_grad():
        image_rows = encoder.encode_image_tensors(torch.stack([pair.pixels for pair in batch]))
        text_rows = encoder.encode_texts([pair.caption for pair in batch])
    with np.errstate(over="ignore"):  # overflow gives inf, and the check below skips that row
        image_rows = image_rows.detach().float().cpu().numpy().astype(FEATURE_DTYPE)
        text_rows = text_rows.detach().float().cpu().numpy().astype(FEATURE_DTYPE)
    finite = np.isfinite(image_rows).all(axis=1) & np.isfinite(text_rows).all(axis=1)
    for pair in [pair for pair, ok in zip(batch, finite) if not ok]:
        reason = "the encoder returned NaN, or a value beyond the float16 range, for this sample. Check the encoder."
        skipped.append(SkippedItem(source=str(path), item_id=pair.key, reason=reason))
        logger.warning("Skipped sample %s of shard %s: %s", pair.key, path, reason)

    start = store.n_rows + len(key_rows)
    store.append_rows(start, image_rows[finite], text_rows[finite])
    shard = str(path.resolve())
    usable = [pair for pair, ok in zip(batch, finite) if ok]
    for offset, pair in enumerate(usable):
        reference = f"{shard}{REFERENCE_SEPARATOR}{pair.image_member}"
        key_rows.append({"row": start + offset, "shard": shard, "key": pair.key, "image_path": reference,
                         "caption": pair.caption, "url": pair.url})


@dataclasses.dataclass(frozen=True)
class StoreScores:
    """Result of ``score_store``: the scores file and the splitter that gave ``clean_prob``."""

    path: Path
    n_rows: int
    n_noisy: int
    splitter: LossMixtureSplitter


def score_store(
    heads: torch.nn.Module,
    store_dir: str | os.PathLike,
    *,
    tau: float,
    batch_size: int,
    seed: int,
    out: str | os.PathLike,
    splitter: LossMixtureSplitter | None = None,
    threshold: float = DEFAULT_NOISE_THRESHOLD,
    chunk_rows: int = SCORE_CHUNK_ROWS,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> StoreScores:
    """Score every pair of a feature store with ``heads`` and write one Parquet row per pair to ``out``.

    ``heads`` is a ``ProjectionHeads`` or ``HeadEnsemble``, and it is moved to ``device``. Columns:
    ``KEY_COLUMNS``, then ``energy`` (unbounded, lower = more logit mass for the pair's anchors),
    ``swapped_entropy`` (>= 0, higher = less confident), ``per_pair_loss`` (>= 0, higher = worse),
    ``clean_prob`` (in [0, 1], higher = cleaner) and ``is_noisy`` (``clean_prob < threshold``).

    Batch context: the three scores of a pair depend on the other pairs of its batch. The rows are cut
    into near-equal contiguous chunks of at most ``chunk_rows`` (``chunk_bounds``), and each chunk is
    split into batches by ``score_pairs`` with ``seed``. Scores therefore repeat exactly for the same
    store, ``chunk_rows``, ``batch_size`` and ``seed``, and change with any of them. A store of at most
    ``chunk_rows`` rows gets the scores of ``score_pairs`` on all its rows.

    ``clean_prob`` comes from ``splitter`` when given (fitted elsewhere, for example on training
    losses). Otherwise a ``LossMixtureSplitter(random_state=seed)`` is fitted on the losses of a seeded
    uniform sample of ``SPLITTER_SAMPLE_SIZE`` rows (all rows when fewer). Because of that fit the file
    is written in two passes. Scores go to a temporary file next to ``out``, which is then copied one
    row group at a time with ``clean_prob`` added. Each pass keeps one chunk in memory, and ``out``
    appears atomically at the end.

    Raises:
        ValueError: the store has fewer than 2 rows, ``chunk_rows`` is below 2, ``threshold`` is
            outside [0, 1], or the feature sizes of the store and ``heads`` differ.
    """
    store = FeatureStore(store_dir)
    _check_scoring_inputs(store, heads, chunk_rows, threshold)
    heads.to(torch.device(device))
    sample_size = min(store.n_rows, SPLITTER_SAMPLE_SIZE)
    sample_rows = np.sort(np.random.default_rng(seed).choice(store.n_rows, sample_size, replace=False))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".scores.tmp", dir=out.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        chunks = chunk_bounds(store.n_rows, chunk_rows)
        scoring = {"tau": tau, "batch_size": batch_size, "seed": seed, "device": device}
        losses = _write_scores(heads, store, temporary, chunks, sample_rows, scoring, progress)
        if splitter is None:
            splitter = LossMixtureSplitter(random_state=seed).fit(losses)
        n_noisy = _write_decisions(temporary, out, splitter, threshold)
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("Scored %d pairs into %s: %d noisy at threshold %s", store.n_rows, out, n_noisy, threshold)
    return StoreScores(path=out, n_rows=store.n_rows, n_noisy=n_noisy, splitter=splitter)


def chunk_bounds(n_rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    """Return the (start, stop) rows of ``score_store``'s chunks: the fewest contiguous chunks of at
    most ``chunk_rows`` rows, whose sizes differ by at most one row."""
    n_chunks = max(1, -(-n_rows // chunk_rows))
    size, n_larger = divmod(n_rows, n_chunks)
    lengths = [size + 1] * n_larger + [size] * (n_chunks - n_larger)
    stops = np.cumsum(lengths)
    return [(int(stop - length), int(stop)) for stop, length in zip(stops, lengths)]


def _check_scoring_inputs(store: FeatureStore, heads: torch.nn.Module, chunk_rows: int, threshold: float) -> None:
    if store.n_rows < 2:
        raise ValueError(f"Feature store {store.folder} has {store.n_rows} rows; scoring needs at least 2 pairs.")
    if chunk_rows < 2:
        raise ValueError(f"`chunk_rows` must be at least 2, got {chunk_rows}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"`threshold` must be in [0, 1], got {threshold}")
    if (heads.image_dim, heads.text_dim) != (store.dims["image"], store.dims["text"]):
        raise ValueError(
            f"The heads take (image_dim, text_dim) = {(heads.image_dim, heads.text_dim)} but the store "
            f"{store.folder} contains {(store.dims['image'], store.dims['text'])}. Use heads trained on "
            "features of the store's encoder."
        )


def _write_scores(heads, store, path, chunks, sample_rows, scoring: dict, progress: bool) -> np.ndarray:
    """Write keys and scores chunk by chunk to ``path``; return the losses of the rows in ``sample_rows``."""
    keys = _KeySlicer(store.iter_keys())
    schema = pa.schema([*KEY_SCHEMA, *SCORE_SCHEMA])
    sampled_losses = []
    with pq.ParquetWriter(path, schema) as writer:
        for start, stop in tqdm(chunks, desc="Scoring", unit="chunk", disable=not progress):
            table = keys.take(stop - start)
            stats = _score_chunk(heads, store, start, stop, **scoring)
            for name, values in stats.items():
                table[name] = values
            in_chunk = sample_rows[(sample_rows >= start) & (sample_rows < stop)]
            sampled_losses.append(stats["per_pair_loss"][in_chunk - start])
            writer.write_table(pa.Table.from_pandas(table, schema=schema, preserve_index=False))
    return np.concatenate(sampled_losses)


def _score_chunk(heads, store, start, stop, *, tau, batch_size, seed, device) -> dict[str, np.ndarray]:
    """Embed rows [start, stop) in blocks of ``READ_ROWS`` and score them as one batch context."""
    image_parts, text_parts = [], []
    for block in range(start, stop, READ_ROWS):
        block_stop = min(block + READ_ROWS, stop)
        image_inputs = torch.from_numpy(store.read_rows("image", block, block_stop).astype(np.float32))
        text_inputs = torch.from_numpy(store.read_rows("text", block, block_stop).astype(np.float32))
        image_embeddings, text_embeddings = embed_inputs(heads, image_inputs, text_inputs, torch.device(device))
        image_parts.append(image_embeddings)
        text_parts.append(text_embeddings)
    stats = score_pairs(torch.cat(image_parts), torch.cat(text_parts), tau=tau, batch_size=batch_size, seed=seed)
    return {name: getattr(stats, name) for name in SCORE_SCHEMA.names}


class _KeySlicer:
    """Cuts the per-shard key tables of a store into consecutive slices of any length."""

    def __init__(self, frames: Iterator[pd.DataFrame]):
        self.frames = frames
        self.pending = KEY_SCHEMA.empty_table().to_pandas()

    def take(self, n_rows: int) -> pd.DataFrame:
        parts, available = [self.pending], len(self.pending)
        while available < n_rows:
            frame = next(self.frames)
            parts.append(frame)
            available += len(frame)
        joined = pd.concat([part for part in parts if len(part)], ignore_index=True)
        self.pending = joined.iloc[n_rows:].reset_index(drop=True)
        return joined.iloc[:n_rows].reset_index(drop=True)


def _write_decisions(scores_path: Path, out: Path, splitter: LossMixtureSplitter, threshold: float) -> int:
    """Copy ``scores_path`` to ``out`` row group by row group, adding clean_prob and is_noisy."""
    source = pq.ParquetFile(scores_path)
    schema = pa.schema([*KEY_SCHEMA, *SCORE_SCHEMA, *DECISION_SCHEMA])
    n_noisy = 0
    with atomic.atomic_path(out) as temporary, pq.ParquetWriter(temporary, schema) as writer:
        for group in range(source.num_row_groups):
            table = source.read_row_group(group)
            clean_prob = splitter.clean_prob(table.column("per_pair_loss").to_numpy())
            is_noisy = clean_prob < threshold
            n_noisy += int(is_noisy.sum())
            table = table.append_column("clean_prob", pa.array(clean_prob)).append_column("is_noisy", pa.array(is_noisy))
            writer.write_table(table)
    return n_noisy


def export_store(
    scores_parquet: str | os.PathLike,
    out: str | os.PathLike,
    *,
    keep: str = "clean",
    threshold: float | None = None,
    batch_rows: int = SCORE_CHUNK_ROWS,
) -> int:
    """Stream the rows of a ``score_store`` file that ``keep`` selects into ``out``; return their count.

    ``keep="clean"`` writes the pairs that are not noisy (the cleaned list), ``"noisy"`` only the noisy
    ones and ``"all"`` every pair. Noisy means ``is_noisy`` as scored, or ``clean_prob < threshold`` when
    ``threshold`` is given, and then the written ``is_noisy`` column follows ``threshold`` too. The
    suffix of ``out`` sets the format: ``.csv``, ``.jsonl`` or ``.parquet``. At most ``batch_rows`` rows
    are in memory at once, and ``out`` appears atomically.

    Raises:
        ValueError: an unknown ``keep`` or suffix, or ``threshold`` outside [0, 1].
    """
    out = Path(out)
    fmt = EXPORT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ValueError(f"Cannot tell the export format of {out}: the suffix must be one of {sorted(EXPORT_FORMATS)}.")
    if keep not in KEEP_CHOICES:
        raise ValueError(f"`keep` must be one of {KEEP_CHOICES}, got {keep!r}")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"`threshold` must be in [0, 1], got {threshold}")

    source = pq.ParquetFile(scores_parquet)
    written = 0
    with atomic.atomic_path(out) as temporary, _ExportWriter(temporary, fmt, source.schema_arrow) as writer:
        for batch in source.iter_batches(batch_size=batch_rows):
            table = pa.Table.from_batches([batch])
            if threshold is None:
                noisy = table.column("is_noisy").to_numpy()
            else:
                noisy = table.column("clean_prob").to_numpy() < threshold
                # The written flags follow the threshold that selected the rows.
                position = table.schema.get_field_index("is_noisy")
                table = table.set_column(position, table.schema.field(position), pa.array(noisy))
            if keep == "clean":
                table = table.filter(pa.array(~noisy))
            elif keep == "noisy":
                table = table.filter(pa.array(noisy))
            writer.write(table)
            written += table.num_rows
    logger.info("Exported %d pairs (%s) from %s to %s", written, keep, scores_parquet, out)
    return written


class _ExportWriter:
    """Appends tables to one CSV, JSONL or Parquet file, writing the CSV header once."""

    def __init__(self, path: Path, fmt: str, schema: pa.Schema):
        self.fmt = fmt
        self.parquet = pq.ParquetWriter(path, schema) if fmt == "parquet" else None
        self.text = None if fmt == "parquet" else open(path, "w", encoding="utf-8", newline="")
        self.header = True

    def write(self, table: pa.Table) -> None:
        if self.parquet is not None:
            self.parquet.write_table(table)
            return
        frame = table.to_pandas()
        if self.fmt == "csv":
            frame.to_csv(self.text, header=self.header, index=False)
        elif len(frame):
            # pandas writes "/" as "\/". Both are valid JSON for "/", and every "/" of the data is escaped
            # that way, so undoing it cannot change another escape sequence.
            self.text.write(frame.to_json(orient="records", lines=True, force_ascii=False).replace("\\/", "/"))
        self.header = False

    def __enter__(self) -> "_ExportWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.parquet is not None:
            self.parquet.close()
        else:
            self.text.close()
