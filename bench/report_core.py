"""Render ``bench/results/core.json`` (written by bench_core.py) as the core blocks of docs/benchmarks.md.

``bench/report.py`` puts these blocks into the doc. Run alone, this module prints the core tables:

    python bench/report_core.py [bench/results/core.json]
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from core_ablations import ablations
from report_format import ResultsFolder, finite, fixed, mean, mean_std, percent, ratio, results_block, table, target_verdict, torch_run_line

RESULTS = Path(__file__).resolve().parent / "results" / "core.json"
FILE = "core.json"
SCRIPT = "bench_core.py"

METHOD_NAMES = {
    "srem": "SREM (shipped defaults)",
    "infonce": "InfoNCE",
    "triplet": "VSE++ triplet",
    "ncr": "ncr (NCR-style, 2 networks)",
    "clean_only": "clean-only reference",
    "zero": "zero-training bridge",
}
SHORT_NAMES = {"infonce": "InfoNCE", "triplet": "VSE++ triplet", "ncr": "ncr", "zero": "zero-training bridge"}
TRAINED_BASELINES = ("infonce", "triplet", "ncr")
GAP_TARGET = 0.5
"""Share of the rSum gap between InfoNCE and the clean-only reference that SREM should close."""
GAP_TARGET_RATES = (0.4, 0.6)
"""Noise rates that the gap target applies to; at 20% noise the gap is only reported."""
EPOCH_RATIO_TARGET = 0.6
"""Largest accepted ratio of SREM's epoch time to the ncr epoch time."""


def group_runs(results: dict) -> dict[tuple[str, float], list[dict]]:
    """Group the per-seed metrics by (method, noise rate); zero-training runs go under method "zero"."""
    grouped: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for key in sorted(results.get("table", {}), key=lambda key: int(key.rsplit("|", 1)[1])):
        method, rate, _ = key.split("|")
        grouped[(method, float(rate))].append(results["table"][key])
    for key, metrics in results.get("zero_training", {}).items():
        rate, _ = key.split("|")
        grouped[("zero", float(rate))].append(metrics)
    return grouped


def metric(runs: list[dict], name: str) -> list:
    return [run.get(name) for run in runs]


def main_table(results: dict) -> list[str]:
    grouped = group_runs(results)
    rates = sorted({rate for _, rate in grouped})
    header = ["method"] + [label for rate in rates for label in (f"AUROC {rate:.0%}", f"rSum {rate:.0%}")]
    rows = []
    for method, name in METHOD_NAMES.items():
        cells = []
        for rate in rates:
            runs = grouped.get((method, rate), [])
            cells.append(mean_std(metric(runs, "detection_auroc")))
            cells.append(mean_std(metric(runs, "test_rsum")) if method != "zero" else "–")
        if any(cell not in ("n/a", "–") for cell in cells):
            rows.append([name, *cells])
    return table(header, rows)


def epoch_medians(results: dict) -> dict[str, tuple[float, float]]:
    """Return method -> (median epoch seconds, median scoring seconds) over all its runs."""
    grouped: dict[str, list[dict]] = defaultdict(list)
    for key, metrics in results.get("table", {}).items():
        grouped[key.split("|")[0]].append(metrics)
    return {
        method: (float(np.median(metric(runs, "epoch_seconds"))), float(np.median(metric(runs, "scoring_seconds"))))
        for method, runs in grouped.items()
    }


def timing_table(results: dict) -> list[str]:
    medians = epoch_medians(results)
    ncr = medians["ncr"][0] if "ncr" in medians else float("nan")
    rows = [
        [METHOD_NAMES[method], fixed(medians[method][0], 2), fixed(medians[method][1], 2), ratio(medians[method][0] / ncr)]
        for method in ("srem", "infonce", "triplet", "ncr")
        if method in medians
    ]
    return table(["method", "epoch seconds (median over runs)", "of which scoring pass", "ratio to ncr"], rows)


def ablation_runs(results: dict) -> dict[str, list[dict]]:
    """Group the ablation metrics by variant, in the order of ``core_ablations.ablations``."""
    grouped: dict[str, list[dict]] = defaultdict(list)
    for key in sorted(results.get("ablation", {}), key=lambda key: int(key.rsplit("|", 1)[1])):
        grouped[key.rsplit("|", 1)[0]].append(results["ablation"][key])
    known = [name for name in ablations() if name in grouped]
    return {name: grouped[name] for name in known + sorted(set(grouped) - set(known))}


def ablation_table(results: dict) -> list[str]:
    rows = [
        [name, mean_std(metric(runs, "detection_auroc")), mean_std(metric(runs, "test_rsum")), mean_std(metric(runs, "val_rsum"))]
        for name, runs in ablation_runs(results).items()
    ]
    return table(["variant (40% noise)", "detection AUROC", "test rSum", "validation rSum"], rows)


