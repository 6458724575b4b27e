"""Benchmark SearchIndex: build time, query latency, recall@10 and peak memory per kind and size.

Vectors are unit-normalised draws from a mixture of Gaussian clusters in dimension 256, and queries
are fresh draws from the same mixture. Each (size, kind) runs in its own subprocess, so that its peak
resident memory (``ru_maxrss``) is its own. The results go into the "search" section of a JSON file
together with machine information, the date and the command.

With ``--real RUN_DIR`` the script indexes a run's image embeddings instead and queries with its
caption embeddings, in this process (no memory column), into the "search_real" section.

    python bench/bench_search.py                  # 10k, 100k, 200k and 1M vectors; about 45 minutes on 2 busy cores
    python bench/bench_search.py --quick          # smoke run on small sizes
    python bench/bench_search.py --real demo/run  # the demo run's embeddings: images indexed, captions as queries
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from srem_core.search_index import SearchIndex, exact_top_k, recall_at_k  # noqa: E402

logger = logging.getLogger("bench_search")

DIM = 256
"""Embedding dimension, as in the joint space of the retrieval model."""

N_CLUSTERS = 1000
"""Mixture components, standing in for semantic groups of images."""

SPREAD = 2.0
"""Norm of a point's Gaussian noise relative to its unit cluster centre. Points of one cluster then
have mean cosine about 1 / (1 + SPREAD**2) = 0.2, so nearest neighbours are not trivially separated."""

K = 10
"""The k of recall@k and of every timed search."""

SIZES = (10_000, 100_000, 200_000, 1_000_000)
QUICK_SIZES = (2_000, 20_000)
KINDS = ("exact", "ivf", "hnsw")

RECALL_QUERIES = 1000
"""Queries whose recall@10 against exact search is reported."""

SINGLE_QUERIES = 200
"""Queries timed one at a time for the single-query latency."""

BATCH_SIZE = 100
BATCH_REPEATS = 5
"""Batches of ``BATCH_SIZE`` queries timed for the batch latency."""

BUILD_REPEATS = 3
"""Builds per (size, kind) below ``SINGLE_BUILD_SIZE``; the median is reported."""

SINGLE_BUILD_SIZE = 1_000_000
"""From this size on each index is built once, because one HNSW build takes several minutes."""

DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "search_umap.json"
QUICK_OUTPUT = Path(tempfile.gettempdir()) / "srem_bench_quick.json"
"""Smoke runs write here, so they never overwrite the recorded results."""


def mixture(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    """Draw ``n`` unit vectors from the fixed mixture (same centres for every seed)."""
    centers = np.random.default_rng(12345).standard_normal((N_CLUSTERS, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    vectors = np.empty((n, dim), dtype=np.float32)
    block = 100_000
    for start in range(0, n, block):
        stop = min(start + block, n)
        labels = rng.integers(0, N_CLUSTERS, stop - start)
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32) * (SPREAD / np.sqrt(dim))
        vectors[start:stop] = centers[labels] + noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def machine_info() -> dict:
    """Describe the CPU, core count, memory, load and library versions of this machine."""
    import faiss

    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    total_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "ram_gib": round(total_kib / 2**20, 1),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "faiss": faiss.__version__,
        "faiss_threads": faiss.omp_get_max_threads(),
    }


def rss_mib() -> float:
    """Return the current resident memory of this process in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def peak_rss_mib() -> float:
    """Return this process's peak resident memory in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_section(path: Path, section: str, content: dict) -> None:
    """Replace one top-level key of the JSON results file, keeping the others, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(path.read_text()) if path.exists() else {}
    results[section] = content
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "w") as file:
        json.dump(results, file, indent=2)
        file.write("\n")
    os.replace(temporary, path)


