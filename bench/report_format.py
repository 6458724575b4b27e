"""Number formatting, markdown tables and run lines shared by the report_*.py modules.

Every formatter here reproduces the rounding that docs/benchmarks.md used when its tables were
written by hand, so a regenerated table keeps the same digits.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable, Sequence

import numpy as np


def fixed(value: float, decimals: int, grouping: bool = False) -> str:
    """Round half up from the shortest decimal form of ``value``, as a person does: 53.55 -> "53.6".

    Python's own formatting rounds the binary value, which is 53.549999... for 53.55.
    """
    rounded = Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    return format(rounded, f"{',' if grouping else ''}.{decimals}f")


def difference(first: float, second: float) -> float:
    """Return ``first - second`` computed on their decimal forms, so 240.9 - 68.4 is exactly 172.5."""
    return float(Decimal(repr(float(first))) - Decimal(repr(float(second))))


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def finite(values: Iterable) -> list[float]:
    """Return the finite numbers of ``values``, dropping None and NaN (no injected noise, for example)."""
    return [float(value) for value in values if is_number(value)]


def mean_std(values: Iterable) -> str:
    """Format the mean ± sample std of ``values``: 3 decimals below 2 (AUROC), else 1 decimal (rSum)."""
    values = finite(values)
    if not values:
        return "n/a"
    if len(values) == 1:
        return fixed(values[0], 3) if abs(values[0]) < 2 else fixed(values[0], 1)
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
    return f"{fixed(mean, 3)} ± {fixed(std, 3)}" if abs(mean) < 2 else f"{fixed(mean, 1)} ± {fixed(std, 1)}"


def mean(values: Iterable) -> float:
    values = finite(values)
    return float(np.mean(values)) if values else float("nan")


def integer(value: float) -> str:
    """Round to a whole number with thousands separators: 1027.8 -> "1,028"."""
    return fixed(value, 0, grouping=True)


def by_magnitude(value: float) -> str:
    """Two decimals below 10, one below 100, none from 100 on: 2.70, 26.0, 1,028; "< 0.01" for tiny values."""
    if 0 < value < 0.005:
        return "< 0.01"
    return fixed(value, decimals_for(value)) if abs(value) < 100 else integer(value)


def decimals_for(value: float) -> int:
    if abs(value) < 10:
        return 2
    if abs(value) < 100:
        return 1
    return 0


def pair_by_first(first: float, second: float) -> str:
    """Format "median / p90" with the decimals that the first value's magnitude sets for both."""
    decimals = decimals_for(first)
    return f"{fixed(first, decimals, grouping=True)} / {fixed(second, decimals, grouping=True)}"


def significant(value: float, digits: int = 3) -> str:
    """Round to ``digits`` significant digits, without an exponent: 14.07 -> "14.1", 496.49 -> "496"."""
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(value)))))
    return fixed(value, decimals, grouping=True)


def ratio(value: float) -> str:
    return fixed(value, 2)


def percent(value: float) -> str:
    """Format a fraction as a whole percentage: 0.6500 -> "65%"."""
    return f"{fixed(100 * value, 0)}%"


def thousands(value: int) -> str:
    return f"{value:,}"


def size_label(count: int) -> str:
    """Short row-count label: 100000 -> "100k", 1000000 -> "1M"."""
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count >= 1_000 and count % 1_000 == 0:
        return f"{count // 1_000}k"
    return thousands(count)


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Return the lines of a markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)
    return lines


def target_verdict(met: bool) -> str:
    return "met" if met else "missed"


def not_measured(script: str) -> list[str]:
    """Return the line that a block shows while its results file or section does not exist."""
    return [f"Not measured yet: run `python bench/{script}`."]


def load_text(values) -> str | None:
    """Format a (1, 5, 15)-minute load average triple, or return None when it was not recorded."""
    if not values:
        return None
    return ", ".join(fixed(float(value), 2) for value in values)


def run_line(
    *,
    machine: dict,
    date: str | None,
    command: str | None,
    load_start=None,
    load_end=None,
    libraries: Sequence[str] = (),
    label: str = "",
) -> str:
    """Describe where and how one results section was measured, from the fields of its JSON.

    ``machine`` may use the key names of any bench script (``cpu`` or ``cpu_model``). ``libraries``
    lists extra version strings that the caller built from the JSON, and ``label`` starts the line.
    """
    cpu = machine.get("cpu_model") or machine.get("cpu") or "unknown CPU"
    hardware = [f"{machine['cores']} cores" if "cores" in machine else None,
                f"{machine['ram_gib']} GiB RAM" if "ram_gib" in machine else None]
    hardware_text = ", ".join(part for part in hardware if part)
    software = [f"Python {machine['python']}" if "python" in machine else None, *libraries]
    software_text = ", ".join(part for part in software if part)

    machine_text = f"Machine: {cpu}"
    if hardware_text:
        machine_text += f" ({hardware_text})"
    if software_text:
        machine_text += f", {software_text}"
    sentences = [machine_text]
    sentences.append(f"Date: {date[:10]}" if date else "Date: not recorded")
    sentences.append(f"Command: `{command}`" if command else "Command: not recorded")
    start, end = load_text(load_start), load_text(load_end)
    if start and end:
        sentences.append(f"Load average (1, 5, 15 min): {start} at the start, {end} at the end")
    elif start:
        sentences.append(f"Load average (1, 5, 15 min): {start} at the start")
    else:
        sentences.append("Load average: not recorded")
    prefix = f"{label} " if label else ""
    return prefix + ". ".join(sentences) + "."


def torch_run_line(results: dict, threads, thread_word: str = "thread", thread_note: str = "") -> str:
    """Describe a run whose JSON has ``bench_core.machine_info`` under "machine" (core, steps, encoders).

    ``threads`` is the torch thread count to show (None hides it), named ``thread_word`` and followed
    by ``thread_note`` inside the bracket.
    """
    machine = results.get("machine", {})
    torch_text = f"torch {machine['torch']}" if "torch" in machine else None
    if torch_text and threads is not None:
        torch_text += f" ({threads} {thread_word}{'s' if threads != 1 else ''}{thread_note})"
    return run_line(
        machine=machine, date=results.get("date"), command=results.get("command"),
        load_start=results.get("load_average"), load_end=results.get("load_average_end"),
        libraries=[torch_text] if torch_text else [],
    )


class ResultsFolder:
    """Read the JSON files of a results folder once each; a missing file reads as None."""

    def __init__(self, folder) -> None:
        from pathlib import Path

        self.folder = Path(folder)
        self._cache: dict[str, dict | None] = {}

    def load(self, name: str) -> dict | None:
        import json

        if name not in self._cache:
            path = self.folder / name
            self._cache[name] = json.loads(path.read_text()) if path.is_file() else None
        return self._cache[name]

    def section(self, name: str, key: str) -> dict | None:
        """Return one top-level section of a results file, or None when the file or section is missing."""
        content = self.load(name)
        return None if content is None else content.get(key)


def results_block(load, script: str, render, missing_text: bool = False):
    """Wrap ``render(results)`` as a block function of a ResultsFolder.

    ``load(folder)`` returns the results dict or None. When it is None the block renders the
    "not measured yet" line if ``missing_text`` is set (the section's run line does), else nothing.
    """

    def block(folder: ResultsFolder) -> list[str]:
        results = load(folder)
        if results is None:
            return not_measured(script) if missing_text else []
        return render(results)

    return block
