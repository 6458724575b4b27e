"""Render streaming.json (bench_streaming.py) and app.json (bench_app.py) as docs/benchmarks.md blocks."""

from __future__ import annotations

import math

from report_format import fixed, integer, results_block, run_line, significant, size_label, table, target_verdict, thousands

EXPORT_NAMES = {"export.csv": "CSV", "export.jsonl": "JSONL", "export.parquet": "Parquet"}


def megabytes(sizes: list[int]) -> str:
    """Format byte counts as "16 / 23 / 3 MB": one decimal when the largest is below 10 MB, else none."""
    decimals = 1 if max(sizes) < 10e6 else 0
    return " / ".join(fixed(size / 1e6, decimals) for size in sizes) + " MB"


def file_size(size: int) -> str:
    return f"{fixed(size / 1e9, 2)} GB" if size >= 1e9 else megabytes([size])


def streaming_entries(results: dict) -> list[dict]:
    return [entry for _, entry in sorted(results.get("streaming", {}).items(), key=lambda item: int(item[0]))]


def streaming_table(results: dict) -> list[str]:
    rows = []
    for entry in streaming_entries(results):
        label = size_label(entry["setup"]["n_rows"])
        phases = {phase["phase"]: phase for phase in entry["phases"]}
        if "build" in phases:
            build = phases["build"]
            rows.append([label, "build store", fixed(build['seconds'], 1), fixed(build['peak_rss_mib'], 0), file_size(build["store_bytes"])])
        if "score" in phases:
            score = phases["score"]
            rows.append([label, "`score_store`", fixed(score['seconds'], 1), fixed(score['peak_rss_mib'], 0),
                         f"{file_size(score['scores_bytes'])} Parquet"])
        exports = [phases[name] for name in EXPORT_NAMES if name in phases]
        if exports:
            names = " / ".join(EXPORT_NAMES[phase["phase"]] for phase in exports)
            decimals = 2 if max(phase["seconds"] for phase in exports) < 10 else 1
            rows.append([
                label, f"export {names} ({thousands(exports[0]['rows_written'])} clean rows)",
                " / ".join(fixed(phase['seconds'], decimals) for phase in exports),
                " / ".join(fixed(phase['peak_rss_mib'], 0) for phase in exports),
                megabytes([phase["file_bytes"] for phase in exports]),
            ])
    return table(["pairs", "phase", "seconds", "peak RSS (MiB)", "output"], rows)


def streaming_run_lines(results: dict) -> list[str]:
    lines = []
    for entry in streaming_entries(results):
        machine = entry.get("machine", {})
        libraries = [f"numpy {machine['numpy']}" if "numpy" in machine else None,
                     f"torch {machine['torch']} ({machine.get('torch_threads', '?')} threads)" if "torch" in machine else None]
        lines.append("- " + run_line(
            machine=machine, date=entry.get("date"), command=entry.get("command"),
            load_start=machine.get("load_average_1_5_15_at_start"), libraries=[text for text in libraries if text],
            label=f"**{thousands(entry['setup']['n_rows'])} pairs.**",
        ))
    return lines


def score_batches(setup: dict) -> tuple[int, int]:
    """Return (largest chunk rows, scoring batches) of score_store: near-equal chunks of at most
    ``score_chunk_rows`` rows (streaming.chunk_bounds), each cut into near-equal batches."""
    n_rows, chunk_rows, batch = setup["n_rows"], setup["score_chunk_rows"], setup["score_batch_size"]
    n_chunks = max(1, math.ceil(n_rows / chunk_rows))
    size, n_larger = divmod(n_rows, n_chunks)
    lengths = [size + 1] * n_larger + [size] * (n_chunks - n_larger)
    return max(lengths), sum(math.ceil(length / batch) for length in lengths)


def streaming_key_numbers(results: dict) -> list[str]:
    entries = streaming_entries(results)
    if not entries:
        return []
    imports = [phase["rss_after_imports_mib"] for entry in entries for phase in entry["phases"]]
    low, high = integer(min(imports)), integer(max(imports))
    bullets = [f"Resident memory right after the imports, before any work: {low if low == high else f'{low} to {high}'} MiB "
               "in every phase."]
    scores = [(entry["setup"], next(phase for phase in entry["phases"] if phase["phase"] == "score")) for entry in entries
              if any(phase["phase"] == "score" for phase in entry["phases"])]
    if len(scores) >= 2:
        (small_setup, small), (large_setup, large) = scores[0], scores[-1]
        low, high = fixed(small["peak_rss_mib"], 0), fixed(large["peak_rss_mib"], 0)
        change = int(high) - int(low)  # from the shown values, so the text adds up
        bullets.append(
            f"Scoring's peak memory: {low} MiB at {size_label(small_setup['n_rows'])} pairs and {high} MiB at "
            f"{size_label(large_setup['n_rows'])} pairs, {abs(change)} MiB {'more' if change >= 0 else 'less'}, with chunks of "
            f"{thousands(score_batches(small_setup)[0])} and {thousands(score_batches(large_setup)[0])} rows."
        )
    if scores:
        setup, score = scores[-1]
        bullets.append(
            f"At {size_label(setup['n_rows'])} pairs `score_store` took {fixed(score['seconds'], 1)} s for "
            f"{thousands(score_batches(setup)[1])} batches of {setup['score_batch_size']}."
        )
    return [f"- {bullet}" for bullet in bullets]


def page_name(key: str) -> str:
    return key.replace("_", " ").capitalize()


