"""Time one training step of SREM, InfoNCE and the ncr baseline side by side, and the scoring throughput.

A step is the forward pass of the heads, the objective's loss, the backward pass and the optimiser update
on one batch of frozen features (image 1280-d, text 384-d, the offline encoder's sizes). The per-epoch
scoring pass is timed on its own, as FLOP/s against this machine's raw matrix-product FLOP/s.

Each measurement runs in a fresh subprocess, so that its peak resident memory (``ru_maxrss``) is its
own. The whole set runs ``--rounds`` times, interleaved, and each cell is the median over rounds of the
per-process medians. A load change on a shared machine then hits every variant alike.

    python bench/bench_steps.py            # batch 128 and 1024, 3 rounds
    python bench/bench_steps.py --quick    # one round, fewer repeats, results to the temp folder
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
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
SCORED_PAIRS = 65_536
BATCH_SIZES = (128, 1024)

VARIANTS = {
    "infonce": ("infonce", {}),
    "srem (shipped defaults)": ("srem", {}),
    "srem + complementary loss, uniform Q": ("srem", {"lambda_cmbcl": 0.3, "bias": "uniform"}),
    "srem + complementary loss, biased Q": ("srem", {"lambda_cmbcl": 0.3, "bias": "dissimilar"}),
    "ncr (2 networks)": ("ncr", {}),
}


def peak_rss_mib() -> float:
    """Return this process's peak resident memory in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_steps(method: str, overrides: dict, batch_size: int, repeats: int) -> float:
    """Return the median seconds of one training step (after 3 warm-up steps)."""
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


def time_scoring(batch_size: int, repeats: int) -> float:
    """Return the median seconds of ``score_pairs`` over ``SCORED_PAIRS`` normalised embedding pairs."""
    generator = torch.Generator().manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(SCORED_PAIRS, EMBED_DIM, generator=generator), dim=1)
    texts = torch.nn.functional.normalize(torch.randn(SCORED_PAIRS, EMBED_DIM, generator=generator), dim=1)
    score_pairs(images, texts, tau=0.05, batch_size=batch_size, seed=0)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        score_pairs(images, texts, tau=0.05, batch_size=batch_size, seed=0)
        timings.append(time.perf_counter() - started)
    return float(np.median(timings))


def worker(task: dict) -> dict:
    """Run one measurement in this process and return seconds, resident memory before and peak."""
    torch.set_num_threads(task["threads"])
    before = peak_rss_mib()
    if task["kind"] == "step":
        method, overrides = VARIANTS[task["variant"]]
        seconds = time_steps(method, overrides, task["batch_size"], task["repeats"])
    elif task["kind"] == "scoring":
        seconds = time_scoring(task["batch_size"], task["repeats"])
    else:
        seconds = 2 * 4096 * 256 * 4096 / matmul_flops(task["repeats"])
    return {"seconds": seconds, "rss_before_mib": before, "peak_rss_mib": peak_rss_mib()}


def run_worker(task: dict) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(task)]
    completed = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round and fewer repeats, written to the temp folder")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, 1 with --quick)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads per measurement (default: all cores)")
    parser.add_argument("--out", type=Path, help=f"results JSON (default {RESULTS}, or the temp folder with --quick)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        print(json.dumps(worker(json.loads(arguments.worker))))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = arguments.out or (Path(tempfile.gettempdir()) / "srem_bench_steps_quick.json" if arguments.quick else RESULTS)
    rounds = arguments.rounds or (1 if arguments.quick else 3)
    repeats = 5 if arguments.quick else 20
    tasks = {f"{name}|{batch_size}": {"kind": "step", "variant": name, "batch_size": batch_size}
             for batch_size in BATCH_SIZES for name in VARIANTS}
    tasks.update({f"scoring|{batch_size}": {"kind": "scoring", "batch_size": batch_size} for batch_size in BATCH_SIZES})
    tasks["matmul"] = {"kind": "matmul"}
    measured: dict[str, list[dict]] = {key: [] for key in tasks}
    command = "python bench/bench_steps.py" + (" --quick" if arguments.quick else "")
    results = {"machine": machine_info() | {"torch_threads": arguments.threads}, "date": time.strftime("%Y-%m-%d"),
               "command": command, "rounds": rounds, "repeats": repeats, "load_average": list(os.getloadavg())}
    for round_index in range(rounds):
        for key, task in tasks.items():
            task_repeats = max(3, repeats // 5) if task["kind"] == "scoring" else repeats
            row = run_worker(task | {"repeats": task_repeats, "threads": arguments.threads})
            measured[key].append(row)
            logger.info("round %d/%d %-45s %9.2f ms, peak %.0f MiB", round_index + 1, rounds, key, 1000 * row["seconds"], row["peak_rss_mib"])
    results["load_average_end"] = list(os.getloadavg())

    def median(key: str, field: str) -> float:
        return float(np.median([row[field] for row in measured[key]]))

    step_keys = [key for key, task in tasks.items() if task["kind"] == "step"]
    results["steps"] = {key: median(key, "seconds") for key in step_keys}
    results["steps_peak_rss_mib"] = {key: median(key, "peak_rss_mib") for key in step_keys}
    results["steps_rss_before_mib"] = {key: median(key, "rss_before_mib") for key in step_keys}
    results["matmul_flops_per_second"] = 2 * 4096 * 256 * 4096 / median("matmul", "seconds")
    results["scoring"] = []
    for batch_size in BATCH_SIZES:
        seconds = median(f"scoring|{batch_size}", "seconds")
        flops = 2.0 * SCORED_PAIRS * batch_size * EMBED_DIM
        results["scoring"].append({"n_pairs": SCORED_PAIRS, "batch_size": batch_size, "seconds": seconds, "flops_per_second": flops / seconds,
                                   "peak_rss_mib": median(f"scoring|{batch_size}", "peak_rss_mib"),
                                   "rss_before_mib": median(f"scoring|{batch_size}", "rss_before_mib")})
        logger.info("scoring batch %d: %.1f GFLOP/s, %.0f%% of the matmul rate (%.1f GFLOP/s)", batch_size, flops / seconds / 1e9,
                    100 * flops / seconds / results["matmul_flops_per_second"], results["matmul_flops_per_second"] / 1e9)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True))
    logger.info("wrote %s", out)


if __name__ == "__main__":
    main()
