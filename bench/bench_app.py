"""Benchmark the Streamlit app on a synthetic run of 100,000 pairs: warm page time and text-search latency.

Page time is measured with Streamlit's AppTest (``streamlit.testing.v1``), not a browser: a fresh
session runs ``app.py`` on the Overview page, switches to the page under test, and the wall time of
that script run is recorded. One warm-up pass over every page first fills the caches (run tables,
search indexes, the UMAP map, the encoder), so the numbers are "time to first render of a page after
the cache is warm". They exclude the network and the browser's drawing of the page.

Text-search latency follows the app's code path outside Streamlit: ``RetrievalModel.embed_texts`` on
one query, then ``SearchIndex.search`` for the top 10 of the run's image embeddings. It is the median
over captions of the run used as queries, after warm-up queries.

The run is built by ``scripts/make_synthetic_run.py`` from ``demo/run`` when it exists, else from
``demo/pairs.csv``, else from drawn shapes; the JSON records which. Results go to
``bench/results/app.json`` with machine information, the date and the command.

    python bench/bench_app.py                        # 100,000 pairs; about 15 minutes on 2 cores
    python bench/bench_app.py --pairs 5000 --repeats 1 --out /tmp/app.json   # smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

logger = logging.getLogger("bench_app")

APP = REPO_ROOT / "app.py"
PAGES = {
    "overview": None,
    "distributions": "pages/distributions.py",
    "flagged_pairs": "pages/flagged_pairs.py",
    "embedding_map": "pages/embedding_map.py",
    "search": "pages/search.py",
}
PAGE_TARGET_SECONDS = 2.0
QUERY_TARGET_MILLISECONDS = 100.0

WARM_UP_TIMEOUT_SECONDS = 3600
"""AppTest limit for the warm-up pass, which fits UMAP on the whole run (minutes at 100,000 pairs)."""

WARM_TIMEOUT_SECONDS = 300
WARM_UP_QUERIES = 5
RESULTS_K = 10


def machine_info() -> dict:
    """Describe the CPU, core count, memory, load and library versions of this machine."""
    import plotly
    import streamlit
    import torch

    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    total_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "ram_gib": round(total_kib / 2**20, 1),
        "load_average_1_5_15": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "streamlit": streamlit.__version__,
        "plotly": plotly.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def build_run(out: Path, pairs: int) -> str:
    """Write the synthetic run with the script and return a description of its source."""
    demo_run, demo_manifest = REPO_ROOT / "demo" / "run", REPO_ROOT / "demo" / "pairs.csv"
    if (demo_run / "config.json").is_file():
        source, description = ["--from-run", str(demo_run)], "demo/run tiled, embeddings and scores perturbed"
    elif demo_manifest.is_file():
        source, description = ["--manifest", str(demo_manifest)], "demo/pairs.csv tiled, random embeddings and scores"
    else:
        source, description = ["--shapes"], "drawn shapes, random embeddings and scores"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "make_synthetic_run.py"), "--pairs", str(pairs),
               "--out", str(out), *source]
    logger.info("building the run: %s", shlex.join(command))
    subprocess.run(command, check=True, cwd=REPO_ROOT)
    return description


def open_page(run: Path, page: str | None, timeout: float) -> float:
    """Open ``page`` in a fresh AppTest session and return the seconds of the run that renders it."""
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(APP), default_timeout=timeout)
    app.session_state["run_path"] = str(run)
    started = time.perf_counter()
    app.run()
    if page is not None:
        started = time.perf_counter()
        app.switch_page(page).run()
    elapsed = time.perf_counter() - started
    problems = [element.value for element in (*app.exception, *app.error)]
    if problems:
        raise RuntimeError(f"page {page or 'overview'} failed: {problems[0]}")
    return elapsed


BROWSER_PAGES = {
    "overview": ("", "Overview", '[data-testid="stPlotlyChart"] .main-svg'),
    "distributions": ("distributions", "Distributions", '[data-testid="stPlotlyChart"] .main-svg'),
    "flagged_pairs": ("flagged_pairs", "Flagged pairs", '[data-testid="stDataFrame"] canvas'),
    "embedding_map": ("embedding_map", "Embedding map", '[data-testid="stPlotlyChart"] .main-svg'),
    "search": ("search", "Search", '[data-testid="stTextInput"] input'),
}
"""URL path, page title and the CSS selector of the element that completes each page."""

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic"]
READY_SCRIPT = """([title, selector]) => {
    const heading = [...document.querySelectorAll('h1')].some((node) => node.innerText.trim() === title);
    const running = document.querySelector('[data-testid^="stStatusWidgetRunning"]');
    return heading && !running && document.querySelector(selector) !== null;
}"""


def time_browser(run: Path, repeats: int) -> dict:
    """Seconds from navigation to a page's rendered content in headless Chromium, on a warm server."""
    import socket
    import urllib.request

    from playwright.sync_api import sync_playwright

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), "--server.fileWatcherType", "none",
               "--", "--run", str(run)]
    server = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    timings: dict = {name: [] for name in BROWSER_PAGES}
    clicks: dict = {name: [] for name in BROWSER_PAGES}
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for attempt in range(repeats + 1):
                for name, (path, title, selector) in BROWSER_PAGES.items():
                    started = time.perf_counter()
                    page.goto(f"{url}/{path}")
                    page.wait_for_function(READY_SCRIPT, arg=[title, selector], timeout=WARM_UP_TIMEOUT_SECONDS * 1000)
                    if attempt > 0:  # the first pass warms the server's caches for this process
                        timings[name].append(time.perf_counter() - started)
            for _ in range(repeats):
                for name, (path, title, selector) in BROWSER_PAGES.items():
                    page.wait_for_timeout(500)
                    started = time.perf_counter()
                    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
                    page.wait_for_function(READY_SCRIPT, arg=[title, selector], timeout=WARM_TIMEOUT_SECONDS * 1000)
                    clicks[name].append(time.perf_counter() - started)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        name: {
            "page_load_s": timings[name],
            "page_load_median_s": statistics.median(timings[name]),
            "sidebar_click_s": clicks[name],
            "sidebar_click_median_s": statistics.median(clicks[name]),
        }
        for name in BROWSER_PAGES
    }


