"""Tests for srem_core.streaming: the feature store, resumable extraction, chunked scoring and export."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from srem_core import feature_store, streaming
from srem_core.encoders.base import Encoder
from srem_core.model import HeadEnsemble, ProjectionHeads
from srem_core.scoring import embed_inputs, score_pairs
from srem_core.selection import LossMixtureSplitter
from srem_core.feature_store import FeatureStore
from srem_core.streaming import (
    chunk_bounds,
    export_store,
    extract_shard_features,
    score_store,
)

SAMPLES_PER_SHARD = 10
BATCH_SIZE = 4
"""Three encoder batches per shard (4, 4 and 2 samples)."""
TAU = 0.05


class SimulatedCrash(Exception):
    pass


class FakeEncoder(Encoder):
    """A deterministic encoder: image features are pixel values, text features bytes of a SHA-256.

    ``crash_at_call`` raises SimulatedCrash, and ``kill_at_call`` sends SIGKILL to this process, at that
    call of ``encode_image_tensors`` (counted from 1), before anything of that batch is written.
    """

    image_dim = 6
    text_dim = 4

    def __init__(self, crash_at_call: int | None = None, kill_at_call: int | None = None):
        self.crash_at_call = crash_at_call
        self.kill_at_call = kill_at_call
        self.image_calls = 0
        self.captions_encoded: list[str] = []

    @property
    def identity(self) -> str:
        return "fake-encoder-1"

    def preprocess(self, image):
        pixels = np.asarray(image.resize((2, 2)), dtype=np.float32) / 255
        return torch.from_numpy(pixels).permute(2, 0, 1)

    def encode_image_tensors(self, pixels):
        self.image_calls += 1
        if self.image_calls == self.crash_at_call:
            raise SimulatedCrash(f"crash at encoder call {self.image_calls}")
        if self.image_calls == self.kill_at_call:
            os.kill(os.getpid(), signal.SIGKILL)
        return pixels.flatten(1)[:, : self.image_dim]

    def encode_texts(self, texts):
        texts = list(texts)
        self.captions_encoded.extend(texts)
        digests = [hashlib.sha256(text.encode()).digest()[: self.text_dim] for text in texts]
        return torch.tensor([[byte / 255 for byte in digest] for digest in digests])

    def to(self, device):
        return self


def image_bytes(color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buffer, format="PNG")
    return buffer.getvalue()


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def color(index: int) -> tuple[int, int, int]:
    return (index * 37 % 256, index * 91 % 256, index * 53 % 256)


def write_shards(folder: Path, n_shards: int = 4, bad_keys: tuple[str, ...] = ()) -> list[Path]:
    """Write shards of SAMPLES_PER_SHARD pairs; keys in ``bad_keys`` get a corrupt image."""
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for shard in range(n_shards):
        members = []
        for position in range(SAMPLES_PER_SHARD):
            key = f"{shard:05d}{position:04d}"
            index = shard * SAMPLES_PER_SHARD + position
            image = b"not an image" if key in bad_keys else image_bytes(color(index))
            members += [(f"{key}.png", image), (f"{key}.txt", f"caption {index}".encode())]
        shards.append(write_shard(folder / f"{shard:05d}.tar", members))
    return shards


def store_snapshot(folder: Path) -> dict:
    """Return the feature file bytes, keys, skipped samples and progress record of a store."""
    store = FeatureStore(folder)
    return {
        "image": Path(folder / feature_store.FEATURE_FILES["image"]).read_bytes(),
        "text": Path(folder / feature_store.FEATURE_FILES["text"]).read_bytes(),
        "keys": store.keys(),
        "skipped": store.skipped(),
        "progress": store.progress,
    }


def assert_same_store(first: Path, second: Path) -> None:
    first_snapshot, second_snapshot = store_snapshot(first), store_snapshot(second)
    assert first_snapshot["image"] == second_snapshot["image"]
    assert first_snapshot["text"] == second_snapshot["text"]
    pd.testing.assert_frame_equal(first_snapshot["keys"], second_snapshot["keys"])
    assert first_snapshot["skipped"] == second_snapshot["skipped"]
    assert first_snapshot["progress"] == second_snapshot["progress"]


def test_extract_writes_features_and_keys(tmp_path):
    shards = write_shards(tmp_path / "shards", n_shards=2, bad_keys=("000010003",))
    encoder = FakeEncoder()

    summary = extract_shard_features(encoder, tmp_path / "shards", tmp_path / "store", batch_size=BATCH_SIZE, progress=False)

    store = FeatureStore(tmp_path / "store")
    keys = store.keys()
    assert summary.n_rows == store.n_rows == 19
    assert summary.n_skipped == 1
    assert keys["row"].tolist() == list(range(19))
    assert keys["key"].iat[13] == "000010004"
    assert keys["image_path"].iat[13] == f"{shards[1].resolve()}#000010004.png"
    expected_image = FakeEncoder().preprocess(Image.new("RGB", (4, 4), color(14))).flatten()[:6].numpy()
    np.testing.assert_array_equal(store.features("image")[13], expected_image.astype(np.float16))
    expected_text = FakeEncoder().encode_texts(["caption 14"])[0].numpy()
    np.testing.assert_array_equal(store.features("text")[13], expected_text.astype(np.float16))
    assert [(Path(item.source).name, item.item_id) for item in store.skipped()] == [("00001.tar", "000010003")]
    assert np.load(tmp_path / "store" / feature_store.FEATURE_FILES["image"], mmap_mode="r").shape == (19, 6)


def test_extract_records_unreadable_shard(tmp_path):
    write_shards(tmp_path / "shards", n_shards=2)
    (tmp_path / "shards" / "00000.tar").write_bytes(b"")

    summary = extract_shard_features(FakeEncoder(), tmp_path / "shards", tmp_path / "store", progress=False)

    store = FeatureStore(tmp_path / "store")
    assert summary.n_rows == 10
    assert store.keys()["key"].iat[0] == "000010000"
    assert [record["rows"] for record in store.completed_shards] == [0, 10]
    assert [(Path(item.source).name, item.item_id) for item in store.skipped()] == [("00000.tar", "")]


def test_extract_skips_overflowing_features(tmp_path):
    write_shards(tmp_path / "shards", n_shards=1)

    class OverflowEncoder(FakeEncoder):
        def encode_texts(self, texts):
            features = super().encode_texts(texts)
            features[[text == "caption 3" for text in texts]] = 1e6  # beyond float16's maximum of 65504
            return features

    summary = extract_shard_features(OverflowEncoder(), tmp_path / "shards", tmp_path / "store", progress=False)

    store = FeatureStore(tmp_path / "store")
    assert summary.n_rows == 9
    assert "caption 3" not in store.keys()["caption"].tolist()
    assert [item.item_id for item in store.skipped()] == ["000000003"]
    assert "beyond the float16 range" in store.skipped()[0].reason
    assert np.isfinite(store.features("text")).all()


def test_extract_resumes_after_crash(tmp_path):
    write_shards(tmp_path / "shards")
    extract_shard_features(FakeEncoder(), tmp_path / "shards", tmp_path / "reference", batch_size=BATCH_SIZE, progress=False)

    # Calls 1-3 encode shard 0, 4-6 shard 1, 7-9 shard 2: call 8 fails after shard 2's first batch was written.
    with pytest.raises(SimulatedCrash):
        extract_shard_features(FakeEncoder(crash_at_call=8), tmp_path / "shards", tmp_path / "store", batch_size=BATCH_SIZE, progress=False)
    interrupted = FeatureStore(tmp_path / "store")
    row_bytes = FakeEncoder.image_dim * 2
    image_file = tmp_path / "store" / feature_store.FEATURE_FILES["image"]
    assert interrupted.n_rows == 20
    assert image_file.stat().st_size > interrupted._offsets["image"] + 20 * row_bytes

    encoder = FakeEncoder()
    summary = extract_shard_features(encoder, tmp_path / "shards", tmp_path / "store", batch_size=BATCH_SIZE, progress=False)

    assert [Path(path).name for path in summary.shards_already_done] == ["00000.tar", "00001.tar"]
    assert encoder.captions_encoded == [f"caption {index}" for index in range(20, 40)]
    assert_same_store(tmp_path / "store", tmp_path / "reference")


def test_extract_resumes_after_kill(tmp_path):
    write_shards(tmp_path / "shards")
    extract_shard_features(FakeEncoder(), tmp_path / "shards", tmp_path / "reference", batch_size=BATCH_SIZE, progress=False)
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_streaming import FakeEncoder
        from srem_core.streaming import extract_shard_features
        extract_shard_features(FakeEncoder(kill_at_call=8), {str(tmp_path / "shards")!r}, {str(tmp_path / "store")!r},
                               batch_size={BATCH_SIZE}, progress=False)
        """
    )

    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert FeatureStore(tmp_path / "store").n_rows == 20
    encoder = FakeEncoder()
    extract_shard_features(encoder, tmp_path / "shards", tmp_path / "store", batch_size=BATCH_SIZE, progress=False)
    assert encoder.captions_encoded == [f"caption {index}" for index in range(20, 40)]
    assert_same_store(tmp_path / "store", tmp_path / "reference")


