"""Measure encoder throughput: images per second and captions per second, with peak memory.

Encoders: the bundled offline pair (EfficientNet-Lite0 + all-MiniLM-L6-v2) and open_clip ViT-B-32.
open_clip runs with random weights (``pretrained=None``): no weights can be downloaded here, and the
weights do not change the amount of computation. Inputs are the bundled demo's images and captions.
Image rows are timed twice: from the image file (decode, resize, forward pass) and from
preprocessed pixels (forward pass only). Each encoder runs in its own subprocess, so that its peak
resident memory (``ru_maxrss``) is its own.

    python bench/bench_encoders.py            # 256 images and 1,024 captions per repeat, 3 repeats
    python bench/bench_encoders.py --quick    # 32 images and 128 captions, 1 repeat, temp folder
"""

from __future__ import annotations

import argparse
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
import pandas as pd
import torch

from bench_core import machine_info
from srem_core.data.images import load_image
from srem_core.encoders import create_encoder

logger = logging.getLogger("bench_encoders")
REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results" / "encoders.json"
DEMO = REPO_ROOT / "demo"
ENCODERS = {
    "offline (EfficientNet-Lite0 + all-MiniLM-L6-v2)": ("offline", None),
    "open_clip ViT-B-32 (random weights)": ("open_clip:ViT-B-32", None),
}
BATCH_SIZE = 64


def peak_rss_mib() -> float:
    """Return this process's peak resident memory in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_seconds(function, repeats: int) -> float:
    """Run ``function`` once untimed (warm-up), then ``repeats`` times; return the median seconds."""
    function()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return float(np.median(timings))


def in_batches(items: list, batch_size: int):
    return [items[start : start + batch_size] for start in range(0, len(items), batch_size)]


@torch.no_grad()
def measure(label: str, n_images: int, n_texts: int, repeats: int) -> list[dict]:
    """Return the three rows (images from files, images from pixels, captions) of one encoder."""
    name, pretrained = ENCODERS[label]
    encoder = create_encoder(name, pretrained=pretrained, device="cpu")
    pairs = pd.read_csv(DEMO / "pairs.csv")
    image_paths = [DEMO / path for path in pairs["image_path"].drop_duplicates().head(n_images)]
    captions = pairs["caption"].astype(str).head(n_texts).tolist()

    def encode_files() -> None:
        for paths in in_batches(image_paths, BATCH_SIZE):
            encoder.encode_images([load_image(path) for path in paths])

    pixels = [torch.stack([encoder.preprocess(load_image(path)) for path in paths]) for paths in in_batches(image_paths, BATCH_SIZE)]

    def encode_pixels() -> None:
        for batch in pixels:
            encoder.encode_image_tensors(batch)

    def encode_captions() -> None:
        for batch in in_batches(captions, BATCH_SIZE):
            encoder.encode_texts(batch)

    rows = []
    for modality, function, items in (
        ("images (file to feature)", encode_files, len(image_paths)),
        ("images (forward pass only)", encode_pixels, len(image_paths)),
        ("texts", encode_captions, len(captions)),
    ):
        seconds = median_seconds(function, repeats)
        rows.append({"encoder": label, "modality": modality, "batch_size": BATCH_SIZE, "items": items, "repeats": repeats,
                     "seconds_median": seconds, "items_per_second": items / seconds})
    peak = peak_rss_mib()
    for row in rows:
        row["peak_rss_mib"] = peak
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few items, one repeat, results to the temp folder")
    parser.add_argument("--encoders", nargs="+", choices=list(ENCODERS), default=list(ENCODERS))
    parser.add_argument("--out", type=Path, help=f"results JSON (default {RESULTS}, or the temp folder with --quick)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        task = json.loads(arguments.worker)
        print(json.dumps(measure(task["encoder"], task["images"], task["texts"], task["repeats"])))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = arguments.out or (Path(tempfile.gettempdir()) / "srem_bench_encoders_quick.json" if arguments.quick else RESULTS)
    sizes = {"images": 32, "texts": 128, "repeats": 1} if arguments.quick else {"images": 256, "texts": 1024, "repeats": 3}
    results = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d"), "torch_threads": torch.get_num_threads(),
               "command": "python bench/bench_encoders.py" + (" --quick" if arguments.quick else ""),
               "load_average": list(os.getloadavg()), "rows": []}
    for label in arguments.encoders:
        logger.info("measuring %s on %d images and %d captions, %d repeat(s)", label, sizes["images"], sizes["texts"], sizes["repeats"])
        task = json.dumps({"encoder": label} | sizes)
        completed = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", task], check=True, capture_output=True, text=True)
        rows = json.loads(completed.stdout.strip().splitlines()[-1])
        for row in rows:
            logger.info("  %-28s %7.1f per second (peak %.0f MiB)", row["modality"], row["items_per_second"], row["peak_rss_mib"])
        results["rows"].extend(rows)
    results["load_average_end"] = list(os.getloadavg())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True))
    logger.info("wrote %s", out)


if __name__ == "__main__":
    main()
