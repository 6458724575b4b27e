"""Render ``bench/results/core.json`` as the markdown tables of docs/benchmarks.md (printed to stdout).

    python bench/report_core.py > /tmp/core.md
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "core.json"
METHOD_NAMES = {
    "srem": "SREM (shipped defaults)",
    "infonce": "InfoNCE",
    "triplet": "VSE++ triplet",
    "ncr": "ncr (NCR-style, 2 networks)",
    "clean_only": "clean-only reference",
    "zero": "zero-training bridge",
}


def mean_std(values: list[float]) -> str:
    values = [value for value in values if value is not None and np.isfinite(value)]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}" if abs(values[0]) < 2 else f"{values[0]:.1f}"
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
    return f"{mean:.3f} ± {std:.3f}" if abs(mean) < 2 else f"{mean:.1f} ± {std:.1f}"


def main_table(results: dict) -> list[str]:
    grouped: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for key, metrics in results.get("table", {}).items():
        method, rate, _ = key.split("|")
        grouped[(method, float(rate))].append(metrics)
    for key, metrics in results.get("zero_training", {}).items():
        rate, _ = key.split("|")
        grouped[("zero", float(rate))].append(metrics)
    rates = sorted({rate for _, rate in grouped})
    lines = ["| method | " + " | ".join(f"AUROC {int(r * 100)}% | rSum {int(r * 100)}%" for r in rates) + " |"]
    lines.append("|---|" + "---|---|" * len(rates))
    for method in METHOD_NAMES:
        cells = []
        for rate in rates:
            runs = grouped.get((method, rate), [])
            cells.append(mean_std([run.get("detection_auroc") for run in runs]))
            cells.append(mean_std([run.get("test_rsum") for run in runs]) if method != "zero" else "–")
        if any(cell not in ("n/a", "–") for cell in cells):
            lines.append(f"| {METHOD_NAMES[method]} | " + " | ".join(cells) + " |")
    return lines


def timing_table(results: dict) -> list[str]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for key, metrics in results.get("table", {}).items():
        grouped[key.split("|")[0]].append(metrics)
    lines = ["| method | epoch seconds (median over runs) | of which scoring pass | ratio to ncr |", "|---|---|---|---|"]
    ncr = np.median([run["epoch_seconds"] for run in grouped.get("ncr", [])]) if grouped.get("ncr") else float("nan")
    for method in ("srem", "infonce", "triplet", "ncr"):
        runs = grouped.get(method, [])
        if runs:
            epoch = float(np.median([run["epoch_seconds"] for run in runs]))
            scoring = float(np.median([run["scoring_seconds"] for run in runs]))
            lines.append(f"| {METHOD_NAMES[method]} | {epoch:.2f} | {scoring:.2f} | {epoch / ncr:.2f} |")
    return lines


def ablation_table(results: dict) -> list[str]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for key, metrics in results.get("ablation", {}).items():
        grouped[key.rsplit("|", 1)[0]].append(metrics)
    lines = ["| variant (40% noise) | detection AUROC | test rSum | validation rSum |", "|---|---|---|---|"]
    from bench_core import ablations

    order = [name for name in ablations() if name in grouped] + [name for name in grouped if name not in ablations()]
    for name in order:
        runs = grouped[name]
        lines.append(
            f"| {name} | {mean_std([r.get('detection_auroc') for r in runs])} | {mean_std([r.get('test_rsum') for r in runs])} "
            f"| {mean_std([r.get('val_rsum') for r in runs])} |"
        )
    return lines


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    results = json.loads(path.read_text())
    machine = results.get("machine", {})
    out = [
        f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, {machine.get('torch_threads', '?')} torch thread(s), Python {machine.get('python', '?')}, "
        f"torch {machine.get('torch', '?')}. Date: {results.get('date', '?')}. Command: `{results.get('command', '?')}`.",
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
