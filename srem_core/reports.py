"""Work on finished runs: evaluate, score a new manifest, and the zero-training baseline."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from srem_core import atomic
from srem_core.config import NoiseConfig, RunConfig
from srem_core.evaluation import coco_1k_recall, detection_metrics, recall_at_k
from srem_core.runs import load_run

logger = logging.getLogger(__name__)


def _split_recall(scores: pd.DataFrame, image_embeddings: np.ndarray, text_embeddings: np.ndarray, split: str) -> dict:
    rows = np.flatnonzero(scores["split"].to_numpy() == split)
    if len(rows) == 0:
        return {}
    images, caption_to_image = np.unique(scores["image_index"].to_numpy()[rows], return_inverse=True)
    arrays = (image_embeddings[images], text_embeddings[rows], caption_to_image)
    result = {f"{split}_{key}": value for key, value in recall_at_k(*arrays).items()}
    if len(images) == 5000:
        result.update({f"{split}_1k_{key}": value for key, value in coco_1k_recall(*arrays).items()})
    return result


def evaluate_run(path: str | Path) -> dict:
    """Recompute retrieval recall (val and test) from the stored embeddings and detection from the scores."""
    run = load_run(path)
    metrics: dict = {"pairs": len(run.scores), "flagged": int(run.scores["is_noisy"].sum())}
    for split in ("val", "test"):
        metrics.update(_split_recall(run.scores, run.image_embeddings, run.text_embeddings, split))
    truth = run.scores["is_injected_noise"]
    known = truth.notna().to_numpy()
    if known.any():
        threshold = run.config["train"]["noise_threshold"]
        detection = detection_metrics(run.scores["clean_prob"].to_numpy()[known], truth[known].astype(bool).to_numpy(), threshold)
        metrics.update({f"detection_{key}": value for key, value in detection.items()})
    return metrics


def score_manifest(
    run_path: str | Path, data: str, out: str | Path, *, device: str = "auto", cache_dir: str | None = None, progress: bool = True
) -> Path:
    """Score every pair of another dataset with a trained run and write one row per pair to ``out``.

    ``clean_prob`` uses a loss mixture fitted on the run's own training losses, so a score means the same
    as in the run. Pairs whose image cannot be read are left out and reported in the log.
    """
    from srem_core.data import load_dataset
    from srem_core.encoders import create_encoder
    from srem_core.pipeline import DEFAULT_CACHE_DIR, encode_dataset
    from srem_core.runs import load_heads
    from srem_core.scoring import embed_inputs, score_pairs
    from srem_core.training import resolve_device

    run = load_run(run_path)
    config = RunConfig.from_dict(run.config)
    torch_device = resolve_device(device)
    encoder = create_encoder(run.meta["encoder"]["name"], pretrained=run.meta["encoder"].get("pretrained"), device=str(torch_device))
    heads = load_heads(run.path / "model.safetensors", encoder_identity=encoder.identity, device=str(torch_device))
    encoded = encode_dataset(load_dataset(data), encoder, cache_dir=Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR, device=torch_device, progress=progress)
    dataset = encoded.dataset
    image_embeddings, text_embeddings = embed_inputs(heads, encoded.image_features, encoded.text_features, torch_device)
    if dataset.n_pairs < 2:
        raise ValueError(f"{data} has {dataset.n_pairs} usable pair; scoring needs at least 2 for the batch context")
    stats = score_pairs(
        image_embeddings[np.array(dataset.caption_to_image)], text_embeddings, tau=config.objective.tau,
        batch_size=config.train.score_batch_size, seed=config.train.seed,
    )
    clean_prob = _training_loss_splitter(run, config).clean_prob(stats.per_pair_loss)
    table = dataset.pairs.drop(columns=["image_index"]).copy()
    table["image_path"] = dataset.images["image_path"].to_numpy()[dataset.caption_to_image]
    table["energy"], table["swapped_entropy"], table["per_pair_loss"] = stats.energy, stats.swapped_entropy, stats.per_pair_loss
    table["clean_prob"] = clean_prob
    table["is_noisy"] = clean_prob < config.train.noise_threshold
    return _write_table(table, Path(out))


def _training_loss_splitter(run, config: RunConfig):
    """Return the loss mixture fitted on the run's own training losses, so new scores mean what the run's do."""
    from srem_core.selection import LossMixtureSplitter

    train_losses = run.scores.loc[run.scores["split"] == "train", "per_pair_loss"].to_numpy()
    return LossMixtureSplitter(random_state=config.train.seed).fit(train_losses)


def _write_table(table: pd.DataFrame, out: Path) -> Path:
    suffix = out.suffix.lower()
    if suffix == ".parquet":
        atomic.write_parquet(out, table)
    elif suffix == ".csv":
        atomic.write_with(out, lambda path: table.to_csv(path, index=False))
    elif suffix == ".jsonl":
        atomic.write_with(out, lambda path: table.to_json(path, orient="records", lines=True, force_ascii=False))
    else:
        raise ValueError(f"output {out} must end in .parquet, .csv or .jsonl")
    logger.info("wrote %d rows to %s", len(table), out)
    return out


def run_zero_training_baseline(
    *, data: str, noise: NoiseConfig, encoder: str = "offline", pretrained: str | None = None,
    cache_dir: str | None = None, out: str | None = None,
) -> dict:
    """Rank pairs by an untrained similarity (ImageNet-label bridge or CLIP score) and report detection.

    Returns AUROC and average precision of the negated score against injected noise on the training split
    (NaN without injected noise).
    """
    from srem_core.data import load_dataset
    from srem_core.encoders import create_encoder
    from srem_core.encoders.bridge import zero_training_scores
    from srem_core.pipeline import DEFAULT_CACHE_DIR, make_noise

    dataset = load_dataset(data)
    model = create_encoder(encoder, pretrained=pretrained, device="cpu")
    injection = make_noise(RunConfig(data=data, noise=noise), dataset)
    if injection is not None:
        dataset.pairs["image_index"] = injection.assigned
    scores = zero_training_scores(model, dataset, cache_dir=Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR)
    train = dataset.split_mask("train")
    metrics: dict = {"kind": "zero_training", "encoder": encoder}
    if injection is not None:
        match = np.nan_to_num(scores[train], nan=-np.inf)
        ranked = 1.0 / (1.0 + np.exp(-(match - np.nanmedian(scores[train]))))
        detection = detection_metrics(ranked, injection.is_injected_noise[train], threshold=0.5)
        metrics.update({"detection_auroc": detection["auroc"], "detection_ap": detection["ap"]})
    if out:
        table = dataset.pairs[["pair_id", "split"]].assign(zero_training_score=scores)
        atomic.write_parquet(Path(out), table)
    return metrics


def encode_to_cache(
    data: str, *, encoder: str = "offline", pretrained: str | None = None, cache_dir: str | None = None, device: str = "auto",
    progress: bool = True,
) -> dict:
    """Encode every image and caption of ``data`` into the feature cache and return counts.

    Later ``srem train``, ``score`` and ``baseline`` calls on the same data and encoder read the cache
    instead of encoding again. Run it once before a distributed run, so that no rank waits for
    encoding (see docs/distributed.md).
    """
    from srem_core.data import load_dataset
    from srem_core.encoders import create_encoder
    from srem_core.pipeline import DEFAULT_CACHE_DIR, encode_dataset
    from srem_core.training import resolve_device

    torch_device = resolve_device(device)
    model = create_encoder(encoder, pretrained=pretrained, device=str(torch_device))
    folder = Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR
    encoded = encode_dataset(load_dataset(data), model, cache_dir=folder, device=torch_device, progress=progress)
    return {"pairs": encoded.dataset.n_pairs, "images": int(encoded.image_features.shape[0]),
            "skipped": len(encoded.dataset.skipped), "encoder": encoded.encoder_identity, "cache_dir": str(folder)}


def encode_shards_to_store(
    shards: str, store: str, *, encoder: str = "offline", pretrained: str | None = None, batch_size: int = 64, device: str = "auto",
    progress: bool = True,
) -> dict:
    """Encode WebDataset shards in order into a resumable feature store (``streaming.extract_shard_features``)."""
    from srem_core.encoders import create_encoder
    from srem_core.feature_store import FeatureStore
    from srem_core.streaming import extract_shard_features
    from srem_core.training import resolve_device

    torch_device = resolve_device(device)
    model = create_encoder(encoder, pretrained=pretrained, device=str(torch_device))
    summary = extract_shard_features(model, shards, store, batch_size=batch_size, device=torch_device, progress=progress)
    # Samples skipped by earlier calls are counted in the store's shard records.
    skipped_in_store = sum(record["skipped"] for record in FeatureStore(store).completed_shards)
    return {"rows": summary.n_rows, "shards_encoded": len(summary.shards_encoded),
            "shards_already_done": len(summary.shards_already_done), "skipped": summary.n_skipped,
            "skipped_in_store": skipped_in_store, "shards_missing": len(summary.shards_missing)}


def score_store_with_run(
    run_path: str | Path, store: str | Path, out: str | Path, *, device: str = "auto", chunk_rows: int | None = None,
    progress: bool = True,
) -> dict:
    """Score every pair of a feature store with a trained run, streaming chunk by chunk into ``out``.

    As in ``score_manifest``, ``clean_prob`` comes from a loss mixture fitted on the run's own training
    losses, and the run's temperature, scoring batch size, seed and threshold apply. The store must
    come from the run's encoder.
    """
    from srem_core.feature_store import FeatureStore
    from srem_core.runs import load_heads
    from srem_core.streaming import SCORE_CHUNK_ROWS, score_store
    from srem_core.training import resolve_device

    run = load_run(run_path)
    config = RunConfig.from_dict(run.config)
    identity = FeatureStore(store).encoder_identity
    if identity != run.meta["encoder"]["identity"]:
        raise ValueError(
            f"The store {store} contains features of {identity!r}, but the run {run.path} was trained on "
            f"{run.meta['encoder']['identity']!r}. Encode the shards again with the run's encoder "
            f"(srem encode --shards ... --encoder {run.meta['encoder']['name']})."
        )
    torch_device = resolve_device(device)
    heads = load_heads(run.path / "model.safetensors", encoder_identity=identity, device=str(torch_device))
    splitter = _training_loss_splitter(run, config)
    result = score_store(
        heads, store, tau=config.objective.tau, batch_size=config.train.score_batch_size, seed=config.train.seed, out=out,
        splitter=splitter, threshold=config.train.noise_threshold, chunk_rows=chunk_rows or SCORE_CHUNK_ROWS, device=torch_device,
        progress=progress,
    )
    return {"pairs": result.n_rows, "flagged": result.n_noisy, "out": str(result.path)}