def test_extract_skips_completed_store(tmp_path):
    write_shards(tmp_path / "shards", n_shards=2)
    extract_shard_features(FakeEncoder(), tmp_path / "shards", tmp_path / "store", progress=False)
    encoder = FakeEncoder()

    summary = extract_shard_features(encoder, tmp_path / "shards", tmp_path / "store", progress=False)

    assert encoder.image_calls == 0
    assert summary.shards_encoded == []
    assert summary.n_rows == 20


def test_extract_recognises_moved_shards(tmp_path):
    write_shards(tmp_path / "shards", n_shards=2)
    extract_shard_features(FakeEncoder(), tmp_path / "shards", tmp_path / "store", progress=False)
    (tmp_path / "shards").rename(tmp_path / "moved")
    encoder = FakeEncoder()

    summary = extract_shard_features(encoder, tmp_path / "moved", tmp_path / "store", progress=False)

    assert encoder.image_calls == 0
    assert [Path(path).name for path in summary.shards_already_done] == ["00000.tar", "00001.tar"]
    assert summary.n_rows == 20


def test_extract_rejects_changed_shard(tmp_path):
    shards = write_shards(tmp_path / "shards", n_shards=2)
    extract_shard_features(FakeEncoder(), tmp_path / "shards", tmp_path / "store", progress=False)
    write_shard(shards[0], [("a.png", image_bytes((1, 2, 3))), ("a.txt", b"a")])

    with pytest.raises(ValueError, match=r"Shard .*00000.tar changed since it was encoded into .*store \(\d+ bytes now, \d+ then\)"):
        extract_shard_features(FakeEncoder(), tmp_path / "shards", tmp_path / "store", progress=False)


