"""Benchmark streaming scoring and export: time and peak memory of score_store and export_store.

A synthetic feature store replaces extracted shards: random float16 features of the offline
encoder's sizes (1280 image, 384 text) written straight into a ``FeatureStore`` in shards of 10,000
rows, img2dataset's default shard size, with keys and captions of realistic length. Scoring reads
those raw features and runs them through linear ``ProjectionHeads`` to 256 dimensions, as a trained
model would. Encoding images is not measured here.

Each phase (build, score, one export per format) runs in its own subprocess, so its peak resident
memory (``ru_maxrss``) is its own. Results replace the entry for the same row count in
``bench/results/streaming.json``, together with machine information, the date and the command.

    python bench/bench_streaming.py           # 1,000,000 pairs: 3.3 GB of features on disk
    python bench/bench_streaming.py --quick   # 100,000 pairs
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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from srem_core import streaming  # noqa: E402
from srem_core.model import ProjectionHeads  # noqa: E402

logger = logging.getLogger("bench_streaming")

IMAGE_DIM = 1280
TEXT_DIM = 384
"""Feature sizes of the offline encoder (EfficientNet-Lite0, all-MiniLM-L6-v2)."""
EMBED_DIM = 256
"""Joint embedding size of the training config's default heads."""
ROWS_PER_SHARD = 10_000
"""img2dataset's default number of samples per shard."""
FULL_ROWS = 1_000_000
QUICK_ROWS = 100_000
TAU = 0.05
SCORE_BATCH_SIZE = 128
"""The training config's defaults for tau and score_batch_size."""
SEED = 0
EXPORT_SUFFIXES = (".csv", ".jsonl", ".parquet")
RESULTS = REPO_ROOT / "bench" / "results" / "streaming.json"
MACHINE_NOTE = (
    "Shared machine: other jobs ran at the same time, so times are upper bounds and vary between runs. "
    "The load average at the start of the run is recorded."
)


def peak_rss_mib() -> float:
    """Return this process's peak resident memory in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def machine_info() -> dict:
    """Describe the CPU model, core count, memory, load and library versions of this machine."""
    cpu_model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        "unknown",
    )
    total_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "ram_gib": round(total_kib / 2**20, 1),
        "load_average_1_5_15_at_start": [round(value, 2) for value in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "note": MACHINE_NOTE,
    }


# -- workers: one phase each, in a fresh process ------------------------------------------------


def build_store(store_dir: Path, n_rows: int) -> dict:
    """Write ``n_rows`` random pairs into a new FeatureStore, one placeholder shard per 10,000 rows."""
    store = streaming.FeatureStore.create(store_dir, encoder_identity="synthetic", image_dim=IMAGE_DIM, text_dim=TEXT_DIM)
    rng = np.random.default_rng(SEED)
    placeholders = store_dir.parent / "placeholder-shards"
    placeholders.mkdir(exist_ok=True)
    for shard_index, start in enumerate(range(0, n_rows, ROWS_PER_SHARD)):
        rows = min(ROWS_PER_SHARD, n_rows - start)
        # Offline image features are non-negative pooled ReLU6 outputs; its text features have unit norm.
        image = rng.random((rows, IMAGE_DIM), dtype=np.float32) * 3
        text = rng.standard_normal((rows, TEXT_DIM), dtype=np.float32)
        text /= np.linalg.norm(text, axis=1, keepdims=True)
        store.append_rows(start, image, text)
        shard = placeholders / f"{shard_index:05d}.tar"
        shard.touch()
        store.commit_shard(shard, synthetic_keys(shard, start, rows), [])
    return {"store_bytes": sum(path.stat().st_size for path in store_dir.rglob("*") if path.is_file())}


def synthetic_keys(shard: Path, start: int, rows: int):
    import pandas as pd

    keys = [f"{shard.stem}{position:04d}" for position in range(rows)]
    return pd.DataFrame({
        "row": np.arange(start, start + rows, dtype=np.int64),
        "shard": str(shard),
        "key": keys,
        "image_path": [f"{shard}#{key}.jpg" for key in keys],
        "caption": [f"a synthetic caption of about the length of a web alt text, number {start + i}" for i in range(rows)],
        "url": [f"https://example.org/images/{key}.jpg" for key in keys],
    })


def run_score(store_dir: Path, out: Path) -> dict:
    torch.manual_seed(SEED)
    heads = ProjectionHeads(IMAGE_DIM, TEXT_DIM, EMBED_DIM)
    result = streaming.score_store(heads, store_dir, tau=TAU, batch_size=SCORE_BATCH_SIZE, seed=SEED, out=out, progress=False)
    return {"n_rows": result.n_rows, "n_noisy": result.n_noisy, "scores_bytes": out.stat().st_size}


def run_export(scores: Path, out: Path) -> dict:
    written = streaming.export_store(scores, out, keep="clean")
    return {"rows_written": written, "file_bytes": out.stat().st_size}


def run_worker(phase: str, work_dir: Path, n_rows: int) -> dict:
    baseline = current_rss_mib()
    start = time.perf_counter()
    scores = work_dir / "scores.parquet"
    if phase == "build":
        details = build_store(work_dir / "store", n_rows)
    elif phase == "score":
        details = run_score(work_dir / "store", scores)
    else:
        details = run_export(scores, work_dir / f"clean{phase.removeprefix('export')}")
    return {
        "phase": phase,
        "seconds": round(time.perf_counter() - start, 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_after_imports_mib": round(baseline, 1),
        **details,
    }


# -- orchestrator -------------------------------------------------------------------------------


def run_phase(phase: str, work_dir: Path, n_rows: int) -> dict:
    command = [sys.executable, __file__, "--worker", phase, "--work-dir", str(work_dir), "--rows", str(n_rows)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"Phase {phase} failed with exit status {completed.returncode}:\n{completed.stderr[-4000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    logger.info("%s: %.1f s, peak RSS %.0f MiB", phase, result["seconds"], result["peak_rss_mib"])
    return result


def write_results(path: Path, n_rows: int, entry: dict) -> None:
    """Replace the entry for ``n_rows`` in the results file, keeping the other sizes, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(path.read_text()) if path.exists() else {}
    results.setdefault("streaming", {})[str(n_rows)] = entry
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "w") as file:
        json.dump(results, file, indent=2)
        file.write("\n")
    os.replace(temporary, path)


