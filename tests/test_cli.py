"""The ``srem`` command end to end on a subset of the bundled demo: train, eval, score, export, resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from srem_core.cli import main
from srem_core.runs import RunFormatError, load_heads, load_run

DEMO = Path(__file__).resolve().parents[1] / "demo" / "pairs.csv"
pytestmark = pytest.mark.skipif(not DEMO.exists(), reason="the bundled demo (demo/pairs.csv) is missing")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    """A manifest of 160 demo pairs (120 train, 20 val, 20 test) with absolute image paths."""
    pairs = pd.read_csv(DEMO)
    parts = [pairs[pairs["split"] == split].head(count) for split, count in (("train", 120), ("val", 20), ("test", 20))]
    table = pd.concat(parts, ignore_index=True)
    table["image_path"] = [str(DEMO.parent / path) for path in table["image_path"]]
    folder = tmp_path_factory.mktemp("subset")
    table.to_csv(folder / "pairs.csv", index=False)
    return folder / "pairs.csv"


def train_arguments(subset, cache_dir, out, *extra):
    return ["-q", "train", "--data", str(subset), "--noise", "0.4", "--epochs", "3", "--warmup-epochs", "1",
            "--batch-size", "32", "--embed-dim", "64", "--device", "cpu", "--cache-dir", str(cache_dir), "--out", str(out), *extra]


@pytest.fixture(scope="module")
def trained_run(subset, cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "subset-n40"
    assert main(train_arguments(subset, cache_dir, out)) == 0
    return out


def test_train_writes_complete_run(trained_run):
    run = load_run(trained_run)
    assert run.meta["status"] == "complete"
    assert len(run.scores) == 160
    assert run.text_embeddings.shape == (160, 64)
    assert run.image_embeddings.shape[0] == len(run.images)
    assert np.allclose(np.linalg.norm(run.text_embeddings, axis=1), 1.0, atol=1e-2)
    for column in ("energy", "swapped_entropy", "per_pair_loss", "clean_prob", "is_noisy", "is_injected_noise"):
        assert column in run.scores
    train = run.scores["split"] == "train"
    assert run.scores.loc[train, "is_injected_noise"].sum() == 48
    assert run.scores.loc[~train, "is_injected_noise"].isna().all()
    assert run.scores["clean_prob"].between(0, 1).all()
    assert (run.scores["is_noisy"] == (run.scores["clean_prob"] < 0.5)).all()
    assert [line["epoch"] for line in run.metrics if line["kind"] == "epoch"] == [0, 1, 2]
    assert run.metrics[-1]["kind"] == "final"
    assert len(np.load(trained_run / "noise_index.npy")) == 120
    assert len(run.history) == 3 * 120


def test_injected_pairs_use_assigned_image(trained_run):
    scores = load_run(trained_run).scores
    injected = scores["is_injected_noise"].fillna(False).astype(bool)
    assert (scores.loc[injected, "image_id"] != scores.loc[injected, "original_image_id"]).all()
    assert (scores.loc[~injected, "image_id"] == scores.loc[~injected, "original_image_id"]).all()


def test_image_paths_resolve_from_run(trained_run):
    run = load_run(trained_run)
    assert all(run.image_file(i).exists() for i in range(len(run.images)))


def test_eval_matches_final_metrics(trained_run, capsys):
    assert main(["eval", str(trained_run), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    final = load_run(trained_run).metrics[-1]
    assert printed["test_rsum"] == pytest.approx(final["test_rsum"], abs=0.5)
    assert printed["detection_auroc"] == pytest.approx(final["detection_auroc"], abs=1e-6)


def test_score_new_manifest(trained_run, subset, cache_dir, tmp_path):
    out = tmp_path / "scores.parquet"
    assert main(["-q", "score", str(trained_run), "--data", str(subset), "--out", str(out), "--device", "cpu", "--cache-dir", str(cache_dir)]) == 0
    scores = pd.read_parquet(out)
    assert len(scores) == 160
    assert scores["clean_prob"].between(0, 1).all()


def test_export_drop_noisy_with_decisions(trained_run, tmp_path):
    run = load_run(trained_run)
    flagged = run.scores.loc[run.scores["is_noisy"], "pair_id"].tolist()
    kept = run.scores.loc[~run.scores["is_noisy"], "pair_id"].tolist()
    run.save_decisions({flagged[0]: "cleared", kept[0]: "confirmed_noisy"})
    out = tmp_path / "nested" / "clean.jsonl"
    assert main(["-q", "export", str(trained_run), "--drop-noisy", "--format", "jsonl", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    ids = {row["pair_id"] for row in rows}
    assert flagged[0] in ids
    assert kept[0] not in ids
    assert len(rows) == len(kept)
    assert all((out.parent / row["image_path"]).exists() for row in rows)
    assert "keywords" in rows[0]
    (trained_run / "decisions.json").unlink()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_only_noisy_round_trip(trained_run, tmp_path, fmt):
    out = tmp_path / f"removed.{fmt}"
    assert main(["-q", "export", str(trained_run), "--only-noisy", "--format", fmt, "--out", str(out)]) == 0
    table = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
    expected = load_run(trained_run).scores
    assert sorted(table["pair_id"]) == sorted(expected.loc[expected["is_noisy"], "pair_id"])


def test_heads_round_trip_and_encoder_check(trained_run):
    heads = load_heads(trained_run / "model.safetensors")
    again = load_heads(trained_run / "model.safetensors")
    for (name, first), (_, second) in zip(heads.state_dict().items(), again.state_dict().items()):
        assert (first == second).all(), name
    with pytest.raises(RunFormatError, match="was trained on features of encoder"):
        load_heads(trained_run / "model.safetensors", encoder_identity="open_clip:ViT-B-32|random")


def test_load_run_errors(tmp_path):
    with pytest.raises(RunFormatError, match="not found; pass the --out folder of `srem train`"):
        load_run(tmp_path / "absent")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "config.json").write_text("{}")
    with pytest.raises(RunFormatError, match="is incomplete"):
        load_run(tmp_path / "partial")


def test_bad_images_skipped_and_reported(subset, cache_dir, tmp_path):
    table = pd.read_csv(subset)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    empty = tmp_path / "empty.webp"
    empty.write_bytes(b"")
    table.loc[0, "image_path"] = str(broken)
    table.loc[1, "image_path"] = str(empty)
    manifest = tmp_path / "pairs.csv"
    table.to_csv(manifest, index=False)
    out = tmp_path / "run"
    assert main(train_arguments(manifest, cache_dir, out, "--epochs", "1")) == 0
    report = pd.read_csv(out / "skipped.csv")
    assert len(report) == 2
    assert any("empty.webp" in source for source in report["source"])
    assert len(load_run(out).scores) == 158


def test_kill_and_resume_matches_uninterrupted(subset, cache_dir, tmp_path):
    full = tmp_path / "full"
    assert main(train_arguments(subset, cache_dir, full, "--epochs", "8")) == 0

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "srem_core.cli", *train_arguments(subset, cache_dir, killed, "--epochs", "8")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONHASHSEED": "0"})
    checkpoint = killed / "checkpoint" / "last.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoint.exists() and json.loads(checkpoint.read_text())["epoch"] >= 1:
            break
        time.sleep(0.05)
    assert process.poll() is None, "training finished before it could be killed; raise --epochs"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "scores.parquet").exists()

    assert main(train_arguments(subset, cache_dir, killed, "--epochs", "8", "--resume")) == 0
    first = pd.read_parquet(full / "scores.parquet")
    second = pd.read_parquet(killed / "scores.parquet")
    for column in ("energy", "swapped_entropy", "per_pair_loss", "clean_prob"):
        assert np.abs(first[column].to_numpy() - second[column].to_numpy()).max() <= 1e-6


def test_unfreeze_fine_tunes_towers(subset, cache_dir, tmp_path):
    table = pd.read_csv(subset)
    small = pd.concat([table[table["split"] == split].head(count) for split, count in (("train", 16), ("val", 4), ("test", 4))])
    manifest = tmp_path / "small.csv"
    small.to_csv(manifest, index=False)
    out = tmp_path / "fine-tuned"
    assert main(train_arguments(manifest, cache_dir, out, "--epochs", "1", "--batch-size", "8", "--unfreeze")) == 0
    frozen = tmp_path / "frozen"
    assert main(train_arguments(manifest, cache_dir, frozen, "--epochs", "1", "--batch-size", "8")) == 0
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), framework="pt") as handle:
        assert handle.metadata()["fine_tuned_towers"] == "1"
        assert any(name.startswith("towers.") for name in handle.keys())
    model = load_run(out).load_model()
    stored = load_run(out).text_embeddings[:2]
    fresh = model.embed_texts(small["caption"].head(2).tolist())
    assert np.allclose(stored, fresh, atol=2e-2)
    assert not np.allclose(load_run(frozen).text_embeddings, load_run(out).text_embeddings, atol=1e-3)


def write_demo_shards(table: pd.DataFrame, folder: Path, starts: tuple[int, ...], size: int) -> Path:
    """Write img2dataset-style shards (``.jpg`` + ``.txt`` per key) of demo rows into ``folder``."""
    import io
    import tarfile

    from PIL import Image

    folder.mkdir()
    for shard_index, start in enumerate(starts):
        with tarfile.open(folder / f"{shard_index:05d}.tar", "w") as tar:
            for row in table.iloc[start : start + size].itertuples():
                buffer = io.BytesIO()
                Image.open(row.image_path).convert("RGB").save(buffer, format="JPEG")
                for suffix, payload in ((".jpg", buffer.getvalue()), (".txt", row.caption.encode())):
                    info = tarfile.TarInfo(f"{row.Index:09d}{suffix}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    return folder


def test_train_on_webdataset_shards(subset, cache_dir, tmp_path):
    shards = write_demo_shards(pd.read_csv(subset), tmp_path / "shards", (0, 20), 20)
    out = tmp_path / "run"
    assert main(["-q", "train", "--data", str(shards), "--epochs", "1", "--batch-size", "8", "--embed-dim", "32",
                 "--device", "cpu", "--cache-dir", str(cache_dir), "--out", str(out)]) == 0
    run = load_run(out)
    assert len(run.scores) == 40
    assert run.scores["image_path"].str.contains(".tar#").all()
    assert run.image_file(0).name.endswith(".jpg")


def test_export_absolute_paths(trained_run, tmp_path):
    out = tmp_path / "all.csv"
    export_pairs = __import__("srem_core.export", fromlist=["export_pairs"]).export_pairs
    export_pairs(load_run(trained_run), keep="all", fmt="csv", out=out, absolute_paths=True)
    table = pd.read_csv(out)
    assert all(Path(path).is_absolute() and Path(path).exists() for path in table["image_path"])


def test_encode_fills_feature_cache(subset, cache_dir, capsys):
    assert main(["-q", "encode", "--data", str(subset), "--device", "cpu", "--cache-dir", str(cache_dir)]) == 0
    printed = capsys.readouterr().out
    assert "pairs                        160" in printed
    assert str(cache_dir) in printed


def test_store_encode_score_export(trained_run, subset, tmp_path, capsys):
    shards = write_demo_shards(pd.read_csv(subset), tmp_path / "shards", (0, 12), 12)
    store = tmp_path / "store"
    assert main(["-q", "encode", "--shards", str(shards), "--store", str(store), "--device", "cpu", "--batch-size", "5"]) == 0
    assert "rows                         24" in capsys.readouterr().out
    # A second call finds both shards complete and encodes nothing.
    assert main(["-q", "encode", "--shards", str(shards), "--store", str(store), "--device", "cpu"]) == 0
    second = capsys.readouterr().out
    assert "shards_already_done          2" in second
    assert "shards_encoded               0" in second
    assert "skipped_in_store             0" in second

    scores_path = tmp_path / "scores.parquet"
    assert main(["-q", "score", str(trained_run), "--store", str(store), "--out", str(scores_path), "--device", "cpu", "--chunk-rows", "12"]) == 0
    scores = pd.read_parquet(scores_path)
    assert len(scores) == 24
    assert scores["clean_prob"].between(0, 1).all()
    assert (scores["is_noisy"] == (scores["clean_prob"] < 0.5)).all()

    noisy_out = tmp_path / "noisy.jsonl"
    assert main(["-q", "export", "--scores", str(scores_path), "--only-noisy", "--out", str(noisy_out)]) == 0
    exported = pd.read_json(noisy_out, lines=True)
    assert len(exported) == int(scores["is_noisy"].sum())
    everything = tmp_path / "everything"
    assert main(["-q", "export", "--scores", str(scores_path), "--all", "--threshold", "1.0", "--out", str(everything)]) == 0
    assert len(pd.read_csv(tmp_path / "everything.csv")) == 24


def test_store_command_errors(trained_run, tmp_path, caplog):
    assert main(["-q", "encode", "--shards", str(tmp_path / "none-*.tar")]) == 2
    assert main(["-q", "encode", "--shards", str(tmp_path), "--device", "cpu"]) == 2
    assert "--shards needs --store" in caplog.text
    assert main(["-q", "score", str(trained_run), "--store", str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "a store's scores are written as Parquet" in caplog.text
    assert main(["-q", "export", "--out", str(tmp_path / "x.csv")]) == 2
    assert "give either a run directory or --scores FILE" in caplog.text
    (tmp_path / "s.parquet").write_bytes(b"")
    assert main(["-q", "export", "--scores", str(tmp_path / "s.parquet"), "--format", "csv", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "does not end in .csv" in caplog.text
    assert main(["-q", "export", "--scores", str(tmp_path / "none.parquet"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "--scores " + str(tmp_path / "none.parquet") + " not found. Write it with 'srem score RUN --store FOLDER" in caplog.text
    assert main(["-q", "export", "--scores", str(tmp_path / "s.parquet"), "--threshold", "1.5", "--out", str(tmp_path / "x.csv")]) == 2
    assert "--threshold 1.5 is outside [0, 1]" in caplog.text


def test_score_store_other_encoder(trained_run, tmp_path, caplog):
    from srem_core.feature_store import FeatureStore

    FeatureStore.create(tmp_path / "store", encoder_identity="open_clip:ViT-B-32:random-init-seed0", image_dim=512, text_dim=512)
    assert main(["-q", "score", str(trained_run), "--store", str(tmp_path / "store"), "--out", str(tmp_path / "s.parquet")]) == 2
    assert "contains features of 'open_clip:ViT-B-32:random-init-seed0'" in caplog.text
    assert "Encode the shards again with the run's encoder (srem encode --shards ... --encoder offline)" in caplog.text
    assert not (tmp_path / "s.parquet").exists()


def test_torchrun_two_processes_match_one(subset, cache_dir, tmp_path):
    """The documented torchrun command trains like one process on the same global batch."""
    assert main(["-q", "encode", "--data", str(subset), "--device", "cpu", "--cache-dir", str(cache_dir)]) == 0
    single, double = tmp_path / "single", tmp_path / "double"
    assert main(train_arguments(subset, cache_dir, single)) == 0
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip(f"torchrun is not installed next to {sys.executable}")
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "srem_core.cli", *train_arguments(subset, cache_dir, double)]
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    one, two = load_run(single).scores, load_run(double).scores
    for column in ("energy", "swapped_entropy", "per_pair_loss", "clean_prob"):
        assert np.abs(one[column].to_numpy() - two[column].to_numpy()).max() <= 1e-4, column
    assert json.loads((double / "config.json").read_text())["status"] == "complete"