def run_header() -> dict:
    """Return the date, command and machine fields that every results section starts with."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
    }


# -- worker: one (size, kind) in a fresh process ------------------------------------------------


def measure(kind: str, data_dir: Path, build_repeats: int) -> dict:
    """Build one index kind over the saved data and time its searches."""
    data = {name: np.load(data_dir / f"{name}.npy") for name in ("vectors", "queries", "truth")}
    data_mib = rss_mib()
    # Popping the vectors leaves time_index the only reference, so it can free them after the builds.
    row = time_index(kind, data.pop("vectors"), data["queries"], data["truth"], build_repeats)
    return {
        **row,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_after_loading_data_mib": round(data_mib, 1),
    }


def time_index(
    kind: str, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, build_repeats: int,
    tuning_queries: np.ndarray | None = None,
) -> dict:
    """Build ``kind`` over ``vectors`` ``build_repeats`` times, then time single and batched searches.

    ``truth`` is the exact top-``K`` of ``queries``; ``tuning_queries`` goes to ``SearchIndex.fit``.
    """
    build_seconds = []
    for _ in range(build_repeats):
        index = None  # drop the previous index so two never sit in memory together
        start = time.perf_counter()
        index = SearchIndex(kind=kind).fit(vectors, tuning_queries=tuning_queries)
        build_seconds.append(time.perf_counter() - start)
    del vectors  # frees the data for FAISS kinds; exact search keeps it as index.vectors_

    single = []
    for query in queries[:SINGLE_QUERIES]:
        start = time.perf_counter()
        index.search(query[None, :], K)
        single.append(time.perf_counter() - start)
    batch = []
    for repeat in range(BATCH_REPEATS):
        chunk = queries[repeat * BATCH_SIZE:(repeat + 1) * BATCH_SIZE]
        start = time.perf_counter()
        index.search(chunk, K)
        batch.append(time.perf_counter() - start)

    _, found = index.search(queries, K)
    return {
        "kind": kind,
        "n_vectors": int(index.n_vectors_),
        "n_lists": int(index.index_.nlist) if index.kind_ == "ivf" else None,
        "build_seconds_median": float(np.median(build_seconds)),
        "build_seconds_all": [round(s, 3) for s in build_seconds],
        "search_param": index.search_param_,
        "tuned_recall_at_10": index.tuned_recall_,
        "single_query_ms_median": 1000 * float(np.median(single)),
        "single_query_ms_p90": 1000 * float(np.percentile(single, 90)),
        "batch_100_ms_median": 1000 * float(np.median(batch)),
        "recall_at_10": recall_at_k(found, truth),
    }


# -- orchestrator -------------------------------------------------------------------------------


def prepare_data(n: int, n_queries: int, data_dir: Path) -> None:
    """Write vectors, queries and exact top-10 ground truth for size ``n`` into ``data_dir``."""
    vectors = mixture(n, seed=n)
    queries = mixture(n_queries, seed=1)
    _, truth = exact_top_k(vectors, queries, K)
    np.save(data_dir / "vectors.npy", vectors)
    np.save(data_dir / "queries.npy", queries)
    np.save(data_dir / "truth.npy", truth)


def run_worker(kind: str, data_dir: Path, build_repeats: int, blas_threads: int | None) -> dict:
    command = [
        sys.executable, __file__, "--worker", kind,
        "--data-dir", str(data_dir), "--build-repeats", str(build_repeats),
    ]
    env = dict(os.environ)
    if blas_threads is not None:
        env["OPENBLAS_NUM_THREADS"] = str(blas_threads)
    completed = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if completed.returncode != 0:
        raise RuntimeError(f"worker {kind} failed with code {completed.returncode}:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_all(sizes, kinds, n_queries: int, output: Path, section: str, blas_threads: int | None) -> None:
    header = run_header()
    header["blas_threads"] = blas_threads or "numpy default (one per core)"
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="bench_search_") as folder:
            logger.info("Preparing %d vectors and exact ground truth", n)
            prepare_data(n, n_queries, Path(folder))
            for kind in kinds:
                repeats = BUILD_REPEATS if n < SINGLE_BUILD_SIZE else 1
                row = run_worker(kind, Path(folder), repeats, blas_threads)
                logger.info("%s", json.dumps(row))
                rows.append(row)
                write_section(output, section, {**header, **settings(n_queries), "results": rows})
    header["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_section(output, section, {**header, **settings(n_queries), "results": rows})


REAL_SECTION = "search_real"
"""Default top-level key of the results JSON for ``--real``."""

REAL_TUNING_CAPTIONS = 500
"""Captions kept out of the timed queries and passed to ``fit`` as ``tuning_queries`` in the rows
tuned on captions. ``fit`` holds out the same number of indexed vectors by default."""

REAL_CONFIGURATIONS = (
    ("exact", None),
    ("ivf", "held-out images"),
    ("ivf", "captions"),
    ("hnsw", "held-out images"),
    ("hnsw", "captions"),
)
"""Index kind and the queries that ``fit`` tunes on: its default, a held-out tenth of the indexed
images (at most 500, as the app builds its index), or captions, which look like the real queries."""


def run_real(run_dir: Path, build_repeats: int, output: Path, section: str) -> None:
    """Index a run's image embeddings and time searches that use its caption embeddings as queries."""
    from srem_core.runs import load_run

    run = load_run(run_dir)
    images, captions = run.image_embeddings, run.text_embeddings
    needed = REAL_TUNING_CAPTIONS + BATCH_SIZE * BATCH_REPEATS
    if len(captions) <= needed:
        raise ValueError(f"run {run_dir} has {len(captions)} captions; --real needs more than {needed}")
    order = np.random.default_rng(0).permutation(len(captions))
    tuning, queries = captions[order[:REAL_TUNING_CAPTIONS]], captions[order[REAL_TUNING_CAPTIONS:]]
    logger.info("Exact top-%d of %d caption queries over %d images", K, len(queries), len(images))
    _, truth = exact_top_k(images, queries, K)

    header = run_header()
    data = {
        "run": str(run_dir), "encoder": run.meta["encoder"]["identity"], "dim": int(images.shape[1]),
        "n_images": int(len(images)), "n_captions": int(len(captions)),
        "tuning_captions": REAL_TUNING_CAPTIONS, "recall_queries": int(len(queries)),
        "single_queries": SINGLE_QUERIES, "batch_size": BATCH_SIZE, "batch_repeats": BATCH_REPEATS, "k": K,
    }
    rows = []
    for kind, tuning_source in REAL_CONFIGURATIONS:
        row = time_index(kind, images, queries, truth, build_repeats,
                         tuning_queries=tuning if tuning_source == "captions" else None)
        row["tuning_queries"] = tuning_source
        logger.info("%s", json.dumps(row))
        rows.append(row)
    header["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_section(output, section, {**header, "data": data, "results": rows})


def settings(n_queries: int) -> dict:
    return {
        "data": {
            "dim": DIM, "n_clusters": N_CLUSTERS, "spread": SPREAD,
            "recall_queries": n_queries, "single_queries": SINGLE_QUERIES,
            "batch_size": BATCH_SIZE, "batch_repeats": BATCH_REPEATS, "k": K,
        },
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run on 2,000 and 20,000 vectors")
    parser.add_argument("--sizes", type=int, nargs="+", help="numbers of indexed vectors")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument(
        "--output", type=Path,
        help=f"results JSON file (default {DEFAULT_OUTPUT.relative_to(REPO_ROOT)}, or {QUICK_OUTPUT} with --quick)",
    )
    parser.add_argument(
        "--real", type=Path, metavar="RUN_DIR",
        help="index this run directory's image embeddings and query with its caption embeddings "
             "(for example demo/run) in place of the synthetic mixture",
    )
    parser.add_argument(
        "--section",
        help=f"top-level key of the results JSON to replace (default search, or {REAL_SECTION} with --real)",
    )
    parser.add_argument(
        "--blas-threads", type=int,
        help="OPENBLAS_NUM_THREADS for the measuring processes (default: numpy's own setting)",
    )
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--build-repeats", type=int, default=BUILD_REPEATS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        sys.stdout.write(json.dumps(measure(args.worker, args.data_dir, args.build_repeats)) + "\n")
        return
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s")
    output = args.output or (QUICK_OUTPUT if args.quick else DEFAULT_OUTPUT)
    if args.real:
        build_repeats = 1 if args.quick else BUILD_REPEATS
        run_real(args.real, build_repeats, output, args.section or REAL_SECTION)
        logger.info("Wrote %s", output)
        return
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    n_queries = BATCH_SIZE * BATCH_REPEATS if args.quick else RECALL_QUERIES
    run_all(sizes, args.kinds, n_queries, output, args.section or "search", args.blas_threads)
    logger.info("Wrote %s", output)


if __name__ == "__main__":
    main()