def run_all(n_rows: int, work_root: Path | None, keep_files: bool, output: Path) -> None:
    header = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
    }
    if work_root is not None:
        work_root.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="srem_bench_streaming_", dir=work_root))
    logger.info("Working in %s with %d pairs", work_dir, n_rows)
    try:
        phases = [run_phase(phase, work_dir, n_rows) for phase in ("build", "score", *(f"export{suffix}" for suffix in EXPORT_SUFFIXES))]
    finally:
        if not keep_files:
            shutil.rmtree(work_dir, ignore_errors=True)
    entry = {
        **header,
        "setup": {
            "n_rows": n_rows, "image_dim": IMAGE_DIM, "text_dim": TEXT_DIM, "embed_dim": EMBED_DIM,
            "feature_dtype": "float16", "rows_per_shard": ROWS_PER_SHARD, "tau": TAU,
            "score_batch_size": SCORE_BATCH_SIZE, "score_chunk_rows": streaming.SCORE_CHUNK_ROWS,
            "read_rows": streaming.READ_ROWS, "splitter_sample_size": streaming.SPLITTER_SAMPLE_SIZE,
            "export_keep": "clean", "device": "cpu",
        },
        "phases": phases,
    }
    write_results(output, n_rows, entry)
    logger.info("Wrote %s", output)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"benchmark {QUICK_ROWS:,} pairs instead of {FULL_ROWS:,}")
    parser.add_argument("--rows", type=int, help="number of pairs; overrides --quick")
    parser.add_argument("--work-dir", type=Path, help="folder for the temporary store (default: the system temp folder)")
    parser.add_argument("--keep-files", action="store_true", help="keep the store and the output files")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    n_rows = args.rows or (QUICK_ROWS if args.quick else FULL_ROWS)
    if args.worker:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        sys.stdout.write(json.dumps(run_worker(args.worker, args.work_dir, n_rows)) + "\n")
        return
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s")
    run_all(n_rows, args.work_dir, args.keep_files, args.output)


if __name__ == "__main__":
    main()
