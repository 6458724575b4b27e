"""Benchmark EmbeddingProjector: wall time and peak memory of ``fit_transform`` per collection size.

Points are the same synthetic 256-dim mixture as in bench_search.py. Each size runs in its own
subprocess so that ``ru_maxrss`` is its own peak. The fit sample is capped at ``max_fit_points``, so
time beyond the cap grows with the number of transformed points. The largest size runs only when a
straight-line extrapolation from the two sizes below it stays under ``--max-minutes``. Otherwise
the script records that extrapolation, labelled as an estimate. Results go into the "umap" section
of the JSON file that bench_search.py also writes.

    python bench/bench_umap.py            # 100k and 300k, then 1M or an estimate for it
    python bench/bench_umap.py --quick    # smoke run on 3,000 and 6,000 points, then 12,000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# bench_search puts the repository root on sys.path, so it must be imported before srem_core.
from bench_search import DEFAULT_OUTPUT, QUICK_OUTPUT, mixture, peak_rss_mib, rss_mib, run_header, write_section

from srem_core.projection import MAX_FIT_POINTS, EmbeddingProjector  # noqa: E402

logger = logging.getLogger("bench_umap")

MEASURED_SIZES = (100_000, 300_000)
TARGET_SIZE = 1_000_000
QUICK_MEASURED_SIZES = (3_000, 6_000)
QUICK_TARGET_SIZE = 12_000
QUICK_MAX_FIT_POINTS = 2_000
"""Fit sample in smoke runs, kept below the smoke sizes so the transform path runs too."""

RANDOM_STATE = 0
"""Fixed seed, as an app showing the same map on every reload would use. umap-learn then runs
single-threaded."""


WARMUP_POINTS = 600
WARMUP_FIT_POINTS = 300
"""A small fit_transform that compiles umap-learn's numba functions (fit and transform paths) before
the timed run, so that the timed run measures the work of one more projection in a running app."""


def measure(n: int, max_fit_points: int) -> dict:
    """Project ``n`` mixture points and return the wall time split and the peak memory."""
    start = time.perf_counter()
    EmbeddingProjector(max_fit_points=WARMUP_FIT_POINTS, random_state=RANDOM_STATE).fit_transform(
        mixture(WARMUP_POINTS, seed=7)
    )
    warmup_seconds = time.perf_counter() - start

    vectors = mixture(n, seed=n)
    data_mib = rss_mib()
    projector = EmbeddingProjector(max_fit_points=max_fit_points, random_state=RANDOM_STATE)

    start = time.perf_counter()
    projector.fit(vectors)
    fit_seconds = time.perf_counter() - start
    rest = np.ones(n, dtype=bool)
    rest[projector.fit_indices_] = False
    start = time.perf_counter()
    if rest.any():
        projector.transform(vectors[rest])
    transform_seconds = time.perf_counter() - start
    return {
        "n_points": n,
        "measured": True,
        "jit_warmup_seconds": round(warmup_seconds, 2),
        "fit_points": int(projector.fit_indices_.size),
        "fit_seconds": round(fit_seconds, 2),
        "transform_seconds": round(transform_seconds, 2),
        "total_seconds": round(fit_seconds + transform_seconds, 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_after_loading_data_mib": round(data_mib, 1),
    }


def extrapolate(rows: list[dict], n: int) -> dict:
    """Estimate time and memory at ``n`` points by a straight line through the last two rows.

    The fit sample is the same size in both rows, so only the transform part and the data grow.
    """
    small, large = rows[-2], rows[-1]
    per_point = (large["total_seconds"] - small["total_seconds"]) / (large["n_points"] - small["n_points"])
    memory_per_point = (large["peak_rss_mib"] - small["peak_rss_mib"]) / (large["n_points"] - small["n_points"])
    return {
        "n_points": n,
        "measured": False,
        "note": "estimate: straight-line extrapolation from the two largest measured sizes",
        "total_seconds": round(large["total_seconds"] + per_point * (n - large["n_points"]), 1),
        "peak_rss_mib": round(large["peak_rss_mib"] + memory_per_point * (n - large["n_points"]), 1),
    }


def run_worker(n: int, max_fit_points: int) -> dict:
    command = [sys.executable, __file__, "--worker", str(n), "--max-fit-points", str(max_fit_points)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"worker for {n} points failed with code {completed.returncode}:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_all(measured_sizes, target_size: int, max_fit_points: int, max_minutes: float, output: Path) -> None:
    import umap

    header = run_header()
    header["machine"]["umap_learn"] = umap.__version__
    settings = {"max_fit_points": max_fit_points, "random_state": RANDOM_STATE, "max_minutes": max_minutes}
    rows = []
    for n in measured_sizes:
        logger.info("Projecting %d points", n)
        rows.append(run_worker(n, max_fit_points))
        logger.info("%s", json.dumps(rows[-1]))
        write_section(output, "umap", {**header, **settings, "results": rows})

    estimate = extrapolate(rows, target_size)
    logger.info("Estimate for %d points: %s", target_size, json.dumps(estimate))
    if estimate["total_seconds"] <= 60 * max_minutes:
        rows.append(run_worker(target_size, max_fit_points))
        logger.info("%s", json.dumps(rows[-1]))
    else:
        rows.append(estimate)
    header["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_section(output, "umap", {**header, **settings, "results": rows})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run on a few thousand points")
    parser.add_argument("--max-minutes", type=float, default=15.0,
                        help="run the largest size only if its estimated time is at most this many minutes")
    parser.add_argument("--output", type=Path, help="results JSON file")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--max-fit-points", type=int, default=MAX_FIT_POINTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        sys.stdout.write(json.dumps(measure(args.worker, args.max_fit_points)) + "\n")
        return
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s")
    if args.quick:
        run_all(QUICK_MEASURED_SIZES, QUICK_TARGET_SIZE, QUICK_MAX_FIT_POINTS, args.max_minutes,
                args.output or QUICK_OUTPUT)
    else:
        run_all(MEASURED_SIZES, TARGET_SIZE, args.max_fit_points, args.max_minutes,
                args.output or DEFAULT_OUTPUT)


if __name__ == "__main__":
    main()