def test_extract_rejects_same_size_rewrite(tmp_path):
    shards = write_shards(tmp_path / "shards", n_shards=2)
    extract_shard_features(FakeEncoder(), tmp_path / "shards", tmp_path / "store", progress=False)
    size = shards[0].stat().st_size
    shards[0].write_bytes(shards[1].read_bytes())  # tar padding often gives different shards one size
    assert shards[0].stat().st_size == size

    with pytest.raises(ValueError, match=r"Shard .*00000.tar changed since it was encoded"):
        extract_shard_features(FakeEncoder(), tmp_path / "shards", tmp_path / "store", progress=False)


def test_extract_same_size_other_shard(tmp_path):
    shards = write_shards(tmp_path / "shards", n_shards=2)
    extract_shard_features(FakeEncoder(), shards[0], tmp_path / "store", progress=False)
    other = tmp_path / "elsewhere" / "00000.tar"
    other.parent.mkdir()
    other.write_bytes(shards[1].read_bytes())
    assert other.stat().st_size == shards[0].stat().st_size

    summary = extract_shard_features(FakeEncoder(), other, tmp_path / "store", progress=False)

    assert summary.shards_encoded == [str(other)]
    assert summary.n_rows == 20


def test_extract_skips_missing_shard_then_adds_it(tmp_path):
    shards = write_shards(tmp_path / "shards", n_shards=3)
    held_back = shards[1].with_suffix(".later")
    shards[1].rename(held_back)
    pattern = f"{tmp_path}/shards/{{00000..00002}}.tar"

    first = extract_shard_features(FakeEncoder(), pattern, tmp_path / "store", progress=False)
    held_back.rename(shards[1])
    second = extract_shard_features(FakeEncoder(), pattern, tmp_path / "store", progress=False)

    assert [Path(path).name for path in first.shards_missing] == ["00001.tar"]
    assert first.n_rows == 20
    assert second.shards_missing == []
    assert [Path(path).name for path in second.shards_encoded] == ["00001.tar"]
    assert second.n_rows == 30


