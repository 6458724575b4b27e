"""Render steps.json (bench_steps.py) and encoders.json (bench_encoders.py) as docs/benchmarks.md blocks."""

from __future__ import annotations

from report_format import fixed, integer, percent, ratio, results_block, significant, table, target_verdict, torch_run_line

STEP_VARIANTS = (
    "infonce",
    "srem (shipped defaults)",
    "srem + complementary loss, uniform Q",
    "srem + complementary loss, biased Q",
    "ncr (2 networks)",
)
"""Row order of the step table: the keys of bench_steps.VARIANTS. Other names follow, sorted."""
BASELINE_VARIANT = "infonce"
SREM_VARIANT = "srem (shipped defaults)"
STEP_RATIO_TARGET = 1.15
STEP_RATIO_TARGET_BATCH = 128
"""An SREM step at this batch size should cost at most STEP_RATIO_TARGET times an InfoNCE step."""
SCORING_SHARE_TARGET = 0.5
"""Share of the raw matrix-product FLOP/s that the scoring pass should reach."""


def step_times(results: dict) -> dict[int, dict[str, float]]:
    """Return batch size -> variant -> median step seconds, variants in table order."""
    by_batch: dict[int, dict[str, float]] = {}
    for key, seconds in results.get("steps", {}).items():
        name, batch = key.rsplit("|", 1)
        by_batch.setdefault(int(batch), {})[name] = seconds
    order = {name: position for position, name in enumerate(STEP_VARIANTS)}
    return {
        batch: dict(sorted(times.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))
        for batch, times in sorted(by_batch.items())
    }


def steps_table(results: dict) -> list[str]:
    """Step time and ratio to InfoNCE per batch size, plus peak memory per batch size when recorded."""
    times = step_times(results)
    peaks = results.get("steps_peak_rss_mib", {})
    header = ["objective"]
    for batch in times:
        header += [f"step at batch {batch} (ms)", "ratio to InfoNCE"]
    if peaks:
        header += [f"peak RSS MiB at batch {batch}" for batch in times]
    names = list(dict.fromkeys(name for per_batch in times.values() for name in per_batch))
    rows = []
    for name in names:
        cells = [name]
        for per_batch in times.values():
            baseline = per_batch.get(BASELINE_VARIANT)
            seconds = per_batch.get(name)
            cells.append(fixed(1000 * seconds, 2) if seconds is not None else "–")
            cells.append(ratio(seconds / baseline) if seconds is not None and baseline else "–")
        if peaks:
            cells += [integer(peaks[f"{name}|{batch}"]) if f"{name}|{batch}" in peaks else "–" for batch in times]
        rows.append(cells)
    return table(header, rows)


def embed_dim(row: dict) -> int:
    """Recover D from a scoring row: bench_steps counts 2 * n_pairs * batch_size * D FLOPs."""
    return round(row["flops_per_second"] * row["seconds"] / (2 * row["n_pairs"] * row["batch_size"]))


def scoring_block(results: dict) -> list[str]:
    lines = []
    matmul = results.get("matmul_flops_per_second")
    if matmul:
        lines += [f"Raw float32 matrix product, (4096 x 256) @ (256 x 4096): {fixed(matmul / 1e9, 1)} GFLOP/s.", ""]
    scoring = results.get("scoring", [])
    if not scoring:
        return lines
    first = scoring[0]
    header = [f"scoring pass ({first['n_pairs']:,} pairs, D = {embed_dim(first)})", "seconds",
              "GFLOP/s (2·B·D per pair)", "share of the matmul rate"]
    rows = [
        [f"batch {row['batch_size']}", fixed(row['seconds'], 3), fixed(row['flops_per_second'] / 1e9, 1),
         percent(row["flops_per_second"] / matmul) if matmul else "–"]
        for row in scoring
    ]
    return lines + table(header, rows)


def steps_key_numbers(results: dict) -> list[str]:
    bullets = []
    for batch, per_batch in step_times(results).items():
        baseline = per_batch.get(BASELINE_VARIANT)
        if not baseline:
            continue
        ratios = [f"{name} {fixed(seconds / baseline, 2)}" for name, seconds in per_batch.items() if name != BASELINE_VARIANT]
        text = f"Batch {batch}, step time as a multiple of an InfoNCE step: " + ", ".join(ratios)
        if batch == STEP_RATIO_TARGET_BATCH and SREM_VARIANT in per_batch:
            met = per_batch[SREM_VARIANT] / baseline <= STEP_RATIO_TARGET
            text += f". Target for SREM at this batch size: {STEP_RATIO_TARGET}, {target_verdict(met)}"
        bullets.append(text + ".")
    matmul, scoring = results.get("matmul_flops_per_second"), results.get("scoring", [])
    if matmul and scoring:
        shares = [row["flops_per_second"] / matmul for row in scoring]
        parts = ", ".join(f"{percent(share)} at batch {row['batch_size']}" for share, row in zip(shares, scoring))
        met = all(share >= SCORING_SHARE_TARGET for share in shares)
        bullets.append(f"Scoring reaches {parts} of the raw matmul rate; target {percent(SCORING_SHARE_TARGET)}: "
                       f"{target_verdict(met)}.")
    return [f"- {bullet}" for bullet in bullets]


def steps_run_lines(results: dict) -> list[str]:
    """Return the run line of steps.json or encoders.json, with how step times were aggregated."""
    threads = results.get("torch_threads", results.get("machine", {}).get("torch_threads"))
    lines = [torch_run_line(results, threads)]
    if "repeats" in results and "steps" in results:
        rounds = results.get("rounds", 1)
        lines[0] += (f" Each step time is the median of {results['repeats']} steps after 3 warm-up steps"
                     + (f", then the median over {rounds} interleaved rounds." if rounds > 1 else "."))
    return lines


def encoders_table(results: dict) -> list[str]:
    rows = [
        [row["encoder"], row["modality"], row["batch_size"], significant(row["items_per_second"]),
         integer(row["peak_rss_mib"])]
        for row in results.get("rows", [])
    ]
    return table(["encoder", "modality", "batch", "items/s (median of repeats)", "peak RSS MiB"], rows)


def blocks() -> dict:
    """Return block name -> function of a ResultsFolder that returns the block's markdown lines."""

    def using(file: str, script: str, render, missing_text: bool = False):
        return results_block(lambda folder: folder.load(file), script, render, missing_text)

    return {
        "steps-run": using("steps.json", "bench_steps.py", steps_run_lines, missing_text=True),
        "steps-table": using("steps.json", "bench_steps.py", steps_table),
        "steps-scoring": using("steps.json", "bench_steps.py", scoring_block),
        "steps-key-numbers": using("steps.json", "bench_steps.py", steps_key_numbers),
        "encoders-run": using("encoders.json", "bench_encoders.py", steps_run_lines, missing_text=True),
        "encoders-table": using("encoders.json", "bench_encoders.py", encoders_table),
    }