def rate_bullet(grouped: dict, rate: float) -> str | None:
    """Summarise one noise rate: SREM's detection and retrieval against the baselines and the gap target."""
    srem = grouped.get(("srem", rate))
    if not srem:
        return None

    auroc = mean(metric(srem, "detection_auroc"))
    detection = sorted(
        ((SHORT_NAMES[method], mean(metric(grouped[(method, rate)], "detection_auroc")))
         for method in (*TRAINED_BASELINES, "zero") if grouped.get((method, rate))),
        key=lambda item: -item[1],
    )
    text = f"**{rate:.0%} noise**: SREM's detection AUROC is {mean_std(metric(srem, 'detection_auroc'))}"
    if detection:
        text += " (" + ", ".join(f"{name} {fixed(value, 3)}" for name, value in detection) + ")"
        best_name, best_value = detection[0]
        text += ", the highest of all methods." if auroc > best_value else f", below {best_name}'s."
    else:
        text += "."

    rsum_values = finite(metric(srem, "test_rsum"))
    rsum = mean(rsum_values)
    per_seed = ", ".join(fixed(value, 1) for value in rsum_values)
    text += f" Its test rSum is {mean_std(rsum_values)} (per seed: {per_seed})"
    infonce, clean = grouped.get(("infonce", rate)), grouped.get(("clean_only", rate))
    if infonce and clean:
        low, high = mean(metric(infonce, "test_rsum")), mean(metric(clean, "test_rsum"))
        closed = (rsum - low) / (high - low)
        text += (
            f", which closes {percent(closed)} of the gap between InfoNCE ({fixed(low, 1)}) and the clean-only "
            f"reference ({fixed(high, 1)})"
        )
        text += f"; target half: {target_verdict(closed >= GAP_TARGET)}." if rate in GAP_TARGET_RATES else "."
    else:
        text += "."

    trained = [(SHORT_NAMES[method], mean(metric(grouped[(method, rate)], "test_rsum")))
               for method in TRAINED_BASELINES if grouped.get((method, rate))]
    if trained:
        name, value = max(trained, key=lambda item: item[1])
        text += f" The best baseline rSum is {name}'s {fixed(value, 1)}, {'below' if value < rsum else 'above'} SREM's."
    return text


def key_numbers(results: dict) -> list[str]:
    grouped = group_runs(results)
    bullets = [rate_bullet(grouped, rate) for rate in sorted({rate for _, rate in grouped})]
    medians = epoch_medians(results)
    if "srem" in medians and "ncr" in medians:
        share = medians["srem"][0] / medians["ncr"][0]
        bullets.append(
            f"**Epoch time**: SREM's epoch, its scoring pass included, takes {fixed(share, 2)} times the ncr epoch "
            f"(target {EPOCH_RATIO_TARGET}: {target_verdict(share <= EPOCH_RATIO_TARGET)})."
        )
    return [f"- {bullet}" for bullet in bullets if bullet]


def ablation_numbers(results: dict) -> list[str]:
    """Bullets that compare ablation rows, for the prose on how the defaults were chosen."""
    runs = ablation_runs(results)

    def auroc_rsum(name: str) -> tuple[str, str] | None:
        if name not in runs:
            return None
        return fixed(mean(metric(runs[name], 'detection_auroc')), 3), fixed(mean(metric(runs[name], 'test_rsum')), 1)

    shipped, no_filter = auroc_rsum("shipped defaults"), auroc_rsum("no energy filter")
    below_mean, weights = auroc_rsum("energy filter: below the mean"), auroc_rsum("+ swapped-entropy weights (confidence)")
    literal = next((name for name in runs if name.startswith("literal reading")), None)
    bullets = []
    if shipped and no_filter and below_mean:
        bullets.append(
            f"Energy filter: detection AUROC {no_filter[0]} without it, {shipped[0]} with the shipped quantile rule and "
            f"{below_mean[0]} with \"below the mean\"; test rSum {no_filter[1]}, {shipped[1]} and {below_mean[1]}."
        )
    if shipped and weights:
        bullets.append(
            f"Swapped-entropy weights: AUROC {weights[0]} and rSum {weights[1]} with them, {shipped[0]} and {shipped[1]} without."
        )
    if literal:
        bullets.append(
            f"Literal reading: AUROC {mean_std(metric(runs[literal], 'detection_auroc'))}, "
            f"test rSum {mean_std(metric(runs[literal], 'test_rsum'))}."
        )
    return [f"- {bullet}" for bullet in bullets]


def run_block(results: dict) -> list[str]:
    threads = results.get("threads", results.get("machine", {}).get("torch_threads"))
    return [torch_run_line(results, threads, "torch thread", " for training")]


def blocks() -> dict:
    """Return block name -> function of a ResultsFolder that returns the block's markdown lines."""

    def using(render, missing_text: bool = False):
        return results_block(lambda folder: folder.load(FILE), SCRIPT, render, missing_text)

    return {
        "core-run": using(run_block, missing_text=True),
        "core-main": using(main_table),
        "core-epoch": using(timing_table),
        "core-ablation": using(ablation_table),
        "core-key-numbers": using(key_numbers),
        "core-ablation-numbers": using(ablation_numbers),
    }


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    results = ResultsFolder(path.parent).load(path.name)
    if results is None:
        sys.exit(f"results file {path} not found; run python bench/{SCRIPT} first")
    out = [
        *run_block(results),
        "",
        "### Detection AUROC (training split, injected noise) and test rSum, mean ± std over seeds",
        "",
        *main_table(results),
        "",
        "### Epoch time (training plus the per-epoch scoring pass)",
        "",
        *timing_table(results),
        "",
        "### SREM ablation",
        "",
        *ablation_table(results),
    ]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