def test_extract_rejects_other_encoder(tmp_path):
    write_shards(tmp_path / "shards", n_shards=1)
    extract_shard_features(FakeEncoder(), tmp_path / "shards", tmp_path / "store", progress=False)

    class OtherEncoder(FakeEncoder):
        identity = "other-encoder"

    with pytest.raises(ValueError, match=r"contains features of \(encoder, image_dim, text_dim\) = \('fake-encoder-1', 6, 4\), not \('other-encoder', 6, 4\)"):
        extract_shard_features(OtherEncoder(), tmp_path / "shards", tmp_path / "store", progress=False)


def test_feature_store_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"is not a feature store. Create one with `srem encode --shards SHARDS --store FOLDER`"):
        FeatureStore(tmp_path)


@pytest.mark.parametrize(("n_rows", "chunk_rows", "sizes"), [(10, 4, [4, 3, 3]), (8, 4, [4, 4]), (3, 65_536, [3]), (9, 2, [2, 2, 2, 2, 1])])
def test_chunk_bounds(n_rows, chunk_rows, sizes):
    bounds = chunk_bounds(n_rows, chunk_rows)

    assert [stop - start for start, stop in bounds] == sizes
    assert bounds[0][0] == 0
    assert bounds[-1][1] == n_rows
    assert all(first[1] == second[0] for first, second in zip(bounds, bounds[1:]))


@pytest.fixture
def store_dir(tmp_path) -> Path:
    write_shards(tmp_path / "shards", n_shards=4)
    extract_shard_features(FakeEncoder(), tmp_path / "shards", tmp_path / "store", batch_size=BATCH_SIZE, progress=False)
    return tmp_path / "store"


@pytest.fixture
def heads() -> ProjectionHeads:
    torch.manual_seed(0)
    return ProjectionHeads(FakeEncoder.image_dim, FakeEncoder.text_dim, embed_dim=8)


def reference_scores(heads, store_dir: Path, chunks, *, batch_size: int, seed: int) -> pd.DataFrame:
    """Score each chunk in memory with score_pairs, the computation score_store streams."""
    store = FeatureStore(store_dir)
    image = torch.from_numpy(np.asarray(store.features("image"), dtype=np.float32))
    text = torch.from_numpy(np.asarray(store.features("text"), dtype=np.float32))
    image_embeddings, text_embeddings = embed_inputs(heads, image, text, torch.device("cpu"))
    parts = []
    for start, stop in chunks:
        stats = score_pairs(image_embeddings[start:stop], text_embeddings[start:stop], tau=TAU, batch_size=batch_size, seed=seed)
        parts.append(pd.DataFrame({"energy": stats.energy, "swapped_entropy": stats.swapped_entropy, "per_pair_loss": stats.per_pair_loss}))
    return pd.concat(parts, ignore_index=True)


def test_score_store_one_chunk_matches_memory(store_dir, heads, tmp_path):
    result = score_store(heads, store_dir, tau=TAU, batch_size=8, seed=3, out=tmp_path / "scores.parquet", progress=False)

    scores = pd.read_parquet(result.path)
    expected = reference_scores(heads, store_dir, [(0, 40)], batch_size=8, seed=3)
    for column in expected:
        np.testing.assert_allclose(scores[column], expected[column], rtol=1e-5, atol=1e-6)
    splitter = LossMixtureSplitter(random_state=3).fit(expected["per_pair_loss"].to_numpy())
    np.testing.assert_allclose(scores["clean_prob"], splitter.clean_prob(expected["per_pair_loss"].to_numpy()), atol=1e-5)
    assert scores["is_noisy"].tolist() == (scores["clean_prob"] < 0.5).tolist()
    assert result.n_noisy == int(scores["is_noisy"].sum())
    pd.testing.assert_frame_equal(scores[list(feature_store.KEY_COLUMNS)], FeatureStore(store_dir).keys())


