"""End-to-end work behind the CLI: load and encode data, inject noise, train, score every pair, write a run."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from srem_core import atomic
from srem_core.config import RunConfig
from srem_core.data import load_dataset
from srem_core.data.noise import NoiseInjection, inject_noise, load_noise_index, save_noise_index
from srem_core.data.pairs import PairDataset, SkippedItem
from srem_core.distributed import init_from_environment
from srem_core.encoders import create_encoder
from srem_core.encoders.cache import extract_features
from srem_core.evaluation import coco_1k_recall, detection_metrics, recall_at_k
from srem_core.model import HeadEnsemble
from srem_core.runs import FORMAT_VERSION, load_fine_tuned_towers, load_heads, save_embeddings, write_config
from srem_core.scoring import embed_inputs, score_pairs
from srem_core.selection import LossMixtureSplitter
from srem_core.training import Trainer, TrainingData, resolve_device

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path(os.environ.get("SREM_CACHE_DIR", Path.home() / ".cache" / "srem"))
"""Feature cache; ``SREM_CACHE_DIR`` overrides it (CI and tests point it at a temporary folder)."""
COCO_5K_IMAGES = 5000


@dataclasses.dataclass
class EncodedData:
    """A dataset with usable pairs only, their frozen features, and what was dropped."""

    dataset: PairDataset
    image_features: torch.Tensor
    text_features: torch.Tensor
    encoder_identity: str


def encode_dataset(dataset: PairDataset, encoder, *, cache_dir: Path, device: torch.device, progress: bool) -> EncodedData:
    """Extract (or load cached) features and drop the pairs whose image failed to load."""
    features = extract_features(encoder, dataset, cache_dir=cache_dir, device=str(device), progress=progress)
    bad_images = ~np.isfinite(features.image_features).all(axis=1)
    bad_texts = ~np.isfinite(features.text_features).all(axis=1)
    keep = ~bad_images[dataset.caption_to_image] & ~bad_texts
    skipped = list(dataset.skipped) + list(features.failed_images)
    if not keep.any():
        reasons = "; ".join(item.reason for item in skipped[:3])
        raise ValueError(f"no usable pairs remain in {dataset.source} after skipping bad input ({reasons})")
    image_features = features.image_features
    if not keep.all():
        logger.warning("dropping %d pairs whose image or caption could not be encoded", int((~keep).sum()))
        used = np.unique(dataset.caption_to_image[keep])
        image_features = image_features[used]
        dataset = dataset.subset(keep)
    dataset.skipped = skipped
    return EncodedData(
        dataset=dataset,
        image_features=torch.as_tensor(np.asarray(image_features, dtype=np.float32)),
        text_features=torch.as_tensor(np.asarray(features.text_features[keep], dtype=np.float32)),
        encoder_identity=encoder.identity,
    )


def pixel_loader(dataset: PairDataset, encoder):
    """Return a function that loads and preprocesses image rows of ``dataset`` into (N, C, H, W)."""
    from srem_core.data.images import load_image

    def load(image_rows: np.ndarray) -> torch.Tensor:
        return torch.stack([encoder.preprocess(load_image(dataset.image_path(int(row)))) for row in image_rows])

    return load


def make_noise(config: RunConfig, dataset: PairDataset) -> NoiseInjection | None:
    train_mask = dataset.split_mask("train")
    if config.noise.noise_file:
        return load_noise_index(config.noise.noise_file, dataset.caption_to_image, train_mask)
    if config.noise.rate == 0:
        return None
    return inject_noise(dataset.caption_to_image, train_mask, rate=config.noise.rate, level=config.noise.level, seed=config.noise.seed)


def score_all_pairs(
    model: HeadEnsemble, data: TrainingData, *, tau: float, batch_size: int, seed: int, device: torch.device, threshold: float
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Score every pair (each split in its own fixed batch context) and return (scores, image_emb, text_emb).

    ``clean_prob`` of every split comes from a loss mixture fitted on the training pairs' losses.
    """
    image_embeddings, text_embeddings = embed_inputs(model, data.image_inputs, data.text_inputs, device)
    columns = {name: np.zeros(len(data.split), np.float32) for name in ("energy", "swapped_entropy", "per_pair_loss")}
    for split in np.unique(data.split):
        rows = np.flatnonzero(data.split == split)
        if len(rows) < 2:
            continue
        stats = score_pairs(image_embeddings[data.caption_to_image[rows]], text_embeddings[rows], tau=tau, batch_size=batch_size, seed=seed)
        for name in columns:
            columns[name][rows] = getattr(stats, name)
    train_rows = np.flatnonzero(data.split == "train")
    splitter = LossMixtureSplitter(random_state=seed).fit(columns["per_pair_loss"][train_rows])
    clean_prob = splitter.clean_prob(columns["per_pair_loss"])
    frame = pd.DataFrame(columns)
    frame["clean_prob"] = clean_prob
    frame["is_noisy"] = clean_prob < threshold
    return frame, image_embeddings.numpy(), text_embeddings.numpy()


