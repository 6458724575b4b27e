#!/usr/bin/env python3
"""Write a complete, synthetic SREM run directory for developing and benchmarking the app.

The run follows ``docs/run_format.md`` and is written with the writer functions of ``srem_core.runs``,
so the app reads it exactly like a trained run. Its scores are made up: they look like a trained
model's (injected noise gets low ``clean_prob``) but no model produced them. Three sources:

- ``--from-run RUN``: reuse a trained run's captions, image files, embeddings, scores, history and
  projection heads, perturb embeddings and scores, and tile the pairs to ``--pairs`` rows (the app
  benchmark builds 100,000 pairs this way from the demo run).
- ``--manifest CSV`` (default ``demo/pairs.csv``): the manifest's captions and image files, with
  random embeddings and random projection heads.
- ``--shapes``: draws its own images (coloured shapes) and captions, so it needs no other file; the
  app tests use it.

Examples::

    python scripts/make_synthetic_run.py --shapes --pairs 2000 --out runs/shapes-2k
    python scripts/make_synthetic_run.py --from-run demo/run --pairs 100000 --out runs/synthetic-100k
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from srem_core import atomic, runs  # noqa: E402
from srem_core.config import NoiseConfig, RunConfig, TrainConfig  # noqa: E402
from srem_core.model import HeadEnsemble, ProjectionHeads  # noqa: E402

logger = logging.getLogger("make_synthetic_run")

IMAGE_FEATURE_DIM, TEXT_FEATURE_DIM, EMBED_DIM = 1280, 384, 256
"""Feature sizes of the offline encoder (EfficientNet-Lite0 images, MiniLM-L6 texts) and the joint space."""

NOISE_THRESHOLD = 0.5
"""``is_noisy = clean_prob < NOISE_THRESHOLD``, the training default."""

TAU = 0.05
"""Temperature used to turn similarities into synthetic energies, the training default."""

EMBEDDING_JITTER = 0.02
"""Standard deviation per dimension added to reused unit-norm embeddings (about a third of 1/sqrt(256))."""

CLEAN_PROB_JITTER = 0.4
"""Standard deviation added to the logit of a reused ``clean_prob``."""

SHAPES = ("circle", "square", "triangle", "diamond", "ring", "cross")
COLOURS = {
    "red": (214, 39, 40),
    "green": (44, 160, 44),
    "blue": (31, 119, 180),
    "orange": (255, 127, 14),
    "purple": (148, 103, 189),
    "grey": (127, 127, 127),
}
SPLIT_BY_LAST_DIGIT = ("train",) * 8 + ("val", "test")
"""Split of a drawn image by the last digit of its number: 80% train, 10% val, 10% test."""

SHAPE_IMAGE_SIZE = 128
CAPTIONS_PER_SHAPE_IMAGE = 2


@dataclasses.dataclass
class Source:
    """Pairs and images to tile, plus what a trained source run adds (embeddings, scores, heads)."""

    pairs: pd.DataFrame
    """pair_id, image_index, original_image_index, split, caption, category."""
    images: pd.DataFrame
    """image_id, image_path (relative to ``data_root``)."""
    data_root: Path
    manifest: str | None
    run: runs.Run | None = None


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-values))


def _logit(probabilities: np.ndarray) -> np.ndarray:
    clipped = np.clip(probabilities, 1e-4, 1 - 1e-4)
    return np.log(clipped / (1 - clipped))


def draw_shapes(folder: Path, n_images: int, rng: np.random.Generator) -> Source:
    """Draw ``n_images`` coloured shapes as WebP files in ``folder/images``; two captions each."""
    from PIL import Image, ImageDraw

    (folder / "images").mkdir(parents=True, exist_ok=True)
    image_rows, pair_rows = [], []
    for index in range(n_images):
        shape = SHAPES[index % len(SHAPES)]
        colour = list(COLOURS)[(index // len(SHAPES)) % len(COLOURS)]
        scale = float(rng.uniform(0.45, 0.9))
        image = Image.new("RGB", (SHAPE_IMAGE_SIZE, SHAPE_IMAGE_SIZE), (255, 255, 255))
        draw = ImageDraw.Draw(image)
        half = SHAPE_IMAGE_SIZE * scale / 2
        centre = SHAPE_IMAGE_SIZE / 2 + rng.uniform(-10, 10, size=2)
        box = [centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half]
        fill = COLOURS[colour]
        if shape == "circle":
            draw.ellipse(box, fill=fill)
        elif shape == "square":
            draw.rectangle(box, fill=fill)
        elif shape == "triangle":
            draw.polygon([(box[0], box[3]), (box[2], box[3]), (centre[0], box[1])], fill=fill)
        elif shape == "diamond":
            draw.polygon([(centre[0], box[1]), (box[2], centre[1]), (centre[0], box[3]), (box[0], centre[1])], fill=fill)
        elif shape == "ring":
            draw.ellipse(box, outline=fill, width=max(4, int(half / 4)))
        else:
            bar = half / 3
            draw.rectangle([box[0], centre[1] - bar, box[2], centre[1] + bar], fill=fill)
            draw.rectangle([centre[0] - bar, box[1], centre[0] + bar, box[3]], fill=fill)
        image_id = f"shape-{index:06d}"
        relative = f"images/{image_id}.webp"
        image.save(folder / relative, "WEBP", quality=80)
        image_rows.append({"image_id": image_id, "image_path": relative})
        size = "large" if scale > 0.7 else "small"
        split = SPLIT_BY_LAST_DIGIT[index % 10]
        captions = [f"a {colour} {shape}", f"a {size} {colour} {shape} on a white background"]
        for k, caption in enumerate(captions[:CAPTIONS_PER_SHAPE_IMAGE]):
            pair_rows.append(
                {"pair_id": f"{image_id}-{k}", "image_index": index, "original_image_index": index,
                 "split": split, "caption": caption, "category": shape}
            )
    manifest = pd.DataFrame(pair_rows).assign(
        image_id=lambda frame: [image_rows[i]["image_id"] for i in frame["image_index"]],
        image_path=lambda frame: [image_rows[i]["image_path"] for i in frame["image_index"]],
    )
    manifest[["pair_id", "image_id", "image_path", "caption", "category", "split"]].to_csv(folder / "pairs.csv", index=False)
    return Source(pd.DataFrame(pair_rows), pd.DataFrame(image_rows), folder, str(folder / "pairs.csv"))


def read_manifest_source(manifest: Path) -> Source:
    """Read a manifest with image_path and caption columns (and optional pair_id, image_id, category, split)."""
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    missing = {"image_path", "caption"} - set(frame.columns)
    if missing:
        raise SystemExit(f"manifest {manifest} lacks column(s) {sorted(missing)}; it needs image_path and caption")
    if "image_id" not in frame:
        frame["image_id"] = frame["image_path"]
    images = frame.drop_duplicates("image_id")[["image_id", "image_path"]].reset_index(drop=True)
    index_of = {image_id: i for i, image_id in enumerate(images["image_id"])}
    image_index = frame["image_id"].map(index_of).to_numpy(dtype=np.int64)
    pairs = pd.DataFrame(
        {
            "pair_id": frame["pair_id"] if "pair_id" in frame else [f"{i}-{k}" for k, i in enumerate(frame["image_id"])],
            "image_index": image_index,
            "original_image_index": image_index,
            "split": frame["split"].replace("", "train") if "split" in frame else "train",
            "caption": frame["caption"],
            "category": frame["category"].replace("", None) if "category" in frame else None,
        }
    )
    return Source(pairs, images, manifest.parent.resolve(), str(manifest.resolve()))


def read_run_source(path: Path) -> Source:
    run = runs.load_run(path)
    scores = run.scores
    index_of = {image_id: i for i, image_id in enumerate(run.images["image_id"])}
    pairs = pd.DataFrame(
        {
            "pair_id": scores["pair_id"],
            "image_index": scores["image_index"].to_numpy(dtype=np.int64),
            "original_image_index": scores["original_image_id"].map(index_of).to_numpy(dtype=np.int64),
            "split": scores["split"],
            "caption": scores["caption"],
            "category": scores["category"] if "category" in scores else None,
        }
    )
    return Source(pairs, run.images[["image_id", "image_path"]].copy(), run.data_root, run.meta["data"].get("manifest"), run)


def tile_indices(n_source: int, n_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (source row, copy number) for each of ``n_pairs`` rows built by repeating the source."""
    rows = np.arange(n_pairs, dtype=np.int64)
    return rows % n_source, rows // n_source