def time_interactions(run: Path) -> dict:
    """Time two follow-up reruns on a warm cache: moving a threshold, and the next table page."""
    from streamlit.testing.v1 import AppTest

    timings = {}
    app = AppTest.from_file(str(APP), default_timeout=WARM_TIMEOUT_SECONDS)
    app.session_state["run_path"] = str(run)
    app.run()
    app.switch_page(PAGES["distributions"]).run()
    app.slider(key="clean_prob_threshold").set_value(0.7)
    started = time.perf_counter()
    app.run()
    timings["distributions_move_threshold_s"] = time.perf_counter() - started

    app.switch_page(PAGES["flagged_pairs"]).run()
    pagination = app.pagination[0]
    pagination.set_value(min(7, pagination.num_pages))
    started = time.perf_counter()
    app.run()
    timings["flagged_pairs_next_page_uncached_thumbnails_s"] = time.perf_counter() - started
    return timings


def time_text_search(run_path: Path, n_queries: int, torch_threads: int) -> dict:
    """Median latency of one text query: encoding plus top-10 search over the image embeddings.

    ``torch_threads`` is set before timing; the app uses ``app_support.loading.QUERY_TORCH_THREADS``.
    """
    import torch

    from srem_core.runs import load_run
    from srem_core.search_index import SearchIndex

    torch.set_num_threads(torch_threads)
    run = load_run(run_path)
    model = run.load_model(device="cpu")
    index = SearchIndex(random_state=0).fit(run.image_embeddings)
    captions = run.scores["caption"].drop_duplicates()
    queries = captions.sample(n=min(n_queries + WARM_UP_QUERIES, len(captions)), random_state=0).tolist()
    for query in queries[:WARM_UP_QUERIES]:
        index.search(model.embed_texts([query]), RESULTS_K)

    encode_ms, search_ms, total_ms = [], [], []
    for query in queries[WARM_UP_QUERIES:]:
        started = time.perf_counter()
        vector = model.embed_texts([query])
        encoded = time.perf_counter()
        index.search(vector, RESULTS_K)
        finished = time.perf_counter()
        encode_ms.append(1000 * (encoded - started))
        search_ms.append(1000 * (finished - encoded))
        total_ms.append(1000 * (finished - started))
    return {
        "queries": len(total_ms),
        "k": RESULTS_K,
        "index_kind": index.kind_,
        "indexed_images": int(index.n_vectors_),
        "torch_threads": torch.get_num_threads(),
        "median_ms": statistics.median(total_ms),
        "p90_ms": float(np.percentile(total_ms, 90)),
        "median_encode_ms": statistics.median(encode_ms),
        "median_search_ms": statistics.median(search_ms),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=100_000, help="pairs of the synthetic run (default 100000)")
    parser.add_argument("--run-dir", type=Path, default=REPO_ROOT / "runs" / "bench-app",
                        help="where the synthetic run is written (default runs/bench-app)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the run even when --run-dir contains one")
    parser.add_argument("--repeats", type=int, default=3, help="warm measurements per page (default 3)")
    parser.add_argument("--queries", type=int, default=50, help="timed text queries (default 50)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "app.json",
                        help="JSON file to write (default bench/results/app.json)")
    args = parser.parse_args(argv)
    import torch

    from app_support.loading import QUERY_TORCH_THREADS

    default_threads = torch.get_num_threads()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("streamlit").setLevel(logging.ERROR)

    machine_before = machine_info()
    existing = args.run_dir / "config.json"
    if args.rebuild or not existing.is_file() or json.loads(existing.read_text())["data"]["n_pairs"] != args.pairs:
        source = build_run(args.run_dir, args.pairs)
    else:
        source = json.loads(existing.read_text())["data"].get("synthetic", "existing run")

    pages = {}
    for name, page in PAGES.items():
        logger.info("warm-up: %s", name)
        pages[name] = {"first_visit_s": open_page(args.run_dir, page, WARM_UP_TIMEOUT_SECONDS), "warm_s": []}
    for repeat in range(args.repeats):
        for name, page in PAGES.items():
            pages[name]["warm_s"].append(open_page(args.run_dir, page, WARM_TIMEOUT_SECONDS))
            logger.info("repeat %d: %s %.3f s", repeat + 1, name, pages[name]["warm_s"][-1])
    for timing in pages.values():
        timing["warm_median_s"] = statistics.median(timing["warm_s"])
        timing["meets_target"] = timing["warm_median_s"] < PAGE_TARGET_SECONDS

    interactions = time_interactions(args.run_dir)
    browser = time_browser(args.run_dir, args.repeats) if CHROMIUM.exists() else None
    search = time_text_search(args.run_dir, args.queries, QUERY_TORCH_THREADS)
    search["meets_target"] = search["median_ms"] < QUERY_TARGET_MILLISECONDS
    search_default_threads = time_text_search(args.run_dir, args.queries, default_threads)

    meta = json.loads(existing.read_text())
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine_at_start": machine_before,
        "machine_at_end": machine_info(),
        "run": {"path": str(args.run_dir), "pairs": meta["data"]["n_pairs"], "images": meta["data"]["n_images"],
                "source": source},
        "method": "AppTest wall time of the script run that renders each page in a fresh session, "
                  "after one warm-up visit of every page; browser drawing and network not included",
        "targets": {"page_s": PAGE_TARGET_SECONDS, "text_query_ms": QUERY_TARGET_MILLISECONDS},
        "pages": pages,
        "browser_method": "headless Chromium on the same machine: seconds from page.goto to the page's title, "
                          "its main element (chart, table or input) and no running indicator; after one "
                          "warm-up visit of every page in the same server process",
        "browser_pages": browser,
        "interactions_s": interactions,
        "text_search": search,
        "text_search_torch_default_threads": search_default_threads,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    logger.info("wrote %s", args.out)
    print(json.dumps({name: round(timing["warm_median_s"], 3) for name, timing in pages.items()}))
    if browser is not None:
        print(json.dumps({name: round(timing["sidebar_click_median_s"], 3) for name, timing in browser.items()}))
    print(json.dumps({key: search[key] for key in ("median_ms", "median_encode_ms", "median_search_ms")}))


if __name__ == "__main__":
    main()