def test_score_store_chunks_match_memory(store_dir, heads, tmp_path):
    result = score_store(heads, store_dir, tau=TAU, batch_size=4, seed=1, out=tmp_path / "scores.parquet", chunk_rows=16, progress=False)

    scores = pd.read_parquet(result.path)
    expected = reference_scores(heads, store_dir, [(0, 14), (14, 27), (27, 40)], batch_size=4, seed=1)
    for column in expected:
        np.testing.assert_allclose(scores[column], expected[column], rtol=1e-5, atol=1e-6)
    metadata = pq.ParquetFile(result.path).metadata
    assert [metadata.row_group(group).num_rows for group in range(metadata.num_row_groups)] == [14, 13, 13]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["scores.parquet", "shards", "store"]


def test_score_store_uses_given_splitter(store_dir, heads, tmp_path):
    splitter = LossMixtureSplitter(random_state=0).fit(np.linspace(0.0, 5.0, 50))

    result = score_store(heads, store_dir, tau=TAU, batch_size=8, seed=0, out=tmp_path / "s.parquet", splitter=splitter, threshold=0.3, progress=False)

    scores = pd.read_parquet(result.path)
    np.testing.assert_allclose(scores["clean_prob"], splitter.clean_prob(scores["per_pair_loss"].to_numpy()))
    assert scores["is_noisy"].tolist() == (scores["clean_prob"] < 0.3).tolist()
    assert result.splitter is splitter


def test_score_store_reads_bounded_blocks(store_dir, heads, tmp_path, monkeypatch):
    read_sizes, scored_sizes = [], []
    original_read, original_score = FeatureStore.read_rows, streaming.score_pairs

    def spy_read(self, kind, start, stop):
        values = original_read(self, kind, start, stop)
        read_sizes.append(len(values))
        return values

    def spy_score(image_embeddings, text_embeddings, **kwargs):
        scored_sizes.append(len(text_embeddings))
        return original_score(image_embeddings, text_embeddings, **kwargs)

    monkeypatch.setattr(streaming, "READ_ROWS", 5)
    monkeypatch.setattr(FeatureStore, "read_rows", spy_read)
    monkeypatch.setattr(streaming, "score_pairs", spy_score)

    score_store(heads, store_dir, tau=TAU, batch_size=4, seed=0, out=tmp_path / "scores.parquet", chunk_rows=12, progress=False)

    assert max(read_sizes) == 5
    assert sum(read_sizes) == 2 * 40
    assert scored_sizes == [10, 10, 10, 10]


def test_score_store_ensemble(store_dir, tmp_path):
    torch.manual_seed(0)
    members = [ProjectionHeads(FakeEncoder.image_dim, FakeEncoder.text_dim, embed_dim=8) for _ in range(2)]

    result = score_store(HeadEnsemble(members), store_dir, tau=TAU, batch_size=8, seed=0, out=tmp_path / "s.parquet", progress=False)

    assert result.n_rows == 40
    assert np.isfinite(pd.read_parquet(result.path)["energy"]).all()


def test_score_store_rejects_other_dims(store_dir, tmp_path):
    heads = ProjectionHeads(1280, 384, embed_dim=8)

    with pytest.raises(ValueError, match=r"The heads take \(image_dim, text_dim\) = \(1280, 384\) but the store .* contains \(6, 4\)"):
        score_store(heads, store_dir, tau=TAU, batch_size=8, seed=0, out=tmp_path / "s.parquet", progress=False)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_score_store_cuda_matches_cpu(store_dir, heads, tmp_path):
    cpu = score_store(heads, store_dir, tau=TAU, batch_size=8, seed=0, out=tmp_path / "cpu.parquet", progress=False)
    cuda = score_store(heads, store_dir, tau=TAU, batch_size=8, seed=0, out=tmp_path / "cuda.parquet", device="cuda", progress=False)

    for column in ("energy", "swapped_entropy", "per_pair_loss", "clean_prob"):
        np.testing.assert_allclose(pd.read_parquet(cuda.path)[column], pd.read_parquet(cpu.path)[column], rtol=1e-4, atol=1e-5)


