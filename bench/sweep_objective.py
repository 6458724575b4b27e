"""Search SREM objective settings on the demo, choosing by validation rSum and training-split AUROC.

The test split is reported for the record but never used to choose: a setting is picked by the
validation rSum (natural noise only) and the detection AUROC on the training split (injected noise).

    python bench/sweep_objective.py --grid bench/grids/objective.json --noise 0.4 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from bench_core import base_config, load_features, run_once, training_data
from srem_core.config import NoiseConfig
from srem_core.pipeline import DEFAULT_CACHE_DIR

logger = logging.getLogger("sweep")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=Path, required=True, help="JSON object: name -> {method, epochs, objective overrides, train overrides}")
    parser.add_argument("--noise", type=float, default=0.4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--data", default="demo")
    parser.add_argument("--out", type=Path, default=Path("bench/results/sweep.jsonl"))
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    encoded = load_features(arguments.data, DEFAULT_CACHE_DIR)
    torch.set_num_threads(1)
    grid = json.loads(arguments.grid.read_text())
    for name, entry in grid.items():
        for seed in arguments.seeds:
            noise = NoiseConfig(rate=arguments.noise, seed=seed)
            method = entry.get("method", "srem")
            config = base_config(method, seed, entry.get("epochs", 20), noise, entry.get("objective", {}))
            if entry.get("train"):
                import dataclasses

                config = dataclasses.replace(config, train=dataclasses.replace(config.train, **entry["train"]))
            started = time.perf_counter()
            metrics = run_once(config, training_data(encoded, noise, clean_only=method == "clean_only"), encoded.encoder_identity)
            row = {"name": name, "seed": seed, "noise": arguments.noise, "seconds": time.perf_counter() - started, **entry, **metrics}
            logger.info(
                "%-40s seed %d  val rSum %6.1f  train AUROC %.3f  (test rSum %6.1f)  best epoch %d",
                name, seed, metrics["val_rsum"], metrics.get("detection_auroc", float("nan")), metrics["test_rsum"], metrics["best_epoch"],
            )
            arguments.out.parent.mkdir(parents=True, exist_ok=True)
            with arguments.out.open("a") as handle:
                handle.write(json.dumps(row, default=str) + "\n")


if __name__ == "__main__":
    main()
