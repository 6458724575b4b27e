"""Render search_umap.json (bench_search.py, bench_umap.py) as the search and UMAP blocks of docs/benchmarks.md.

The file has one section per command: "search" (synthetic mixture), "search_exact_one_blas_thread"
(the same with ``--blas-threads 1``), "search_real" (``--real demo/run``) and "umap".
"""

from __future__ import annotations

import math

from report_format import (
    by_magnitude, difference, fixed, integer, pair_by_first, percent, results_block, run_line, table, thousands,
)

FILE = "search_umap.json"
TARGET_RECALL = 0.95
"""SearchIndex's default ``target_recall``, which bench_search.py keeps."""
QUERY_BUDGET_MS = 20.0
"""Latency budget of one interactive query (the reason for ``EXACT_MAX_VECTORS``)."""


def faiss_constants() -> tuple[int, int, int]:
    """Return (IVF lists per sqrt(n), minimum points per list, largest efSearch candidate) of SearchIndex."""
    from srem_core.search_index import EF_SEARCH_CANDIDATES, IVF_LISTS_PER_SQRT_N, IVF_MIN_POINTS_PER_LIST

    return IVF_LISTS_PER_SQRT_N, IVF_MIN_POINTS_PER_LIST, max(EF_SEARCH_CANDIDATES)