@pytest.fixture
def scores_path(store_dir, heads, tmp_path) -> Path:
    return score_store(heads, store_dir, tau=TAU, batch_size=8, seed=0, out=tmp_path / "scores.parquet", progress=False).path


def read_export(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype={"key": str})
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype={"key": str})
    return pd.read_parquet(path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
@pytest.mark.parametrize("keep", ["clean", "noisy", "all"])
def test_export_store_matches_filter(scores_path, tmp_path, suffix, keep):
    scores = pd.read_parquet(scores_path)
    expected = {"clean": scores[~scores["is_noisy"]], "noisy": scores[scores["is_noisy"]], "all": scores}[keep]

    count = export_store(scores_path, tmp_path / f"out{suffix}", keep=keep, batch_rows=7)

    exported = read_export(tmp_path / f"out{suffix}")
    assert count == len(expected) == len(exported)
    assert exported["key"].tolist() == expected["key"].tolist()
    assert exported["image_path"].tolist() == expected["image_path"].tolist()
    np.testing.assert_allclose(exported["clean_prob"], expected["clean_prob"], rtol=1e-6)


def test_export_store_threshold(scores_path, tmp_path):
    scores = pd.read_parquet(scores_path)
    threshold = float(np.median(scores["clean_prob"]))

    count = export_store(scores_path, tmp_path / "noisy.parquet", keep="noisy", threshold=threshold, batch_rows=7)

    exported = pd.read_parquet(tmp_path / "noisy.parquet")
    assert exported["row"].tolist() == scores.loc[scores["clean_prob"] < threshold, "row"].tolist()
    assert count == len(exported) > 0
    assert exported["is_noisy"].all()
    export_store(scores_path, tmp_path / "all.csv", keep="all", threshold=threshold)
    everything = pd.read_csv(tmp_path / "all.csv")
    assert (everything["is_noisy"] == (everything["clean_prob"] < threshold)).all()
    metadata = pq.ParquetFile(tmp_path / "noisy.parquet").metadata
    assert max(metadata.row_group(group).num_rows for group in range(metadata.num_row_groups)) <= 7


def test_export_store_jsonl_text(scores_path, tmp_path):
    export_store(scores_path, tmp_path / "all.jsonl", keep="all")

    lines = (tmp_path / "all.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 40
    assert json.loads(lines[0])["image_path"].endswith("/00000.tar#000000000.png")


def test_export_store_errors(scores_path, tmp_path):
    with pytest.raises(ValueError, match=r"Cannot tell the export format of .*out.xlsx: the suffix must be one of \['.csv', '.jsonl', '.parquet'\]"):
        export_store(scores_path, tmp_path / "out.xlsx")
    with pytest.raises(ValueError, match=r"`keep` must be one of \('clean', 'noisy', 'all'\), got 'flagged'"):
        export_store(scores_path, tmp_path / "out.csv", keep="flagged")
    with pytest.raises(ValueError, match=r"`threshold` must be in \[0, 1\], got 1.5"):
        export_store(scores_path, tmp_path / "out.csv", threshold=1.5)


@pytest.mark.slow
def test_extract_with_offline_encoder(tmp_path):
    from srem_core.encoders import create_encoder

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(8)]
    captions = [f"a photo of noise number {index}" for index in range(8)]
    for shard in range(2):
        members = []
        for index in range(shard * 4, shard * 4 + 4):
            buffer = io.BytesIO()
            images[index].save(buffer, format="PNG")
            members += [(f"{index:04d}.png", buffer.getvalue()), (f"{index:04d}.txt", captions[index].encode())]
        write_shard(tmp_path / f"{shard:05d}.tar", members)
    encoder = create_encoder("offline")

    extract_shard_features(encoder, tmp_path, tmp_path / "store", batch_size=3, progress=False)

    store = FeatureStore(tmp_path / "store")
    with torch.no_grad():
        expected_image = encoder.encode_images(images).numpy()
        expected_text = encoder.encode_texts(captions).numpy()
    assert store.encoder_identity == encoder.identity
    np.testing.assert_allclose(store.features("image"), expected_image, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(store.features("text"), expected_text, rtol=2e-3, atol=2e-3)
