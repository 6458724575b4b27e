"""Time one training step of SREM, InfoNCE and the ncr baseline side by side, and the scoring throughput.

A step is the forward pass of the heads, the objective's loss, the backward pass and the optimiser update
on one batch of frozen features (image 1280-d, text 384-d, the offline encoder's sizes). The per-epoch
scoring pass is timed separately, as FLOP/s against this machine's raw matrix-product FLOP/s.

    python bench/bench_steps.py            # batch 128 and 1024
    python bench/bench_steps.py --quick    # fewer repeats
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from bench_core import machine_info
from srem_core.config import ObjectiveConfig, TrainConfig
from srem_core.model import HeadEnsemble, ProjectionHeads
from srem_core.objective import Selection, create_objective
from srem_core.scoring import score_pairs

logger = logging.getLogger("bench_steps")
RESULTS = Path(__file__).resolve().parent / "results" / "steps.json"
IMAGE_DIM, TEXT_DIM, EMBED_DIM = 1280, 384, 256
N_PAIRS = 20_000
"""Pairs behind the selection state; batches index into them."""

VARIANTS = {
    "infonce": ("infonce", {}),
    "srem (shipped defaults)": ("srem", {}),
    "srem + complementary loss, uniform Q": ("srem", {"lambda_cmbcl": 0.3, "bias": "uniform"}),
    "srem + complementary loss, biased Q": ("srem", {"lambda_cmbcl": 0.3, "bias": "dissimilar"}),
    "ncr (2 networks)": ("ncr", {}),
}


def time_steps(method: str, overrides: dict, batch_size: int, repeats: int) -> float:
    """Return the median seconds of one training step (after warm-up steps)."""
    objective_config = dataclasses.replace(ObjectiveConfig(), **overrides)
    train_config = TrainConfig(method=method, batch_size=batch_size, device="cpu")
    objective = create_objective(objective_config, train_config)
    torch.manual_seed(0)
    model = HeadEnsemble([ProjectionHeads(IMAGE_DIM, TEXT_DIM, EMBED_DIM) for _ in range(objective.n_networks)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    clean_prob = rng.uniform(size=N_PAIRS).astype(np.float32)
    selection = Selection(clean_prob, clean_prob > 0.4, (clean_prob > 0.4).astype(np.float32))
    objective.selection = [selection, selection] if method == "ncr" else selection
    images = torch.randn(batch_size, IMAGE_DIM)
    texts = torch.randn(batch_size, TEXT_DIM)
    indices = torch.as_tensor(rng.choice(N_PAIRS, batch_size, replace=False))
    epoch = objective_config.warmup_epochs + 1
    timings = []
    for step in range(repeats + 3):
        started = time.perf_counter()
        similarities = []
        for member in model.members:
            image_features, text_features = member(images, texts)
            similarities.append(image_features @ text_features.T)
        loss, _ = objective.batch_loss(similarities, indices, epoch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= 3:
            timings.append(time.perf_counter() - started)
    return float(np.median(timings))


def matmul_flops(repeats: int) -> float:
    """Return the median FLOP/s of a (4096 x 256) @ (256 x 4096) float32 product on this machine."""
    left, right = torch.randn(4096, 256), torch.randn(256, 4096)
    timings = []
    for _ in range(repeats + 2):
        started = time.perf_counter()
        torch.mm(left, right)
        timings.append(time.perf_counter() - started)
    return 2 * 4096 * 256 * 4096 / float(np.median(timings[2:]))


def scoring_flops(n_pairs: int, batch_size: int, repeats: int) -> dict:
    """Time ``score_pairs`` on normalised embeddings; count 2 * B * B * D FLOPs per batch of B pairs."""
    embeddings = torch.nn.functional.normalize(torch.randn(n_pairs, EMBED_DIM), dim=1)
    texts = torch.nn.functional.normalize(torch.randn(n_pairs, EMBED_DIM), dim=1)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        score_pairs(embeddings, texts, tau=0.05, batch_size=batch_size, seed=0)
        timings.append(time.perf_counter() - started)
    seconds = float(np.median(timings))
    flops = 2.0 * n_pairs * batch_size * EMBED_DIM
    return {"n_pairs": n_pairs, "batch_size": batch_size, "seconds": seconds, "flops_per_second": flops / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    repeats = 5 if arguments.quick else 20
    results = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d"), "command": "python bench/bench_steps.py" + (" --quick" if arguments.quick else ""),
               "load_average": list(__import__("os").getloadavg()), "steps": {}}
    for batch_size in (128, 1024):
        for name, (method, overrides) in VARIANTS.items():
            seconds = time_steps(method, overrides, batch_size, repeats)
            results["steps"][f"{name}|{batch_size}"] = seconds
            logger.info("batch %d %-40s %.2f ms", batch_size, name, 1000 * seconds)
    results["matmul_flops_per_second"] = matmul_flops(repeats)
    results["scoring"] = [scoring_flops(65_536, batch_size, max(3, repeats // 5)) for batch_size in (128, 1024)]
    for row in results["scoring"]:
        logger.info("scoring batch %d: %.2f GFLOP/s (matmul %.2f GFLOP/s)", row["batch_size"], row["flops_per_second"] / 1e9,
                    results["matmul_flops_per_second"] / 1e9)
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