def final_metrics(scores: pd.DataFrame, image_embeddings: np.ndarray, text_embeddings: np.ndarray, data: TrainingData, threshold: float) -> dict:
    """Test retrieval (plus COCO 1K/5K when the test split has 5,000 images) and training detection."""
    metrics: dict = {"kind": "final"}
    rows = data.indices("test")
    if len(rows):
        images, caption_to_image = np.unique(data.caption_to_image[rows], return_inverse=True)
        test = (image_embeddings[images], text_embeddings[rows], caption_to_image)
        metrics.update({f"test_{key}": value for key, value in recall_at_k(*test).items()})
        if len(images) == COCO_5K_IMAGES:
            metrics.update({f"test_1k_{key}": value for key, value in coco_1k_recall(*test).items()})
    if data.is_injected_noise is not None:
        train = data.indices("train")
        detection = detection_metrics(scores["clean_prob"].to_numpy()[train], data.is_injected_noise[train], threshold)
        metrics.update({f"detection_{key}": value for key, value in detection.items()})
    return metrics


def _scores_table(dataset: PairDataset, original_index: np.ndarray, data: TrainingData, scores: pd.DataFrame) -> pd.DataFrame:
    image_ids = dataset.images["image_id"].to_numpy()
    image_paths = dataset.images["image_path"].to_numpy()
    pairs = dataset.pairs
    table = pd.DataFrame(
        {
            "pair_id": pairs["pair_id"].astype(str).to_numpy(),
            "image_id": image_ids[data.caption_to_image],
            "original_image_id": image_ids[original_index],
            "image_index": data.caption_to_image,
            "split": pairs["split"].to_numpy(),
            "image_path": image_paths[data.caption_to_image],
            "caption": pairs["caption"].to_numpy(),
            "category": pairs["category"].to_numpy(),
        }
    )
    table = pd.concat([table, scores.reset_index(drop=True)], axis=1)
    if data.is_injected_noise is None:
        table["is_injected_noise"] = pd.array([pd.NA] * len(table), dtype="boolean")
    else:
        injected = pd.array(data.is_injected_noise, dtype="boolean")
        injected[pairs["split"].to_numpy() != "train"] = pd.NA
        table["is_injected_noise"] = injected
    return table


def _data_record(dataset: PairDataset, run_dir: Path, noise: NoiseInjection | None) -> dict:
    root = Path(dataset.root).resolve()
    try:
        stored_root = os.path.relpath(root, run_dir.resolve())
    except ValueError:
        stored_root = str(root)
    return {
        "source": dataset.source,
        "root": stored_root,
        "n_pairs": dataset.n_pairs,
        "n_images": dataset.n_images,
        "n_skipped": len(dataset.skipped),
        "noise": None if noise is None else {"level": noise.level, "rate": noise.rate, "seed": noise.seed, "n_injected": int(noise.is_injected_noise.sum())},
    }


