"""The synthetic-run script writes run directories that load_run accepts and that tile correctly."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from app_helpers import REPO_ROOT, SYNTHETIC_PAIRS, SYNTHETIC_SCRIPT

from srem_core.runs import REQUIRED_FILES, load_run


def test_shapes_run_is_complete(synthetic_run):
    run = load_run(synthetic_run)
    scores = run.scores
    assert all((synthetic_run / name).is_file() for name in REQUIRED_FILES)
    assert len(scores) == SYNTHETIC_PAIRS
    assert scores["pair_id"].is_unique
    assert run.text_embeddings.shape == (SYNTHETIC_PAIRS, 256)
    assert run.image_embeddings.shape == (len(run.images), 256)
    assert np.allclose(np.linalg.norm(run.text_embeddings, axis=1), 1.0, atol=1e-2)
    assert (scores["is_noisy"] == (scores["clean_prob"] < 0.5)).all()
    assert all(run.image_file(index).is_file() for index in range(len(run.images)))


def test_shapes_run_ground_truth_matches_images(synthetic_run):
    scores = load_run(synthetic_run).scores
    train = scores["split"] == "train"
    assert scores.loc[~train, "is_injected_noise"].isna().all()
    moved = scores["image_id"] != scores["original_image_id"]
    assert (scores.loc[train, "is_injected_noise"].astype(bool) == moved[train]).all()
    assert 0.15 < moved[train].mean() < 0.25
    injected = scores.loc[train & moved, "clean_prob"].mean()
    clean = scores.loc[train & ~moved, "clean_prob"].mean()
    assert injected < clean


def test_shapes_run_history_and_metrics(synthetic_run):
    run = load_run(synthetic_run)
    n_train = int((run.scores["split"] == "train").sum())
    assert sorted(run.history["epoch"].unique()) == [1, 2, 3, 4, 5, 6]
    assert len(run.history) == 6 * n_train
    kinds = [record["kind"] for record in run.metrics]
    assert kinds == ["epoch"] * 6 + ["final"]
    assert "train_auroc" in run.metrics[-2]


def test_from_run_tiles_to_requested_size(synthetic_run, tmp_path):
    out = tmp_path / "tiled"
    command = [sys.executable, str(SYNTHETIC_SCRIPT), "--from-run", str(synthetic_run), "--pairs", "1000", "--out", str(out)]
    finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    source, tiled = load_run(synthetic_run), load_run(out)
    assert len(tiled.scores) == 1000
    assert tiled.scores["pair_id"].is_unique
    assert tiled.scores["pair_id"].iat[SYNTHETIC_PAIRS] == f"{source.scores['pair_id'].iat[0]}~1"
    assert tiled.scores["caption"].iat[SYNTHETIC_PAIRS] == source.scores["caption"].iat[0]
    assert len(tiled.images) == len(set(tiled.scores["image_id"]) | set(tiled.scores["original_image_id"]))
    assert tiled.image_file(len(tiled.images) - 1).is_file()
    assert (out / "model.safetensors").read_bytes() == (synthetic_run / "model.safetensors").read_bytes()
    assert not np.allclose(tiled.text_embeddings[:SYNTHETIC_PAIRS], source.text_embeddings)
    copies = tiled.text_embeddings[:SYNTHETIC_PAIRS] @ source.text_embeddings.T
    assert (copies.argmax(axis=1) == np.arange(SYNTHETIC_PAIRS)).mean() > 0.95


@pytest.mark.parametrize("arguments, message", [(["--pairs", "1"], "--pairs must be at least 2"),
                                                (["--pairs", "10", "--noise-rate", "1.5"], "--noise-rate must be in")])
def test_invalid_arguments_rejected(tmp_path, arguments, message):
    command = [sys.executable, str(SYNTHETIC_SCRIPT), "--shapes", "--out", str(tmp_path / "x"), *arguments]
    finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    assert finished.returncode == 2
    assert message in finished.stderr
