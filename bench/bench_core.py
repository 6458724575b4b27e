"""Benchmark the core library on the bundled demo: detection AUROC and test rSum per method and noise rate.

Runs SREM, InfoNCE, the VSE++ triplet, the ncr baseline, the zero-training baseline and the clean-only
reference (InfoNCE on just the truly clean training pairs) at several caption-noise rates and seeds,
plus the SREM ablation at 40% noise and the epoch-time comparison. Every training run goes through the
same code path as ``srem train`` (``Trainer`` plus ``score_all_pairs``) on cached frozen features.

    python bench/bench_core.py                  # the full table (about an hour on 2 cores)
    python bench/bench_core.py --quick          # one seed, fewer epochs: a smoke run
    python bench/bench_core.py --only ablation  # one part

Results go to ``bench/results/core.json``; ``bench/report.py`` turns them into docs/benchmarks.md tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from srem_core.config import NoiseConfig, ObjectiveConfig, RunConfig, TrainConfig
from srem_core.data import load_dataset
from srem_core.encoders import create_encoder
from srem_core.pipeline import DEFAULT_CACHE_DIR, encode_dataset, final_metrics, make_noise, score_all_pairs
from srem_core.runs import load_heads
from srem_core.training import Trainer, TrainingData

from core_ablations import ablations

logger = logging.getLogger("bench_core")

RESULTS = Path(__file__).resolve().parent / "results" / "core.json"
NOISE_RATES = (0.2, 0.4, 0.6)
SEEDS = (0, 1, 2)
METHODS = ("srem", "infonce", "triplet", "ncr", "clean_only")


def machine_info() -> dict:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(), "torch": torch.__version__}


def load_features(data: str, cache_dir: Path):
    dataset = load_dataset(data)
    encoder = create_encoder("offline", device="cpu")
    return encode_dataset(dataset, encoder, cache_dir=cache_dir, device=torch.device("cpu"), progress=True)


def training_data(encoded, noise: NoiseConfig, clean_only: bool = False) -> TrainingData:
    dataset = encoded.dataset
    injection = make_noise(RunConfig(noise=noise), dataset)
    split = dataset.pairs["split"].to_numpy().astype(str)
    assigned = dataset.caption_to_image if injection is None else injection.assigned
    truth = None if injection is None else injection.is_injected_noise
    if clean_only and truth is not None:
        split = np.where(truth & (split == "train"), "dropped", split)
    return TrainingData(encoded.image_features, encoded.text_features, assigned, split, truth)


def run_once(config: RunConfig, data: TrainingData, identity: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, data, Path(folder), encoder_identity=identity, progress=False)
        started = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - started
        model = load_heads(Path(folder) / "model.safetensors", encoder_identity=identity)
        scores, image_embeddings, text_embeddings = score_all_pairs(
            model, data, tau=config.objective.tau, batch_size=config.train.score_batch_size,
            seed=config.train.seed, device=torch.device("cpu"), threshold=config.train.noise_threshold,
        )
        metrics = final_metrics(scores, image_embeddings, text_embeddings, data, config.train.noise_threshold)
        epochs = [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]
    metrics.update(
        {
            "train_seconds": seconds,
            "epoch_seconds": float(np.median([line["seconds"] for line in epochs])),
            "scoring_seconds": float(np.median([line["scoring_seconds"] for line in epochs])),
            "best_epoch": trainer.best_epoch,
            "val_rsum": trainer.best_val_rsum,
        }
    )
    return metrics


def base_config(method: str, seed: int, epochs: int, noise: NoiseConfig, objective: dict) -> RunConfig:
    return RunConfig(
        noise=noise,
        objective=dataclasses.replace(ObjectiveConfig(), **objective),
        train=TrainConfig(method="infonce" if method == "clean_only" else method, epochs=epochs, seed=seed, device="cpu"),
    )


def zero_training(encoded_data: str, noise: NoiseConfig, cache_dir: Path) -> dict:
    from srem_core.reports import run_zero_training_baseline

    return run_zero_training_baseline(data=encoded_data, noise=noise, cache_dir=str(cache_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo")
    parser.add_argument("--quick", action="store_true", help="one seed, 40%% noise only, fewer epochs")
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument("--only", choices=("table", "ablation", "zero"), help="run one part")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (small heads run fastest on one)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    cache_dir = DEFAULT_CACHE_DIR
    encoded = load_features(arguments.data, cache_dir)
    torch.set_num_threads(arguments.threads)
    rates, seeds = ((0.4,), (0,)) if arguments.quick else (NOISE_RATES, SEEDS)
    epochs = 8 if arguments.quick else arguments.epochs
    results = json.loads(arguments.out.read_text()) if arguments.out.exists() else {}
    results["machine"] = machine_info()
    results["date"] = time.strftime("%Y-%m-%d")
    results["command"] = "python bench/bench_core.py" + (" --quick" if arguments.quick else "")
    results["threads"] = arguments.threads
    results["load_average"] = [round(value, 2) for value in os.getloadavg()]

    def save():
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_text(json.dumps(results, indent=2, sort_keys=True))

    if arguments.only in (None, "table"):
        table = results.setdefault("table", {})
        for rate in rates:
            for seed in seeds:
                noise = NoiseConfig(rate=rate, seed=seed)
                for method in METHODS:
                    data = training_data(encoded, noise, clean_only=method == "clean_only")
                    metrics = run_once(base_config(method, seed, epochs, noise, {}), data, encoded.encoder_identity)
                    table[f"{method}|{rate}|{seed}"] = metrics
                    logger.info("%s noise %.1f seed %d: AUROC %.3f rSum %.1f", method, rate, seed,
                                metrics.get("detection_auroc", float("nan")), metrics.get("test_rsum", float("nan")))
                    save()
    if arguments.only in (None, "zero"):
        zero = results.setdefault("zero_training", {})
        for rate in rates:
            for seed in seeds:
                zero[f"{rate}|{seed}"] = zero_training(arguments.data, NoiseConfig(rate=rate, seed=seed), cache_dir)
                save()
    if arguments.only in (None, "ablation"):
        ablation = results.setdefault("ablation", {})
        for name, overrides in ablations().items():
            for seed in seeds:
                noise = NoiseConfig(rate=0.4, seed=seed)
                metrics = run_once(base_config("srem", seed, epochs, noise, overrides), training_data(encoded, noise), encoded.encoder_identity)
                ablation[f"{name}|{seed}"] = metrics
                logger.info("ablation %s seed %d: AUROC %.3f rSum %.1f", name, seed, metrics["detection_auroc"], metrics["test_rsum"])
                save()
    results["load_average_end"] = [round(value, 2) for value in os.getloadavg()]
    save()


if __name__ == "__main__":
    main()