def n_lists(row: dict) -> int:
    """Return the IVF list count of a row.

    Rows written before bench_search.py recorded the count get SearchIndex's current formula. That is
    the count they were built with as long as the formula has not changed since.
    """
    if row.get("n_lists"):
        return row["n_lists"]
    per_sqrt_n, min_points, _ = faiss_constants()
    return max(1, min(int(per_sqrt_n * math.sqrt(row["n_vectors"])), row["n_vectors"] // min_points))


def search_param(row: dict) -> str:
    """Describe the tuned nprobe or efSearch, marking a search of every list or the largest efSearch."""
    param = row.get("search_param")
    if param is None:
        return "-"
    missed = row.get("tuned_recall_at_10") is not None and row["tuned_recall_at_10"] < TARGET_RECALL
    if row["kind"] == "ivf":
        notes = ["all lists"] if param == n_lists(row) else []
        label = f"nprobe {param}"
    else:
        notes = ["max"] if param == faiss_constants()[2] else []
        label = f"efSearch {param}"
    if missed:
        notes.append("target missed")
    return label + (f" ({', '.join(notes)})" if notes else "")


def search_machine_line(section: dict) -> list[str]:
    machine = section.get("machine", {})
    libraries = []
    if "numpy" in machine:
        blas = section.get("blas_threads")
        libraries.append(f"numpy {machine['numpy']}" + (f" ({blas} BLAS thread{'s' if blas != 1 else ''})" if isinstance(blas, int) else ""))
    if "faiss" in machine:
        threads = machine.get("faiss_threads")
        libraries.append(f"faiss {machine['faiss']}" + (f" ({threads} OpenMP threads)" if threads else ""))
    if "umap_learn" in machine:
        libraries.append(f"umap-learn {machine['umap_learn']}")
    return [run_line(
        machine=machine, date=section.get("date"), command=section.get("command"),
        load_start=machine.get("load_average_1_5_15"), load_end=machine.get("load_average_at_end"),
        libraries=libraries,
    )]


def search_table(section: dict) -> list[str]:
    rows = [
        [thousands(row["n_vectors"]), row["kind"], by_magnitude(row["build_seconds_median"]), search_param(row),
         pair_by_first(row["single_query_ms_median"], row["single_query_ms_p90"]), integer(row["batch_100_ms_median"]),
         fixed(row['recall_at_10'], 3), integer(row["peak_rss_mib"]),
         integer(difference(row["peak_rss_mib"], row["rss_after_loading_data_mib"]))]
        for row in section.get("results", [])
    ]
    header = ["vectors", "kind", "build s", "tuned param", "1 query ms (median / p90)", "100 queries ms",
              "recall@10", "peak RSS MiB", "over data MiB"]
    return table(header, rows)


def rows_by_size(section: dict) -> dict[int, dict[str, dict]]:
    by_size: dict[int, dict[str, dict]] = {}
    for row in section.get("results", []):
        by_size.setdefault(row["n_vectors"], {})[row["kind"]] = row
    return dict(sorted(by_size.items()))


KIND_NAMES = {"exact": "exact search", "ivf": "IVF", "hnsw": "HNSW"}


def search_key_numbers(section: dict) -> list[str]:
    by_size = rows_by_size(section)
    if not by_size:
        return []
    bullets = []

    largest = max(by_size)
    rows = by_size[largest]
    queries = [
        f"{by_magnitude(row['single_query_ms_median'])} ms with {KIND_NAMES.get(kind, kind)}"
        + (f" at recall@10 {fixed(row['recall_at_10'], 3)}" if kind != "exact" else "")
        for kind, row in rows.items()
    ]
    builds = [f"{by_magnitude(row['build_seconds_median'])} s" for row in rows.values()]
    bullets.append(
        f"At {thousands(largest)} vectors, one query (median) took " + join_words(queries)
        + f"; the builds took {join_words(builds)}."
    )
    within = [KIND_NAMES.get(kind, kind) for kind, row in rows.items()
              if row["single_query_ms_median"] <= QUERY_BUDGET_MS and row["recall_at_10"] >= TARGET_RECALL]
    bullets.append(
        f"Budget of one interactive query ({fixed(QUERY_BUDGET_MS, 0)} ms at recall@10 {TARGET_RECALL}) at "
        f"{thousands(largest)} vectors: met by {join_words(within) if within else 'no kind'}."
    )

    exact = [(n, kinds["exact"]) for n, kinds in by_size.items() if "exact" in kinds]
    if exact:
        medians = ", ".join(f"{by_magnitude(row['single_query_ms_median'])} ms at {thousands(n)}" for n, row in exact)
        bullets.append(f"One exact query (median): {medians} vectors.")
    all_lists = [n for n, kinds in by_size.items() if "ivf" in kinds and kinds["ivf"].get("search_param") == n_lists(kinds["ivf"])]
    if all_lists:
        bullets.append("IVF visited every list, so it scanned every vector as exact search does, at "
                       + ", ".join(thousands(n) for n in all_lists) + " vectors.")
    hnsw = [(n, kinds["hnsw"]["search_param"]) for n, kinds in by_size.items() if "hnsw" in kinds]
    if hnsw:
        bullets.append("HNSW efSearch chosen by `fit`: " + ", ".join(f"{param} at {thousands(n)}" for n, param in hnsw) + " vectors.")

    spreads = [
        (max(row["build_seconds_all"]) - min(row["build_seconds_all"])) / row["build_seconds_median"]
        for row in section.get("results", [])
        if row["kind"] != "exact" and len(row.get("build_seconds_all", [])) > 1
    ]
    if spreads:
        bullets.append(f"Repeated builds of one FAISS configuration differ by up to {percent(max(spreads))} of their median.")
    return [f"- {bullet}" for bullet in bullets]


def join_words(items: list[str]) -> str:
    """Join as prose: ["a"] -> "a", ["a", "b", "c"] -> "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def blas_table(section: dict) -> list[str]:
    rows = [
        [thousands(row["n_vectors"]), pair_by_first(row["single_query_ms_median"], row["single_query_ms_p90"]),
         integer(row["batch_100_ms_median"])]
        for row in section.get("results", [])
    ]
    return table(["vectors", "single query ms, median / p90", "batch of 100 ms"], rows)


def blas_key_numbers(one_thread: dict, default: dict | None) -> list[str]:
    if default is None:
        return []
    default_exact = {n: kinds["exact"] for n, kinds in rows_by_size(default).items() if "exact" in kinds}
    pairs = [
        f"{by_magnitude(row['single_query_ms_median'])} against {by_magnitude(default_exact[n]['single_query_ms_median'])} ms "
        f"at {thousands(n)} vectors"
        for n, kinds in rows_by_size(one_thread).items()
        for row in [kinds.get("exact")]
        if row is not None and n in default_exact
    ]
    if not pairs:
        return []
    return ["- One exact query (median) with one BLAS thread against numpy's default threading: " + ", ".join(pairs) + "."]


def real_table(section: dict) -> list[str]:
    rows = [
        [row["kind"], row.get("tuning_queries") or "-", row.get("n_lists") or "-", by_magnitude(row["build_seconds_median"]),
         search_param(row), fixed(row['tuned_recall_at_10'], 3) if row.get("tuned_recall_at_10") is not None else "-",
         pair_by_first(row["single_query_ms_median"], row["single_query_ms_p90"]), by_magnitude(row["batch_100_ms_median"]),
         fixed(row['recall_at_10'], 3)]
        for row in section.get("results", [])
    ]
    header = ["kind", "tuned on", "IVF lists", "build s (median)", "tuned param", "recall@10 on tuning queries",
              "1 query ms (median / p90)", "100 queries ms", "recall@10 on caption queries"]
    return table(header, rows)


def real_key_numbers(section: dict) -> list[str]:
    data = section.get("data", {})
    bullets = []
    if data:
        bullets.append(
            f"{thousands(data['n_images'])} image embeddings indexed (dimension {data['dim']}); "
            f"{thousands(data['recall_queries'])} caption embeddings as queries, {thousands(data['tuning_captions'])} "
            f"more captions held out for tuning; recall@10 against exact search."
        )
    per_sqrt_n, min_points, _ = faiss_constants()
    for row in section.get("results", []):
        if row["kind"] == "ivf" and row.get("n_lists"):
            uncapped = int(per_sqrt_n * math.sqrt(row["n_vectors"]))
            if row["n_lists"] < uncapped:
                bullets.append(
                    f"IVF built {row['n_lists']} lists, not {per_sqrt_n}·√n = {uncapped}, because SearchIndex caps the "
                    f"list count at n / {min_points} so that k-means gets {min_points} training points per list."
                )
            break
    for row in section.get("results", []):
        if row.get("tuned_recall_at_10") is not None:
            bullets.append(
                f"{row['kind']} tuned on {row['tuning_queries']}: {search_param(row)}, recall@10 "
                f"{fixed(row['tuned_recall_at_10'], 3)} on its tuning queries and {fixed(row['recall_at_10'], 3)} on caption queries."
            )
    return [f"- {bullet}" for bullet in bullets]


def umap_table(section: dict) -> list[str]:
    rows = []
    for row in section.get("results", []):
        if row.get("measured", True):
            rows.append([thousands(row["n_points"]), "yes", fixed(row['jit_warmup_seconds'], 1), fixed(row['fit_seconds'], 1),
                         fixed(row['transform_seconds'], 1), fixed(row['total_seconds'], 1), integer(row["peak_rss_mib"]),
                         integer(difference(row["peak_rss_mib"], row["rss_after_loading_data_mib"]))])
        else:
            rows.append([thousands(row["n_points"]), "no (straight-line estimate)", "–", "–", "–",
                         fixed(row['total_seconds'], 1), integer(row["peak_rss_mib"]), "–"])
    fit_points = section.get("max_fit_points")
    header = [f"points ({thousands(fit_points)} fitted, the rest transformed)" if fit_points else "points", "measured",
              "JIT warm-up s", "fit s", "transform s", "fit + transform s", "peak RSS MiB", "over data MiB"]
    return table(header, rows)


def straight_line(small: dict, large: dict, n: int) -> tuple[float, float]:
    """Return bench_umap.extrapolate's (total seconds, peak MiB) estimate at ``n`` points from two rows."""
    step = large["n_points"] - small["n_points"]
    seconds = large["total_seconds"] + (large["total_seconds"] - small["total_seconds"]) / step * (n - large["n_points"])
    memory = large["peak_rss_mib"] + (large["peak_rss_mib"] - small["peak_rss_mib"]) / step * (n - large["n_points"])
    return seconds, memory


def umap_key_numbers(section: dict) -> list[str]:
    measured = [row for row in section.get("results", []) if row.get("measured", True)]
    if not measured:
        return []
    warmups = [row["jit_warmup_seconds"] for row in measured]
    bullets = [f"umap-learn's numba compilation (JIT warm-up, excluded from fit and transform) took "
               f"{fixed(min(warmups), 1)} to {fixed(max(warmups), 1)} s per process."]
    largest = measured[-1]
    transformed = largest["n_points"] - largest["fit_points"]
    bullets.append(
        f"At {thousands(largest['n_points'])} points: fit {fixed(largest['fit_seconds'], 1)} s on {thousands(largest['fit_points'])} "
        f"points, then {integer(transformed / largest['transform_seconds'])} transformed points per second; "
        f"peak {integer(largest['peak_rss_mib'])} MiB."
    )
    if len(measured) >= 3:
        seconds, memory = straight_line(measured[-3], measured[-2], largest["n_points"])
        bullets.append(
            f"The straight-line estimate for {thousands(largest['n_points'])} points from the two sizes below it was "
            f"{fixed(seconds, 0)} s and {integer(memory)} MiB, so the script ran that size; it took {fixed(largest['total_seconds'], 0)} s."
        )
    return [f"- {bullet}" for bullet in bullets]


def blocks() -> dict:
    """Return block name -> function of a ResultsFolder that returns the block's markdown lines."""

    def using(key: str, script: str, render, missing_text: bool = False):
        return results_block(lambda folder: folder.section(FILE, key), script, render, missing_text)

    def blas_numbers(folder) -> list[str]:
        one_thread = folder.section(FILE, "search_exact_one_blas_thread")
        return [] if one_thread is None else blas_key_numbers(one_thread, folder.section(FILE, "search"))

    search, real = "bench_search.py", "bench_search.py --real demo/run"
    blas = "bench_search.py --kinds exact --blas-threads 1 --section search_exact_one_blas_thread"
    return {
        "search-run": using("search", search, search_machine_line, missing_text=True),
        "search-table": using("search", search, search_table),
        "search-key-numbers": using("search", search, search_key_numbers),
        "search-blas-run": using("search_exact_one_blas_thread", blas, search_machine_line, missing_text=True),
        "search-blas-table": using("search_exact_one_blas_thread", blas, blas_table),
        "search-blas-key-numbers": blas_numbers,
        "search-real-run": using("search_real", real, search_machine_line, missing_text=True),
        "search-real-table": using("search_real", real, real_table),
        "search-real-key-numbers": using("search_real", real, real_key_numbers),
        "umap-run": using("umap", "bench_umap.py", search_machine_line, missing_text=True),
        "umap-table": using("umap", "bench_umap.py", umap_table),
        "umap-key-numbers": using("umap", "bench_umap.py", umap_key_numbers),
    }
