"""Training loop on synthetic features: planted noise, every method, checkpoints and resume."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from srem_core.config import ObjectiveConfig, RunConfig, TrainConfig
from srem_core.data.noise import inject_noise
from srem_core.training import Trainer, TrainingData


def make_data(n_pairs=600, noise_rate=0.4, seed=0):
    """Paired features that share a latent code; 40% of training captions get a wrong image."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_pairs, 16))
    images = latent @ rng.normal(size=(16, 48)) + 0.8 * rng.normal(size=(n_pairs, 48))
    texts = latent @ rng.normal(size=(16, 24)) + 0.8 * rng.normal(size=(n_pairs, 24))
    split = np.array(["train"] * (n_pairs - 200) + ["val"] * 100 + ["test"] * 100)
    injection = inject_noise(np.arange(n_pairs), split == "train", rate=noise_rate, level="caption", seed=seed)
    return TrainingData(
        image_inputs=torch.tensor(images, dtype=torch.float32),
        text_inputs=torch.tensor(texts, dtype=torch.float32),
        caption_to_image=injection.assigned,
        split=split,
        is_injected_noise=injection.is_injected_noise,
    )


def small_config(method="srem", epochs=4, **objective):
    objective.setdefault("warmup_epochs", 1)
    return RunConfig(
        train=TrainConfig(method=method, epochs=epochs, batch_size=64, embed_dim=32, device="cpu"),
        objective=ObjectiveConfig(**objective),
    )


@pytest.mark.parametrize("method", ["srem", "infonce", "triplet", "ncr"])
def test_every_method_trains_and_logs(tmp_path, method):
    data = make_data()
    Trainer(small_config(method), data, tmp_path, encoder_identity="synthetic", progress=False).fit()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [0, 1, 2, 3]
    assert all(np.isfinite(line["loss"]) for line in lines)
    assert all("val_rsum" in line and "train_auroc" in line for line in lines)
    history = pd.read_parquet(tmp_path / "history.parquet")
    assert len(history) == 4 * 400
    assert (tmp_path / "model.safetensors").exists()


def test_srem_ranks_planted_noise_lowest(tmp_path):
    data = make_data()
    Trainer(small_config(epochs=6), data, tmp_path, encoder_identity="synthetic", progress=False).fit()
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["train_auroc"] > 0.9
    history = pd.read_parquet(tmp_path / "history.parquet")
    final = history[history["epoch"] == history["epoch"].max()]
    injected = data.is_injected_noise[final["pair_index"].to_numpy()]
    lowest = np.argsort(final["clean_prob"].to_numpy())[: int(injected.sum())]
    assert injected[lowest].mean() > 0.85


def test_srem_selection_after_warmup(tmp_path):
    data = make_data()
    Trainer(small_config(epochs=3, warmup_epochs=1), data, tmp_path, encoder_identity="synthetic", progress=False).fit()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "fraction_selected" in lines[0]
    assert 0 < lines[0]["fraction_selected"] < 1
    history = pd.read_parquet(tmp_path / "history.parquet")
    assert history.loc[history["epoch"] == 2, "selected_clean"].any()


def test_per_batch_selection_trains(tmp_path):
    data = make_data()
    Trainer(small_config(epochs=3, selection="per_batch"), data, tmp_path, encoder_identity="synthetic", progress=False).fit()
    history = pd.read_parquet(tmp_path / "history.parquet")
    assert history["per_pair_loss"].gt(0).all()


class _Crash(Exception):
    pass


def test_resume_after_crash_matches_uninterrupted(tmp_path, monkeypatch):
    data = make_data()
    config = small_config(epochs=4)
    Trainer(config, data, tmp_path / "full", encoder_identity="synthetic", progress=False).fit()

    crashing = Trainer(config, data, tmp_path / "crashed", encoder_identity="synthetic", progress=False)
    original = crashing.objective.batch_loss
    calls = {"count": 0}

    def crash_in_epoch_three(similarities, indices, epoch):
        calls["count"] += 1
        if epoch == 2 and calls["count"] > 14:
            raise _Crash()
        return original(similarities, indices, epoch)

    monkeypatch.setattr(crashing.objective, "batch_loss", crash_in_epoch_three)
    with pytest.raises(_Crash):
        crashing.fit()

    Trainer(config, data, tmp_path / "crashed", encoder_identity="synthetic", progress=False).fit(resume=True)
    full = pd.read_parquet(tmp_path / "full" / "history.parquet")
    resumed = pd.read_parquet(tmp_path / "crashed" / "history.parquet")
    assert len(full) == len(resumed)
    for column in ("energy", "swapped_entropy", "per_pair_loss", "clean_prob"):
        assert np.abs(full[column].to_numpy() - resumed[column].to_numpy()).max() <= 1e-6
    full_lines = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    resumed_lines = (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()
    assert len(full_lines) == len(resumed_lines) == 4


def test_resume_rejects_changed_config(tmp_path):
    data = make_data()
    Trainer(small_config(epochs=1), data, tmp_path, encoder_identity="synthetic", progress=False).fit()
    changed = small_config(epochs=1, tau=0.1)
    with pytest.raises(ValueError, match=r"was written with a different config \(objective.tau: 0.05 -> 0.1\)"):
        Trainer(changed, data, tmp_path, encoder_identity="synthetic", progress=False).fit(resume=True)


def test_resume_with_more_epochs_extends_run(tmp_path):
    data = make_data()
    Trainer(small_config(epochs=2), data, tmp_path / "full", encoder_identity="synthetic", progress=False).fit()
    Trainer(small_config(epochs=1), data, tmp_path / "extended", encoder_identity="synthetic", progress=False).fit()

    Trainer(small_config(epochs=2), data, tmp_path / "extended", encoder_identity="synthetic", progress=False).fit(resume=True)

    full = pd.read_parquet(tmp_path / "full" / "history.parquet")
    extended = pd.read_parquet(tmp_path / "extended" / "history.parquet")
    assert sorted(extended["epoch"].unique().tolist()) == [0, 1]
    assert np.abs(full["per_pair_loss"].to_numpy() - extended["per_pair_loss"].to_numpy()).max() <= 1e-6


def test_training_is_deterministic(tmp_path):
    data = make_data()
    for name in ("a", "b"):
        Trainer(small_config(epochs=2), data, tmp_path / name, encoder_identity="synthetic", progress=False).fit()
    first = pd.read_parquet(tmp_path / "a" / "history.parquet")
    second = pd.read_parquet(tmp_path / "b" / "history.parquet")
    assert first.equals(second)


def test_config_validation_messages():
    with pytest.raises(ValueError, match="energy_rule must be one of mean, gmm, quantile, off; got 'median'"):
        ObjectiveConfig(energy_rule="median")
    with pytest.raises(ValueError, match=r"tau must be in \(0.0, 10.0\]; got 0"):
        ObjectiveConfig(tau=0)
    with pytest.raises(ValueError, match="batch_size must be at least 2 for in-batch negatives; got 1"):
        TrainConfig(batch_size=1)
    with pytest.raises(ValueError, match=r"unknown objective field\(s\) \['temperature'\]"):
        RunConfig.from_dict({"objective": {"temperature": 0.1}})


def test_config_round_trip():
    config = small_config(bias="uniform", energy_rule="gmm")
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