def write_skipped(run_dir: Path, skipped: list[SkippedItem]) -> None:
    frame = pd.DataFrame([dataclasses.asdict(item) for item in skipped], columns=["source", "item_id", "reason"])
    atomic.write_with(run_dir / "skipped.csv", lambda path: frame.to_csv(path, index=False))


def train_run(config: RunConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True) -> dict:
    """Train one run into ``run_dir`` and write every file of the run format; return the final metrics."""
    run_dir = Path(run_dir)
    device = resolve_device(config.train.device)
    context = init_from_environment(device)
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(config.data)
    encoder = create_encoder(config.encoder, pretrained=config.pretrained, device=str(device))
    cache_dir = Path(config.cache_dir) if config.cache_dir else DEFAULT_CACHE_DIR
    # Rank 0 fills the feature cache first; the other ranks then read it instead of encoding again.
    if not context.is_main:
        context.barrier()
    encoded = encode_dataset(dataset, encoder, cache_dir=cache_dir, device=device, progress=progress and context.is_main)
    if context.is_main:
        context.barrier()
    dataset = encoded.dataset
    noise = make_noise(config, dataset)
    original_index = dataset.caption_to_image
    data = TrainingData(
        image_inputs=encoded.image_features,
        text_inputs=encoded.text_features,
        caption_to_image=original_index if noise is None else noise.assigned,
        split=dataset.pairs["split"].to_numpy().astype(str),
        is_injected_noise=None if noise is None else noise.is_injected_noise,
    )
    if config.train.unfreeze:
        data.captions = dataset.pairs["caption"].to_numpy()
        data.load_pixels = pixel_loader(dataset, encoder)
    encoder_record = {"name": config.encoder, "pretrained": config.pretrained, "identity": encoded.encoder_identity,
                      "image_dim": int(data.image_inputs.shape[1]), "text_dim": int(data.text_inputs.shape[1])}
    data_record = _data_record(dataset, run_dir, noise)
    if context.is_main:
        write_config(run_dir, config=config.to_dict(), data=data_record, encoder=encoder_record, device=device.type, status="training")
        write_skipped(run_dir, dataset.skipped)
        if noise is not None:
            save_noise_index(run_dir / "noise_index.npy", noise)

    trainer = Trainer(config, data, run_dir, encoder_identity=encoded.encoder_identity, progress=progress,
                      context=context, device=device, encoder=encoder)
    trainer.fit(resume=resume)
    if not context.is_main:
        return {}
    if config.train.unfreeze and load_fine_tuned_towers(run_dir / "model.safetensors", encoder):
        trainer._refresh_features()

    best = load_heads(run_dir / "model.safetensors", encoder_identity=encoded.encoder_identity, device=str(device))
    scores, image_embeddings, text_embeddings = score_all_pairs(
        best, data, tau=config.objective.tau, batch_size=config.train.score_batch_size, seed=config.train.seed,
        device=device, threshold=config.train.noise_threshold,
    )
    atomic.write_parquet(run_dir / "scores.parquet", _scores_table(dataset, original_index, data, scores))
    images = dataset.images.assign(image_index=np.arange(dataset.n_images))
    atomic.write_parquet(run_dir / "images.parquet", images[["image_id", "image_path", "image_index"]])
    save_embeddings(run_dir / "embeddings.safetensors", image_embeddings, text_embeddings)
    metrics = final_metrics(scores, image_embeddings, text_embeddings, data, config.train.noise_threshold)
    metrics["best_epoch"] = trainer.best_epoch
    atomic.append_json_line(run_dir / "metrics.jsonl", metrics)
    write_config(run_dir, config=config.to_dict(), data=data_record, encoder=encoder_record, device=device.type, status="complete")
    logger.info("run written to %s (format version %d)", run_dir, FORMAT_VERSION)
    return metrics