def _copy_suffix(values: pd.Series, copies: np.ndarray) -> list[str]:
    return [value if copy == 0 else f"{value}~{copy}" for value, copy in zip(values, copies)]


def tile(source: Source, n_pairs: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """Tile pairs and images to ``n_pairs``; return pairs, images, source pair rows and source image rows."""
    pair_rows, pair_copies = tile_indices(len(source.pairs), n_pairs)
    n_source_images = len(source.images)
    pairs = source.pairs.iloc[pair_rows].reset_index(drop=True)
    pairs["pair_id"] = _copy_suffix(pairs["pair_id"], pair_copies)
    pairs["image_index"] = pairs["image_index"].to_numpy() + pair_copies * n_source_images
    pairs["original_image_index"] = pairs["original_image_index"].to_numpy() + pair_copies * n_source_images

    used = np.unique(np.concatenate([pairs["image_index"], pairs["original_image_index"]]))
    remap = np.full(int(used.max()) + 1, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    pairs["image_index"] = remap[pairs["image_index"].to_numpy()]
    pairs["original_image_index"] = remap[pairs["original_image_index"].to_numpy()]
    image_rows, image_copies = used % n_source_images, used // n_source_images
    images = source.images.iloc[image_rows].reset_index(drop=True)
    images["image_id"] = _copy_suffix(images["image_id"], image_copies)
    return pairs, images, pair_rows, image_rows


def inject_noise(pairs: pd.DataFrame, rate: float, rng: np.random.Generator) -> None:
    """Shuffle the images of ``round(rate * n_train)`` training captions among themselves (caption level)."""
    train = np.flatnonzero(pairs["split"].to_numpy() == "train")
    chosen = rng.choice(train, size=int(round(rate * len(train))), replace=False)
    assigned = pairs["image_index"].to_numpy().copy()
    assigned[chosen] = assigned[rng.permutation(chosen)]
    pairs["image_index"] = assigned


def synthesize_embeddings(pairs: pd.DataFrame, n_images: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random image embeddings clustered by category; each caption lies near its original image."""
    categories = pd.Series(pairs["category"]).fillna("")
    centre_of = {name: rng.normal(size=EMBED_DIM) for name in categories.unique()}
    image_category = np.full(n_images, "", dtype=object)
    image_category[pairs["original_image_index"].to_numpy()] = categories.to_numpy()
    centres = np.stack([centre_of.get(name, np.zeros(EMBED_DIM)) for name in image_category])
    image_embeddings = _unit_rows(centres + 0.8 * rng.normal(size=(n_images, EMBED_DIM)))
    original = image_embeddings[pairs["original_image_index"].to_numpy()]
    text_embeddings = _unit_rows(original + 0.06 * rng.normal(size=original.shape))
    return image_embeddings, text_embeddings


def synthesize_scores(similarity: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Scores that behave like a trained model's: a low similarity gives a high loss and low clean_prob."""
    n = len(similarity)
    per_pair_loss = np.log1p(np.exp(-8.0 * (similarity - 0.35))) + rng.gamma(2.0, 0.05, size=n)
    clean_prob = _sigmoid(12.0 * (similarity - 0.5) + rng.normal(0.0, 1.2, size=n))
    energy = -similarity - TAU * np.log(128) + rng.normal(0.0, 0.08, size=n)
    swapped_entropy = np.abs(0.3 + 2.5 * (1 - clean_prob) * rng.uniform(0.4, 1.0, size=n) + rng.normal(0, 0.15, size=n))
    return pd.DataFrame(
        {"energy": energy, "swapped_entropy": swapped_entropy, "per_pair_loss": per_pair_loss, "clean_prob": clean_prob}
    ).astype(np.float32)


def perturb_scores(scores: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    n = len(scores)
    clean_prob = _sigmoid(_logit(scores["clean_prob"].to_numpy(np.float64)) + rng.normal(0, CLEAN_PROB_JITTER, size=n))
    return pd.DataFrame(
        {
            "energy": scores["energy"].to_numpy() + rng.normal(0, 0.02, size=n),
            "swapped_entropy": np.abs(scores["swapped_entropy"].to_numpy() * rng.lognormal(0, 0.1, size=n)),
            "per_pair_loss": np.abs(scores["per_pair_loss"].to_numpy() * rng.lognormal(0, 0.1, size=n)),
            "clean_prob": clean_prob,
        }
    ).astype(np.float32)


def synthesize_history(scores: pd.DataFrame, train: np.ndarray, epochs: int, warmup: int, rng: np.random.Generator) -> pd.DataFrame:
    """Per-epoch scores of the training pairs that drift from random towards the final scores."""
    final_logit = _logit(scores["clean_prob"].to_numpy(np.float64)[train])
    frames = []
    for epoch in range(1, epochs + 1):
        progress = epoch / epochs
        logit = progress * final_logit + (1 - progress) * rng.normal(0.0, 1.5, size=len(train))
        clean_prob = _sigmoid(logit)
        frame = pd.DataFrame(
            {
                "epoch": epoch,
                "pair_id": scores["pair_id"].to_numpy()[train],
                "energy": scores["energy"].to_numpy()[train] * progress + rng.normal(-0.5, 0.1, size=len(train)) * (1 - progress),
                "swapped_entropy": np.abs(scores["swapped_entropy"].to_numpy()[train] + (1 - progress) * rng.normal(1.0, 0.3, size=len(train))),
                "per_pair_loss": scores["per_pair_loss"].to_numpy()[train] + (1 - progress) * rng.gamma(2.0, 0.5, size=len(train)),
                "clean_prob": clean_prob,
                "is_noisy": clean_prob < NOISE_THRESHOLD,
                "selected_clean": (clean_prob >= NOISE_THRESHOLD) & (epoch > warmup),
            }
        )
        frames.append(frame.astype({name: np.float32 for name in ("energy", "swapped_entropy", "per_pair_loss", "clean_prob")}))
    return pd.concat(frames, ignore_index=True)


def epoch_metrics(history: pd.DataFrame, truth: pd.Series, epochs: int, rng: np.random.Generator) -> list[dict]:
    """Per-epoch metric records with smooth synthetic training curves and real detection metrics."""
    records = []
    truth_by_pair = dict(zip(truth.index, truth.astype("float64").to_numpy(na_value=np.nan)))
    for epoch in range(1, epochs + 1):
        frame = history[history["epoch"] == epoch]
        labels = frame["pair_id"].map(truth_by_pair).to_numpy(dtype=float)
        record = {
            "kind": "epoch",
            "epoch": epoch,
            "loss_clean": float(2.5 * math.exp(-epoch / 4) + 0.3 + rng.normal(0, 0.02)),
            "loss_complementary": float(0.9 * math.exp(-epoch / 6) + 0.1 + rng.normal(0, 0.01)),
            "fraction_selected": float(frame["selected_clean"].mean()),
            "val_rsum": float(350 * (1 - math.exp(-epoch / 3)) + 100 + rng.normal(0, 3)),
            "val_r1_i2t": float(40 * (1 - math.exp(-epoch / 3)) + 5 + rng.normal(0, 0.5)),
            "seconds": float(rng.uniform(2.0, 3.0)),
        }
        record["loss"] = record["loss_clean"] + record["loss_complementary"]
        known = ~np.isnan(labels)
        if known.any() and 0 < labels[known].sum() < known.sum():
            noisiness = 1 - frame["clean_prob"].to_numpy()[known]
            record["train_auroc"] = float(roc_auc_score(labels[known], noisiness))
            record["train_ap"] = float(average_precision_score(labels[known], noisiness))
        records.append(record)
    return records


def final_metrics(scores: pd.DataFrame, rng: np.random.Generator) -> dict:
    record = {"kind": "final", "split": "test", "threshold": NOISE_THRESHOLD}
    for direction in ("i2t", "t2i"):
        for k, base in ((1, 40.0), (5, 70.0), (10, 80.0)):
            record[f"{direction}_r{k}"] = float(base + rng.normal(0, 2))
    record["rsum"] = float(sum(value for key, value in record.items() if key[3:5] == "_r"))
    known = scores["is_injected_noise"].notna().to_numpy()
    labels = scores["is_injected_noise"].to_numpy()[known].astype(bool)
    if known.any() and 0 < labels.sum() < len(labels):
        flagged = scores["is_noisy"].to_numpy()[known]
        noisiness = 1 - scores["clean_prob"].to_numpy()[known]
        record["auroc"] = float(roc_auc_score(labels, noisiness))
        record["ap"] = float(average_precision_score(labels, noisiness))
        record["precision"] = float((flagged & labels).sum() / max(flagged.sum(), 1))
        record["recall"] = float((flagged & labels).sum() / labels.sum())
    return record


def encoder_identity() -> str:
    """Return the offline encoder's identity, or a placeholder when ``srem_core.encoders`` lacks it."""
    try:
        from srem_core.encoders import create_encoder

        return create_encoder("offline").identity
    except (ImportError, OSError, RuntimeError) as error:
        # NOTE: a run with the placeholder identity cannot load its model. The app's search page then
        # reports an encoder mismatch for text and upload queries, and every other page works.
        logger.warning("offline encoder unavailable (%s); writing a placeholder identity", error)
        return "offline-unavailable"


def build_run(out: Path, source: Source, n_pairs: int, *, epochs: int, noise_rate: float, seed: int, description: str) -> None:
    rng = np.random.default_rng(seed)
    pairs, images, pair_rows, image_rows = tile(source, n_pairs)
    if source.run is None:
        inject_noise(pairs, noise_rate, rng)
        image_embeddings, text_embeddings = synthesize_embeddings(pairs, len(images), rng)
        similarity = np.einsum("ij,ij->i", text_embeddings, image_embeddings[pairs["image_index"].to_numpy()])
        values = synthesize_scores(similarity, rng)
    else:
        image_embeddings = _unit_rows(source.run.image_embeddings[image_rows] + rng.normal(0, EMBEDDING_JITTER, (len(images), EMBED_DIM)))
        text_vectors = source.run.text_embeddings[pair_rows]
        text_embeddings = _unit_rows(text_vectors + rng.normal(0, EMBEDDING_JITTER, text_vectors.shape))
        values = perturb_scores(source.run.scores.iloc[pair_rows].reset_index(drop=True), rng)

    assigned, original = pairs["image_index"].to_numpy(), pairs["original_image_index"].to_numpy()
    train = pairs["split"].to_numpy() == "train"
    if source.run is None:
        has_truth = noise_rate > 0
    else:
        has_truth = bool(source.run.scores["is_injected_noise"].notna().any())
        noise_rate = float((assigned != original)[train].mean()) if has_truth else 0.0
    injected = pd.array(np.where(train, assigned != original, False), dtype="boolean")
    injected[~train | (not has_truth)] = pd.NA
    scores = pd.DataFrame(
        {
            "pair_id": pairs["pair_id"].astype(str),
            "image_id": images["image_id"].to_numpy()[assigned],
            "original_image_id": images["image_id"].to_numpy()[original],
            "image_index": assigned.astype(np.int64),
            "split": pairs["split"].astype(str),
            "image_path": images["image_path"].to_numpy()[assigned],
            "caption": pairs["caption"].astype(str),
            "category": pairs["category"],
        }
    )
    scores = pd.concat([scores, values], axis=1)
    scores["is_noisy"] = scores["clean_prob"].to_numpy() < NOISE_THRESHOLD
    scores["is_injected_noise"] = injected

    warmup = min(2, epochs - 1)
    history = synthesize_history(scores, np.flatnonzero(train), epochs, warmup, rng)
    truth = scores.set_index("pair_id")["is_injected_noise"]
    metrics = epoch_metrics(history, truth, epochs, rng) + [final_metrics(scores, rng)]
    write_run(out, source, scores, images, history, metrics, image_embeddings, text_embeddings,
              noise_rate=noise_rate, epochs=epochs, seed=seed, description=description)


def write_run(out: Path, source: Source, scores, images, history, metrics, image_embeddings, text_embeddings, *,
              noise_rate: float, epochs: int, seed: int, description: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    images = images.assign(image_index=np.arange(len(images), dtype=np.int64))
    atomic.write_parquet(out / "scores.parquet", scores)
    atomic.write_parquet(out / "images.parquet", images)
    atomic.write_parquet(out / "history.parquet", history)
    runs.save_embeddings(out / "embeddings.safetensors", image_embeddings, text_embeddings)
    atomic.write_text(out / "metrics.jsonl", "".join(json.dumps(record, sort_keys=True) + "\n" for record in metrics))
    atomic.write_text(out / "skipped.csv", "source,item_id,reason\n")
    train = scores["split"].to_numpy() == "train"
    if noise_rate > 0:
        atomic.write_npy(out / "noise_index.npy", scores["image_index"].to_numpy(np.int64)[train])

    if source.run is not None:
        shutil.copyfile(source.run.path / "model.safetensors", out / "model.safetensors")
        encoder = dict(source.run.meta["encoder"])
    else:
        identity = encoder_identity()
        heads = HeadEnsemble([ProjectionHeads(IMAGE_FEATURE_DIM, TEXT_FEATURE_DIM, EMBED_DIM)])
        runs.save_heads(out / "model.safetensors", heads, identity)
        encoder = {"name": "offline", "identity": identity, "image_dim": IMAGE_FEATURE_DIM,
                   "text_dim": TEXT_FEATURE_DIM, "embed_dim": EMBED_DIM, "pretrained": None}

    try:
        root = os.path.relpath(source.data_root, out.resolve())
    except ValueError:  # another drive on Windows
        root = str(source.data_root)
    config = RunConfig(
        data=source.manifest or "synthetic",
        noise=NoiseConfig(rate=noise_rate, seed=seed),
        train=TrainConfig(epochs=epochs, seed=seed, device="cpu", noise_threshold=NOISE_THRESHOLD),
    )
    data = {
        "root": root,
        "manifest": source.manifest,
        "n_pairs": len(scores),
        "n_images": len(images),
        "noise": {"rate": noise_rate, "level": "caption", "seed": seed},
        "synthetic": description,
    }
    runs.write_config(out, config=config.to_dict(), data=data, encoder=encoder, device="cpu", status="complete")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, required=True, help="number of pairs (rows of scores.parquet) to write")
    parser.add_argument("--out", type=Path, required=True, help="run directory to write (created if missing)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--from-run", type=Path, help="trained run to reuse: captions, images, embeddings, scores, heads")
    source.add_argument("--manifest", type=Path, help="manifest CSV to reuse (default: demo/pairs.csv)")
    source.add_argument("--shapes", action="store_true", help="draw coloured shapes instead of reading any file")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of synthetic history (default 6)")
    parser.add_argument("--noise-rate", type=float, default=0.2, help="fraction of training captions shuffled (default 0.2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.pairs < 2:
        parser.error(f"--pairs must be at least 2; got {args.pairs}")
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1; got {args.epochs}")
    if not 0.0 <= args.noise_rate < 1.0:
        parser.error(f"--noise-rate must be in [0, 1); got {args.noise_rate}")
    return args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    if args.from_run is not None:
        source, description = read_run_source(args.from_run), f"tiled from run {args.from_run}"
    elif args.shapes:
        n_images = max(1, math.ceil(args.pairs / CAPTIONS_PER_SHAPE_IMAGE))
        source = draw_shapes(args.out / "data", n_images, np.random.default_rng(args.seed))
        description = "drawn shapes"
    else:
        manifest = args.manifest or REPO_ROOT / "demo" / "pairs.csv"
        if not manifest.exists():
            raise SystemExit(f"manifest {manifest} not found; pass --manifest, --from-run or --shapes")
        source, description = read_manifest_source(manifest), f"captions and images of {manifest}"
    build_run(args.out, source, args.pairs, epochs=args.epochs, noise_rate=args.noise_rate, seed=args.seed,
              description=description)
    logger.info("wrote a synthetic run of %d pairs to %s (%s)", args.pairs, args.out, description)


if __name__ == "__main__":
    main()