def app_table(results: dict) -> list[str]:
    pages, browser = results.get("pages", {}), results.get("browser_pages") or {}
    repeats = max((len(timing["warm_s"]) for timing in pages.values()), default=0)
    rows = []
    for key, timing in pages.items():
        clicks = browser.get(key, {}).get("sidebar_click_median_s")
        loads = browser.get(key, {}).get("page_load_median_s")
        rows.append([page_name(key), f"{fixed(timing['warm_median_s'], 2)} s",
                     f"{fixed(clicks, 2)} s" if clicks is not None else "–", f"{fixed(loads, 2)} s" if loads is not None else "–"])
    header = ["page", f"AppTest, script run (median of {repeats})", f"Chromium, sidebar click (median of {repeats})",
              f"Chromium, URL load (median of {repeats})"]
    return table(header, rows)


def app_run_line(results: dict) -> list[str]:
    start, end = results.get("machine_at_start", {}), results.get("machine_at_end", {})
    libraries = [f"{name} {start[name]}" for name in ("streamlit", "plotly") if name in start]
    if "torch" in start:
        libraries.append(f"torch {start['torch']} ({start.get('torch_threads', '?')} threads by default)")
    return [run_line(machine=start, date=results.get("date"), command=results.get("command"),
                     load_start=start.get("load_average_1_5_15"), load_end=end.get("load_average_1_5_15"),
                     libraries=libraries)]


def query_text(search: dict) -> str:
    return (f"median {fixed(search['median_ms'], 1)} ms (p90 {significant(search['p90_ms'])} ms). The median encoding "
            f"took {fixed(search['median_encode_ms'], 1)} ms and the median search {fixed(search['median_search_ms'], 1)} ms")


def page_bullets(run: dict, pages: dict, browser: dict | None, targets: dict) -> list[str]:
    """Bullets on first visits, the slowest warm page and the slowest browser load."""
    first = ", ".join(f"{page_name(key)} {fixed(timing['first_visit_s'], 2)} s" for key, timing in pages.items())
    text = f"First visit of each page, which fills the caches: {first}."
    if "embedding_map" in pages and run:
        text += (f" The map page's first visit computes the UMAP map of all {thousands(run['pairs'] + run['images'])} "
                 "caption and image embeddings.")
    bullets = [text]

    slowest = max(pages, key=lambda key: pages[key]["warm_median_s"])
    text = f"Slowest AppTest median: {page_name(slowest)} {fixed(pages[slowest]['warm_median_s'], 2)} s"
    if "page_s" in targets:
        met = pages[slowest]["warm_median_s"] < targets["page_s"]
        text += f"; target {targets['page_s']:g} s per page: {target_verdict(met)}"
    if browser:
        worst = max(browser, key=lambda key: browser[key]["page_load_median_s"])
        text += f". Slowest Chromium URL load: {page_name(worst)} {fixed(browser[worst]['page_load_median_s'], 2)} s"
    bullets.append(text + ".")
    return bullets


def search_bullets(results: dict, targets: dict) -> list[str]:
    """Bullets on text-search latency with the app's torch threads and with torch's default."""
    bullets = []
    search = results.get("text_search")
    if search:
        threads = search["torch_threads"]
        text = (f"Text search for the top {search['k']} of {thousands(search['indexed_images'])} images "
                f"({search['index_kind']} index, {search['queries']} queries), {threads} torch "
                f"thread{'s' if threads != 1 else ''} as the app sets it: {query_text(search)}.")
        if "text_query_ms" in targets:
            text += f" Target {targets['text_query_ms']:g} ms: {target_verdict(search['median_ms'] < targets['text_query_ms'])}."
        bullets.append(text)
    default = results.get("text_search_torch_default_threads")
    if default:
        bullets.append(f"The same with torch's default of {default['torch_threads']} threads: {query_text(default)}.")
    return bullets


def app_key_numbers(results: dict) -> list[str]:
    run, pages, targets = results.get("run", {}), results.get("pages", {}), results.get("targets", {})
    bullets = []
    if run:
        bullets.append(f"Run: {thousands(run['pairs'])} pairs and {thousands(run['images'])} images ({run['source']}).")
    if pages:
        bullets += page_bullets(run, pages, results.get("browser_pages"), targets)

    interactions = results.get("interactions_s", {})
    if interactions:
        threshold = fixed(interactions["distributions_move_threshold_s"], 2)
        thumbnails = fixed(interactions["flagged_pairs_next_page_uncached_thumbnails_s"], 2)
        bullets.append(f"Moving a threshold on Distributions took {threshold} s, and opening a table page with "
                       f"uncached thumbnails {thumbnails} s (AppTest).")

    bullets += search_bullets(results, targets)
    return [f"- {bullet}" for bullet in bullets]


def blocks() -> dict:
    """Return block name -> function of a ResultsFolder that returns the block's markdown lines."""

    def using(file: str, script: str, render, missing_text: bool = False):
        return results_block(lambda folder: folder.load(file), script, render, missing_text)

    streaming = "bench_streaming.py"
    return {
        "streaming-run": using("streaming.json", streaming, streaming_run_lines, missing_text=True),
        "streaming-table": using("streaming.json", streaming, streaming_table),
        "streaming-key-numbers": using("streaming.json", streaming, streaming_key_numbers),
        "app-run": using("app.json", "bench_app.py", app_run_line, missing_text=True),
        "app-table": using("app.json", "bench_app.py", app_table),
        "app-key-numbers": using("app.json", "bench_app.py", app_key_numbers),
    }
